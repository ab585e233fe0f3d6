package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// rt drives the berth-runtime binary with a private state root, and deletes
// every container it left when the test ends.
type rt struct {
	t    *testing.T
	bin  string
	root string
}

func newRT(t *testing.T) *rt {
	t.Helper()
	testutil.RequiresRoot(t)
	r := &rt{t: t, bin: RequireBinary(t, "berth-runtime"), root: t.TempDir()}
	t.Cleanup(func() {
		out, _, _ := r.exec("list", "-q")
		for _, id := range strings.Fields(out) {
			if _, e, err := r.exec("delete", "--force", id); err != nil {
				t.Errorf("cleanup %s: %v %s", id, err, e)
			}
		}
	})
	return r
}

func (r *rt) cmd(args ...string) *exec.Cmd {
	return exec.Command(r.bin, append([]string{"--root", r.root}, args...)...)
}

// exec runs a command with its output in files, not pipes: a container
// inherits the runtime's standard streams, and a pipe it holds open would
// keep the command from ever finishing.
func (r *rt) exec(args ...string) (stdout, stderr string, err error) {
	r.t.Helper()
	dir := r.t.TempDir()
	outF, err1 := os.Create(filepath.Join(dir, "stdout"))
	errF, err2 := os.Create(filepath.Join(dir, "stderr"))
	if err1 != nil || err2 != nil {
		r.t.Fatal(err1, err2)
	}
	defer outF.Close()
	defer errF.Close()
	c := r.cmd(args...)
	c.Stdout, c.Stderr = outF, errF
	err = c.Run()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return string(o), string(e), err
}

// ok runs a command that must succeed and returns its standard output.
func (r *rt) ok(args ...string) string {
	r.t.Helper()
	out, errOut, err := r.exec(args...)
	if err != nil {
		r.t.Fatalf("berth-runtime %v: %v: %s", args, err, errOut)
	}
	return out
}

// fails runs a command that must fail and returns its standard error.
func (r *rt) fails(args ...string) string {
	r.t.Helper()
	out, errOut, err := r.exec(args...)
	if err == nil {
		r.t.Fatalf("berth-runtime %v succeeded, want an error: %s", args, out)
	}
	return errOut
}

func (r *rt) state(id string) specs.State {
	r.t.Helper()
	var st specs.State
	if err := json.Unmarshal([]byte(r.ok("state", id)), &st); err != nil {
		r.t.Fatalf("state %s: %v", id, err)
	}
	return st
}

func (r *rt) waitStatus(id string, want specs.ContainerState) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.state(id).Status != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("container %s never became %s", id, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRuntimeCLILifecycle(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "trap 'exit 0' USR1; while :; do sleep 0.05; done")
	pidFile := filepath.Join(t.TempDir(), "pid")
	r.ok("create", "--bundle", dir, "--pid-file", pidFile, "c1")
	st := r.state("c1")
	data, err := os.ReadFile(pidFile)
	if err != nil || strconv.Itoa(st.Pid) != string(data) {
		t.Fatalf("pid file %q (%v), state pid %d", data, err, st.Pid)
	}
	if st.Status != specs.StateCreated || st.Bundle != dir {
		t.Fatalf("state after create: %+v", st)
	}
	if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 1 || ids[0] != "c1" {
		t.Fatalf("list -q: %v", ids)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.ok("list", "--format", "json")), &list); err != nil || len(list) != 1 || list[0]["status"] != "created" {
		t.Fatalf("list --format json: %v %v", list, err)
	}
	if msg := r.fails("delete", "c1"); !strings.Contains(msg, "c1") || !strings.Contains(msg, "created") {
		t.Fatalf("delete of a created container: %q", msg)
	}
	r.ok("start", "c1")
	r.waitStatus("c1", specs.StateRunning)
	if msg := r.fails("start", "c1"); !strings.Contains(msg, "running") {
		t.Fatalf("second start: %q", msg)
	}
	r.ok("kill", "c1", "USR1") // by name, without SIG
	r.waitStatus("c1", specs.StateStopped)
	if msg := r.fails("kill", "c1", "9"); !strings.Contains(msg, "not running") {
		t.Fatalf("kill of a stopped container: %q", msg)
	}
	r.ok("delete", "c1")
	if msg := r.fails("state", "c1"); !strings.Contains(msg, "does not exist") {
		t.Fatalf("state after delete: %q", msg)
	}
}

func TestRuntimeCLIRunExitStatusAndForceDelete(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "exit 42")
	_, _, err := r.exec("run", "--bundle", dir, "r1")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("run exit: %v, want status 42", err)
	}
	dir2, _ := testutil.BusyboxBundle(t, "sleep", "100")
	r.ok("run", "--detach", "--bundle", dir2, "r2")
	r.waitStatus("r2", specs.StateRunning)
	r.ok("delete", "--force", "r2")
	if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 0 {
		t.Fatalf("containers left: %v", ids)
	}
}

func TestRuntimeCLISpecAndFeatures(t *testing.T) {
	r := newRT(t)
	dir := t.TempDir()
	r.ok("spec", "--bundle", dir)
	var s specs.Spec
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil || json.Unmarshal(data, &s) != nil || s.Process == nil || s.Root.Path != "rootfs" {
		t.Fatalf("spec wrote %s (%v)", data, err)
	}
	r.fails("spec", "--bundle", dir) // refuses to overwrite
	rootless := t.TempDir()
	r.ok("spec", "--rootless", "--bundle", rootless)
	data, _ = os.ReadFile(filepath.Join(rootless, "config.json"))
	if !strings.Contains(string(data), `"type": "user"`) || !strings.Contains(string(data), "uidMappings") {
		t.Fatalf("rootless spec has no user namespace: %s", data)
	}
	var f features.Features
	if err := json.Unmarshal([]byte(r.ok("features")), &f); err != nil {
		t.Fatal(err)
	}
	if f.OCIVersionMax != specs.Version || f.Linux == nil || len(f.Linux.Capabilities) < 38 || len(f.Linux.Namespaces) != 8 {
		t.Fatalf("features: %+v", f)
	}
}

// The terminal arrives through --console-socket as runc sends it: the pty
// master as SCM_RIGHTS; the container sees it as its controlling terminal.
func TestRuntimeCLIConsoleSocket(t *testing.T) {
	r := newRT(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "tty; stty size; test -t 0 && echo is-a-tty; readlink /dev/console || ls -l /dev/console")
	s.Process.Terminal = true
	s.Process.ConsoleSize = &specs.Box{Height: 33, Width: 111}
	testutil.WriteSpec(t, dir, s)
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan *os.File, 1)
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		oob := make([]byte, unix.CmsgSpace(4))
		buf := make([]byte, 256)
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			got <- nil
			return
		}
		fds, _ := unix.ParseUnixRights(&msgs[0])
		unix.SetNonblock(fds[0], true) // so that read deadlines apply
		got <- os.NewFile(uintptr(fds[0]), "master")
	}()
	r.ok("create", "--bundle", dir, "--console-socket", sock, "tty1")
	master := <-got
	if master == nil {
		t.Fatal("no pty master received")
	}
	defer master.Close()
	r.ok("start", "tty1")
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), "is-a-tty") {
		master.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(out.String(), "/dev/pts/0") || !strings.Contains(out.String(), "is-a-tty") || !strings.Contains(out.String(), "33 111") {
		t.Fatalf("terminal output %q", out.String())
	}
	r.waitStatus("tty1", specs.StateStopped)
	r.ok("delete", "tty1")
}

// A mount target reached through a symlink in the rootfs that points out of
// it must land inside the rootfs (CVE-2021-30465 class).
func TestRuntimeCLIMountTargetSymlinkStaysInRootfs(t *testing.T) {
	r := newRT(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "echo inside > /escape/marker && cat /escape/marker")
	host := t.TempDir()
	if err := os.Symlink(host, filepath.Join(dir, "rootfs", "escape")); err != nil {
		t.Fatal(err)
	}
	s.Root.Readonly = false
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/escape", Type: "tmpfs", Source: "tmpfs"})
	testutil.WriteSpec(t, dir, s)
	out, errOut, err := r.exec("run", "--bundle", dir, "esc")
	if err == nil && !strings.Contains(out, "inside") {
		t.Fatalf("run: %s %s", out, errOut)
	}
	if _, err := os.Stat(filepath.Join(host, "marker")); err == nil {
		t.Fatalf("the container wrote through the symlink into the host directory %s", host)
	}
	// Nothing was mounted on the host directory either.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), " "+host+" ") {
		t.Fatalf("a mount landed on the host at %s", host)
	}
}

// Exit status, signals and errors: a container killed by a signal reports
// 128+signal, and an unknown signal name is refused.
func TestRuntimeCLISignals(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sleep", "100")
	r.ok("create", "--bundle", dir, "s1")
	if msg := r.fails("kill", "s1", "NOSUCHSIG"); !strings.Contains(msg, "NOSUCHSIG") {
		t.Fatalf("unknown signal: %q", msg)
	}
	r.ok("start", "s1")
	r.ok("kill", "s1", "SIGKILL")
	r.waitStatus("s1", specs.StateStopped)
	r.ok("delete", "s1")
}

// exec joins every namespace and the cgroup of the container and gets the
// same protections as the init: only stdio, a cwd inside the container.
func TestRuntimeCLIExec(t *testing.T) {
	r := newRT(t)
	dir, _ := testutil.BusyboxBundle(t, "sleep", "100")
	r.ok("run", "--detach", "--bundle", dir, "e1")
	init := r.state("e1").Pid
	out := r.ok("exec", "e1", "sh", "-c", "for n in pid net mnt uts ipc; do readlink /proc/self/ns/$n; done; hostname; ls /proc/self/fd | tr '\\n' ' '")
	for _, ns := range []string{"pid", "net", "mnt", "uts", "ipc"} {
		want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", init, ns))
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("exec is not in the container's %s namespace %s: %q (%v)", ns, want, out, err)
		}
	}
	if !strings.Contains(out, "berth\n") || !strings.HasSuffix(strings.TrimSpace(out), "0 1 2 3") {
		t.Fatalf("exec output %q: want the container's hostname and only stdio", out)
	}
	// The exec'd process is in the container's cgroup.
	pidFile := filepath.Join(t.TempDir(), "p")
	r.ok("exec", "-d", "--pid-file", pidFile, "e1", "sleep", "50")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	initCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", init))
	execCg, _ := os.ReadFile(fmt.Sprintf("/proc/%s/cgroup", strings.TrimSpace(string(data))))
	if len(initCg) == 0 || string(initCg) != string(execCg) {
		t.Fatalf("exec'd process cgroups:\n%s\ninit's:\n%s", execCg, initCg)
	}
	_, errOut, err := r.exec("exec", "e1", "sh", "-c", "exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exec exit status: %v %s, want 3", err, errOut)
	}
	got := r.ok("exec", "--user", "65534:65534", "--env", "FOO=bar", "--cwd", "/proc", "e1", "sh", "-c", "id -u; echo $FOO; pwd")
	if got != "65534\nbar\n/proc\n" {
		t.Fatalf("exec --user/--env/--cwd: %q", got)
	}
	// A working directory outside the container is refused (CVE-2024-21626).
	for fd := 3; fd < 10; fd++ {
		if _, _, err := r.exec("exec", "--cwd", fmt.Sprintf("/proc/self/fd/%d", fd), "e1", "pwd"); err == nil {
			t.Fatalf("exec with cwd /proc/self/fd/%d succeeded", fd)
		}
	}
	if msg := r.fails("exec", "e1", "no-such-program"); !strings.Contains(msg, "no-such-program") {
		t.Fatalf("exec of a missing program: %q", msg)
	}
	r.ok("kill", "e1", "KILL")
	r.waitStatus("e1", specs.StateStopped)
	if msg := r.fails("exec", "e1", "true"); !strings.Contains(msg, "stopped") {
		t.Fatalf("exec in a stopped container: %q", msg)
	}
}

// Errors go to --log as JSON lines, which containerd's runc shim reads back,
// and to stderr; --debug adds the commands.
func TestRuntimeCLILogFile(t *testing.T) {
	r := newRT(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	msg := r.fails("--log", logPath, "--log-format", "json", "--debug", "state", "nosuch")
	if !strings.Contains(msg, "container nosuch does not exist") {
		t.Fatalf("stderr %q", msg)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct{ Level, Msg, Time string }
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Time == "" {
			t.Fatalf("log line %q: %v", line, err)
		}
		levels = append(levels, e.Level+": "+e.Msg)
	}
	if len(levels) != 2 || !strings.HasPrefix(levels[0], "debug: berth-runtime state") || levels[1] != "error: container nosuch does not exist" {
		t.Fatalf("log entries %q", levels)
	}
	if msg := r.fails("--log-format", "xml", "list"); !strings.Contains(msg, "xml") {
		t.Fatalf("bad --log-format: %q", msg)
	}
}
