package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func uniqueName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "berth-test-" + hex.EncodeToString(b)
}

// startSleep starts a process that lives until the test ends.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// newReal makes a Manager for path on this host and registers its removal
// (after the processes of the test have been killed, as cleanups run last
// first) and the removal of the parents named in extra.
func newReal(t *testing.T, path string, extra ...string) *Manager {
	t.Helper()
	m, err := New(path, "ctr", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
		for _, d := range m.Paths() {
			for _, e := range extra {
				if p := filepath.Join(strings.TrimSuffix(d, e), e[:strings.IndexByte(e+"/", '/')]); strings.HasSuffix(d, e) {
					_ = removeTree(p)
				}
			}
		}
	})
	return m
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	s, err := readFile(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ownCgroups returns hierarchy ("" for v2, else its controller list) ->
// cgroup path from /proc/pid/cgroup.
func ownCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		p := strings.SplitN(line, ":", 3)
		out[p[1]] = p[2]
	}
	return out
}

func TestRealApplyPaths(t *testing.T) {
	testutil.RequiresRoot(t)
	name := uniqueName(t)
	for _, c := range []struct{ path, suffix string }{
		{"/" + name + "/abs", "/" + name + "/abs"},
		{name + "/rel", "/" + name + "/rel"},
	} {
		t.Run(c.path, func(t *testing.T) {
			m := newReal(t, c.path, strings.TrimPrefix(c.suffix, "/"))
			cmd := startSleep(t)
			if err := m.Apply(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			paths := m.Paths()
			if len(paths) == 0 {
				t.Fatal("no paths")
			}
			for k, d := range paths {
				if !strings.HasSuffix(d, c.suffix) {
					t.Errorf("[%s] %s does not end in %s", k, d, c.suffix)
				}
				if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
					t.Errorf("[%s] %v", k, err)
				}
			}
			// The process is in the cgroup in every hierarchy, at the
			// path the runtime-tools suite looks for.
			for h, p := range ownCgroups(t, cmd.Process.Pid) {
				if !strings.HasSuffix(p, c.suffix) {
					t.Errorf("hierarchy %q: process in %s, want ...%s", h, p, c.suffix)
				}
				if strings.HasPrefix(c.path, "/") && p != c.suffix {
					t.Errorf("hierarchy %q: absolute path: process in %s, want %s", h, p, c.suffix)
				}
			}
		})
	}
}

func TestRealEmptyPathUsesID(t *testing.T) {
	testutil.RequiresRoot(t)
	id := uniqueName(t)
	m, err := New("", id, false)
	if err != nil {
		t.Fatal(err)
	}
	self := ownCgroups(t, os.Getpid())
	for k, d := range m.Paths() {
		if filepath.Base(d) != id {
			t.Errorf("[%s] %s: want a directory named %s", k, d, id)
		}
		if k == "memory" && !strings.HasSuffix(d, self["memory"]+"/"+id) && self["memory"] != "/" {
			t.Errorf("memory: %s is not below own cgroup %s", d, self["memory"])
		}
	}
}

func TestRealSystemdUnavailable(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is running here")
	}
	_, err := New("system.slice:berth:x", "x", true)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "systemd") {
		t.Fatalf("err = %v, want unavailable naming systemd", err)
	}
}

func u64(v uint64) *uint64 { return &v }
func u16(v uint16) *uint16 { return &v }
func boolp(v bool) *bool   { return &v }

// blockDevice returns the major:minor of some block device of the host.
func blockDevice() (int64, int64, bool) {
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "dev"))
		if err != nil {
			continue
		}
		maj, min, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
		a, err1 := strconv.ParseInt(maj, 10, 64)
		c, err2 := strconv.ParseInt(min, 10, 64)
		if err1 == nil && err2 == nil {
			return a, c, true
		}
	}
	return 0, 0, false
}

func TestRealSetV1(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	p := m.Paths()
	for _, c := range []string{"memory", "cpu", "cpuset", "pids", "devices", "blkio"} {
		if p[c] == "" {
			t.Skipf("v1 %s controller not mounted", c)
		}
	}
	cmd := startSleep(t)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	limit, swap, resv, kern := int64(64*mib), int64(128*mib), int64(32*mib), int64(64*mib)
	quota, period := int64(50000), uint64(100000)
	rtRuntime, rtPeriod := int64(1000), uint64(1000000)
	pids := int64(42)
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{
			Limit: &limit, Reservation: &resv, Swap: &swap, Kernel: &kern, KernelTCP: &kern,
			Swappiness: u64(10), DisableOOMKiller: boolp(true), CheckBeforeUpdate: boolp(true), UseHierarchy: boolp(true),
		},
		CPU: &specs.LinuxCPU{
			Shares: u64(512), Quota: &quota, Period: &period, Burst: u64(1000),
			RealtimeRuntime: &rtRuntime, RealtimePeriod: &rtPeriod, Cpus: "0", Mems: "0",
		},
		Pids: &specs.LinuxPids{Limit: &pids},
	}
	if !exists(p["memory"], "memory.memsw.limit_in_bytes") {
		r.Memory.Swap = nil
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ ctrl, file, want string }{
		{"memory", "memory.limit_in_bytes", strconv.FormatInt(limit, 10)},
		{"memory", "memory.soft_limit_in_bytes", strconv.FormatInt(resv, 10)},
		{"memory", "memory.kmem.tcp.limit_in_bytes", strconv.FormatInt(kern, 10)},
		{"memory", "memory.swappiness", "10"},
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.cfs_burst_us", "1000"},
		{"cpu", "cpu.rt_runtime_us", "1000"},
		{"cpu", "cpu.rt_period_us", "1000000"},
		{"cpuset", "cpuset.cpus", "0"},
		{"cpuset", "cpuset.mems", "0"},
		{"pids", "pids.max", "42"},
	}
	if r.Memory.Swap != nil {
		checks = append(checks, struct{ ctrl, file, want string }{"memory", "memory.memsw.limit_in_bytes", strconv.FormatInt(swap, 10)})
	}
	for _, c := range checks {
		if got := read(t, p[c.ctrl], c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	if oom := read(t, p["memory"], "memory.oom_control"); !strings.Contains(oom, "oom_kill_disable 1") {
		t.Errorf("memory.oom_control = %q", oom)
	}

	// Update: lower the memory limit below the old memsw order, lift the
	// pids limit, widen the cpuset.
	limit2, unlimited := int64(32*mib), int64(-1)
	if err := m.Set(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit2},
		Pids:   &specs.LinuxPids{Limit: &unlimited},
	}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p["memory"], "memory.limit_in_bytes"); got != strconv.FormatInt(limit2, 10) {
		t.Errorf("updated memory.limit_in_bytes = %s", got)
	}
	if got := read(t, p["pids"], "pids.max"); got != "max" {
		t.Errorf("pids.max = %s, want max", got)
	}
	// checkBeforeUpdate refuses a limit below the current usage.
	tiny := int64(4096)
	if usage, _ := strconv.ParseInt(read(t, p["memory"], "memory.usage_in_bytes"), 10, 64); usage > tiny {
		err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &tiny, CheckBeforeUpdate: boolp(true)}})
		if !errors.Is(err, errdefs.ErrFailedPrecond) {
			t.Errorf("limit below usage with checkBeforeUpdate: err %v", err)
		}
	}
	if exists(p["cpu"], "cpu.idle") {
		idle := int64(1)
		if err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: &idle}}); err != nil {
			t.Fatal(err)
		}
		if got := read(t, p["cpu"], "cpu.idle"); got != "1" {
			t.Errorf("cpu.idle = %s", got)
		}
		idle = 0 // an idle group takes no shares
		if err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: &idle}}); err != nil {
			t.Fatal(err)
		}
	}
	// Kernels that are always hierarchical refuse useHierarchy false,
	// and the error says so.
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{UseHierarchy: boolp(false)}}); err != nil {
		if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "hierarchical") {
			t.Errorf("useHierarchy false: err %v", err)
		}
	}
	// A failed write names the file and the value.
	badShares := uint64(1)
	badQuota := int64(10) // below the kernel's minimum of 1000us
	err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &badShares, Quota: &badQuota}})
	if err == nil || !strings.Contains(err.Error(), "cpu.cfs_quota_us") || !strings.Contains(err.Error(), `"10"`) {
		t.Errorf("bad quota: err %v, want one naming cpu.cfs_quota_us and \"10\"", err)
	}
}

func TestRealBlockIOV1(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	dir := m.Paths()["blkio"]
	if dir == "" {
		t.Skip("v1 blkio not mounted")
	}
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	major, minor, ok := blockDevice()
	if !ok {
		t.Skip("no block device")
	}
	dev := strconv.FormatInt(major, 10) + ":" + strconv.FormatInt(minor, 10)
	r := &specs.LinuxBlockIO{
		ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Rate: 1048576}},
		ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Rate: 300}},
	}
	if err := m.Set(&specs.LinuxResources{BlockIO: r}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "blkio.throttle.read_bps_device"); got != dev+" 1048576" {
		t.Errorf("read_bps_device = %q", got)
	}
	if got := read(t, dir, "blkio.throttle.write_iops_device"); got != dev+" 300" {
		t.Errorf("write_iops_device = %q", got)
	}
	// A weight: the CFQ file, or BFQ's where there is no CFQ; with neither
	// the error says so.
	err := m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(500)}})
	switch {
	case exists(dir, "blkio.weight"):
		if err != nil || read(t, dir, "blkio.weight") != "500" {
			t.Errorf("blkio.weight: %v", err)
		}
	case exists(dir, "blkio.bfq.weight"):
		if err != nil || !strings.Contains(read(t, dir, "blkio.bfq.weight"), "500") {
			t.Errorf("blkio.bfq.weight: %v %q", err, read(t, dir, "blkio.bfq.weight"))
		}
	default:
		if err == nil || !strings.Contains(err.Error(), "blkio.weight") {
			t.Errorf("weight without CFQ/BFQ: err %v", err)
		}
	}
	// Leaf weights exist with CFQ only.
	err = m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: u16(300)}})
	if !exists(dir, "blkio.leaf_weight") && (err == nil || !strings.Contains(err.Error(), "blkio.leaf_weight")) {
		t.Errorf("leaf weight without CFQ: err %v, want one naming blkio.leaf_weight", err)
	}
}

func TestRealDevicesV1Order(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	dir := m.Paths()["devices"]
	if dir == "" {
		t.Skip("v1 devices not mounted")
	}
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	rules := append([]specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"},
		{Allow: true, Type: "b", Major: i64(8), Minor: i64(20), Access: "rw"},
		{Allow: true, Type: "b", Major: i64(10), Minor: i64(200), Access: "r"},
	}, DefaultDevices...)
	if err := m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	want := []string{"c 10:229 rwm", "b 8:20 rw", "b 10:200 r",
		"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
		"c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"}
	if got := strings.Split(read(t, dir, "devices.list"), "\n"); !slices.Equal(got, want) {
		t.Errorf("devices.list =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Rules without a leading deny-all still form an allow list, and a
	// new Set replaces the old rules.
	if err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rw"},
		{Allow: false, Type: "c", Major: i64(1), Minor: i64(3), Access: "w"},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "devices.list"); got != "c 1:3 r" {
		t.Errorf("devices.list = %q, want \"c 1:3 r\"", got)
	}
	// A privileged container's "allow all".
	if err := m.Set(&specs.LinuxResources{Devices: append([]specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, DefaultDevices...)}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "devices.list"); got != "a *:* rwm" {
		t.Errorf("devices.list = %q, want \"a *:* rwm\"", got)
	}
}

func TestRealHugetlb(t *testing.T) {
	testutil.RequiresRoot(t)
	sizes := HugepageSizes()
	if len(sizes) == 0 {
		t.Skip("no huge page sizes on this host")
	}
	m := newReal(t, "/"+uniqueName(t))
	dir, v2, err := m.dir("hugetlb")
	if err != nil {
		t.Skip(err)
	}
	cmd := startSleep(t)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	var limits []specs.LinuxHugepageLimit
	for i, s := range sizes {
		limits = append(limits, specs.LinuxHugepageLimit{Pagesize: s, Limit: uint64(i+1) << 30})
	}
	if err := m.Set(&specs.LinuxResources{HugepageLimits: limits}); err != nil {
		t.Fatal(err)
	}
	for _, l := range limits {
		file := "hugetlb." + l.Pagesize + ".limit_in_bytes"
		if v2 {
			file = "hugetlb." + l.Pagesize + ".max"
		}
		if got := read(t, dir, file); got != strconv.FormatUint(l.Limit, 10) {
			t.Errorf("%s = %s, want %d", file, got, l.Limit)
		}
	}
	if err := m.Set(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1}}}); err == nil || !strings.Contains(err.Error(), "hugetlb.3MB") {
		t.Errorf("unknown page size: err %v", err)
	}
	// The unified map reaches the unified hierarchy on a hybrid host.
	if v2 {
		file := "hugetlb." + sizes[0] + ".max"
		if err := m.Set(&specs.LinuxResources{Unified: map[string]string{file: "4294967296"}}); err != nil {
			t.Fatal(err)
		}
		if got := read(t, dir, file); got != "4294967296" {
			t.Errorf("unified %s = %s", file, got)
		}
	}
}

func TestRealUnavailableResources(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	p := m.Paths()
	if p["net_cls"] == "" {
		id := uint32(0x100001)
		err := m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: &id}})
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "net_cls") {
			t.Errorf("classID without net_cls: err %v", err)
		}
	}
	if p[""] == "" {
		err := m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}})
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("unified on a v1-only host: err %v", err)
		}
	}
	if err := m.Set(&specs.LinuxResources{Unified: map[string]string{"../x": "1"}}); !errdefs.IsInvalidArgument(err) && p[""] != "" {
		t.Errorf("unified ../x: err %v", err)
	}
	if err := m.Set(nil); err != nil {
		t.Errorf("Set(nil) = %v", err)
	}
}

func TestRealFreezePidsDestroy(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	a, b := startSleep(t), startSleep(t)
	if err := m.Apply(a.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// A nested cgroup's process counts too.
	// (made through Load, as a later runtime invocation would).
	pidsDir, _ := m.pidsDir()
	var key string
	for k, d := range m.Paths() {
		if d == pidsDir {
			key = k
		}
	}
	sub := Load(map[string]string{key: filepath.Join(pidsDir, "sub")})
	if err := sub.Apply(b.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := m.Pids()
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{a.Process.Pid, b.Process.Pid}; !slices.Equal(pids, slices.Sorted(slices.Values(want))) {
		t.Errorf("Pids = %v, want %v", pids, want)
	}
	freezeCycle(t, m)

	// Once the processes are gone Destroy removes every directory
	// (the nested one first), and again is a no-op.
	for _, c := range []*exec.Cmd{a, b} {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for k, d := range m.Paths() {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("[%s] %s still there: %v", k, d, err)
		}
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if _, err := m.Pids(); !errdefs.IsNotFound(err) {
		t.Errorf("Pids after Destroy: err %v, want not found", err)
	}
}

// freezeCycle freezes and thaws m and checks the process state.
func freezeCycle(t *testing.T, m *Manager) {
	t.Helper()
	if s, err := m.FreezerState(); err != nil || s != Thawed {
		t.Fatalf("state %q, %v; want THAWED", s, err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if s, err := m.FreezerState(); err != nil || s != Frozen {
		t.Errorf("after Freeze: %q, %v", s, err)
	}
	if err := m.Freeze(); err != nil {
		t.Errorf("Freeze again: %v", err)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if s, err := m.FreezerState(); err != nil || s != Thawed {
		t.Errorf("after Thaw: %q, %v", s, err)
	}
}

func TestRealStats(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	cmd := startSleep(t)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	limit, pids := int64(64<<20), int64(10)
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}); err != nil {
		t.Fatal(err)
	}
	p := m.Paths()
	if d := p["memory"]; d != "" {
		// Charges stay where memory was allocated: let a process
		// join first, then allocate, so that the peak shows it.
		out, err := exec.Command("sh", "-c", "echo $$ > "+d+"/cgroup.procs && head -c 4000000 /dev/zero | cat >/dev/null").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if p["pids"] != "" && (s.Pids.Current != 1 || s.Pids.Limit != 10) {
		t.Errorf("pids stats %+v, want 1 of 10", s.Pids)
	}
	if p["memory"] != "" && (s.Memory.Usage.Limit != uint64(limit) || s.Memory.Usage.Max == 0 || len(s.Memory.Raw) == 0) {
		t.Errorf("memory stats %+v", s.Memory.Usage)
	}
	if p["cpuacct"] != "" && len(s.CPU.Usage.Percpu) == 0 {
		t.Errorf("cpu stats %+v", s.CPU)
	}
	if _, v2, err := m.dir("hugetlb"); err == nil {
		for _, size := range HugepageSizes() {
			if _, ok := s.Hugetlb[size]; !ok {
				t.Errorf("no hugetlb stats for %s (v2 %v)", size, v2)
			}
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stats(); !errdefs.IsNotFound(err) {
		t.Errorf("Stats after Destroy: err %v, want not found", err)
	}
}

func TestRealDestroyRefusesNonCgroups(t *testing.T) {
	testutil.RequiresRoot(t)
	tmp := t.TempDir()
	if err := os.Mkdir(filepath.Join(tmp, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := discoverHost()
	if err != nil {
		t.Fatal(err)
	}
	root := map[string]string{}
	for _, hy := range h.v1 {
		root[hy.controllers[0]] = hy.mountpoint
	}
	if h.v2 != nil {
		root[""] = h.v2.mountpoint
	}
	for name, paths := range map[string]map[string]string{
		"plain directory": {"memory": tmp},
		"hierarchy root":  root,
	} {
		if err := Load(paths).Destroy(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: Destroy err %v, want invalid argument", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "empty")); err != nil {
		t.Errorf("Destroy touched a plain directory: %v", err)
	}
}

func TestRealOOMKillCount(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t))
	d := m.Paths()["memory"]
	if d == "" {
		t.Skip("v1 memory not mounted")
	}
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	limit := int64(16 << 20)
	r := &specs.LinuxMemory{Limit: &limit}
	if exists(d, "memory.memsw.limit_in_bytes") {
		r.Swap = &limit // no swapping out of the OOM
	}
	if err := m.Set(&specs.LinuxResources{Memory: r}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.OOMKillCount(); err != nil || n != 0 {
		t.Fatalf("before: %d, %v", n, err)
	}
	// tail -n 1 keeps a line without newline in memory until it ends: 64 MiB
	// of zeros outgrow the 16 MiB limit.
	out, err := exec.Command("sh", "-c", "echo $$ > "+d+"/cgroup.procs && head -c 67108864 /dev/zero | tail -n 1 >/dev/null").CombinedOutput()
	if err == nil {
		t.Fatalf("the allocation outgrew the limit without failing: %s", out)
	}
	if n, err := m.OOMKillCount(); err != nil || n == 0 {
		t.Errorf("after: %d, %v; want at least one OOM kill", n, err)
	}
}
