package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// The flags docker users paste land in the API fields docker's CLI fills.
func TestRunDockerFlagsToAPI(t *testing.T) {
	req, err := parseRun(t,
		"--log-driver", "json-file", "--log-opt", "max-size=10m,max-file=3", "--log-opt", "compress=false",
		"--device-read-bps", "/dev/sda:1mb", "--device-write-bps", "/dev/sda:2kb", "--device-read-iops", "/dev/sda:100",
		"--device-write-iops", "/dev/sda:200", "--blkio-weight-device", "/dev/sda:300",
		"--cidfile", "/tmp/cid", "--expose", "80", "--expose", "7000-7001/udp",
		"--volumes-from", "other:ro", "--annotation", "a=b", "--userns", "host", "--cgroup-parent", "/p",
		"--cpuset-mems", "0", "--memory-swappiness", "10", "--device-cgroup-rule", "c 42:* rmw",
		"--cpu-rt-period", "1000000", "--cpu-rt-runtime", "950000", "--cpu-count", "2", "--cpu-percent", "50",
		"--io-maxbandwidth", "1m", "--io-maxiops", "7", "--storage-opt", "size=1G", "--volume-driver", "local",
		"--isolation", "default", "--link", "db:db", "--gpus", "all",
		"busybox")
	if err != nil {
		t.Fatal(err)
	}
	hc, r := req.hostConfig, req.hostConfig.Resources
	if want := (container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3", "compress": "false"}}); !reflect.DeepEqual(hc.LogConfig, want) {
		t.Errorf("LogConfig = %+v", hc.LogConfig)
	}
	for name, got := range map[string][]*blkiodev.ThrottleDevice{
		"1048576": r.BlkioDeviceReadBps, "2048": r.BlkioDeviceWriteBps, "100": r.BlkioDeviceReadIOps, "200": r.BlkioDeviceWriteIOps,
	} {
		if len(got) != 1 || got[0].Path != "/dev/sda" || got[0].String() != "/dev/sda:"+name {
			t.Errorf("throttle %s: %v", name, got)
		}
	}
	if len(r.BlkioWeightDevice) != 1 || r.BlkioWeightDevice[0].Weight != 300 {
		t.Errorf("BlkioWeightDevice = %v", r.BlkioWeightDevice)
	}
	if hc.ContainerIDFile != "/tmp/cid" || !reflect.DeepEqual(hc.VolumesFrom, []string{"other:ro"}) ||
		!reflect.DeepEqual(hc.Annotations, map[string]string{"a": "b"}) || hc.UsernsMode != "host" ||
		!reflect.DeepEqual(hc.StorageOpt, map[string]string{"size": "1G"}) || hc.VolumeDriver != "local" ||
		hc.Isolation != "default" || !reflect.DeepEqual(hc.Links, []string{"db:db"}) {
		t.Errorf("HostConfig = %+v", hc)
	}
	if r.CgroupParent != "/p" || r.CpusetMems != "0" || r.MemorySwappiness == nil || *r.MemorySwappiness != 10 ||
		!reflect.DeepEqual(r.DeviceCgroupRules, []string{"c 42:* rmw"}) || r.CPURealtimePeriod != 1000000 ||
		r.CPURealtimeRuntime != 950000 || r.CPUCount != 2 || r.CPUPercent != 50 || r.IOMaximumBandwidth != 1<<20 ||
		r.IOMaximumIOps != 7 || len(r.DeviceRequests) != 1 || r.DeviceRequests[0].Count != -1 {
		t.Errorf("Resources = %+v", r)
	}
	want := network.PortSet{}
	for _, p := range []string{"80/tcp", "7000/udp", "7001/udp"} {
		want[network.MustParsePort(p)] = struct{}{}
	}
	if !reflect.DeepEqual(req.config.ExposedPorts, want) {
		t.Errorf("ExposedPorts = %v", req.config.ExposedPorts)
	}
	// Without --network, docker names the default endpoint.
	if ep := req.networking.EndpointsConfig["default"]; ep == nil || ep.IPAMConfig != nil {
		t.Errorf("EndpointsConfig = %v", req.networking.EndpointsConfig)
	}
}

func TestSplitLogOpts(t *testing.T) {
	got := splitLogOpts([]string{"max-size=1k,max-file=2", "labels=a,b", "env=A,B", "tag={{.Name}},x", "compress=false"})
	want := []string{"max-size=1k", "max-file=2", "labels=a,b", "env=A,B", "tag={{.Name}},x", "compress=false"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitLogOpts = %q, want %q", got, want)
	}
}

func TestRunSwappinessDefault(t *testing.T) {
	req, err := parseRun(t, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	// docker's CLI always sends -1 (unset); the daemon drops it.
	if s := req.hostConfig.MemorySwappiness; s == nil || *s != -1 {
		t.Errorf("MemorySwappiness = %v", s)
	}
}

func TestRunEndpointFlags(t *testing.T) {
	req, err := parseRun(t, "--ip", "10.1.2.3", "--ip6", "2001:db8::33", "--link-local-ip", "169.254.0.9",
		"--mac-address", "92:d0:c6:0a:29:33", "--network", "host", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	ep := req.networking.EndpointsConfig["host"]
	if ep == nil || ep.IPAMConfig == nil || ep.IPAMConfig.IPv4Address != netip.MustParseAddr("10.1.2.3") ||
		ep.IPAMConfig.IPv6Address != netip.MustParseAddr("2001:db8::33") || len(ep.IPAMConfig.LinkLocalIPs) != 1 ||
		ep.MacAddress.String() != "92:d0:c6:0a:29:33" {
		t.Errorf("endpoint = %+v", ep)
	}
	// docker's long syntax.
	req, err = parseRun(t, "--network", "name=none,alias=x", "busybox")
	if err == nil || !strings.Contains(err.Error(), "only supported for user-defined networks") {
		t.Errorf("--network name=none,alias=x: %v", err)
	}
	req, err = parseRun(t, "--network", "name=host,ip=10.0.0.9", "busybox")
	if err != nil || req.hostConfig.NetworkMode != "host" || req.networking.EndpointsConfig["host"].IPAMConfig.IPv4Address != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("--network name=host,ip=10.0.0.9: %v", err)
	}
	if _, err := parseRun(t, "--network", "name=host,ip=10.0.0.9", "--ip", "10.0.0.8", "busybox"); err == nil || !strings.Contains(err.Error(), "conflicting options") {
		t.Errorf("--ip with a per-network ip: %v", err)
	}
	// A network without endpoint options is left out, as docker does.
	if req, err := parseRun(t, "--network", "none", "busybox"); err != nil || len(req.networking.EndpointsConfig) != 0 {
		t.Errorf("--network none: %v %v", req.networking.EndpointsConfig, err)
	}
}

func TestRunDockerFlagsRejected(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory-swappiness", "101"}, "swappiness range is 0-100"},
		{[]string{"--mac-address", "nope"}, "not a valid mac address"},
		{[]string{"--ip", "2001:db8::1"}, `"--ip"`},
		{[]string{"--ip", "300.1.1.1"}, `"--ip"`},
		{[]string{"--userns", "other"}, "--userns"},
		{[]string{"--log-driver", "none", "--log-opt", "max-size=1m"}, "invalid logging opts for driver none"},
		{[]string{"--storage-opt", "size"}, "storage option"},
		{[]string{"--expose", "http"}, "--expose"},
		{[]string{"--network-alias", "web"}, "only supported for user-defined networks"},
		{[]string{"--device-cgroup-rule", "x 1:2 r"}, "invalid device cgroup format"},
		{[]string{"--device-read-bps", "sda:1mb"}, ""},
		{[]string{"--device-read-iops", "/dev/sda:fast"}, ""},
		{[]string{"--blkio-weight-device", "/dev/sda:5000"}, ""},
		{[]string{"--disable-content-trust=false"}, "content trust"},
	} {
		_, err := parseRun(t, append(c.args, "busybox")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
