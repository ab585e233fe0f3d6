package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// containerdEngine is a containerd the test started with a private root,
// state and socket, and the ctr client for it in the namespace named after
// the test's cgroup parent (containerd puts a container's cgroup at
// /<namespace>/<id>).
type containerdEngine struct {
	*dropin
	sock   string
	ns     string
	runc   string // --runc-root: the runtime's state directory
	fifos  string // --fifo-dir: ctr's stdio FIFOs
	daemon *daemonProc
}

func startContainerd(t *testing.T) *containerdEngine {
	t.Helper()
	bin := dropinRequirePeer(t, "containerd", "containerd")
	dropinRequirePeer(t, "ctr", "containerd")
	dropinRequirePeer(t, "containerd-shim-runc-v2", "containerd")
	d := newDropin(t, "containerd")
	// containerd 1.6 puts shim sockets in /run/containerd/s whatever its state
	// directory is (and its shim falls back to the runtime root
	// /run/containerd/runc/<namespace> when a create fails early).
	d.hostPaths("/run/containerd", "/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc", "/run/containerd/runc/"+d.cgroup)
	e := &containerdEngine{dropin: d, sock: filepath.Join(d.dir, "c.sock"), ns: d.cgroup, runc: filepath.Join(d.dir, "runc"), fifos: filepath.Join(d.dir, "fifo")}
	conf := filepath.Join(d.dir, "config.toml")
	// No CRI (it wants CNI), no snapshotters this host cannot serve, and the
	// opt plugin kept out of /opt.
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"), e.sock, e.sock+".ttrpc", filepath.Join(d.dir, "opt"))
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e.daemon = d.startDaemon(filepath.Join(d.dir, "containerd.log"), nil, bin, "--config", conf, "--log-level", "debug")
	// Registered after the daemon's stop, so it runs first: tasks and
	// containers go while containerd can still clean up after them.
	t.Cleanup(e.cleanup)
	e.daemon.waitFor(t, "its socket", func() error {
		_, _, err := e.ctrRun(t, "version")
		return err
	})
	return e
}

// ctrRun runs ctr against the test's containerd and namespace.
func (e *containerdEngine) ctrRun(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	return e.run(t, nil, "ctr", append([]string{"--address", e.sock, "--namespace", e.ns}, args...)...)
}

func (e *containerdEngine) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := e.ctrRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanup kills and deletes every task and container while containerd
// runs; newDropin's cleanup then ends any shim still running.
func (e *containerdEngine) cleanup() {
	t := e.t
	if !e.daemon.exited() {
		out, _, _ := e.ctrRun(t, "task", "list", "-q")
		for _, id := range Lines(out) {
			e.ctrRun(t, "task", "kill", "-s", "SIGKILL", id)
		}
		for _, id := range Lines(out) {
			for try := 0; try < 50; try++ {
				if _, _, err := e.ctrRun(t, "task", "delete", "--force", id); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		out, _, _ = e.ctrRun(t, "container", "list", "-q")
		for _, id := range Lines(out) {
			if _, _, err := e.ctrRun(t, "container", "delete", id); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

func (e *containerdEngine) importImage(t testing.TB) {
	t.Helper()
	out := e.ctr(t, "image", "import", e.imageArchive(t))
	if !strings.Contains(out, "berth-dropin/busybox") {
		t.Fatalf("ctr image import printed %q", out)
	}
}

// taskStatus returns the task's init PID and status as ctr task list shows
// them.
func (e *containerdEngine) taskStatus(t testing.TB, id string) (pid int, status string) {
	t.Helper()
	for _, l := range Lines(e.ctr(t, "task", "list")) {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid, f[2]
		}
	}
	return 0, ""
}

func (e *containerdEngine) waitStatus(t testing.TB, id, want string) {
	t.Helper()
	dropinEventually(t, "task "+id+" "+want, func() error {
		if _, st := e.taskStatus(t, id); st != want {
			return fmt.Errorf("status %q", st)
		}
		return nil
	})
}

// runArgs are the arguments of ctr run for the busybox image with the
// runtime under test: flags, then the container's id and command.
func (e *containerdEngine) runArgs(flags []string, id string, cmd ...string) []string {
	args := append([]string{"run"}, flags...)
	args = append(args, "--runc-binary", e.runtime, "--runc-root", e.runc, "--fifo-dir", e.fifos, dropinImage, id)
	return append(args, cmd...)
}

// detached starts a task running cmd in the background and waits until it
// runs; it returns the init's host PID.
func (e *containerdEngine) detached(t testing.TB, id string, flags []string, cmd ...string) int {
	t.Helper()
	e.ctr(t, e.runArgs(append([]string{"--detach"}, flags...), id, cmd...)...)
	e.waitStatus(t, id, "RUNNING")
	pid, _ := e.taskStatus(t, id)
	return pid
}

// remove kills (SIGKILL) and deletes a task and its container.
func (e *containerdEngine) remove(t testing.TB, id string) {
	t.Helper()
	if _, st := e.taskStatus(t, id); st != "STOPPED" {
		e.ctr(t, "task", "kill", "-s", "SIGKILL", id)
		e.waitStatus(t, id, "STOPPED")
	}
	e.ctr(t, "task", "delete", id)
	e.ctr(t, "container", "delete", id)
	if _, _, err := e.run(t, nil, e.target, "--root", filepath.Join(e.runc, e.ns), "state", id); err == nil {
		t.Fatalf("the runtime still knows %s after ctr task delete", id)
	}
}

// dropinLoop is a container command that runs until SIGTERM, answering it with
// status 3.
var dropinLoop = []string{"sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done"}

// dropinHog64M builds a 64 MiB string in a shell: far over the tests' 16 MiB
// memory limits.
const dropinHog64M = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"

func TestDropinContainerd(t *testing.T) {
	e := startContainerd(t)
	e.importImage(t)

	t.Run("RunWithOutput", func(t *testing.T) {
		out := e.ctr(t, e.runArgs([]string{"--rm"}, "out1", "sh", "-c", "echo hello from $(grep :memory: /proc/self/cgroup)")...)
		if !strings.Contains(out, "hello from ") || !strings.Contains(out, "/"+e.ns+"/out1") {
			t.Fatalf("ctr run printed %q, want the container's memory cgroup /%s/out1", out, e.ns)
		}
		e.requireCalled(t, "create", "--bundle", "out1")
		e.requireCalled(t, "start", "out1")
		e.requireCalled(t, "delete", "out1")
	})

	t.Run("ExitStatus", func(t *testing.T) {
		_, _, err := e.ctrRun(t, e.runArgs([]string{"--rm"}, "exit1", "sh", "-c", "exit 7")...)
		if err == nil || !strings.Contains(err.Error(), "exit status 7") {
			t.Fatalf("ctr run of a container exiting 7: %v, want exit status 7", err)
		}
	})

	t.Run("DetachedExecAndKill", func(t *testing.T) {
		e.detached(t, "det1", nil, dropinLoop...)
		out := e.ctr(t, "task", "exec", "--fifo-dir", e.fifos, "--exec-id", "x1", "det1", "sh", "-c", "echo exec-$((6*7)); tr '\\0' ' ' </proc/1/cmdline")
		if !strings.Contains(out, "exec-42") || !strings.Contains(out, "trap") {
			t.Fatalf("ctr task exec printed %q, want exec-42 and the init's command line", out)
		}
		e.requireCalled(t, "exec", "--process", "--detach", "det1")
		_, _, err := e.ctrRun(t, "task", "exec", "--fifo-dir", e.fifos, "--exec-id", "x2", "det1", "sh", "-c", "exit 5")
		if err == nil || !strings.Contains(err.Error(), "exit status 5") {
			t.Fatalf("ctr task exec of a process exiting 5: %v, want exit status 5", err)
		}
		e.ctr(t, "task", "kill", "det1") // SIGTERM
		e.waitStatus(t, "det1", "STOPPED")
		e.requireCalled(t, "kill", "det1", "15")
		e.remove(t, "det1")
	})

	t.Run("Ps", func(t *testing.T) {
		pid := e.detached(t, "ps1", nil, dropinLoop...)
		defer e.remove(t, "ps1")
		ps := e.ctr(t, "task", "ps", "ps1")
		if !strings.Contains(ps, strconv.Itoa(pid)) {
			t.Fatalf("ctr task ps does not list the init's pid %d:\n%s", pid, ps)
		}
		e.requireCalled(t, "ps", "--format", "json", "ps1")
	})

	t.Run("PauseResume", func(t *testing.T) {
		e.detached(t, "pause1", nil, dropinLoop...)
		defer e.remove(t, "pause1")
		e.ctr(t, "task", "pause", "pause1")
		e.waitStatus(t, "pause1", "PAUSED")
		if st, err := dropinCgroupFile("freezer", "/"+e.ns+"/pause1", "freezer.state"); err != nil || st != "FROZEN" {
			t.Fatalf("freezer.state of a paused task: %q (%v), want FROZEN", st, err)
		}
		e.ctr(t, "task", "resume", "pause1")
		e.waitStatus(t, "pause1", "RUNNING")
		if st, err := dropinCgroupFile("freezer", "/"+e.ns+"/pause1", "freezer.state"); err != nil || st != "THAWED" {
			t.Fatalf("freezer.state of a resumed task: %q (%v), want THAWED", st, err)
		}
		e.requireCalled(t, "pause", "pause1")
		e.requireCalled(t, "resume", "pause1")
		// A resumed task still answers.
		if out := e.ctr(t, "task", "exec", "--fifo-dir", e.fifos, "--exec-id", "p", "pause1", "echo", "thawed"); !strings.Contains(out, "thawed") {
			t.Fatalf("exec after resume printed %q", out)
		}
	})

	t.Run("MemoryLimitOOMKillsInit", func(t *testing.T) {
		_, _, err := e.ctrRun(t, e.runArgs([]string{"--rm", "--memory-limit", strconv.Itoa(16 << 20)}, "oom0", "sh", "-c", dropinHog64M)...)
		if err == nil || !strings.Contains(err.Error(), "exit status 137") {
			t.Fatalf("a container building a 64 MiB string under a 16 MiB limit: %v, want exit status 137", err)
		}
	})

	t.Run("MemoryLimitOOMKillsExec", func(t *testing.T) {
		limit := 16 << 20
		e.detached(t, "oom1", []string{"--memory-limit", strconv.Itoa(limit)}, "sleep", "1000")
		defer e.remove(t, "oom1")
		got, err := dropinCgroupFile("memory", "/"+e.ns+"/oom1", "memory.limit_in_bytes")
		if err != nil || got != strconv.Itoa(limit) {
			t.Fatalf("memory.limit_in_bytes %q (%v), want %d", got, err, limit)
		}
		_, _, err = e.ctrRun(t, "task", "exec", "--fifo-dir", e.fifos, "--exec-id", "hog", "oom1", "sh", "-c", dropinHog64M)
		if err == nil || !strings.Contains(err.Error(), "exit status 137") {
			t.Fatalf("an exec building a 64 MiB string under a 16 MiB limit: %v, want exit status 137", err)
		}
		oom, err := dropinCgroupFile("memory", "/"+e.ns+"/oom1", "memory.oom_control")
		if err != nil {
			t.Fatal(err)
		}
		if n := dropinOOMKills(oom); n < 1 {
			t.Fatalf("the kernel recorded no OOM kill in the container's cgroup: %q", oom)
		}
		if _, st := e.taskStatus(t, "oom1"); st != "RUNNING" {
			t.Fatalf("the container's init is %s after the exec was OOM-killed, want RUNNING", st)
		}
	})
}

// dropinOOMKills reads the oom_kill count of a v1 memory.oom_control file (-1
// when it has none).
func dropinOOMKills(oomControl string) int {
	for _, l := range Lines(oomControl) {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

// TestDropinContainerdTerminalAndErrors covers what goes through the
// runtime's console socket (ctr run -t, ctr task exec -t) and how a runtime
// error reaches the user (containerd's shim reads the runtime's --log json).
func TestDropinContainerdTerminalAndErrors(t *testing.T) {
	e := startContainerd(t)
	e.importImage(t)
	ctrArgs := func(args ...string) []string {
		return append([]string{"--address", e.sock, "--namespace", e.ns}, args...)
	}

	t.Run("RunTerminal", func(t *testing.T) {
		args := ctrArgs(e.runArgs([]string{"--rm", "--tty"}, "tty1", "sh")...)
		out, err := dropinInTerminal(t, nil, "ctr", args, "tty; test -t 0 && echo stdin-is-a-$((0+1))tty; exit 4\r")
		if err == nil || !strings.Contains(err.Error(), "exit status 4") {
			t.Fatalf("ctr run -t: %v, want exit status 4; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/0") || !strings.Contains(out, "stdin-is-a-1tty") {
			t.Fatalf("ctr run -t: the terminal showed %q, want /dev/pts/0 and stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "create", "--console-socket", "tty1")
	})

	t.Run("ExecTerminal", func(t *testing.T) {
		e.detached(t, "tty2", nil, dropinLoop...)
		defer e.remove(t, "tty2")
		args := ctrArgs("task", "exec", "--fifo-dir", e.fifos, "--tty", "--exec-id", "t", "tty2", "sh")
		out, err := dropinInTerminal(t, nil, "ctr", args, "tty; test -t 0 && echo exec-stdin-is-a-$((0+1))tty; exit 6\r")
		if err == nil || !strings.Contains(err.Error(), "exit status 6") {
			t.Fatalf("ctr task exec -t: %v, want exit status 6; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "exec-stdin-is-a-1tty") {
			t.Fatalf("ctr task exec -t: the terminal showed %q, want a /dev/pts path and exec-stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "exec", "--console-socket", "tty2")
	})

	t.Run("MissingCommandError", func(t *testing.T) {
		_, _, err := e.ctrRun(t, e.runArgs([]string{"--rm"}, "nocmd", "/no/such/command")...)
		t.Logf("ctr run of a missing command: %v", err)
		if err == nil || !strings.Contains(err.Error(), "/no/such/command") {
			t.Fatalf("ctr run of a missing command: %v, want an error naming /no/such/command", err)
		}
		if out := e.ctr(t, "container", "list", "--quiet"); strings.Contains(out, "nocmd") {
			t.Fatalf("ctr run --rm left the container after a failed start: %q", out)
		}
	})
}
