package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/specgen"
)

// CheckCreate refuses, before a container is created, the parts of a
// create request Docker would act on and berthd cannot, naming the option
// (a docker CLI sends every run flag; none may be dropped silently). It
// returns the warnings Docker gives on Linux for options it discards
// there, clearing those options in hc.
func (e *Engine) CheckCreate(cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) ([]string, error) {
	var warnings []string
	if nc != nil {
		if len(nc.EndpointsConfig) > 1 {
			var names []string
			for name := range nc.EndpointsConfig {
				names = append(names, name)
			}
			sort.Strings(names)
			return nil, errdefs.InvalidArgument(fmt.Errorf("a container joins one network (--network given %d times: %s); berthd has the network modes none and host",
				len(names), strings.Join(names, ", ")))
		}
		for name, ep := range nc.EndpointsConfig {
			if err := checkEndpoint(name, ep); err != nil {
				return nil, err
			}
		}
	}
	if cfg != nil {
		if wd := cfg.WorkingDir; wd != "" && !filepath.IsAbs(wd) {
			return nil, errdefs.InvalidArgument(fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", wd))
		}
		if cfg.StopSignal != "" {
			if _, err := specgen.ParseSignal(cfg.StopSignal); err != nil {
				return nil, errdefs.InvalidArgument(err)
			}
		}
	}
	if hc == nil {
		return nil, nil
	}
	// Docker refuses unknown capability names at create, privileged or not.
	if _, err := specgen.Capabilities(nil, hc.CapAdd, nil, false); err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("invalid CapAdd: %w", err))
	}
	if _, err := specgen.Capabilities(nil, nil, hc.CapDrop, false); err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("invalid CapDrop: %w", err))
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
	if err := e.checkRealtime(hc); err != nil {
		return nil, err
	}
	if err := checkWeightDevices(hc.BlkioWeightDevice); err != nil {
		return nil, err
	}
	return warnings, nil
}

// cgroupV1Root is where the v1 controllers are mounted.
const cgroupV1Root = "/sys/fs/cgroup"

// checkRealtime refuses --cpu-rt-runtime the container's parent cgroup
// cannot give: a new cgroup gets no real-time CPU time, so the parent must
// have been allotted some (what dockerd's --cpu-rt-runtime does); the
// runtime would fail on the write otherwise.
func (e *Engine) checkRealtime(hc *container.HostConfig) error {
	rt, period := hc.CPURealtimeRuntime, hc.CPURealtimePeriod
	if period != 0 && rt > period {
		return errdefs.InvalidArgument(fmt.Errorf("cpu real-time runtime (--cpu-rt-runtime %d) cannot be higher than cpu real-time period (--cpu-rt-period %d)", rt, period))
	}
	if rt <= 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cgroupV1Root, "cpu", "cpu.rt_runtime_us")); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("--cpu-rt-runtime: this host has no real-time group scheduling (no cpu.rt_runtime_us in the cpu cgroup controller)"))
	}
	parent := hc.CgroupParent
	if parent == "" {
		if cs, err := e.ctrs(); err == nil {
			parent = cs.cfg.CgroupParent
		}
	}
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if !filepath.IsAbs(parent) {
		return nil // relative to the runtime's own cgroup: the runtime decides
	}
	file := filepath.Join(cgroupV1Root, "cpu", filepath.Clean(parent), "cpu.rt_runtime_us")
	avail := int64(0)
	if b, err := os.ReadFile(file); err == nil {
		if avail, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
	}
	if rt > avail {
		return errdefs.InvalidArgument(fmt.Errorf("--cpu-rt-runtime %d: the parent cgroup %s has %d µs of real-time CPU time to give (%s); allot it there first, as dockerd's --cpu-rt-runtime does for its parent",
			rt, parent, avail, file))
	}
	return nil
}

// checkWeightDevices refuses --blkio-weight-device where the v1 blkio
// controller cannot weight the device: without CFQ's blkio.weight_device,
// only a device whose active I/O scheduler is bfq takes a weight.
func checkWeightDevices(wds []*blkiodev.WeightDevice) error {
	if len(wds) == 0 {
		return nil
	}
	blkio := filepath.Join(cgroupV1Root, "blkio")
	if _, err := os.Stat(blkio); err != nil {
		return nil // not cgroup v1: the runtime maps the weights
	}
	if _, err := os.Stat(filepath.Join(blkio, "blkio.weight_device")); err == nil {
		return nil
	}
	for _, wd := range wds {
		if wd == nil {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(wd.Path, &st); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("--blkio-weight-device %s: %w", wd.Path, err))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return errdefs.InvalidArgument(fmt.Errorf("--blkio-weight-device %s: not a block device", wd.Path))
		}
		sched := fmt.Sprintf("/sys/dev/block/%d:%d/queue/scheduler", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		b, _ := os.ReadFile(sched)
		if !strings.Contains(string(b), "[bfq]") {
			return errdefs.InvalidArgument(fmt.Errorf("--blkio-weight-device %s is not supported on this host: the blkio controller weights devices only under the bfq I/O scheduler, and %s is %q",
				wd.Path, sched, strings.TrimSpace(string(b))))
		}
	}
	return nil
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
	if lc.Type == "none" {
		return nil // as Docker, which reads no options of the none driver
	}
	if lc.Type != "" && lc.Type != "json-file" {
		return errdefs.InvalidArgument(fmt.Errorf("logging driver %q (--log-driver) is not supported (json-file, none)", lc.Type))
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
		case "mode":
			// Docker's log modes, for every driver: berthd's shim writes
			// each line to the log before it reads more output.
			switch v {
			case "", "blocking":
			case "non-blocking":
				return errdefs.InvalidArgument(fmt.Errorf("log opt mode=non-blocking is not supported: berthd writes container logs in blocking mode"))
			default:
				return errdefs.InvalidArgument(fmt.Errorf("invalid log opt mode %q: blocking or non-blocking", v))
			}
		case "max-buffer-size":
			return errdefs.InvalidArgument(fmt.Errorf("log opt max-buffer-size is only supported with mode=non-blocking, which berthd does not have"))
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
