package cgroups

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fakeV2 builds a cgroup2-shaped tree of plain files in a temporary
// directory: the root and /berth with the given controllers, and the
// container directory /berth/ctr with the files Set writes.
func fakeV2(t *testing.T, controllers string) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"cgroup.controllers":           controllers,
		"cgroup.subtree_control":       "",
		"berth/cgroup.controllers":     controllers,
		"berth/cgroup.subtree_control": "",
	}
	for _, f := range []string{"cgroup.procs", "cgroup.freeze", "cgroup.events", "memory.max", "memory.swap.max",
		"memory.low", "memory.current", "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus",
		"cpuset.mems", "pids.max", "io.weight", "io.max", "hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "rdma.max",
		"memory.high"} {
		files["berth/ctr/"+f] = ""
	}
	for f, v := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := &host{v2: &hierarchy{mountpoint: root, root: "/", own: "/", v2: true}, systemdDir: filepath.Join(root, "none")}
	m, err := newManager(h, "/berth/ctr", "ctr", false)
	if err != nil {
		t.Fatal(err)
	}
	return m, root
}

func TestFakeV2ApplySet(t *testing.T) {
	m, root := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma")
	dir := filepath.Join(root, "berth/ctr")
	if p := m.Paths(); len(p) != 1 || p[""] != dir {
		t.Fatalf("paths %v", p)
	}
	if err := m.Apply(4242); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, filepath.Join(root, "berth")} {
		if got := read(t, d, "cgroup.subtree_control"); got != "+cpuset +cpu +io +memory +hugetlb +pids +rdma" {
			t.Errorf("%s/cgroup.subtree_control = %q", d, got)
		}
	}
	if got := read(t, dir, "cgroup.procs"); got != "4242" {
		t.Errorf("cgroup.procs = %q", got)
	}
	limit, swap, resv := int64(100<<20), int64(300<<20), int64(50<<20)
	quota, period, pids := int64(50000), uint64(100000), int64(0)
	hca := uint32(7)
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap, Reservation: &resv, Swappiness: u64(10),
			DisableOOMKiller: boolp(true), CheckBeforeUpdate: boolp(true)},
		CPU:            &specs.LinuxCPU{Shares: u64(1024), Quota: &quota, Period: &period, Burst: u64(500), Cpus: "0-1", Mems: "0"},
		Pids:           &specs.LinuxPids{Limit: &pids},
		BlockIO:        &specs.LinuxBlockIO{Weight: u16(1000), ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1000}}},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
		Rdma:           map[string]specs.LinuxRdma{"mlx5_0": {HcaHandles: &hca}},
		Unified:        map[string]string{"memory.high": "200000000"},
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.current"), []byte("1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory.max":           "104857600",
		"memory.swap.max":      "209715200", // memory+swap 300M minus memory 100M
		"memory.low":           "52428800",
		"cpu.weight":           "39",
		"cpu.max":              "50000 100000",
		"cpu.max.burst":        "500",
		"cpuset.cpus":          "0-1",
		"cpuset.mems":          "0",
		"pids.max":             "max",
		"io.weight":            "default 10000",
		"io.max":               "8:0 wbps=1000",
		"hugetlb.2MB.max":      "4194304",
		"hugetlb.2MB.rsvd.max": "4194304",
		"rdma.max":             "mlx5_0 hca_handle=7",
		"memory.high":          "200000000",
	}
	for f, v := range want {
		if got := read(t, dir, f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}

	// Quota without period, unlimited memory with no swap given.
	unlimited := int64(-1)
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &unlimited}, CPU: &specs.LinuxCPU{Quota: &unlimited}}); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"memory.max": "max", "memory.swap.max": "max", "cpu.max": "max"} {
		if got := read(t, dir, f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}

	// What cgroup v2 cannot do is refused by name.
	rt := int64(1000)
	bad := []struct {
		r    *specs.LinuxResources
		want string
	}{
		{&specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: &rt}}, "realtime"},
		{&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: u16(10)}}, "leafWeight"},
		{&specs.LinuxResources{Network: &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 1}}}}, "net_prio"},
		{&specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: &swap}}, "memory limit"},
		{&specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}, "cgroup.procs"},
		{&specs.LinuxResources{Unified: map[string]string{"a/b": "1"}}, "a/b"},
		{&specs.LinuxResources{Unified: map[string]string{"io.nosuch": "1"}}, "io.nosuch"},
	}
	for _, b := range bad {
		if err := m.Set(b.r); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Set(%+v): err %v, want one naming %q", b.r, err, b.want)
		}
	}
	tiny := int64(10)
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &tiny, CheckBeforeUpdate: boolp(true)}}); !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Errorf("limit below memory.current: err %v", err)
	}
}

func TestFakeV2ControllerNotEnabled(t *testing.T) {
	m, root := fakeV2(t, "pids")
	if err := os.Remove(filepath.Join(root, "berth/ctr/memory.max")); err != nil {
		t.Fatal(err)
	}
	limit := int64(1 << 20)
	err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "memory.max") || !strings.Contains(err.Error(), "not enabled") {
		t.Errorf("err %v", err)
	}
}

func TestFakeV2Freezer(t *testing.T) {
	m, root := fakeV2(t, "")
	dir := filepath.Join(root, "berth/ctr")
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "cgroup.freeze"); got != "1" {
		t.Errorf("cgroup.freeze = %q", got)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if s, _ := m.FreezerState(); s != Thawed || read(t, dir, "cgroup.freeze") != "0" {
		t.Errorf("after Thaw: %s, cgroup.freeze %s", s, read(t, dir, "cgroup.freeze"))
	}
	// Requested but not reached yet.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, _ := m.FreezerState(); s != Freezing {
		t.Errorf("state %s, want FREEZING", s)
	}
}

// unifiedOnly returns a Manager that sees only this host's unified
// hierarchy, so the v2 code paths run against the real kernel even on a
// hybrid host.
func unifiedOnly(t *testing.T) *Manager {
	t.Helper()
	testutil.RequiresRoot(t)
	h, err := discoverHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.v2 == nil {
		t.Skip("no unified hierarchy mounted")
	}
	h.v1 = nil
	m, err := newManager(h, "/"+uniqueName(t), "ctr", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	return m
}

// runIn runs sh -c script in the cgroup at dir and reports whether it
// succeeded.
func runIn(t *testing.T, dir, script string) bool {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%q: %v: %s", script, err, out)
	}
	return err == nil
}

func TestRealV2DeviceFilter(t *testing.T) {
	m := unifiedOnly(t)
	dir := m.Paths()[""]
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rw"}, // null
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "r"},  // zero
	}
	if err := m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		script string
		want   bool
	}{
		{"echo x > /dev/null", true},
		{"head -c1 /dev/zero >/dev/null", true},
		{"echo x > /dev/zero", false},
		{"head -c1 /dev/urandom >/dev/null", false},
	}
	for _, c := range cases {
		if got := runIn(t, dir, c.script); got != c.want {
			t.Errorf("%q succeeded=%v, want %v", c.script, got, c.want)
		}
	}
	// An update replaces the program rather than adding one.
	if err := m.Set(&specs.LinuxResources{Devices: append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "r"})}); err != nil {
		t.Fatal(err)
	}
	if !runIn(t, dir, "head -c1 /dev/urandom >/dev/null") {
		t.Error("urandom still denied after update")
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ids, err := attachedDeviceFilters(fd)
	if err != nil || len(ids) != 1 {
		t.Errorf("attached programs %v, %v; want exactly one", ids, err)
	}
}

func TestRealV2FreezePids(t *testing.T) {
	m := unifiedOnly(t)
	cmd := startSleep(t)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := m.Pids()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Pids = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	freezeCycle(t, m)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func TestFakeV2Stats(t *testing.T) {
	m, root := fakeV2(t, "cpu memory pids io")
	dir := filepath.Join(root, "berth/ctr")
	files := map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
		"memory.current": "4096\n",
		"memory.max":     "max\n",
		"memory.stat":    "anon 1024\nfile 2048\n",
		"memory.events":  "low 0\nhigh 0\nmax 3\noom 0\noom_kill 2\n",
		"pids.current":   "5\n",
		"pids.max":       "100\n",
		"io.stat":        "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	u := s.CPU.Usage
	if u.Total != 1500000 || u.User != 1000000 || u.Kernel != 500000 || s.CPU.Throttling != (Throttling{7, 2, 30000}) {
		t.Errorf("cpu %+v", s.CPU)
	}
	if s.Memory.Usage != (MemoryEntry{Usage: 4096, Failcnt: 3}) || s.Memory.Cache != 2048 || s.Memory.Raw["anon"] != 1024 {
		t.Errorf("memory %+v", s.Memory)
	}
	if n, err := m.OOMKillCount(); err != nil || n != 2 {
		t.Errorf("OOMKillCount = %d, %v; want 2", n, err)
	}
	if s.Pids != (PidsStats{Current: 5, Limit: 100}) {
		t.Errorf("pids %+v", s.Pids)
	}
	want := []BlkioEntry{{8, 0, "Read", 10}, {8, 0, "Write", 20}}
	if !slices.Equal(s.Blkio.IoServiceBytesRecursive, want) {
		t.Errorf("io %+v", s.Blkio)
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.current"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stats(); err == nil || !strings.Contains(err.Error(), "pids.current") {
		t.Errorf("bad counter: err %v", err)
	}
}
