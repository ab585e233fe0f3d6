package engine

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berth-project/berth/internal/errdefs"
)

// CheckCreate refuses, before a container is created, the parts of a
// create request Docker would act on and berthd cannot, naming the option
// (a docker CLI sends every run flag; none may be dropped silently). It
// returns the warnings Docker gives on Linux for options it discards
// there, clearing those options in hc.
func CheckCreate(cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) ([]string, error) {
	var warnings []string
	if nc != nil {
		for name, ep := range nc.EndpointsConfig {
			if err := checkEndpoint(name, ep); err != nil {
				return nil, err
			}
		}
	}
	if hc == nil {
		return nil, nil
	}
	notSupported := func(format string, args ...any) error {
		return errdefs.InvalidArgument(fmt.Errorf(format, args...))
	}
	if len(hc.Links) > 0 {
		return nil, notSupported("links (--link %s) are not supported: berthd has no container networks (network modes none and host only)", hc.Links[0])
	}
	if len(hc.StorageOpt) > 0 {
		return nil, notSupported("storage options (--storage-opt) are not supported by berthd's overlay snapshotter")
	}
	if d := hc.VolumeDriver; d != "" && d != "local" {
		return nil, notSupported("volume driver %q (--volume-driver) is not supported: berthd has only the local driver", d)
	}
	if iso := hc.Isolation; iso != "" && !iso.IsDefault() {
		return nil, notSupported("invalid isolation %q (--isolation): linux only supports 'default'", iso)
	}
	if hc.IOMaximumBandwidth != 0 || hc.IOMaximumIOps != 0 {
		return nil, notSupported("invalid QoS settings (--io-maxbandwidth, --io-maxiops): linux does not support Maximum IO Bandwidth or Maximum IO IOps")
	}
	if hc.CPUPercent > 0 {
		// Docker on Linux discards it with this warning; --cpu-count it
		// ignores silently.
		warnings = append(warnings, "linux does not support CPU percent. Percent discarded.")
		hc.CPUPercent = 0
	}
	if m := hc.UsernsMode; m != "" && !m.IsHost() {
		return nil, errdefs.NotImplemented(fmt.Errorf("user namespace mode %q (--userns) is not supported: berthd runs containers in the host's user namespace", m))
	}
	if len(hc.DeviceRequests) > 0 {
		return nil, errdefs.NotImplemented(fmt.Errorf("device requests (--gpus) are not supported by berthd"))
	}
	if err := checkLogConfig(hc.LogConfig); err != nil {
		return nil, err
	}
	for _, vf := range hc.VolumesFrom {
		if _, _, err := parseVolumesFrom(vf); err != nil {
			return nil, err
		}
	}
	return warnings, nil
}

// checkEndpoint refuses endpoint settings: berthd's containers have no
// network endpoint to give an address, a MAC address, aliases or links.
func checkEndpoint(name string, ep *network.EndpointSettings) error {
	if ep == nil {
		return nil
	}
	var opts []string
	if ep.IPAMConfig != nil {
		if ep.IPAMConfig.IPv4Address.IsValid() {
			opts = append(opts, "--ip")
		}
		if ep.IPAMConfig.IPv6Address.IsValid() {
			opts = append(opts, "--ip6")
		}
		if len(ep.IPAMConfig.LinkLocalIPs) > 0 {
			opts = append(opts, "--link-local-ip")
		}
	}
	if len(ep.MacAddress) > 0 {
		opts = append(opts, "--mac-address")
	}
	if len(ep.Aliases) > 0 {
		opts = append(opts, "--network-alias")
	}
	if len(ep.Links) > 0 {
		opts = append(opts, "--link")
	}
	if len(ep.DriverOpts) > 0 {
		opts = append(opts, "driver options")
	}
	if len(opts) == 0 {
		return nil
	}
	return errdefs.InvalidArgument(fmt.Errorf("network %q: %s not supported: berthd has no container networks to configure (network modes none and host only)",
		name, strings.Join(opts, ", ")+map[bool]string{true: " is", false: " are"}[len(opts) == 1]))
}

// checkLogConfig accepts the json-file options berthd honours (max-size
// and max-file, the shim rotating the log) and refuses those Docker's
// json-file driver acts on that berthd does not.
func checkLogConfig(lc container.LogConfig) error {
	if lc.Type != "" && lc.Type != "json-file" {
		return errdefs.InvalidArgument(fmt.Errorf("logging driver %q (--log-driver) is not supported (only json-file)", lc.Type))
	}
	for k, v := range lc.Config {
		switch k {
		case "max-size":
			n, err := units.RAMInBytes(v)
			if err != nil {
				return errdefs.InvalidArgument(fmt.Errorf("invalid log opt max-size %q: %w", v, err))
			}
			if n <= 0 && v != "-1" {
				return errdefs.InvalidArgument(fmt.Errorf("invalid log opt max-size %q: must be a positive size", v))
			}
		case "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errdefs.InvalidArgument(fmt.Errorf("invalid log opt max-file %q: must be a number of at least 1", v))
			}
			if n > 1 && lc.Config["max-size"] == "" {
				return errdefs.InvalidArgument(fmt.Errorf("log opt max-file %q needs max-size: files are rotated when they reach it", v))
			}
		case "compress":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errdefs.InvalidArgument(fmt.Errorf("invalid log opt compress %q: %w", v, err))
			}
			if b {
				return errdefs.InvalidArgument(fmt.Errorf("log opt compress=true is not supported: berthd does not compress rotated logs"))
			}
		case "labels", "labels-regex", "env", "env-regex", "tag":
			return errdefs.InvalidArgument(fmt.Errorf("log opt %s is not supported: berthd's json-file log records no attributes", k))
		default:
			return errdefs.InvalidArgument(fmt.Errorf("unknown log opt '%s' for json-file log driver", k))
		}
	}
	return nil
}

// parseVolumesFrom parses a --volumes-from value, container[:mode] with
// mode ro or rw (z and Z, SELinux relabelling, change nothing here). rw
// reports whether the copied mounts stay writable where they are.
func parseVolumesFrom(s string) (ref string, rw bool, err error) {
	ref, mode, _ := strings.Cut(s, ":")
	if ref == "" {
		return "", false, errdefs.InvalidArgument(fmt.Errorf("invalid --volumes-from %q: no container named", s))
	}
	rw = true
	if mode != "" {
		for _, m := range strings.Split(mode, ",") {
			switch m {
			case "ro":
				rw = false
			case "rw", "z", "Z":
			default:
				return "", false, errdefs.InvalidArgument(fmt.Errorf("invalid mode for volumes-from: %s", mode))
			}
		}
	}
	return ref, rw, nil
}
