package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// podmanEngine runs podman with private storage, run, tmp, network and
// events directories (all under the test's directory), cgroupfs, and the
// runtime under test. The runtime keeps its state in its default root:
// podman's --runtime-flag root= would not reach the `podman container
// cleanup` that conmon runs when a container exits (it deletes the container
// without the flag), with runc as with any runtime.
type podmanEngine struct {
	*dropin
	bin      string
	conf     string // CONTAINERS_CONF
	podmanFl []string
}

func startPodman(t *testing.T) *podmanEngine {
	t.Helper()
	bin := dropinRequirePeer(t, "podman", "podman")
	dropinRequirePeer(t, "conmon", "conmon")
	d := newDropin(t, "podman")
	e := &podmanEngine{dropin: d, bin: bin, conf: filepath.Join(d.dir, "containers.conf")}
	// This host's root has no CAP_SYS_RESOURCE, so the rlimits podman asks
	// for by default (RLIMIT_NOFILE and RLIMIT_NPROC of 1048576) cannot be
	// set by any runtime (runc fails the same way): ask for limits at or
	// under the ones podman itself runs with.
	nofile, nproc := dropinHardLimit(unix.RLIMIT_NOFILE, 1<<20), dropinHardLimit(unix.RLIMIT_NPROC, 16384)
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%[1]d:%[1]d", "nproc=%[2]d:%[2]d"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %[3]q
tmp_dir = %[4]q
volume_path = %[5]q
static_dir = %[6]q
[network]
network_config_dir = %[7]q
`, nofile, nproc, filepath.Join(d.dir, "events.log"), filepath.Join(d.dir, "tmp"), filepath.Join(d.dir, "volumes"),
		filepath.Join(d.dir, "root", "libpod"), filepath.Join(d.dir, "networks"))
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.podmanFl = []string{
		"--root", filepath.Join(d.dir, "root"),
		"--runroot", filepath.Join(d.dir, "runroot"),
		"--tmpdir", filepath.Join(d.dir, "tmp"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--network-config-dir", filepath.Join(d.dir, "networks"),
		"--runtime", d.runtime,
	}
	t.Cleanup(e.cleanup)
	return e
}

// dropinHardLimit is the test process's hard limit of resource r, at most max.
func dropinHardLimit(r int, max uint64) uint64 {
	var l unix.Rlimit
	if err := unix.Getrlimit(r, &l); err != nil || l.Max > max {
		return max
	}
	return l.Max
}

func (e *podmanEngine) env() []string { return []string{"CONTAINERS_CONF=" + e.conf} }

func (e *podmanEngine) podmanRun(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	return e.run(t, e.env(), e.bin, append(append([]string{}, e.podmanFl...), args...)...)
}

func (e *podmanEngine) podman(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := e.podmanRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runFlags are the flags every container gets: no network, and a cgroup
// under the test's parent.
func (e *podmanEngine) runFlags() []string {
	return []string{"--network", "none", "--cgroup-parent", "/" + e.cgroup}
}

// cleanup removes every container (and so its conmon and the runtime's
// state) and image; newDropin's cleanup then ends any conmon left.
func (e *podmanEngine) cleanup() {
	t := e.t
	if _, _, err := e.podmanRun(t, "rm", "--all", "--force", "--time", "0"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if _, _, err := e.podmanRun(t, "rmi", "--all", "--force"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, id := range e.leftInRuntime(t) {
		t.Errorf("cleanup: the runtime still has container %s after podman rm", id)
		e.run(t, nil, e.target, "delete", "--force", id)
	}
}

// leftInRuntime returns the containers the engine created through the
// runtime that the runtime still knows.
func (e *podmanEngine) leftInRuntime(t testing.TB) []string {
	var left []string
	for _, c := range e.runtimeCalls() {
		f := strings.Fields(c)
		if !dropinHasWord(f, "create") {
			continue
		}
		id := f[len(f)-1]
		if _, _, err := e.run(t, nil, e.target, "state", id); err == nil {
			left = append(left, id)
		}
	}
	return left
}

// load loads the busybox image. podman load records blobs in the host's
// blob-info cache under /var/lib/containers/cache whatever --root says, so
// it runs in a private mount namespace with a tmpfs over the nearest
// existing directory of that path.
func (e *podmanEngine) load(t testing.TB) {
	t.Helper()
	unshare := dropinRequirePeer(t, "unshare", "util-linux")
	script := `for d in /var/lib/containers/cache /var/lib/containers /var/lib; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=64m,mode=0700 berth-dropin "$d" || exit 1; break; fi
done
exec "$@"`
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", e.bin}, e.podmanFl...)
	out, _, err := e.run(t, e.env(), unshare, append(args, "load", "-i", e.imageArchive(t))...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "berth-dropin/busybox") {
		t.Fatalf("podman load printed %q", out)
	}
}

func (e *podmanEngine) inspect(t testing.TB, name, format string) string {
	t.Helper()
	return strings.TrimSpace(e.podman(t, "inspect", "--format", format, name))
}

func TestDropinPodman(t *testing.T) {
	e := startPodman(t)
	e.load(t)

	t.Run("RunRm", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, e.runFlags()...), dropinImage,
			"sh", "-c", "echo hello from $(grep :memory: /proc/self/cgroup)")
		out := e.podman(t, args...)
		if !strings.Contains(out, "hello from ") || !strings.Contains(out, "/"+e.cgroup+"/libpod-") {
			t.Fatalf("podman run printed %q, want the container's memory cgroup under /%s", out, e.cgroup)
		}
		e.requireCalled(t, "create", "--bundle", "--pid-file")
		e.requireCalled(t, "start")
		if ids := Lines(e.podman(t, "ps", "--all", "--quiet")); len(ids) != 0 {
			t.Fatalf("containers left after run --rm: %v", ids)
		}
		_, _, err := e.podmanRun(t, append(append([]string{"run", "--rm"}, e.runFlags()...), dropinImage, "sh", "-c", "exit 7")...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("podman run of a container exiting 7: %v, want status 7", err)
		}
	})

	t.Run("DetachedExecStopRm", func(t *testing.T) {
		args := append(append([]string{"run", "--detach", "--name", "d1"}, e.runFlags()...), dropinImage)
		e.podman(t, append(args, dropinLoop...)...)
		if st := e.inspect(t, "d1", "{{.State.Status}}"); st != "running" {
			t.Fatalf("status after run -d: %q", st)
		}
		out := e.podman(t, "exec", "d1", "sh", "-c", "echo exec-$((6*7)); tr '\\0' ' ' </proc/1/cmdline")
		if !strings.Contains(out, "exec-42") || !strings.Contains(out, "trap") {
			t.Fatalf("podman exec printed %q, want exec-42 and the init's command line", out)
		}
		e.requireCalled(t, "exec", "--process")
		_, _, err := e.podmanRun(t, "exec", "d1", "sh", "-c", "exit 5")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("podman exec of a process exiting 5: %v, want status 5", err)
		}
		e.podman(t, "stop", "--time", "20", "d1") // SIGTERM: the trap exits 3
		if got := e.inspect(t, "d1", "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 3" {
			t.Fatalf("after stop: %q, want exited 3 (the init's TERM trap)", got)
		}
		e.requireCalled(t, "kill", "15")
		e.podman(t, "rm", "d1")
		e.requireCalled(t, "delete")
		if ids := Lines(e.podman(t, "ps", "--all", "--quiet")); len(ids) != 0 {
			t.Fatalf("containers left after rm: %v", ids)
		}
		if left := e.leftInRuntime(t); len(left) != 0 {
			t.Fatalf("the runtime still has containers after podman rm: %v", left)
		}
	})

	t.Run("MemoryOOMKill", func(t *testing.T) {
		args := append(append([]string{"run", "--name", "oom1", "--memory", "16m"}, e.runFlags()...), dropinImage,
			"sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "+dropinHog64M)
		out, _, err := e.podmanRun(t, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 137 {
			t.Fatalf("a container building a 64 MiB string under --memory 16m: %v, want status 137", err)
		}
		if !strings.Contains(out, strconv.Itoa(16<<20)) {
			t.Fatalf("the container saw memory.limit_in_bytes %q, want %d", out, 16<<20)
		}
		// State.OOMKilled stays false here with runc too: conmon 2.1.6 does
		// not watch the v1 memory controller on this hybrid host.
		if got := e.inspect(t, "oom1", "{{.State.ExitCode}}"); got != "137" {
			t.Fatalf("inspect after the OOM kill: exit code %q, want 137", got)
		}
		e.podman(t, "rm", "oom1")
	})

	t.Run("InteractiveTerminal", func(t *testing.T) {
		args := append(append(append([]string{}, e.podmanFl...), "run", "--rm", "--interactive", "--tty"), e.runFlags()...)
		args = append(args, dropinImage, "sh")
		out, err := dropinInTerminal(t, e.env(), e.bin, args, "tty; test -t 0 && echo stdin-is-a-$((0+1))tty; exit 4\r")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("podman run -it: %v, want status 4; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/0") || !strings.Contains(out, "stdin-is-a-1tty") {
			t.Fatalf("podman run -it: the terminal showed %q, want /dev/pts/0 and stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "create", "--console-socket")
	})

	t.Run("ExecInteractiveTerminal", func(t *testing.T) {
		e.podman(t, append(append([]string{"run", "--detach", "--name", "tty2"}, e.runFlags()...), append([]string{dropinImage}, dropinLoop...)...)...)
		defer e.podman(t, "rm", "--force", "--time", "0", "tty2")
		args := append(append([]string{}, e.podmanFl...), "exec", "--interactive", "--tty", "tty2", "sh")
		out, err := dropinInTerminal(t, e.env(), e.bin, args, "tty; test -t 0 && echo exec-stdin-is-a-$((0+1))tty; exit 6\r")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 6 {
			t.Fatalf("podman exec -it: %v, want status 6; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "exec-stdin-is-a-1tty") {
			t.Fatalf("podman exec -it: the terminal showed %q, want a /dev/pts path and exec-stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "exec", "--console-socket")
	})

	t.Run("PauseUnpauseKill", func(t *testing.T) {
		id := strings.TrimSpace(e.podman(t, append(append([]string{"run", "--detach", "--name", "p1"}, e.runFlags()...), append([]string{dropinImage}, dropinLoop...)...)...))
		defer e.podman(t, "rm", "--force", "--time", "0", "p1")
		e.podman(t, "pause", "p1")
		if st := e.inspect(t, "p1", "{{.State.Status}}"); st != "paused" {
			t.Fatalf("status after pause: %q", st)
		}
		if st, err := dropinCgroupFile("freezer", "/"+e.cgroup+"/libpod-"+id, "freezer.state"); err != nil || st != "FROZEN" {
			t.Fatalf("freezer.state of a paused container: %q (%v), want FROZEN", st, err)
		}
		e.podman(t, "unpause", "p1")
		e.requireCalled(t, "pause", id)
		e.requireCalled(t, "resume", id)
		e.podman(t, "kill", "--signal", "TERM", "p1") // the trap exits 3
		dropinEventually(t, "p1 exits", func() error {
			if got := e.inspect(t, "p1", "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 3" {
				return fmt.Errorf("state %q, want exited 3", got)
			}
			return nil
		})
	})

	t.Run("DeviceAndPrivileged", func(t *testing.T) {
		// podman writes each device's fileMode with its file type bits
		// (020666 for /dev/null); runc takes the type from "type".
		args := append(append([]string{"run", "--rm", "--device", "/dev/null:/dev/berth-null"}, e.runFlags()...), dropinImage,
			"sh", "-c", "test -c /dev/berth-null && echo device-ok")
		if out := e.podman(t, args...); !strings.Contains(out, "device-ok") {
			t.Fatalf("podman run --device printed %q", out)
		}
		args = append(append([]string{"run", "--rm", "--privileged"}, e.runFlags()...), dropinImage,
			"sh", "-c", "test -c /dev/null && grep CapEff /proc/self/status")
		if out := e.podman(t, args...); !strings.Contains(out, "CapEff") {
			t.Fatalf("podman run --privileged printed %q", out)
		}
	})

	t.Run("Init", func(t *testing.T) {
		// catatonit, bind-mounted into the container, runs as PID 1.
		args := append(append([]string{"run", "--rm", "--init"}, e.runFlags()...), dropinImage,
			"sh", "-c", "echo parent-$PPID; tr '\\0' ' ' </proc/1/cmdline")
		out := e.podman(t, args...)
		if !strings.Contains(out, "parent-1") || !strings.Contains(out, "init") {
			t.Fatalf("podman run --init printed %q, want the shell under an init as PID 1", out)
		}
	})

	t.Run("ExecOptionsAndRestart", func(t *testing.T) {
		e.podman(t, append(append([]string{"run", "--detach", "--name", "x1"}, e.runFlags()...), dropinImage, "sleep", "1000")...)
		defer e.podman(t, "rm", "--force", "--time", "0", "x1")
		out := e.podman(t, "exec", "--user", "1000:1000", "--workdir", "/tmp", "--env", "FOO=bar", "x1",
			"sh", "-c", "id -u; id -g; pwd; echo $FOO; grep CapEff /proc/self/status")
		if got := strings.Fields(out); len(got) != 6 || got[0] != "1000" || got[1] != "1000" || got[2] != "/tmp" || got[3] != "bar" || got[5] != "0000000000000000" {
			t.Fatalf("podman exec --user 1000:1000 --workdir /tmp --env FOO=bar printed %q", out)
		}
		e.podman(t, "exec", "--detach", "x1", "sleep", "1000")
		dropinEventually(t, "the detached exec shows in podman top", func() error {
			if top := e.podman(t, "top", "x1", "pid", "args"); strings.Count(top, "sleep 1000") != 2 {
				return fmt.Errorf("podman top:\n%s", top)
			}
			return nil
		})
		e.podman(t, "restart", "--time", "0", "x1")
		if out := e.podman(t, "exec", "x1", "echo", "after-restart"); !strings.Contains(out, "after-restart") {
			t.Fatalf("exec after restart printed %q", out)
		}
	})

	t.Run("MissingCommandError", func(t *testing.T) {
		_, _, err := e.podmanRun(t, append(append([]string{"run", "--rm"}, e.runFlags()...), dropinImage, "/no/such/command")...)
		t.Logf("podman run of a missing command: %v", err)
		// podman reads the runtime's error text to tell "command not found"
		// (status 127) from other failures (126, 125).
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(err.Error(), "/no/such/command") {
			t.Fatalf("podman run of a missing command: %v, want status 127 and an error naming /no/such/command", err)
		}
	})
}

// dropinInTerminal runs bin with args on a new pseudo-terminal (its
// controlling terminal, as a shell would give it), types input, and returns
// what the terminal showed and how the command ended.
func dropinInTerminal(t testing.TB, env []string, bin string, args []string, input string) (string, error) {
	t.Helper()
	master, slave, err := dropinOpenPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close()
	var shown bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		io.Copy(&shown, master) // ends with EIO once the last holder of the terminal is gone
		close(readDone)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	if _, err := master.Write([]byte(input)); err != nil {
		t.Fatalf("type into the terminal: %v", err)
	}
	select {
	case err = <-waitDone:
	case <-time.After(dropinCmdTimeout):
		cmd.Process.Kill()
		<-waitDone
		t.Fatalf("%s did not end within %v; the terminal showed:\n%s", filepath.Base(bin), dropinCmdTimeout, shown.String())
	}
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
	}
	master.Close()
	<-readDone
	return shown.String(), err
}

// dropinOpenPty opens a new pseudo-terminal pair.
func dropinOpenPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open /dev/pts/%d: %w", n, err)
	}
	return m, s, nil
}
