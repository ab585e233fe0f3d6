package specgen

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// HostDevice is a device node on the host as the engine found it.
type HostDevice struct {
	// Path is the node's path on the host.
	Path string
	// Type is "c" (character), "b" (block) or "p" (FIFO).
	Type         string
	Major, Minor int64
	// FileMode holds the permission bits of the node.
	FileMode os.FileMode
	UID, GID uint32
}

// DeviceLookup returns the device at a host path, or, when the path is a
// directory, every device below it. It fails when the path holds none.
type DeviceLookup func(hostPath string) ([]HostDevice, error)

// minMemory is the smallest memory limit Docker accepts (6 MiB).
const minMemory = 6 << 20

func setResources(s *specs.Spec, in *Input, hc *container.HostConfig) error {
	r := hc.Resources
	if err := checkResources(&r, in.Host); err != nil {
		return err
	}
	res := s.Linux.Resources
	mem := specs.LinuxMemory{}
	if r.Memory > 0 {
		v := r.Memory
		mem.Limit = &v
	}
	if r.MemoryReservation > 0 {
		v := r.MemoryReservation
		mem.Reservation = &v
	}
	if r.MemorySwap > 0 {
		v := r.MemorySwap
		mem.Swap = &v
	}
	if r.MemorySwappiness != nil {
		v := uint64(*r.MemorySwappiness)
		mem.Swappiness = &v
	}
	if r.OomKillDisable != nil {
		v := *r.OomKillDisable
		mem.DisableOOMKiller = &v
	}
	if mem != (specs.LinuxMemory{}) {
		res.Memory = &mem
	}

	cpu := specs.LinuxCPU{}
	if r.CPUShares != 0 {
		v := uint64(r.CPUShares)
		cpu.Shares = &v
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if r.NanoCPUs > 0 {
		period := uint64(100000)
		quota := r.NanoCPUs * int64(period) / 1e9
		cpu.Period, cpu.Quota = &period, &quota
	}
	if r.CPUPeriod != 0 {
		v := uint64(r.CPUPeriod)
		cpu.Period = &v
	}
	if r.CPUQuota != 0 {
		v := r.CPUQuota
		cpu.Quota = &v
	}
	if r.CPURealtimePeriod != 0 {
		v := uint64(r.CPURealtimePeriod)
		cpu.RealtimePeriod = &v
	}
	if r.CPURealtimeRuntime != 0 {
		v := r.CPURealtimeRuntime
		cpu.RealtimeRuntime = &v
	}
	if cpu != (specs.LinuxCPU{}) {
		res.CPU = &cpu
	}

	if r.PidsLimit != nil {
		limit := *r.PidsLimit
		if limit <= 0 {
			limit = -1
		}
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}

	bio := specs.LinuxBlockIO{}
	if r.BlkioWeight > 0 {
		w := r.BlkioWeight
		bio.Weight = &w
	}
	for _, wd := range r.BlkioWeightDevice {
		if wd == nil {
			continue
		}
		d, err := blockDevice(in, wd.Path, "blkio weight device")
		if err != nil {
			return err
		}
		w := wd.Weight
		bio.WeightDevice = append(bio.WeightDevice, specs.LinuxWeightDevice{
			LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: d.Major, Minor: d.Minor},
			Weight:             &w,
		})
	}
	throttles := []struct {
		what string
		in   []*blkiodev.ThrottleDevice
		out  *[]specs.LinuxThrottleDevice
	}{
		{"device read bps", r.BlkioDeviceReadBps, &bio.ThrottleReadBpsDevice},
		{"device write bps", r.BlkioDeviceWriteBps, &bio.ThrottleWriteBpsDevice},
		{"device read iops", r.BlkioDeviceReadIOps, &bio.ThrottleReadIOPSDevice},
		{"device write iops", r.BlkioDeviceWriteIOps, &bio.ThrottleWriteIOPSDevice},
	}
	for _, t := range throttles {
		for _, td := range t.in {
			if td == nil {
				continue
			}
			d, err := blockDevice(in, td.Path, t.what)
			if err != nil {
				return err
			}
			*t.out = append(*t.out, specs.LinuxThrottleDevice{
				LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: d.Major, Minor: d.Minor},
				Rate:               td.Rate,
			})
		}
	}
	if bio.Weight != nil || bio.WeightDevice != nil || bio.ThrottleReadBpsDevice != nil || bio.ThrottleWriteBpsDevice != nil ||
		bio.ThrottleReadIOPSDevice != nil || bio.ThrottleWriteIOPSDevice != nil {
		res.BlockIO = &bio
	}
	return nil
}

// blockDevice finds the device node a blkio option names.
func blockDevice(in *Input, p, what string) (HostDevice, error) {
	if in.Devices == nil {
		return HostDevice{}, errdefs.FailedPrecondition(fmt.Errorf("%s %s: the engine gave no device lookup", what, p))
	}
	devs, err := in.Devices(p)
	if err != nil {
		return HostDevice{}, errdefs.InvalidArgument(fmt.Errorf("%s %s: %w", what, p, err))
	}
	for _, d := range devs {
		if d.Path == p {
			return d, nil
		}
	}
	return HostDevice{}, invalid("%s %s: not a device", what, p)
}

// CheckResources refuses the resources Docker refuses at create (the
// same checks Generate makes at start), so a bad limit fails the create.
func CheckResources(r container.Resources, h Host) error {
	return checkResources(&r, h)
}

// checkResources refuses what Docker refuses at create and drops what it
// drops (swap limits on a host that cannot enforce them).
func checkResources(r *container.Resources, h Host) error {
	if r.Memory != 0 && r.Memory < minMemory {
		return invalid("Minimum memory limit allowed is 6MB")
	}
	if r.Memory > 0 && r.MemorySwap != -1 && h.NoSwapLimit {
		r.MemorySwap = -1
	}
	if r.Memory > 0 && r.MemorySwap > 0 && r.MemorySwap < r.Memory {
		return invalid("minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if r.Memory == 0 && r.MemorySwap > 0 {
		return invalid("you should always set the memory limit when using memoryswap limit, see usage")
	}
	if r.MemorySwappiness != nil && *r.MemorySwappiness == -1 {
		r.MemorySwappiness = nil
	}
	if r.MemorySwappiness != nil && (*r.MemorySwappiness < 0 || *r.MemorySwappiness > 100) {
		return invalid("invalid value: %v, valid memory swappiness range is 0-100", *r.MemorySwappiness)
	}
	if r.MemoryReservation > 0 && r.MemoryReservation < minMemory {
		return invalid("minimum memory reservation allowed is 6MB")
	}
	if r.Memory > 0 && r.MemoryReservation > 0 && r.Memory < r.MemoryReservation {
		return invalid("Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if r.NanoCPUs > 0 && r.CPUPeriod > 0 {
		return invalid("conflicting options: Nano CPUs and CPU Period cannot both be set")
	}
	if r.NanoCPUs > 0 && r.CPUQuota > 0 {
		return invalid("conflicting options: Nano CPUs and CPU Quota cannot both be set")
	}
	if r.NanoCPUs != 0 && h.NumCPU > 0 && (r.NanoCPUs < 0 || r.NanoCPUs > int64(h.NumCPU)*1e9) {
		return invalid("range of CPUs is from 0.01 to %[1]d.00, as there are only %[1]d CPUs available", h.NumCPU)
	}
	if r.NanoCPUs < 0 {
		return invalid("invalid NanoCPUs %d: must not be negative", r.NanoCPUs)
	}
	if r.CPUShares < 0 {
		return invalid("invalid CPU shares (%d): value must be a positive integer", r.CPUShares)
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	}
	if r.BlkioWeight > 0 && (r.BlkioWeight < 10 || r.BlkioWeight > 1000) {
		return invalid("range of blkio weight is from 10 to 1000")
	}
	for _, set := range []struct{ name, v string }{{"cpuset cpus", r.CpusetCpus}, {"cpuset mems", r.CpusetMems}} {
		if err := checkCPUList(set.v); err != nil {
			return invalid("invalid value %s for %s: %v", set.v, set.name, err)
		}
	}
	return nil
}

// checkCPUList checks a cpuset list such as "0-2,4".
func checkCPUList(v string) error {
	if v == "" {
		return nil
	}
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a number", lo)
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil {
				return fmt.Errorf("%q is not a number", hi)
			}
			if b < a {
				return fmt.Errorf("range %s is backwards", part)
			}
		}
	}
	return nil
}

var deviceCgroupRule = regexp.MustCompile(`^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$`)

var deviceMode = regexp.MustCompile(`^[rwm]{1,3}$`)

// setDevices adds --device nodes and their cgroup rules, the
// --device-cgroup-rule rules, or for a privileged container every host
// device with all access allowed.
func setDevices(s *specs.Spec, in *Input, hc *container.HostConfig) error {
	perms := s.Linux.Resources.Devices
	var devs []specs.LinuxDevice
	if hc.Privileged {
		for _, d := range in.Host.PrivilegedDevices {
			devs = append(devs, linuxDevice(d, d.Path))
		}
		for _, m := range hc.Devices {
			if m.PathInContainer == "" || m.PathInContainer == m.PathOnHost {
				continue
			}
			ds, _, err := mapDevice(in, m, "rwm")
			if err != nil {
				return err
			}
			devs = append(devs, ds...)
		}
		perms = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		for _, m := range hc.Devices {
			mode := m.CgroupPermissions
			if mode == "" {
				mode = "rwm"
			}
			ds, ps, err := mapDevice(in, m, mode)
			if err != nil {
				return err
			}
			devs = append(devs, ds...)
			perms = append(perms, ps...)
		}
		for _, rule := range hc.DeviceCgroupRules {
			m := deviceCgroupRule.FindStringSubmatch(rule)
			if m == nil {
				return invalid("invalid device cgroup rule format: '%s'", rule)
			}
			p := specs.LinuxDeviceCgroup{Allow: true, Type: m[1], Access: m[4]}
			for i, field := range []**int64{&p.Major, &p.Minor} {
				n := int64(-1)
				if m[2+i] != "*" {
					v, err := strconv.ParseInt(m[2+i], 10, 64)
					if err != nil {
						return invalid("invalid device cgroup rule format: '%s'", rule)
					}
					n = v
				}
				*field = &n
			}
			perms = append(perms, p)
		}
	}
	if len(hc.DeviceRequests) > 0 {
		return errdefs.NotImplemented(fmt.Errorf("device requests (--gpus) are not supported by Berth"))
	}
	s.Linux.Devices = append(s.Linux.Devices, devs...)
	s.Linux.Resources.Devices = perms
	return nil
}

// mapDevice resolves one --device mapping into device nodes and rules.
func mapDevice(in *Input, m container.DeviceMapping, mode string) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	if !deviceMode.MatchString(mode) {
		return nil, nil, invalid("invalid device mode %q for device %s: want a combination of r, w and m", mode, m.PathOnHost)
	}
	if !strings.HasPrefix(m.PathOnHost, "/") {
		return nil, nil, invalid("device %q: host path must be absolute", m.PathOnHost)
	}
	ctr := m.PathInContainer
	if ctr == "" {
		ctr = m.PathOnHost
	}
	if !strings.HasPrefix(ctr, "/") {
		return nil, nil, invalid("device %q: path in container %q must be absolute", m.PathOnHost, ctr)
	}
	if in.Devices == nil {
		return nil, nil, errdefs.FailedPrecondition(fmt.Errorf("device %s: the engine gave no device lookup", m.PathOnHost))
	}
	found, err := in.Devices(m.PathOnHost)
	if err != nil {
		return nil, nil, errdefs.InvalidArgument(fmt.Errorf("error gathering device information while adding custom device %q: %w", m.PathOnHost, err))
	}
	if len(found) == 0 {
		return nil, nil, invalid("error gathering device information while adding custom device %q: not a device node", m.PathOnHost)
	}
	var devs []specs.LinuxDevice
	var perms []specs.LinuxDeviceCgroup
	for _, d := range found {
		p := ctr
		if d.Path != m.PathOnHost {
			rel, ok := strings.CutPrefix(d.Path, strings.TrimSuffix(m.PathOnHost, "/")+"/")
			if !ok {
				return nil, nil, fmt.Errorf("device lookup for %s returned %s, which is not below it", m.PathOnHost, d.Path)
			}
			p = strings.TrimSuffix(ctr, "/") + "/" + rel
		}
		devs = append(devs, linuxDevice(d, p))
		major, minor := d.Major, d.Minor
		perms = append(perms, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: mode})
	}
	return devs, perms, nil
}

func linuxDevice(d HostDevice, p string) specs.LinuxDevice {
	mode := d.FileMode.Perm()
	uid, gid := d.UID, d.GID
	return specs.LinuxDevice{Path: p, Type: d.Type, Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &uid, GID: &gid}
}

// rlimitNames are the --ulimit names Docker accepts.
var rlimitNames = map[string]bool{
	"core": true, "cpu": true, "data": true, "fsize": true, "locks": true, "memlock": true,
	"msgqueue": true, "nice": true, "nofile": true, "nproc": true, "rss": true, "rtprio": true,
	"rttime": true, "sigpending": true, "stack": true,
}

const rlimInfinity = ^uint64(0)

// setRlimits sets the request's ulimits and the daemon's defaults for the
// others. A limit above the engine's own hard limit is refused unless the
// engine can raise it (CAP_SYS_RESOURCE): the runtime could not set it.
func setRlimits(s *specs.Spec, in *Input, hc *container.HostConfig) error {
	uls := append([]*container.Ulimit(nil), hc.Ulimits...)
	for _, d := range in.Host.DefaultUlimits {
		dup := false
		for _, u := range hc.Ulimits {
			if u != nil && d != nil && u.Name == d.Name {
				dup = true
			}
		}
		if !dup {
			uls = append(uls, d)
		}
	}
	seen := map[string]bool{}
	for _, u := range uls {
		if u == nil {
			continue
		}
		if !rlimitNames[u.Name] {
			return invalid("invalid ulimit type: %s", u.Name)
		}
		if seen[u.Name] {
			return invalid("ulimit %s given twice", u.Name)
		}
		seen[u.Name] = true
		soft, hard := rlimitValue(u.Soft), rlimitValue(u.Hard)
		if soft > hard {
			return invalid("ulimit %s: soft limit %d is above hard limit %d", u.Name, u.Soft, u.Hard)
		}
		typ := "RLIMIT_" + strings.ToUpper(u.Name)
		if max, ok := in.Host.HardRlimits[typ]; ok && hard > max && !in.Host.CanRaiseRlimits {
			return invalid("ulimit %s: hard limit %s is above the engine's own hard limit %s, which it cannot raise", u.Name, rlimitString(hard), rlimitString(max))
		}
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
	return nil
}

func rlimitValue(v int64) uint64 {
	if v < 0 {
		return rlimInfinity
	}
	return uint64(v)
}

func rlimitString(v uint64) string {
	if v == rlimInfinity {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// setNamespaces applies the network, IPC, PID, UTS and cgroup modes.
func setNamespaces(s *specs.Spec, in *Input, cfg *container.Config, hc *container.HostConfig) error {
	switch {
	case cfg.NetworkDisabled:
		// Docker leaves the default new network namespace in place.
	case hc.NetworkMode.IsContainer():
		if in.Shared.Network == "" {
			return errdefs.FailedPrecondition(fmt.Errorf("network mode %s: the engine gave no namespace path", hc.NetworkMode))
		}
		setNamespace(s, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.Shared.Network})
	case hc.NetworkMode.IsHost():
		removeNamespace(s, specs.NetworkNamespace)
	case in.NetNSPath != "" && !hc.NetworkMode.IsNone():
		setNamespace(s, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.NetNSPath})
	}

	switch {
	case hc.IpcMode.IsContainer():
		if in.Shared.IPC == "" {
			return errdefs.FailedPrecondition(fmt.Errorf("IPC mode %s: the engine gave no namespace path", hc.IpcMode))
		}
		setNamespace(s, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: in.Shared.IPC})
	case hc.IpcMode.IsHost():
		removeNamespace(s, specs.IPCNamespace)
	}

	switch {
	case hc.PidMode.IsContainer():
		if in.Shared.PID == "" {
			return errdefs.FailedPrecondition(fmt.Errorf("PID mode %s: the engine gave no namespace path", hc.PidMode))
		}
		setNamespace(s, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: in.Shared.PID})
	case hc.PidMode.IsHost():
		removeNamespace(s, specs.PIDNamespace)
	}

	if hc.UTSMode.IsHost() {
		removeNamespace(s, specs.UTSNamespace)
		s.Hostname = ""
		delete(s.Linux.Sysctl, "kernel.domainname")
	}
	if hc.CgroupnsMode.IsPrivate() {
		setNamespace(s, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return nil
}

func setNamespace(s *specs.Spec, ns specs.LinuxNamespace) {
	for i, n := range s.Linux.Namespaces {
		if n.Type == ns.Type {
			s.Linux.Namespaces[i] = ns
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, ns)
}

func removeNamespace(s *specs.Spec, t specs.LinuxNamespaceType) {
	for i, n := range s.Linux.Namespaces {
		if n.Type == t {
			s.Linux.Namespaces = append(s.Linux.Namespaces[:i], s.Linux.Namespaces[i+1:]...)
			return
		}
	}
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}

// setSysctls adds Docker's default network sysctls for a container with a
// network namespace of its own, then the requested ones, each of which must
// belong to a namespace the container has.
func setSysctls(s *specs.Spec, in *Input, cfg *container.Config, hc *container.HostConfig) error {
	if hc.NetworkMode.IsPrivate() {
		if !in.Host.hostSysctlMissing("net.ipv4.ping_group_range") {
			s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
		}
		if !in.Host.hostSysctlMissing("net.ipv4.ip_unprivileged_port_start") {
			s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
		}
	}
	for k, v := range hc.Sysctls {
		if err := checkSysctl(s, k); err != nil {
			return err
		}
		s.Linux.Sysctl[k] = v
	}
	return nil
}

var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctl allows only sysctls of a namespace the container has its own
// of (or joins), as the runtime does.
func checkSysctl(s *specs.Spec, k string) error {
	switch {
	case ipcSysctls[k] || strings.HasPrefix(k, "fs.mqueue."):
		if !hasNamespace(s, specs.IPCNamespace) {
			return invalid("sysctl %q is not allowed in the host's IPC namespace", k)
		}
	case strings.HasPrefix(k, "net."):
		if !hasNamespace(s, specs.NetworkNamespace) {
			return invalid("sysctl %q is not allowed in the host's network namespace", k)
		}
	case k == "kernel.domainname":
		if !hasNamespace(s, specs.UTSNamespace) {
			return invalid("sysctl %q is not allowed in the host's UTS namespace", k)
		}
	case k == "kernel.hostname":
		return invalid("sysctl %q is not allowed: set the hostname instead", k)
	default:
		return invalid("sysctl %q is not namespaced: it would change the host", k)
	}
	return nil
}
