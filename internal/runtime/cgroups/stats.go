package cgroups

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
)

// Stats is a snapshot of a container's resource usage. The JSON names are
// those of runc's `events --stats` output. Figures a host cannot give (a
// controller that is not mounted, a file this kernel lacks) stay zero.
type Stats struct {
	CPU     CPUStats                `json:"cpu"`
	Memory  MemoryStats             `json:"memory"`
	Pids    PidsStats               `json:"pids"`
	Blkio   BlkioStats              `json:"blkio"`
	Hugetlb map[string]HugetlbStats `json:"hugetlb,omitempty"`
}

// CPUStats is CPU time in nanoseconds and CFS throttling.
type CPUStats struct {
	Usage      CPUUsage   `json:"usage"`
	Throttling Throttling `json:"throttling"`
}

// CPUUsage is consumed CPU time in nanoseconds.
type CPUUsage struct {
	Total  uint64   `json:"total"`
	Percpu []uint64 `json:"percpu,omitempty"`
	Kernel uint64   `json:"kernel"`
	User   uint64   `json:"user"`
}

// Throttling counts CFS periods and the time spent throttled (ns).
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// MemoryEntry is one memory counter: bytes used, the limit, the peak and
// how often the limit was hit.
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// MemoryStats is memory usage; Swap is memory+swap on cgroup v1 and swap
// alone on v2, as the kernel reports it. Raw is memory.stat.
type MemoryStats struct {
	Cache uint64            `json:"cache,omitempty"`
	Usage MemoryEntry       `json:"usage,omitempty"`
	Swap  MemoryEntry       `json:"swap,omitempty"`
	Raw   map[string]uint64 `json:"raw,omitempty"`
}

// PidsStats is the number of tasks and their limit (0: no limit).
type PidsStats struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// BlkioEntry is one block I/O counter of one device.
type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// BlkioStats is bytes and operations per device, this cgroup and below.
type BlkioStats struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
}

// HugetlbStats is huge page usage of one page size.
type HugetlbStats struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// Stats reads the container's resource usage from every hierarchy.
func (m *Manager) Stats() (*Stats, error) {
	dir, err := m.pidsDir()
	if err != nil {
		return nil, fmt.Errorf("read cgroup stats: %w", err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("read cgroup stats: %w", notFound(err))
	}
	s := &Stats{}
	r := statReader{}
	m.cpuStats(&r, s)
	m.memoryStats(&r, s)
	if d, v2, err := m.dir("pids"); err == nil {
		s.Pids.Current = r.uint(d, "pids.current")
		if !v2 || exists(d, "pids.max") {
			s.Pids.Limit = r.uint(d, "pids.max")
		}
	}
	m.blkioStats(&r, s)
	m.hugetlbStats(&r, s)
	if r.err != nil {
		return nil, fmt.Errorf("read cgroup stats: %w", r.err)
	}
	return s, nil
}

// statReader reads counters; a missing file reads as zero, the first other
// failure is kept.
type statReader struct{ err error }

func (r *statReader) text(dir, name string) string {
	s, err := readFile(dir, name)
	if err != nil && !isNotExist(err) && r.err == nil {
		r.err = err
	}
	return s
}

// uint parses a counter; "max" (no limit) reads as zero.
func (r *statReader) uint(dir, name string) uint64 {
	s := r.text(dir, name)
	if s == "" || s == "max" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("parse %s/%s: %w", dir, name, err)
	}
	return v
}

// keyed parses "key value" lines (cpu.stat, memory.stat, memory.events).
func (r *statReader) keyed(dir, name string) map[string]uint64 {
	out := map[string]uint64{}
	for line := range strings.SplitSeq(r.text(dir, name), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func (m *Manager) cpuStats(r *statReader, s *Stats) {
	if d, v2, err := m.dir("cpu"); err == nil && v2 {
		st := r.keyed(d, "cpu.stat")
		s.CPU.Usage = CPUUsage{Total: st["usage_usec"] * 1000, User: st["user_usec"] * 1000, Kernel: st["system_usec"] * 1000}
		s.CPU.Throttling = Throttling{Periods: st["nr_periods"], ThrottledPeriods: st["nr_throttled"], ThrottledTime: st["throttled_usec"] * 1000}
		return
	} else if err == nil {
		st := r.keyed(d, "cpu.stat")
		s.CPU.Throttling = Throttling{Periods: st["nr_periods"], ThrottledPeriods: st["nr_throttled"], ThrottledTime: st["throttled_time"]}
	}
	if d := m.paths["cpuacct"]; d != "" {
		s.CPU.Usage.Total = r.uint(d, "cpuacct.usage")
		s.CPU.Usage.User = r.uint(d, "cpuacct.usage_user")
		s.CPU.Usage.Kernel = r.uint(d, "cpuacct.usage_sys")
		for f := range strings.FieldsSeq(r.text(d, "cpuacct.usage_percpu")) {
			v, _ := strconv.ParseUint(f, 10, 64)
			s.CPU.Usage.Percpu = append(s.CPU.Usage.Percpu, v)
		}
	}
}

func (m *Manager) memoryStats(r *statReader, s *Stats) {
	d, v2, err := m.dir("memory")
	if err != nil {
		return
	}
	if v2 {
		if !exists(d, "memory.current") {
			return // memory controller not enabled
		}
		s.Memory.Raw = r.keyed(d, "memory.stat")
		s.Memory.Cache = s.Memory.Raw["file"]
		s.Memory.Usage = MemoryEntry{Usage: r.uint(d, "memory.current"), Limit: r.uint(d, "memory.max"),
			Max: r.uint(d, "memory.peak"), Failcnt: r.keyed(d, "memory.events")["max"]}
		s.Memory.Swap = MemoryEntry{Usage: r.uint(d, "memory.swap.current"), Limit: r.uint(d, "memory.swap.max"),
			Max: r.uint(d, "memory.swap.peak"), Failcnt: r.keyed(d, "memory.swap.events")["max"]}
		return
	}
	s.Memory.Raw = r.keyed(d, "memory.stat")
	s.Memory.Cache = s.Memory.Raw["cache"]
	entry := func(prefix string) MemoryEntry {
		return MemoryEntry{Usage: r.uint(d, prefix+"usage_in_bytes"), Limit: r.uint(d, prefix+"limit_in_bytes"),
			Max: r.uint(d, prefix+"max_usage_in_bytes"), Failcnt: r.uint(d, prefix+"failcnt")}
	}
	s.Memory.Usage = entry("memory.")
	s.Memory.Swap = entry("memory.memsw.")
}

func (m *Manager) blkioStats(r *statReader, s *Stats) {
	d, v2, err := m.dir("blkio")
	if err != nil {
		return
	}
	if v2 {
		// io.stat: "maj:min rbytes=N wbytes=N rios=N wios=N ...".
		for line := range strings.SplitSeq(r.text(d, "io.stat"), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			major, minor, ok := parseDev(f[0])
			if !ok {
				continue
			}
			kv := map[string]uint64{}
			for _, p := range f[1:] {
				k, v, _ := strings.Cut(p, "=")
				kv[k], _ = strconv.ParseUint(v, 10, 64)
			}
			add := func(list *[]BlkioEntry, op string, v uint64) {
				*list = append(*list, BlkioEntry{Major: major, Minor: minor, Op: op, Value: v})
			}
			add(&s.Blkio.IoServiceBytesRecursive, "Read", kv["rbytes"])
			add(&s.Blkio.IoServiceBytesRecursive, "Write", kv["wbytes"])
			add(&s.Blkio.IoServicedRecursive, "Read", kv["rios"])
			add(&s.Blkio.IoServicedRecursive, "Write", kv["wios"])
		}
		return
	}
	s.Blkio.IoServiceBytesRecursive = blkioEntries(r.text(d, "blkio.throttle.io_service_bytes_recursive"))
	s.Blkio.IoServicedRecursive = blkioEntries(r.text(d, "blkio.throttle.io_serviced_recursive"))
}

// blkioEntries parses v1 "maj:min Op value" lines (and skips "Total N").
func blkioEntries(text string) []BlkioEntry {
	var out []BlkioEntry
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		major, minor, ok := parseDev(f[0])
		v, err := strconv.ParseUint(f[2], 10, 64)
		if ok && err == nil {
			out = append(out, BlkioEntry{Major: major, Minor: minor, Op: f[1], Value: v})
		}
	}
	return out
}

func parseDev(s string) (uint64, uint64, bool) {
	a, b, ok := strings.Cut(s, ":")
	major, err1 := strconv.ParseUint(a, 10, 64)
	minor, err2 := strconv.ParseUint(b, 10, 64)
	return major, minor, ok && err1 == nil && err2 == nil
}

func (m *Manager) hugetlbStats(r *statReader, s *Stats) {
	d, v2, err := m.dir("hugetlb")
	if err != nil {
		return
	}
	for _, size := range HugepageSizes() {
		p := "hugetlb." + size + "."
		var st HugetlbStats
		if v2 {
			if !exists(d, p+"current") {
				continue
			}
			st = HugetlbStats{Usage: r.uint(d, p+"current"), Failcnt: r.keyed(d, p+"events")["max"]}
		} else {
			if !exists(d, p+"usage_in_bytes") {
				continue
			}
			st = HugetlbStats{Usage: r.uint(d, p+"usage_in_bytes"), Max: r.uint(d, p+"max_usage_in_bytes"), Failcnt: r.uint(d, p+"failcnt")}
		}
		if s.Hugetlb == nil {
			s.Hugetlb = map[string]HugetlbStats{}
		}
		s.Hugetlb[size] = st
	}
}

// HugepageSizes returns the host's huge page sizes as the runtime spec and
// the hugetlb controller name them ("2MB", "1GB"), from
// /sys/kernel/mm/hugepages.
func HugepageSizes() []string {
	entries, _ := os.ReadDir("/sys/kernel/mm/hugepages")
	var out []string
	for _, e := range entries {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB"), 10, 64)
		if err != nil {
			continue
		}
		switch {
		case kb >= 1<<20 && kb%(1<<20) == 0:
			out = append(out, strconv.FormatUint(kb>>20, 10)+"GB")
		case kb >= 1<<10 && kb%(1<<10) == 0:
			out = append(out, strconv.FormatUint(kb>>10, 10)+"MB")
		default:
			out = append(out, strconv.FormatUint(kb, 10)+"KB")
		}
	}
	return out
}

func notFound(err error) error {
	if isNotExist(err) {
		return errdefs.NotFound(err)
	}
	return err
}

// OOMKillCount returns how many processes of the cgroup the kernel's OOM
// killer has killed (v1 memory.oom_control, v2 memory.events "oom_kill").
// A runtime compares it before and after a container's life to report an
// OOM kill.
func (m *Manager) OOMKillCount() (uint64, error) {
	d, v2, err := m.dir("memory")
	if err != nil {
		return 0, fmt.Errorf("read OOM kills: %w", err)
	}
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	r := statReader{}
	kv := r.keyed(d, file)
	if r.err != nil {
		return 0, fmt.Errorf("read OOM kills: %w", notFound(r.err))
	}
	if _, ok := kv["oom_kill"]; !ok {
		if !exists(d, file) {
			return 0, fmt.Errorf("read OOM kills: %w", errdefs.NotFound(fmt.Errorf("%s/%s does not exist", d, file)))
		}
		return 0, fmt.Errorf("read OOM kills: %s/%s has no oom_kill counter on this kernel", d, file)
	}
	return kv["oom_kill"], nil
}
