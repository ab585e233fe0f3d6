package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// psPids runs `ps --format json` and returns the container's PIDs.
func (r *rt) psPids(id string) []int {
	r.t.Helper()
	var pids []int
	out := r.ok("ps", "--format", "json", id)
	if err := json.Unmarshal([]byte(out), &pids); err != nil {
		r.t.Fatalf("ps --format json %s: %v: %q", id, err, out)
	}
	return pids
}

// waitPids waits until the container has n processes.
func (r *rt) waitPids(id string, n int) []int {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := r.psPids(id)
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("container %s has processes %v, want %d", id, pids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procField returns a field of /proc/PID/status ("State", "PPid").
func procField(t *testing.T, pid int, name string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return ""
}

// cgroupDir finds the directory of pid's cgroup in the v1 hierarchy of
// controller, from /proc/PID/cgroup and the host's mount table, so that
// the tests read limits independently of the runtime's own bookkeeping.
func cgroupDir(t *testing.T, pid int, controller string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var rel string
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), controller) {
			rel = f[2]
		}
	}
	if rel == "" {
		t.Skipf("no v1 %s hierarchy on this host (%s)", controller, data)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(mounts), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" || !slices.Contains(strings.Split(g[2], ","), controller) {
			continue
		}
		root, mnt := f[3], f[4]
		if r, ok := strings.CutPrefix(rel, strings.TrimSuffix(root, "/")); ok && (root == "/" || r == "" || r[0] == '/') {
			return filepath.Join(mnt, r)
		}
	}
	t.Fatalf("no mount of the %s hierarchy holds %s", controller, rel)
	return ""
}

func readCgroup(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestRuntimeMorePs(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "sleep 1000 & wait")
	r.ok("run", "--detach", "--bundle", dir, "ps1")
	init := r.state("ps1").Pid
	pids := r.waitPids("ps1", 2)
	if !slices.Contains(pids, init) {
		t.Fatalf("ps --format json %v lacks the init %d", pids, init)
	}
	for _, p := range pids {
		if p != init && procField(t, p, "PPid") != strconv.Itoa(init) {
			t.Fatalf("process %d of %v is not the init's child", p, pids)
		}
	}

	// Table: the host's ps -ef, header kept, only the container's rows.
	lines := strings.Split(strings.TrimSpace(r.ok("ps", "ps1")), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "PID") || !strings.Contains(lines[0], "CMD") {
		t.Fatalf("ps table:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[1]+lines[2], "sleep 1000") || !strings.Contains(lines[1]+lines[2], strconv.Itoa(init)) {
		t.Fatalf("ps table rows:\n%s", strings.Join(lines, "\n"))
	}
	// ps options after the ID go to ps, as runc.
	out := r.ok("ps", "ps1", "-o", "pid,comm")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[0] != "PID" {
		t.Fatalf("ps -o pid,comm:\n%s", out)
	}
	got := map[string]bool{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		pid, _ := strconv.Atoi(f[0])
		if !slices.Contains(pids, pid) {
			t.Fatalf("row %q is not the container's (%v)", l, pids)
		}
		got[f[1]] = true
	}
	if !got["sh"] || !got["sleep"] {
		t.Fatalf("ps -o pid,comm:\n%s", out)
	}
	// containerd's go-runc passes its ps options as one argument, empty
	// for none.
	if out := r.ok("ps", "--format", "table", "ps1", ""); strings.Count(strings.TrimSpace(out), "\n") != 2 {
		t.Fatalf("ps with an empty option:\n%s", out)
	}
	if msg := r.fails("ps", "ps1", "-o", "comm"); !strings.Contains(msg, "PID") {
		t.Fatalf("ps without a PID column: %q", msg)
	}
	if msg := r.fails("ps", "--format", "yaml", "ps1"); !strings.Contains(msg, "format") {
		t.Fatalf("ps --format yaml: %q", msg)
	}
	if msg := r.fails("ps", "--format", "json", "nosuch"); !strings.Contains(msg, "does not exist") {
		t.Fatalf("ps of a missing container: %q", msg)
	}
}

func TestRuntimeMoreUpdate(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sleep", "1000")
	r.ok("run", "--detach", "--bundle", dir, "up1")
	pid := r.state("up1").Pid
	mem, pidsDir, cpu := cgroupDir(t, pid, "memory"), cgroupDir(t, pid, "pids"), cgroupDir(t, pid, "cpu")

	r.ok("update", "--memory", "64m", "--memory-reservation", "32m", "--pids-limit", "20",
		"--cpu-quota", "50000", "--cpu-period", "100000", "--cpu-share", "512", "up1")
	for _, c := range []struct{ dir, file, want string }{
		{mem, "memory.limit_in_bytes", "67108864"},
		{mem, "memory.soft_limit_in_bytes", "33554432"},
		{pidsDir, "pids.max", "20"},
		{cpu, "cpu.cfs_quota_us", "50000"},
		{cpu, "cpu.cfs_period_us", "100000"},
		{cpu, "cpu.shares", "512"},
	} {
		if got := readCgroup(t, c.dir, c.file); got != c.want {
			t.Errorf("after update: %s = %s, want %s", c.file, got, c.want)
		}
	}

	// --resources FILE: runc's JSON; other flags are ignored then.
	res := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(res, []byte(`{"memory":{"limit":134217728},"pids":{"limit":30}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ok("update", "--resources", res, "--pids-limit", "99", "up1")
	if got := readCgroup(t, mem, "memory.limit_in_bytes"); got != "134217728" {
		t.Errorf("memory.limit_in_bytes = %s after --resources", got)
	}
	if got := readCgroup(t, pidsDir, "pids.max"); got != "30" {
		t.Errorf("pids.max = %s after --resources (flags must be ignored)", got)
	}
	if got := readCgroup(t, cpu, "cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("cpu.cfs_quota_us = %s: an update of other resources changed it", got)
	}

	// The merged configuration is saved in the container's state.
	data, err := os.ReadFile(filepath.Join(r.root, "up1", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Config specs.Spec `json:"config"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Config.Linux == nil || st.Config.Linux.Resources == nil {
		t.Fatalf("state: %v %s", err, data)
	}
	res2 := st.Config.Linux.Resources
	if res2.Memory == nil || *res2.Memory.Limit != 134217728 || *res2.Memory.Reservation != 33554432 ||
		res2.Pids == nil || *res2.Pids.Limit != 30 || res2.CPU == nil || *res2.CPU.Quota != 50000 || *res2.CPU.Shares != 512 {
		t.Fatalf("saved resources: %s", data)
	}

	// A limit the cgroup refuses (below usage, with checkBeforeUpdate)
	// changes nothing, in the cgroup or in the saved state.
	cmd := r.cmd("update", "-r", "-", "up1")
	cmd.Stdin = strings.NewReader(`{"memory":{"limit":4096,"checkBeforeUpdate":true},"pids":{"limit":5}}`)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "usage") {
		t.Fatalf("update below usage: %v: %s", err, out)
	}
	if got := readCgroup(t, mem, "memory.limit_in_bytes"); got != "134217728" {
		t.Errorf("memory.limit_in_bytes = %s after a refused update", got)
	}
	if after, _ := os.ReadFile(filepath.Join(r.root, "up1", "state.json")); string(after) != string(data) {
		t.Errorf("a refused update changed the saved state:\n%s\n%s", data, after)
	}
	// Standard input, on a paused container (runc allows both).
	r.ok("pause", "up1")
	cmd = r.cmd("update", "--resources", "-", "up1")
	cmd.Stdin = strings.NewReader(`{"pids":{"limit":40}}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("update -r - of a paused container: %v: %s", err, out)
	}
	if got := readCgroup(t, pidsDir, "pids.max"); got != "40" {
		t.Errorf("pids.max = %s after update from standard input", got)
	}
	r.ok("resume", "up1")

	if msg := r.fails("update", "--memory", "12x", "up1"); !strings.Contains(msg, "memory") {
		t.Fatalf("bad memory value: %q", msg)
	}
	r.ok("kill", "up1", "KILL")
	r.waitStatus("up1", specs.StateStopped)
	if msg := r.fails("update", "--memory", "32m", "up1"); !strings.Contains(msg, "stopped") {
		t.Fatalf("update of a stopped container: %q", msg)
	}
}

func TestRuntimeMoreEventsStats(t *testing.T) {
	r := newRT(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "sleep 1000 & wait")
	limit := int64(256 << 20)
	pidsLimit := int64(64)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pidsLimit}
	testutil.WriteSpec(t, dir, s)
	r.ok("run", "--detach", "--bundle", dir, "ev1")
	r.waitPids("ev1", 2)
	out := r.ok("events", "--stats", "ev1")
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Fatalf("events --stats printed %d lines: %s", n+1, out)
	}
	var ev struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			CPU struct {
				Usage struct {
					Total  uint64   `json:"total"`
					Percpu []uint64 `json:"percpu"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Limit uint64 `json:"limit"`
					Usage uint64 `json:"usage"`
				} `json:"usage"`
				Raw map[string]uint64 `json:"raw"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
				Limit   uint64 `json:"limit"`
			} `json:"pids"`
			Hugetlb  map[string]any `json:"hugetlb"`
			IntelRdt map[string]any `json:"intel_rdt"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("events --stats: %v: %s", err, out)
	}
	d := ev.Data
	if ev.Type != "stats" || ev.ID != "ev1" || d.CPU.Usage.Total == 0 || d.Memory.Usage.Usage == 0 ||
		d.Memory.Usage.Limit != uint64(limit) || len(d.Memory.Raw) == 0 || d.Pids.Current != 2 ||
		d.Pids.Limit != uint64(pidsLimit) || d.Hugetlb == nil || d.IntelRdt == nil {
		t.Fatalf("events --stats: %+v\n%s", ev, out)
	}
	if msg := r.fails("events", "--interval", "0s", "ev1"); !strings.Contains(msg, "interval") {
		t.Fatalf("events --interval 0s: %q", msg)
	}
	r.ok("kill", "ev1", "KILL")
	r.waitStatus("ev1", specs.StateStopped)
	if msg := r.fails("events", "--stats", "ev1"); !strings.Contains(msg, "not running") {
		t.Fatalf("events of a stopped container: %q", msg)
	}
}

// eventStream is a running `events` command whose JSON lines a test reads.
type eventStream struct {
	t      *testing.T
	id     string
	cmd    *exec.Cmd
	events chan map[string]any
	stderr strings.Builder
	waited bool
}

func (r *rt) events(id string, args ...string) *eventStream {
	r.t.Helper()
	es := &eventStream{t: r.t, id: id, events: make(chan map[string]any, 100)}
	es.cmd = r.cmd(append(append([]string{"events"}, args...), id)...)
	stdout, err := es.cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	es.cmd.Stderr = &es.stderr
	if err := es.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = map[string]any{"type": "unparsable", "line": sc.Text()}
			}
			es.events <- e
		}
		close(es.events)
	}()
	r.t.Cleanup(func() {
		if !es.waited {
			es.cmd.Process.Kill()
			for range es.events {
			}
			es.cmd.Wait()
		}
	})
	return es
}

// next returns the next event of type want, skipping others.
func (es *eventStream) next(want string) map[string]any {
	es.t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case e, ok := <-es.events:
			if !ok {
				es.t.Fatalf("events ended before a %q event: %s", want, es.stderr.String())
			}
			if e["id"] != es.id {
				es.t.Fatalf("event %v, want id %s", e, es.id)
			}
			if e["type"] == want {
				return e
			}
		case <-timeout:
			es.t.Fatalf("no %q event from events", want)
		}
	}
}

// end waits for events to end by itself and checks its exit status.
func (es *eventStream) end() {
	es.t.Helper()
	timeout := time.After(60 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-es.events:
		case <-timeout:
			es.t.Fatal("events went on after the container stopped")
		}
	}
	es.waited = true
	if err := es.cmd.Wait(); err != nil {
		es.t.Fatalf("events after the container stopped: %v: %s", err, es.stderr.String())
	}
}

// oomBundle makes a bundle whose init waits for /tmp/go to appear in its
// rootfs, then runs a memory hog in a child shell and outlives it.
func oomBundle(t *testing.T, limit int64, disableOOMKiller bool) string {
	dir, s := testutil.BusyboxBundle(t, "sh", "-c",
		`while [ ! -e /tmp/go ]; do sleep 0.05; done; sh -c 'x=a; while :; do x=$x$x; done'; sleep 1000`)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	if disableOOMKiller {
		s.Linux.Resources.Memory.DisableOOMKiller = &disableOOMKiller
	}
	testutil.WriteSpec(t, dir, s)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// events streams stats every interval and an "oom" event when the kernel's
// OOM killer kills a process of the container; it ends by itself when the
// container stops.
func TestRuntimeMoreEventsOOM(t *testing.T) {
	r := newRT(t)
	dir := oomBundle(t, 48<<20, false)
	r.ok("run", "--detach", "--bundle", dir, "oom1")
	es := r.events("oom1", "--interval", "100ms")
	// A stats event shows the stream is set up; only then allocate.
	if e := es.next("stats"); e["data"] == nil {
		t.Fatalf("stats event without data: %v", e)
	}
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if e := es.next("oom"); len(e) != 2 {
		t.Fatalf("oom event %v, want only type and id (as runc)", e)
	}
	if st := r.state("oom1"); st.Status != specs.StateRunning {
		t.Fatalf("the init should outlive its OOM-killed child: %+v", st)
	}
	r.ok("kill", "oom1", "KILL")
	es.end()
}

// With the OOM killer disabled (cgroup v1), the kernel's OOM notification
// is still an "oom" event, as in runc; nothing is killed.
func TestRuntimeMoreEventsOOMKillerDisabled(t *testing.T) {
	r := newRT(t)
	dir := oomBundle(t, 48<<20, true)
	r.ok("run", "--detach", "--bundle", dir, "oom2")
	pid := r.state("oom2").Pid
	mem := cgroupDir(t, pid, "memory")
	if !strings.Contains(readCgroup(t, mem, "memory.oom_control"), "oom_kill_disable 1") {
		t.Skip("this kernel does not let the OOM killer be disabled")
	}
	es := r.events("oom2", "--interval", "100ms")
	es.next("stats")
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	es.next("oom")
	// Nothing was killed. (under_oom may already be back to 0: the kernel
	// can leave the OOM state by itself by the time we look.)
	if ctl := readCgroup(t, mem, "memory.oom_control"); !strings.Contains(ctl, "oom_kill 0") {
		t.Fatalf("memory.oom_control:\n%s", ctl)
	}
	r.ok("kill", "oom2", "KILL")
	es.end()
}

func TestRuntimeMorePauseResume(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "sleep 1000 & wait")
	r.ok("run", "--detach", "--bundle", dir, "pz1")
	pids := r.waitPids("pz1", 2)
	freezer := cgroupDir(t, pids[0], "freezer")
	if msg := r.fails("resume", "pz1"); !strings.Contains(msg, "not paused") {
		t.Fatalf("resume of a running container: %q", msg)
	}
	r.ok("pause", "pz1")
	if st := r.state("pz1"); st.Status != "paused" {
		t.Fatalf("state after pause: %+v", st)
	}
	if got := readCgroup(t, freezer, "freezer.state"); got != "FROZEN" {
		t.Fatalf("freezer.state = %s after pause", got)
	}
	for _, p := range pids {
		// The v1 freezer parks every task in an uninterruptible sleep.
		if st := procField(t, p, "State"); !strings.HasPrefix(st, "D") {
			t.Fatalf("process %d is %q while paused, want D (frozen)", p, st)
		}
	}
	if msg := r.fails("pause", "pz1"); !strings.Contains(msg, "paused") {
		t.Fatalf("pause of a paused container: %q", msg)
	}
	if msg := r.fails("delete", "pz1"); !strings.Contains(msg, "paused") {
		t.Fatalf("delete of a paused container: %q", msg)
	}
	r.ok("resume", "pz1")
	if st := r.state("pz1"); st.Status != specs.StateRunning {
		t.Fatalf("state after resume: %+v", st)
	}
	if got := readCgroup(t, freezer, "freezer.state"); got != "THAWED" {
		t.Fatalf("freezer.state = %s after resume", got)
	}
	for _, p := range pids {
		if st := procField(t, p, "State"); !strings.HasPrefix(st, "S") && !strings.HasPrefix(st, "R") {
			t.Fatalf("process %d is %q after resume, want sleeping or running", p, st)
		}
	}
	// A resumed container goes on: its shell reaps the killed sleep and
	// exits.
	child := pids[1]
	if child == r.state("pz1").Pid {
		child = pids[0]
	}
	if err := unix.Kill(child, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.waitStatus("pz1", specs.StateStopped)
	r.ok("delete", "pz1")
}

// kill --all KILL of a paused container thaws it, so it dies (as runc):
// a frozen process cannot act on a signal, and an engine waiting for the
// exit would wait for ever.
func TestRuntimeMoreKillPaused(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "sleep 1000 & wait")
	r.ok("run", "--detach", "--bundle", dir, "pk1")
	r.waitPids("pk1", 2)
	r.ok("pause", "pk1")
	r.ok("kill", "--all", "pk1", "KILL")
	r.waitStatus("pk1", specs.StateStopped)
	r.ok("delete", "pk1")
}

// Where criu is missing or cannot work on this kernel, checkpoint and
// restore fail clearly, naming criu.
func TestRuntimeMoreCheckpointErrors(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sleep", "1000")
	r.ok("create", "--bundle", dir, "cp1")
	if msg := r.fails("checkpoint", "cp1"); !strings.Contains(msg, "not running") {
		t.Fatalf("checkpoint of a created container: %q", msg)
	}
	r.ok("start", "cp1")
	r.waitStatus("cp1", specs.StateRunning)
	missing := filepath.Join(t.TempDir(), "no-criu")
	msg := r.fails("--criu", missing, "checkpoint", "--image-path", t.TempDir(), "cp1")
	if !strings.Contains(msg, missing) || !strings.Contains(msg, "not found") {
		t.Fatalf("checkpoint without criu: %q", msg)
	}
	// With the host's criu (or none), the error names criu and why.
	if msg := r.fails("checkpoint", "--image-path", t.TempDir(), "--leave-running", "cp1"); !strings.Contains(msg, "criu") {
		t.Fatalf("checkpoint: %q", msg)
	}
	if st := r.state("cp1"); st.Status != specs.StateRunning {
		t.Fatalf("a failed checkpoint left the container %s", st.Status)
	}
	if msg := r.fails("restore", "--bundle", dir, "--image-path", t.TempDir(), "cp1"); !strings.Contains(msg, "exists") {
		t.Fatalf("restore over an existing container: %q", msg)
	}
	msg = r.fails("--criu", missing, "restore", "--bundle", dir, "--image-path", t.TempDir(), "cp2")
	if !strings.Contains(msg, missing) {
		t.Fatalf("restore without criu: %q", msg)
	}
	if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 1 {
		t.Fatalf("a failed restore left containers: %v", ids)
	}
}

// A working directory the root filesystem lacks is made (as runc does,
// and as `docker run -w` relies on), inside the container even through an
// absolute symlink, and before a read-only root is remounted.
func TestRuntimeMoreMakesCwd(t *testing.T) {
	r := newRT(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "pwd")
	rootfs := s.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(dir, rootfs)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "target"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/target", filepath.Join(rootfs, "link")); err != nil {
		t.Fatal(err)
	}
	hostTarget := "/target/berth-cwd-test"
	if _, err := os.Stat(hostTarget); err == nil {
		t.Fatalf("%s exists on the host before the test", hostTarget)
	}
	for i, c := range []struct {
		cwd, want, made string
		readonly        bool
	}{
		{"/new/dir", "/new/dir", "new/dir", false},
		{"/link/berth-cwd-test/sub", "/target/berth-cwd-test/sub", "target/berth-cwd-test/sub", false},
		{"/ro/dir", "/ro/dir", "ro/dir", true},
	} {
		s.Process.Cwd = c.cwd
		s.Root.Readonly = c.readonly
		testutil.WriteSpec(t, dir, s)
		out := r.ok("run", "--bundle", dir, fmt.Sprintf("cwd%d", i))
		if strings.TrimSpace(out) != c.want {
			t.Errorf("cwd %s: pwd printed %q, want %s", c.cwd, out, c.want)
		}
		if fi, err := os.Stat(filepath.Join(rootfs, c.made)); err != nil || !fi.IsDir() {
			t.Errorf("cwd %s: %s not made in the root filesystem: %v", c.cwd, c.made, err)
		}
	}
	if _, err := os.Stat(hostTarget); err == nil {
		os.RemoveAll(hostTarget)
		t.Errorf("the symlinked cwd was made on the host at %s", hostTarget)
	}
}

// The container's process starts with no signal ignored or blocked, even
// when berth-runtime itself was started with SIGHUP ignored (nohup, or an
// engine that ignores it): a trap on HUP in the container must work.
func TestRuntimeMoreSignalsReset(t *testing.T) {
	r := newRT(t)
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skipf("nohup missing: %v", err)
	}
	// Not through sh: busybox's shell ignores SIGQUIT for its children.
	dir, _ := testutil.BusyboxBundle(t, "cat", "/proc/self/status")
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// create, as an engine's shim runs it (run forwards signals, so it
	// catches them all and would hide the inherited state).
	c := exec.Command(nohup, append([]string{r.bin, "--root", r.root}, "create", "--bundle", dir, "sig1")...)
	c.Stdout, c.Stderr = f, f
	if err := c.Run(); err != nil {
		b, _ := os.ReadFile(out)
		t.Fatalf("nohup berth-runtime create: %v: %s", err, b)
	}
	r.ok("start", "sig1")
	r.waitStatus("sig1", specs.StateStopped)
	r.ok("delete", "sig1")
	b, _ := os.ReadFile(out)
	for _, want := range []string{"SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the container's signal state lacks %q:\n%s", want, b)
		}
	}
}
