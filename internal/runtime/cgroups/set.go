package cgroups

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Set writes resources. nil r is a no-op. Each failure names the file and
// the value it tried to write. Device rules are applied in the order given,
// on top of "deny all" (so they always form an allow list, as in runc): on
// v1 the list is reset with devices.deny "a" (the first rule itself when it
// denies all) and each rule is written in turn to devices.allow or
// devices.deny, so devices.list shows them in order; on v2 they become one
// eBPF program where the last matching rule decides.
func (m *Manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	steps := []struct {
		what string
		fn   func() error
	}{
		{"devices", func() error { return m.setDevices(r.Devices) }},
		{"cpuset", func() error { return m.setCpuset(r.CPU) }},
		{"memory", func() error { return m.setMemory(r.Memory) }},
		{"cpu", func() error { return m.setCPU(r.CPU) }},
		{"pids", func() error { return m.setPids(r.Pids) }},
		{"block io", func() error { return m.setBlockIO(r.BlockIO) }},
		{"hugepage limits", func() error { return m.setHugepages(r.HugepageLimits) }},
		{"network", func() error { return m.setNetwork(r.Network) }},
		{"rdma", func() error { return m.setRdma(r.Rdma) }},
		{"unified", func() error { return m.setUnified(r.Unified) }},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("set %s limits: %w", s.what, err)
		}
	}
	return nil
}

// dir returns the directory that drives controller ctrl: its v1 hierarchy
// when mounted, else the unified hierarchy (where a controller that is not
// enabled shows as a missing file on the first write).
func (m *Manager) dir(ctrl string) (dir string, v2 bool, err error) {
	if d := m.paths[ctrl]; d != "" {
		return d, false, nil
	}
	if d := m.paths[""]; d != "" {
		return d, true, nil
	}
	return "", false, errdefs.Unavailable(fmt.Errorf("the %s controller is not mounted on this host", ctrl))
}

// write writes value to dir/name; a missing file on v2 is explained as a
// controller that is not enabled.
func write(dir, name, value string, v2 bool) error {
	err := writeFile(dir, name, value)
	if err != nil && isNotExist(err) {
		ctrl, _, _ := strings.Cut(name, ".")
		if v2 {
			return errdefs.Unavailable(fmt.Errorf("%w (controller %s is not enabled for %s)", err, ctrl, dir))
		}
		return errdefs.Unavailable(fmt.Errorf("%w (this kernel does not support it)", err))
	}
	return err
}

// setCpuset writes cpus and mems.
func (m *Manager) setCpuset(c *specs.LinuxCPU) error {
	if c == nil || (c.Cpus == "" && c.Mems == "") {
		return nil
	}
	dir, v2, err := m.dir("cpuset")
	if err != nil {
		return err
	}
	// mems first: a process may need the new memory nodes once its
	// cpus move.
	if c.Mems != "" {
		if err := write(dir, "cpuset.mems", c.Mems, v2); err != nil {
			return err
		}
	}
	if c.Cpus != "" {
		if err := write(dir, "cpuset.cpus", c.Cpus, v2); err != nil {
			return err
		}
	}
	return nil
}

// setMemory writes the memory limits; swap is the runtime spec's
// memory+swap limit (v1 memory.memsw.limit_in_bytes; v2 memory.swap.max gets
// swap-limit).
func (m *Manager) setMemory(mem *specs.LinuxMemory) error {
	if mem == nil {
		return nil
	}
	dir, v2, err := m.dir("memory")
	if err != nil {
		if isMemoryEmpty(mem) {
			return nil
		}
		return err
	}
	limit, swap := deref(mem.Limit), deref(mem.Swap)
	if mem.CheckBeforeUpdate != nil && *mem.CheckBeforeUpdate && limit > 0 {
		usageFile := "memory.usage_in_bytes"
		if v2 {
			usageFile = "memory.current"
		}
		s, err := readFile(dir, usageFile)
		if err != nil {
			return err
		}
		usage, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("parse %s/%s: %w", dir, usageFile, err)
		}
		if limit < usage {
			return errdefs.FailedPrecondition(fmt.Errorf("memory limit %d is below the cgroup's current usage %d", limit, usage))
		}
	}
	if v2 {
		return setMemoryV2(dir, mem, limit, swap)
	}
	return setMemoryV1(dir, mem, limit, swap)
}

func isMemoryEmpty(mem *specs.LinuxMemory) bool {
	return mem.Limit == nil && mem.Reservation == nil && mem.Swap == nil && mem.Kernel == nil &&
		mem.KernelTCP == nil && mem.Swappiness == nil && mem.DisableOOMKiller == nil && mem.UseHierarchy == nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// limitString formats a limit for a v2 file: negative means "max".
func limitString(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

func setMemoryV1(dir string, mem *specs.LinuxMemory, limit, swap int64) error {
	// An unlimited memory limit with no swap limit lifts both, as runc.
	if limit == -1 && mem.Swap == nil && exists(dir, "memory.memsw.limit_in_bytes") {
		swap = -1
	}
	if swap != 0 && !exists(dir, "memory.memsw.limit_in_bytes") {
		return errdefs.Unavailable(fmt.Errorf("memory.swap %d requested but %s/memory.memsw.limit_in_bytes is missing (swap accounting is off; boot with swapaccount=1)", swap, dir))
	}
	// The kernel requires memory <= memory+swap at every step: raise
	// memsw first when it grows, lower memory first otherwise.
	if limit != 0 && swap != 0 {
		cur, err := readFile(dir, "memory.limit_in_bytes")
		if err != nil {
			return err
		}
		curLimit, _ := strconv.ParseInt(cur, 10, 64)
		if swap == -1 || curLimit < swap {
			if err := writeFile(dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(swap, 10)); err != nil {
				return err
			}
			swap = 0
		}
	}
	if limit != 0 {
		if err := writeFile(dir, "memory.limit_in_bytes", strconv.FormatInt(limit, 10)); err != nil {
			return err
		}
	}
	if swap != 0 {
		if err := writeFile(dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(swap, 10)); err != nil {
			return err
		}
	}
	if mem.Reservation != nil {
		if err := writeFile(dir, "memory.soft_limit_in_bytes", strconv.FormatInt(*mem.Reservation, 10)); err != nil {
			return err
		}
	}
	// Kernel memory limits are written where the kernel still takes
	// them; where the file is gone or refuses the value (EOPNOTSUPP),
	// the limit is skipped, as runc does: current kernels charge kernel
	// memory to the memory limit anyway.
	if mem.Kernel != nil {
		if err := writeOptional(dir, "memory.kmem.limit_in_bytes", strconv.FormatInt(*mem.Kernel, 10)); err != nil {
			return err
		}
	}
	if mem.KernelTCP != nil {
		if err := writeOptional(dir, "memory.kmem.tcp.limit_in_bytes", strconv.FormatInt(*mem.KernelTCP, 10)); err != nil {
			return err
		}
	}
	if mem.Swappiness != nil {
		if *mem.Swappiness > 100 {
			return errdefs.InvalidArgument(fmt.Errorf("memory.swappiness %d: want 0-100", *mem.Swappiness))
		}
		if err := writeFile(dir, "memory.swappiness", strconv.FormatUint(*mem.Swappiness, 10)); err != nil {
			return err
		}
	}
	if mem.DisableOOMKiller != nil {
		if err := writeFile(dir, "memory.oom_control", boolString(*mem.DisableOOMKiller)); err != nil {
			return err
		}
	}
	if mem.UseHierarchy != nil {
		if err := writeFile(dir, "memory.use_hierarchy", boolString(*mem.UseHierarchy)); err != nil {
			if !*mem.UseHierarchy && errors.Is(err, unix.EINVAL) {
				return errdefs.NotImplemented(fmt.Errorf("%w (memory.useHierarchy false: this kernel's memory cgroups are always hierarchical)", err))
			}
			return err
		}
	}
	return nil
}

// writeOptional writes a file the kernel may have dropped: a missing file or
// an unsupported operation is not an error.
func writeOptional(dir, name, value string) error {
	err := writeFile(dir, name, value)
	if err == nil || isNotExist(err) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.Errno(524)) /* ENOTSUPP */ {
		return nil
	}
	return err
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// setMemoryV2 writes memory.swap.max, memory.max and memory.low. Cgroup v2
// has no kernel memory limits, no swappiness, no OOM-killer switch and is
// always hierarchical, so those fields have nothing to set there.
func setMemoryV2(dir string, mem *specs.LinuxMemory, limit, swap int64) error {
	swapMax, err := swapV2(limit, swap, mem.Swap != nil)
	if err != nil {
		return err
	}
	if swapMax != 0 {
		if err := write(dir, "memory.swap.max", limitString(swapMax), true); err != nil {
			return err
		}
	}
	if limit != 0 {
		if err := write(dir, "memory.max", limitString(limit), true); err != nil {
			return err
		}
	}
	if mem.Reservation != nil {
		if err := write(dir, "memory.low", limitString(*mem.Reservation), true); err != nil {
			return err
		}
	}
	return nil
}

// swapV2 converts the runtime spec's memory+swap limit into cgroup v2's
// swap-only memory.swap.max. 0 means "leave as is", -1 "max".
func swapV2(limit, swap int64, swapSet bool) (int64, error) {
	if limit == -1 && !swapSet {
		return -1, nil
	}
	if swap == -1 || swap == 0 {
		return swap, nil
	}
	if limit <= 0 {
		return 0, errdefs.InvalidArgument(fmt.Errorf("memory.swap %d needs a memory limit (memory.limit %d)", swap, limit))
	}
	if swap < limit {
		return 0, errdefs.InvalidArgument(fmt.Errorf("memory.swap %d (memory+swap) is below memory.limit %d", swap, limit))
	}
	return swap - limit, nil
}

// SharesToWeight converts cgroup v1 cpu.shares (2-262144) into cgroup v2
// cpu.weight (1-10000) the way runc and crun do; 0 stays 0 ("unset").
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// BlkioWeightToIOWeight converts a cgroup v1 blkio weight (10-1000) into a
// cgroup v2 io.weight (1-10000) as runc does; 0 stays 0 ("unset").
func BlkioWeightToIOWeight(w uint16) uint64 {
	if w == 0 {
		return 0
	}
	v := min(max(uint64(w), 10), 1000)
	return 1 + (v-10)*9999/990
}

// setCPU writes the CPU scheduler limits.
func (m *Manager) setCPU(c *specs.LinuxCPU) error {
	if c == nil || (deref(c.Shares) == 0 && deref(c.Quota) == 0 && deref(c.Period) == 0 && c.Burst == nil &&
		deref(c.RealtimeRuntime) == 0 && deref(c.RealtimePeriod) == 0 && c.Idle == nil) {
		return nil
	}
	dir, v2, err := m.dir("cpu")
	if err != nil {
		return err
	}
	if v2 {
		return setCPUV2(dir, c)
	}
	if s := deref(c.Shares); s != 0 {
		if err := writeFile(dir, "cpu.shares", strconv.FormatUint(s, 10)); err != nil {
			return err
		}
	}
	quota, period := deref(c.Quota), deref(c.Period)
	if period != 0 {
		err := writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
		if err != nil && quota != 0 && errors.Is(err, unix.EINVAL) {
			// The new period does not fit the old quota: quota first.
			if err := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
				return err
			}
			quota = 0
			err = writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
		}
		if err != nil {
			return err
		}
	}
	if quota != 0 {
		if err := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
	}
	if c.Burst != nil {
		if err := write(dir, "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10), false); err != nil {
			return err
		}
	}
	if p := deref(c.RealtimePeriod); p != 0 {
		if err := write(dir, "cpu.rt_period_us", strconv.FormatUint(p, 10), false); err != nil {
			return err
		}
	}
	if rt := deref(c.RealtimeRuntime); rt != 0 {
		if err := write(dir, "cpu.rt_runtime_us", strconv.FormatInt(rt, 10), false); err != nil {
			return err
		}
	}
	if c.Idle != nil {
		if err := write(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10), false); err != nil {
			return err
		}
	}
	return nil
}

func setCPUV2(dir string, c *specs.LinuxCPU) error {
	if deref(c.RealtimeRuntime) != 0 || deref(c.RealtimePeriod) != 0 {
		return errdefs.NotImplemented(fmt.Errorf("cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no realtime group scheduling"))
	}
	if w := SharesToWeight(deref(c.Shares)); w != 0 {
		if err := write(dir, "cpu.weight", strconv.FormatUint(w, 10), true); err != nil {
			return err
		}
	}
	if quota, period := deref(c.Quota), deref(c.Period); quota != 0 || period != 0 {
		v := "max"
		if quota > 0 {
			v = strconv.FormatInt(quota, 10)
		}
		if period != 0 {
			v += " " + strconv.FormatUint(period, 10)
		}
		if err := write(dir, "cpu.max", v, true); err != nil {
			return err
		}
	}
	if c.Burst != nil {
		if err := write(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10), true); err != nil {
			return err
		}
	}
	if c.Idle != nil {
		if err := write(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10), true); err != nil {
			return err
		}
	}
	return nil
}

// setPids writes pids.max; a limit <= 0 means no limit.
func (m *Manager) setPids(p *specs.LinuxPids) error {
	if p == nil || p.Limit == nil {
		return nil
	}
	dir, v2, err := m.dir("pids")
	if err != nil {
		return err
	}
	v := "max"
	if *p.Limit > 0 {
		v = strconv.FormatInt(*p.Limit, 10)
	}
	return write(dir, "pids.max", v, v2)
}

func devString(major, minor int64) string {
	return strconv.FormatInt(major, 10) + ":" + strconv.FormatInt(minor, 10)
}

// setBlockIO writes block I/O weights and throttles.
func (m *Manager) setBlockIO(b *specs.LinuxBlockIO) error {
	if b != nil {
		// A weight of 0 means "not set", as in runc: Docker sends
		// {"weight": 0} in every container's configuration.
		nb := *b
		if nb.Weight != nil && *nb.Weight == 0 {
			nb.Weight = nil
		}
		if nb.LeafWeight != nil && *nb.LeafWeight == 0 {
			nb.LeafWeight = nil
		}
		b = &nb
	}
	if b == nil || (b.Weight == nil && b.LeafWeight == nil && len(b.WeightDevice) == 0 &&
		len(b.ThrottleReadBpsDevice) == 0 && len(b.ThrottleWriteBpsDevice) == 0 &&
		len(b.ThrottleReadIOPSDevice) == 0 && len(b.ThrottleWriteIOPSDevice) == 0) {
		return nil
	}
	dir, v2, err := m.dir("blkio")
	if err != nil {
		return err
	}
	if v2 {
		return setIOV2(dir, b)
	}
	if b.Weight != nil {
		if err := writeWeight(dir, "blkio.weight", "blkio.bfq.weight", strconv.FormatUint(uint64(*b.Weight), 10)); err != nil {
			return err
		}
	}
	if b.LeafWeight != nil {
		if err := writeLeaf(dir, "blkio.leaf_weight", strconv.FormatUint(uint64(*b.LeafWeight), 10)); err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.Weight != nil {
			v := devString(wd.Major, wd.Minor) + " " + strconv.FormatUint(uint64(*wd.Weight), 10)
			if err := writeWeight(dir, "blkio.weight_device", "blkio.bfq.weight_device", v); err != nil {
				return err
			}
		}
		if wd.LeafWeight != nil {
			v := devString(wd.Major, wd.Minor) + " " + strconv.FormatUint(uint64(*wd.LeafWeight), 10)
			if err := writeLeaf(dir, "blkio.leaf_weight_device", v); err != nil {
				return err
			}
		}
	}
	throttles := []struct {
		file string
		devs []specs.LinuxThrottleDevice
	}{
		{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	}
	for _, t := range throttles {
		for _, d := range t.devs {
			if err := write(dir, t.file, devString(d.Major, d.Minor)+" "+strconv.FormatUint(d.Rate, 10), false); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeWeight writes a v1 blkio weight to the CFQ file, or to the BFQ one
// when the kernel has no CFQ (its weights have the same range).
func writeWeight(dir, cfq, bfq, value string) error {
	if !exists(dir, cfq) && exists(dir, bfq) {
		return writeFile(dir, bfq, value)
	}
	err := writeFile(dir, cfq, value)
	if err != nil && isNotExist(err) {
		return errdefs.Unavailable(fmt.Errorf("%w (no CFQ or BFQ I/O scheduler weights on this kernel; %s is missing too)", err, bfq))
	}
	return err
}

// writeLeaf writes a v1 leaf weight, which only the CFQ scheduler has.
func writeLeaf(dir, name, value string) error {
	err := writeFile(dir, name, value)
	if err != nil && isNotExist(err) {
		return errdefs.Unavailable(fmt.Errorf("%w (leaf weights exist only with the CFQ I/O scheduler, which this kernel lacks)", err))
	}
	return err
}

// setIOV2 writes io.bfq.weight (or io.weight, converted) and io.max.
// Cgroup v2 has no leaf weights.
func setIOV2(dir string, b *specs.LinuxBlockIO) error {
	if b.LeafWeight != nil {
		return errdefs.NotImplemented(fmt.Errorf("blockIO.leafWeight: cgroup v2 has no leaf weight"))
	}
	bfq := exists(dir, "io.bfq.weight")
	weight := func(dev string, w uint16) error {
		if bfq {
			return write(dir, "io.bfq.weight", strings.TrimSpace(dev+" "+strconv.FormatUint(uint64(w), 10)), true)
		}
		return write(dir, "io.weight", strings.TrimSpace(dev+" "+strconv.FormatUint(BlkioWeightToIOWeight(w), 10)), true)
	}
	if b.Weight != nil {
		if err := weight("default", *b.Weight); err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.LeafWeight != nil {
			return errdefs.NotImplemented(fmt.Errorf("blockIO.weightDevice %s leafWeight: cgroup v2 has no leaf weight", devString(wd.Major, wd.Minor)))
		}
		if wd.Weight != nil {
			if err := weight(devString(wd.Major, wd.Minor), *wd.Weight); err != nil {
				return err
			}
		}
	}
	throttles := []struct {
		key  string
		devs []specs.LinuxThrottleDevice
	}{
		{"rbps", b.ThrottleReadBpsDevice},
		{"wbps", b.ThrottleWriteBpsDevice},
		{"riops", b.ThrottleReadIOPSDevice},
		{"wiops", b.ThrottleWriteIOPSDevice},
	}
	for _, t := range throttles {
		for _, d := range t.devs {
			rate := "max"
			if d.Rate != 0 {
				rate = strconv.FormatUint(d.Rate, 10)
			}
			if err := write(dir, "io.max", devString(d.Major, d.Minor)+" "+t.key+"="+rate, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// setHugepages writes hugetlb limits: v1 hugetlb.<size>.limit_in_bytes, v2
// hugetlb.<size>.max and, where the kernel has it, the reservation limit
// hugetlb.<size>.rsvd.max.
func (m *Manager) setHugepages(limits []specs.LinuxHugepageLimit) error {
	if len(limits) == 0 {
		return nil
	}
	dir, v2, err := m.dir("hugetlb")
	if err != nil {
		return err
	}
	for _, l := range limits {
		if l.Pagesize == "" || strings.ContainsAny(l.Pagesize, "/.\x00") {
			return errdefs.InvalidArgument(fmt.Errorf("hugepage limit: invalid page size %q", l.Pagesize))
		}
		v := strconv.FormatUint(l.Limit, 10)
		prefix := "hugetlb." + l.Pagesize
		if !v2 {
			if err := write(dir, prefix+".limit_in_bytes", v, false); err != nil {
				return err
			}
			continue
		}
		if err := write(dir, prefix+".max", v, true); err != nil {
			return err
		}
		if exists(dir, prefix+".rsvd.max") {
			if err := writeFile(dir, prefix+".rsvd.max", v); err != nil {
				return err
			}
		}
	}
	return nil
}

// setNetwork writes net_cls.classid and net_prio.ifpriomap (cgroup v1 only).
func (m *Manager) setNetwork(n *specs.LinuxNetwork) error {
	if n == nil {
		return nil
	}
	if n.ClassID != nil {
		dir := m.paths["net_cls"]
		if dir == "" {
			return errdefs.Unavailable(fmt.Errorf("network.classID %d requested but the net_cls controller is not mounted (it exists in cgroup v1 only)", *n.ClassID))
		}
		if err := writeFile(dir, "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10)); err != nil {
			return err
		}
	}
	if len(n.Priorities) > 0 {
		dir := m.paths["net_prio"]
		if dir == "" {
			return errdefs.Unavailable(fmt.Errorf("network.priorities requested but the net_prio controller is not mounted (it exists in cgroup v1 only)"))
		}
		for _, p := range n.Priorities {
			if p.Name == "" || strings.ContainsAny(p.Name, " \n") {
				return errdefs.InvalidArgument(fmt.Errorf("network priority: invalid interface name %q", p.Name))
			}
			if err := writeFile(dir, "net_prio.ifpriomap", p.Name+" "+strconv.FormatUint(uint64(p.Priority), 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setRdma writes rdma.max, one line per device.
func (m *Manager) setRdma(rdma map[string]specs.LinuxRdma) error {
	if len(rdma) == 0 {
		return nil
	}
	dir, v2, err := m.dir("rdma")
	if err != nil {
		return err
	}
	devs := make([]string, 0, len(rdma))
	for d := range rdma {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	for _, d := range devs {
		if d == "" || strings.ContainsAny(d, " \n") {
			return errdefs.InvalidArgument(fmt.Errorf("rdma: invalid device name %q", d))
		}
		l := rdma[d]
		v := d
		if l.HcaHandles != nil {
			v += " hca_handle=" + strconv.FormatUint(uint64(*l.HcaHandles), 10)
		}
		if l.HcaObjects != nil {
			v += " hca_object=" + strconv.FormatUint(uint64(*l.HcaObjects), 10)
		}
		if v == d {
			continue
		}
		if err := write(dir, "rdma.max", v, v2); err != nil {
			return err
		}
	}
	return nil
}

// setUnified writes the unified map: cgroup v2 file name -> value, in the
// container's unified-hierarchy directory.
func (m *Manager) setUnified(u map[string]string) error {
	if len(u) == 0 {
		return nil
	}
	dir := m.paths[""]
	if dir == "" {
		return errdefs.Unavailable(fmt.Errorf("unified resources need cgroup v2, and this host has no unified hierarchy"))
	}
	keys := make([]string, 0, len(u))
	for k := range u {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") {
			return errdefs.InvalidArgument(fmt.Errorf("unified: invalid cgroup file name %q", k))
		}
		if strings.HasPrefix(k, "cgroup.") && k != "cgroup.max.depth" && k != "cgroup.max.descendants" {
			return errdefs.InvalidArgument(fmt.Errorf("unified: %q is the runtime's to manage", k))
		}
		if err := write(dir, k, u[k], true); err != nil {
			return err
		}
	}
	return nil
}
