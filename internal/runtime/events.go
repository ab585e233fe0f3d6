package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	"golang.org/x/sys/unix"
)

// Event is one line of `events` output, in runc's shape: {"type":"stats",
// "id":ID,"data":Stats} or {"type":"oom","id":ID}.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Stats is a container's resource usage as runc's `events` prints it
// (runc's types.Stats). Figures the host cannot give stay zero.
type Stats struct {
	CPU               StatsCPU                `json:"cpu"`
	CPUSet            StatsCPUSet             `json:"cpuset"`
	Memory            StatsMemory             `json:"memory"`
	Pids              StatsPids               `json:"pids"`
	Blkio             StatsBlkio              `json:"blkio"`
	Hugetlb           map[string]StatsHugetlb `json:"hugetlb"`
	IntelRdt          StatsIntelRdt           `json:"intel_rdt"`
	NetworkInterfaces []*StatsNetwork         `json:"network_interfaces"`
}

// StatsCPU is CPU time and CFS throttling.
type StatsCPU struct {
	Usage      StatsCPUUsage   `json:"usage,omitempty"`
	Throttling StatsThrottling `json:"throttling,omitempty"`
}

// StatsCPUUsage is consumed CPU time in nanoseconds.
type StatsCPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// StatsThrottling counts CFS periods and the time spent throttled (ns).
type StatsThrottling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// StatsCPUSet is the container's cpuset: its CPUs and memory nodes and the
// v1 cpuset flags.
type StatsCPUSet struct {
	CPUs                  []uint16 `json:"cpus,omitempty"`
	CPUExclusive          uint64   `json:"cpu_exclusive"`
	Mems                  []uint16 `json:"mems,omitempty"`
	MemHardwall           uint64   `json:"mem_hardwall"`
	MemExclusive          uint64   `json:"mem_exclusive"`
	MemoryMigrate         uint64   `json:"memory_migrate"`
	MemorySpreadPage      uint64   `json:"memory_spread_page"`
	MemorySpreadSlab      uint64   `json:"memory_spread_slab"`
	MemoryPressure        uint64   `json:"memory_pressure"`
	SchedLoadBalance      uint64   `json:"sched_load_balance"`
	SchedRelaxDomainLevel int64    `json:"sched_relax_domain_level"`
}

// StatsMemoryEntry is one memory counter: bytes used, the limit, the peak
// and how often the limit was hit.
type StatsMemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// StatsMemory is memory usage. Swap is memory+swap, on cgroup v2 too (as
// runc reports it there). Raw is memory.stat.
type StatsMemory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     StatsMemoryEntry  `json:"usage,omitempty"`
	Swap      StatsMemoryEntry  `json:"swap,omitempty"`
	Kernel    StatsMemoryEntry  `json:"kernel,omitempty"`
	KernelTCP StatsMemoryEntry  `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
}

// StatsPids is the number of tasks and their limit (0: no limit).
type StatsPids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// StatsBlkioEntry is one block I/O counter of one device.
type StatsBlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// StatsBlkio is block I/O per device.
type StatsBlkio struct {
	IoServiceBytesRecursive []StatsBlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []StatsBlkioEntry `json:"ioServicedRecursive,omitempty"`
}

// StatsHugetlb is huge page usage of one page size.
type StatsHugetlb struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// StatsIntelRdt is Intel RDT usage; berth-runtime does not manage RDT, so
// it stays empty, as runc's does on hosts without it.
type StatsIntelRdt struct{}

// StatsNetwork is one network interface's counters (runc fills them for
// no container either: it leaves the list null).
type StatsNetwork struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

// Stats reads the container's resource usage from its cgroup.
func (c *Container) Stats() (*Stats, error) {
	if len(c.s.CgroupPaths) == 0 {
		return nil, errdefs.FailedPrecondition(fmt.Errorf("stats of %s: the container has no cgroup", c.s.ID))
	}
	cs, err := cgroups.Load(c.s.CgroupPaths).Stats()
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.s.ID, err)
	}
	s := convertStats(cs)
	if d := c.s.CgroupPaths["memory"]; d != "" {
		s.Memory.Kernel = v1MemoryEntry(d, "memory.kmem.")
		s.Memory.KernelTCP = v1MemoryEntry(d, "memory.kmem.tcp.")
	} else if c.s.CgroupPaths[""] != "" && s.Memory.Usage.Usage > 0 {
		// cgroup v2 reports swap alone; runc reports memory+swap
		// there as on v1, and so does berth-runtime.
		s.Memory.Swap.Usage += s.Memory.Usage.Usage
		if s.Memory.Swap.Limit != 0 && s.Memory.Usage.Limit != 0 {
			s.Memory.Swap.Limit += s.Memory.Usage.Limit
		}
	}
	s.CPUSet = cpusetStats(c.s.CgroupPaths)
	return s, nil
}

// convertStats maps the cgroup package's figures onto runc's shape.
func convertStats(cs *cgroups.Stats) *Stats {
	s := &Stats{Hugetlb: map[string]StatsHugetlb{}}
	s.CPU.Usage = StatsCPUUsage{Total: cs.CPU.Usage.Total, Percpu: cs.CPU.Usage.Percpu, Kernel: cs.CPU.Usage.Kernel, User: cs.CPU.Usage.User}
	s.CPU.Throttling = StatsThrottling(cs.CPU.Throttling)
	s.Memory.Cache = cs.Memory.Cache
	s.Memory.Usage = StatsMemoryEntry(cs.Memory.Usage)
	s.Memory.Swap = StatsMemoryEntry(cs.Memory.Swap)
	s.Memory.Raw = cs.Memory.Raw
	s.Pids = StatsPids(cs.Pids)
	for _, e := range cs.Blkio.IoServiceBytesRecursive {
		s.Blkio.IoServiceBytesRecursive = append(s.Blkio.IoServiceBytesRecursive, StatsBlkioEntry(e))
	}
	for _, e := range cs.Blkio.IoServicedRecursive {
		s.Blkio.IoServicedRecursive = append(s.Blkio.IoServicedRecursive, StatsBlkioEntry(e))
	}
	for size, h := range cs.Hugetlb {
		s.Hugetlb[size] = StatsHugetlb(h)
	}
	return s
}

// readUint reads a counter file; a missing or unparsable file reads as 0.
func readUint(dir, name string) uint64 {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return v
}

// v1MemoryEntry reads one v1 memory counter group (prefix "memory.kmem.").
func v1MemoryEntry(dir, prefix string) StatsMemoryEntry {
	return StatsMemoryEntry{Usage: readUint(dir, prefix+"usage_in_bytes"), Limit: readUint(dir, prefix+"limit_in_bytes"),
		Max: readUint(dir, prefix+"max_usage_in_bytes"), Failcnt: readUint(dir, prefix+"failcnt")}
}

// cpusetStats reads the cpuset: v1 cpuset.* files, or on cgroup v2 the
// effective CPUs and memory nodes.
func cpusetStats(paths map[string]string) StatsCPUSet {
	var s StatsCPUSet
	read := func(dir, name string) string {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(data))
	}
	if d := paths["cpuset"]; d != "" {
		s.CPUs, _ = ParseCPUList(read(d, "cpuset.cpus"))
		s.Mems, _ = ParseCPUList(read(d, "cpuset.mems"))
		s.CPUExclusive = readUint(d, "cpuset.cpu_exclusive")
		s.MemHardwall = readUint(d, "cpuset.mem_hardwall")
		s.MemExclusive = readUint(d, "cpuset.mem_exclusive")
		s.MemoryMigrate = readUint(d, "cpuset.memory_migrate")
		s.MemorySpreadPage = readUint(d, "cpuset.memory_spread_page")
		s.MemorySpreadSlab = readUint(d, "cpuset.memory_spread_slab")
		s.MemoryPressure = readUint(d, "cpuset.memory_pressure")
		s.SchedLoadBalance = readUint(d, "cpuset.sched_load_balance")
		s.SchedRelaxDomainLevel, _ = strconv.ParseInt(read(d, "cpuset.sched_relax_domain_level"), 10, 64)
		return s
	}
	if d := paths[""]; d != "" {
		s.CPUs, _ = ParseCPUList(read(d, "cpuset.cpus.effective"))
		s.Mems, _ = ParseCPUList(read(d, "cpuset.mems.effective"))
	}
	return s
}

// ParseCPUList parses a kernel CPU or memory node list ("0-3,8,10-11").
func ParseCPUList(s string) ([]uint16, error) {
	var out []uint16
	for part := range strings.SplitSeq(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("parse CPU list %q: %w", s, err))
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, errdefs.InvalidArgument(fmt.Errorf("parse CPU list %q: %w", s, err))
			}
			if b < a {
				return nil, errdefs.InvalidArgument(fmt.Errorf("parse CPU list %q: range %s ends before it starts", s, part))
			}
		}
		for v := a; v <= b; v++ {
			out = append(out, uint16(v))
		}
	}
	return out, nil
}

// Events reports the container's events through emit until it stops or ctx
// ends, as runc's `events`: a "stats" event every interval and an "oom"
// event for each process the kernel's OOM killer kills in the container's
// cgroup. A stats read that fails goes to warn and the stream goes on. A
// stopped container is refused.
//
// OOM kills are counted (v1 memory.oom_control, v2 memory.events
// "oom_kill"); the count is read whenever the kernel signals a memory event
// (an eventfd on v1 cgroup.event_control, inotify on v2 memory.events), at
// every interval, and once more after the container stopped, so that a kill
// that ends the container is still reported. On cgroup v1 with the OOM
// killer disabled, a kernel OOM notification while the cgroup is under OOM
// is reported too (nothing is killed then; the tasks wait for memory).
func (c *Container) Events(ctx context.Context, interval time.Duration, emit func(Event) error, warn func(error)) error {
	if interval <= 0 {
		return errdefs.InvalidArgument(fmt.Errorf("events %s: the interval must be greater than 0", c.s.ID))
	}
	if c.Status() == StatusStopped {
		return errdefs.FailedPrecondition(fmt.Errorf("container with id %s is not running", c.s.ID))
	}
	pidfd, err := unix.PidfdOpen(c.s.Pid, 0)
	if err != nil {
		return errdefs.FailedPrecondition(fmt.Errorf("container with id %s is not running: %w", c.s.ID, err))
	}
	defer unix.Close(pidfd)
	cg := cgroups.Load(c.s.CgroupPaths)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	oom := newOOMCounter(cg)
	notify, stop, err := watchMemoryEvents(c.s.CgroupPaths)
	if err != nil {
		warn(fmt.Errorf("events %s: OOM notification unavailable, counting OOM kills every %s: %w", c.s.ID, interval, err))
	}
	defer stop()
	exited := make(chan struct{})
	defer func() { cancel(); <-exited }() // before pidfd is closed
	go func() {
		defer close(exited)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, 200)
			if n > 0 || (err != nil && err != unix.EINTR) {
				return
			}
		}
	}()
	sendOOM := func(notified bool) error {
		n := oom.newKills()
		if n == 0 && notified && underOOMWithoutKiller(c.s.CgroupPaths) {
			n = 1 // the OOM killer is disabled: the cgroup hangs at its limit
		}
		for range n {
			if err := emit(Event{Type: "oom", ID: c.s.ID}); err != nil {
				return err
			}
		}
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-exited:
			if ctx.Err() != nil {
				return nil
			}
			return sendOOM(false)
		case <-notify:
			if err := sendOOM(true); err != nil {
				return err
			}
		case <-tick.C:
			if err := sendOOM(false); err != nil {
				return err
			}
			s, err := c.Stats()
			if err != nil {
				warn(err)
				continue
			}
			if err := emit(Event{Type: "stats", ID: c.s.ID, Data: s}); err != nil {
				return err
			}
		}
	}
}

// oomCounter remembers how many OOM kills were already reported.
type oomCounter struct {
	cg   *cgroups.Manager
	seen uint64
	ok   bool
}

func newOOMCounter(cg *cgroups.Manager) *oomCounter {
	n, err := cg.OOMKillCount()
	return &oomCounter{cg: cg, seen: n, ok: err == nil}
}

// newKills returns the number of kills since the last call.
func (o *oomCounter) newKills() int {
	if !o.ok {
		return 0
	}
	n, err := o.cg.OOMKillCount()
	if err != nil || n <= o.seen {
		return 0
	}
	d := n - o.seen
	o.seen = n
	return int(d)
}

// underOOMWithoutKiller reports whether a v1 memory cgroup whose OOM killer
// is disabled is out of memory right now (its tasks wait for memory).
func underOOMWithoutKiller(paths map[string]string) bool {
	d := paths["memory"]
	if d == "" {
		return false
	}
	data, err := os.ReadFile(filepath.Join(d, "memory.oom_control"))
	if err != nil {
		return false
	}
	text := "\n" + string(data)
	return strings.Contains(text, "\noom_kill_disable 1") && strings.Contains(text, "\nunder_oom 1")
}

// watchMemoryEvents returns a channel that receives when the kernel
// reports a memory event in the cgroup: through an eventfd registered for
// memory.oom_control on v1, through inotify on memory.events on v2. stop
// releases it; it is safe to call when err is not nil.
func watchMemoryEvents(paths map[string]string) (notify <-chan struct{}, stop func(), err error) {
	ch := make(chan struct{}, 1)
	var f *os.File
	if d := paths["memory"]; d != "" {
		f, err = oomEventfd(d)
	} else if d := paths[""]; d != "" {
		f, err = inotifyFile(filepath.Join(d, "memory.events"))
	} else {
		err = errdefs.Unavailable(errors.New("no memory cgroup"))
	}
	if err != nil {
		return ch, func() {}, err
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}

// oomEventfd registers an eventfd for the v1 memory cgroup's OOM
// notifications and returns it as a file the Go poller reads.
func oomEventfd(dir string) (*os.File, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	ctl := filepath.Join(dir, "memory.oom_control")
	cfd, err := unix.Open(ctl, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("open %s: %w", ctl, err)
	}
	defer unix.Close(cfd) // the registration holds its own reference
	reg := filepath.Join(dir, "cgroup.event_control")
	if err := os.WriteFile(reg, []byte(fmt.Sprintf("%d %d", efd, cfd)), 0); err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("register OOM notification in %s: %w", reg, err)
	}
	return os.NewFile(uintptr(efd), "oom-eventfd"), nil
}

// inotifyFile watches path for modifications and returns the inotify
// instance as a file the Go poller reads.
func inotifyFile(path string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "memory-events"), nil
}
