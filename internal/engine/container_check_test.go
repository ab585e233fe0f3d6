package engine

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berth-project/berth/internal/errdefs"
)

func TestCheckCreateRefusesNamingTheOption(t *testing.T) {
	e := &Engine{}
	ipam := func(c network.EndpointIPAMConfig) *network.NetworkingConfig {
		return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"default": {IPAMConfig: &c}}}
	}
	for _, c := range []struct {
		hc   container.HostConfig
		nc   *network.NetworkingConfig
		want string
	}{
		{nc: ipam(network.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("10.0.0.2")}), want: "--ip is not supported"},
		{nc: ipam(network.EndpointIPAMConfig{IPv6Address: netip.MustParseAddr("2001:db8::2")}), want: "--ip6"},
		{nc: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"x": {MacAddress: network.HardwareAddr{1, 2, 3, 4, 5, 6}, Aliases: []string{"a"}}}}, want: "--mac-address, --network-alias are not supported"},
		{hc: container.HostConfig{Links: []string{"db:db"}}, want: "--link db:db"},
		{nc: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"host": {}, "none": {}}}, want: "--network given 2 times: host, none"},
		{hc: container.HostConfig{StorageOpt: map[string]string{"size": "1G"}}, want: "--storage-opt"},
		{hc: container.HostConfig{VolumeDriver: "nfs"}, want: "--volume-driver"},
		{hc: container.HostConfig{Isolation: "hyperv"}, want: "--isolation"},
		{hc: container.HostConfig{Resources: container.Resources{IOMaximumIOps: 3}}, want: "Maximum IO"},
		{hc: container.HostConfig{UsernsMode: "private"}, want: "--userns"},
		{hc: container.HostConfig{Resources: container.Resources{DeviceRequests: []container.DeviceRequest{{Count: -1}}}}, want: "--gpus"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Type: "syslog"}}, want: "--log-driver"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"max-size": "big"}}}, want: "max-size"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"max-file": "0"}}}, want: "max-file"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"max-file": "3"}}}, want: "needs max-size"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"compress": "true"}}}, want: "compress"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"labels": "a"}}}, want: "labels"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"what": "a"}}}, want: "unknown log opt 'what'"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"mode": "non-blocking"}}}, want: "mode=non-blocking"},
		{hc: container.HostConfig{LogConfig: container.LogConfig{Config: map[string]string{"max-buffer-size": "4m"}}}, want: "max-buffer-size"},
		{hc: container.HostConfig{VolumesFrom: []string{"c:rx"}}, want: "invalid mode for volumes-from"},
		{hc: container.HostConfig{VolumesFrom: []string{":ro"}}, want: "--volumes-from"},
		{hc: container.HostConfig{Resources: container.Resources{CPURealtimePeriod: 1000, CPURealtimeRuntime: 2000}}, want: "cannot be higher"},
	} {
		hc := c.hc
		_, err := e.CheckCreate(&container.Config{}, &hc, c.nc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %+v: %v, want %q", c.hc, c.nc, err, c.want)
			continue
		}
		if !errdefs.IsInvalidArgument(err) && !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("%q: error class of %v", c.want, err)
		}
	}
}

func TestCheckCreateAccepts(t *testing.T) {
	e := &Engine{}
	hc := &container.HostConfig{
		Isolation: "default", VolumeDriver: "local", UsernsMode: "host", VolumesFrom: []string{"a", "b:ro", "c:rw,z"},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3", "compress": "false", "mode": "blocking"}},
		Resources: container.Resources{CPUCount: 2, CPUPercent: 50, CPURealtimePeriod: 500000},
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"default": {}}}
	warnings, err := e.CheckCreate(&container.Config{}, hc, nc)
	if err != nil {
		t.Fatal(err)
	}
	// Docker on Linux: CPU percent discarded with a warning, count ignored.
	if len(warnings) != 1 || !strings.Contains(warnings[0], "CPU percent") || hc.CPUPercent != 0 || hc.CPUCount != 2 {
		t.Errorf("warnings %q, CPUPercent %d", warnings, hc.CPUPercent)
	}
}

func TestParseVolumesFrom(t *testing.T) {
	for in, want := range map[string]struct {
		ref string
		rw  bool
	}{"web": {"web", true}, "web:ro": {"web", false}, "web:rw": {"web", true}, "web:ro,z": {"web", false}} {
		ref, rw, err := parseVolumesFrom(in)
		if err != nil || ref != want.ref || rw != want.rw {
			t.Errorf("%q: %q %v %v", in, ref, rw, err)
		}
	}
}

// Docker's none log driver is accepted (with no options to check); others
// than json-file and none are refused naming the option.
func TestCheckLogConfigNone(t *testing.T) {
	if err := checkLogConfig(container.LogConfig{Type: "none"}); err != nil {
		t.Errorf("--log-driver none: %v", err)
	}
	hc := &container.HostConfig{LogConfig: container.LogConfig{Type: "none"}}
	if err := validateHostConfig(hc); err != nil {
		t.Errorf("validateHostConfig with --log-driver none: %v", err)
	}
	if err := checkLogConfig(container.LogConfig{Type: "journald"}); err == nil || !strings.Contains(err.Error(), "--log-driver") {
		t.Errorf("--log-driver journald: %v, want a refusal naming --log-driver", err)
	}
}
