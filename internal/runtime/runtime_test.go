package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	_ "github.com/berth-project/berth/internal/runtime/nsenter"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the container init, as berth-runtime does.
func TestMain(m *testing.M) {
	if IsInit() {
		if err := Init(); !errors.Is(err, ErrReported) {
			fmt.Fprintf(os.Stderr, "init: %v\n", err)
		}
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// env is one test's runtime root and the output file its containers share.
type env struct {
	t    *testing.T
	root string
	out  *os.File
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequiresRoot(t)
	root := t.TempDir()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, out: out}
	t.Cleanup(func() {
		cs, _ := List(root)
		for _, c := range cs {
			if err := c.Delete(context.Background(), true, nil); err != nil {
				t.Errorf("cleanup %s: %v", c.ID(), err)
			}
		}
		out.Close()
	})
	return e
}

func (e *env) opts(bundle string) CreateOpts {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { devnull.Close() })
	return CreateOpts{Bundle: bundle, Stdio: &[3]*os.File{devnull, e.out, e.out}}
}

func (e *env) output() string {
	data, err := os.ReadFile(e.out.Name())
	if err != nil {
		e.t.Fatal(err)
	}
	return string(data)
}

// run runs a bundle to completion and returns its exit code and output.
func (e *env) run(id, bundle string) (int, string) {
	e.t.Helper()
	code, err := Run(context.Background(), e.root, id, e.opts(bundle), false, func(err error) { e.t.Logf("warning: %v", err) })
	if err != nil {
		e.t.Fatalf("run %s: %v (output: %s)", id, err, e.output())
	}
	return code, e.output()
}

func (e *env) create(id, bundle string) *Container {
	e.t.Helper()
	c, err := Create(context.Background(), e.root, id, e.opts(bundle))
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return c
}

func reload(t *testing.T, c *Container) *Container {
	t.Helper()
	n, err := Load(c.root, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo started; while true; do sleep 0.05; done")
	c := e.create("life", dir)
	if st := c.Status(); st != StatusCreated {
		t.Fatalf("after create: status %s", st)
	}
	st := c.State()
	if st.Pid <= 0 || st.ID != "life" || st.Bundle != dir || st.Version != specs.Version {
		t.Fatalf("state = %+v", st)
	}
	if err := c.Delete(context.Background(), false, nil); !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Fatalf("delete of a created container: %v, want refusal", err)
	}
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatalf("start: %v", err)
	}
	if st := reload(t, c).Status(); st != StatusRunning {
		t.Fatalf("after start: status %s", st)
	}
	if err := c.Start(context.Background(), nil); !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Fatalf("second start: %v, want refusal", err)
	}
	waitFor(t, func() bool { return strings.Contains(e.output(), "started") })
	if err := c.Kill(unix.SIGTERM, false); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitFor(t, func() bool { return c.Status() == StatusStopped })
	if !strings.Contains(e.output(), "got TERM") {
		t.Fatalf("signal not delivered; output %q", e.output())
	}
	if err := c.Kill(unix.SIGTERM, false); !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Fatalf("kill of a stopped container: %v, want refusal", err)
	}
	if err := c.Delete(context.Background(), false, nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := Load(e.root, "life"); !errdefs.IsNotFound(err) {
		t.Fatalf("state after delete: %v", err)
	}
	for _, p := range c.s.CgroupPaths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("cgroup %s left after delete", p)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunExitCodeAndOutput(t *testing.T) {
	e := newEnv(t)
	dir, _ := testutil.BusyboxBundle(t, "sh", "-c", "echo pid=$$ host=$(hostname); exit 7")
	code, out := e.run("exit7", dir)
	if code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
	if !strings.Contains(out, "pid=1 host=berth") {
		t.Fatalf("output %q: want pid 1 in its own pid namespace and the configured hostname", out)
	}
	if _, err := Load(e.root, "exit7"); !errdefs.IsNotFound(err) {
		t.Fatalf("run left state behind: %v", err)
	}
}

func TestCreateRefusesDuplicateAndBadInput(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "true")
	e.create("dup", dir)
	if _, err := Create(context.Background(), e.root, "dup", e.opts(dir)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := Create(context.Background(), e.root, "../x", e.opts(dir)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad id: %v", err)
	}
	s.Process.Args = []string{"no-such-program"}
	testutil.WriteSpec(t, dir, s)
	_, err := Create(context.Background(), e.root, "noprog", e.opts(dir))
	if err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("missing program: %v", err)
	}
	if _, err := Load(e.root, "noprog"); !errdefs.IsNotFound(err) {
		t.Fatalf("failed create left state: %v", err)
	}
	s.Process.Args = []string{"true"}
	s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_TEST")
	testutil.WriteSpec(t, dir, s)
	if _, err := Create(context.Background(), e.root, "badcap", e.opts(dir)); err == nil || !strings.Contains(err.Error(), "CAP_TEST") {
		t.Fatalf("unknown capability: %v", err)
	}
}

func TestHooks(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "true")
	logs := t.TempDir()
	hook := func(name string) specs.Hook {
		// Each hook appends its name and the state it got on stdin.
		return specs.Hook{Path: "/bin/busybox", Args: []string{"sh", "-c", "cat >> " + filepath.Join(logs, name) + "; echo >> " + filepath.Join(logs, name)}, Env: []string{"PATH=/bin"}}
	}
	fail := specs.Hook{Path: "/bin/busybox", Args: []string{"false", "false"}}
	s.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{hook("prestart")},
		CreateRuntime:   []specs.Hook{hook("createRuntime")},
		CreateContainer: []specs.Hook{hook("createContainer")},
		StartContainer:  []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo startContainer $(hostname) > /tmp/hook"}}},
		Poststart:       []specs.Hook{hook("poststart"), fail},
		Poststop:        []specs.Hook{fail, hook("poststop")},
	}
	s.Process.Args = []string{"sh", "-c", "cat /tmp/hook"}
	s.Root.Readonly = false
	testutil.WriteSpec(t, dir, s)
	var warnings []string
	code, err := Run(context.Background(), e.root, "hooks", e.opts(dir), false, func(err error) { warnings = append(warnings, err.Error()) })
	if err != nil || code != 0 {
		t.Fatalf("run: %d %v (output %q)", code, err, e.output())
	}
	if !strings.Contains(e.output(), "startContainer berth") {
		t.Fatalf("startContainer hook did not run in the container: output %q", e.output())
	}
	want := map[string]specs.ContainerState{
		"prestart": StatusCreated, "createRuntime": StatusCreating, "createContainer": StatusCreating,
		"poststart": StatusRunning, "poststop": StatusStopped,
	}
	for name, status := range want {
		data, err := os.ReadFile(filepath.Join(logs, name))
		if err != nil {
			t.Fatalf("hook %s did not run: %v", name, err)
		}
		var st specs.State
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatalf("hook %s state %q: %v", name, data, err)
		}
		if st.ID != "hooks" || st.Bundle != dir || st.Status != status {
			t.Fatalf("hook %s got state %+v, want status %s", name, st, status)
		}
	}
	if len(warnings) != 2 {
		t.Fatalf("failing poststart and poststop hooks: warnings %q, want 2", warnings)
	}
}

func TestFailingCreateRuntimeHookFailsCreate(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "true")
	s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/busybox", Args: []string{"false"}}}}
	testutil.WriteSpec(t, dir, s)
	if _, err := Create(context.Background(), e.root, "hookfail", e.opts(dir)); err == nil || !strings.Contains(err.Error(), "createRuntime") {
		t.Fatalf("create with failing hook: %v", err)
	}
	if _, err := Load(e.root, "hookfail"); !errdefs.IsNotFound(err) {
		t.Fatalf("failed create left state: %v", err)
	}
}

func TestJoinNamespaceByPath(t *testing.T) {
	e := newEnv(t)
	// A process in its own UTS and network namespaces to join.
	holder := exec.Command("/bin/busybox", "sh", "-c", "hostname joined-ns; exec sleep 100")
	holder.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWNET}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitFor(t, func() bool {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		return strings.TrimSpace(string(data)) == "sleep"
	})
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "hostname; readlink /proc/self/ns/net")
	s.Hostname = ""
	for i, ns := range s.Linux.Namespaces {
		switch ns.Type {
		case specs.UTSNamespace:
			s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/uts", holder.Process.Pid)
		case specs.NetworkNamespace:
			s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
		}
	}
	testutil.WriteSpec(t, dir, s)
	_, out := e.run("join", dir)
	want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
	if !strings.Contains(out, "joined-ns") || !strings.Contains(out, want) {
		t.Fatalf("output %q: want hostname joined-ns and %s", out, want)
	}
}

// CVE-2019-5736: the init runs from a read-only view of the runtime binary,
// so a container that keeps a handle on the init's /proc/PID/exe can never
// reopen it for writing, not even after the init has exec'd.
func TestInitBinaryCannotBeOverwritten(t *testing.T) {
	e := newEnv(t)
	dir, _ := testutil.BusyboxBundle(t, "true")
	c := e.create("sealed", dir)
	exe := fmt.Sprintf("/proc/%d/exe", c.Pid())
	self, _ := os.Readlink("/proc/self/exe")
	if target, err := os.Readlink(exe); err != nil || target == self {
		t.Fatalf("init runs from %q (%v): the runtime binary itself", target, err)
	}
	handle, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(handle)
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Status() == StatusStopped })
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", handle), unix.O_WRONLY, 0)
	if err == nil {
		_, err = unix.Write(fd, []byte("x"))
		unix.Close(fd)
	}
	if err == nil {
		t.Fatalf("the init's binary could be written after the init exec'd")
	}
}

func TestSealedBinaryViews(t *testing.T) {
	testutil.RequiresRoot(t)
	for name, open := range map[string]func() (*os.File, error){"overlay": overlaySelf, "memfd": memfdSelf} {
		f, err := open()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, _ := f.Stat()
		self, _ := os.Stat("/proc/self/exe")
		if st.Size() != self.Size() {
			t.Fatalf("%s: size %d, binary %d", name, st.Size(), self.Size())
		}
		// A sealed memfd opens but refuses the write; the overlay refuses
		// the open.
		if w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0); err == nil {
			_, err := w.Write([]byte("x"))
			w.Close()
			if err == nil {
				t.Fatalf("%s: the view could be written", name)
			}
		}
		f.Close()
	}
}

// CVE-2024-21626: no descriptor of the runtime reaches the container, and a
// working directory outside the container is refused.
func TestNoLeakedDescriptorsOrCwd(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '")
	_, out := e.run("fds", dir)
	if strings.TrimSpace(out) != "0 1 2 3" { // 3 is ls's own directory handle
		t.Fatalf("descriptors in the container: %q, want only stdio", out)
	}
	for _, cwd := range []string{"/proc/self/fd/3", "/proc/self/fd/4", "/proc/self/fd/5", "/proc/self/fd/6", "/proc/self/fd/7"} {
		s.Process.Cwd = cwd
		s.Process.Args = []string{"pwd"}
		testutil.WriteSpec(t, dir, s)
		c, err := Create(context.Background(), e.root, "cwd", e.opts(dir))
		if err == nil {
			c.Delete(context.Background(), true, nil)
			t.Fatalf("cwd %s accepted", cwd)
		}
	}
}

func TestSeccompErrnoAndNotifyListener(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?")
	s.Root.Readonly = false
	errno := uint(30) // EROFS
	sock := filepath.Join(t.TempDir(), "agent.sock")
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction:    specs.ActAllow,
		ListenerPath:     sock,
		ListenerMetadata: "berth-test",
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &errno},
			{Names: []string{"sethostname"}, Action: specs.ActNotify},
		},
	}
	testutil.WriteSpec(t, dir, s)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type got struct {
		state specs.ContainerProcessState
		fds   int
		err   error
	}
	agent := make(chan got, 1)
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			agent <- got{err: err}
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		var g got
		g.err = err
		if err == nil {
			g.err = json.Unmarshal(buf[:n], &g.state)
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
				fds, _ := unix.ParseUnixRights(&msgs[0])
				g.fds = len(fds)
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
		agent <- g
	}()
	code, out := e.run("seccomp", dir)
	if code != 0 || !strings.Contains(out, "Read-only file system") || !strings.Contains(out, "rc=1") {
		t.Fatalf("mkdir under the filter: exit %d, output %q", code, out)
	}
	g := <-agent
	if g.err != nil || g.fds != 1 || g.state.Metadata != "berth-test" || g.state.State.ID != "seccomp" || g.state.Pid <= 0 {
		t.Fatalf("listener got %+v", g)
	}
}

func TestTimeNamespaceOffsets(t *testing.T) {
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		t.Skip("kernel without time namespaces")
	}
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "cat /proc/uptime")
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
	s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: 86400 * 365}}
	testutil.WriteSpec(t, dir, s)
	code, out := e.run("timens", dir)
	var up float64
	if _, err := fmt.Sscan(out, &up); err != nil || code != 0 {
		t.Fatalf("uptime output %q (exit %d): %v", out, code, err)
	}
	if up < 86400*365 {
		t.Fatalf("uptime %.0f s inside: the boottime offset of a year was not applied", up)
	}
}

func TestPreserveFDsAndKillAll(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "echo through-fd3 >&3; sleep 100 & sleep 100 & wait")
	s.Linux.Namespaces = s.Linux.Namespaces[1:] // no PID namespace: kill --all must find every process
	if s.Linux.Namespaces[0].Type == specs.PIDNamespace {
		t.Fatal("unexpected namespace order")
	}
	testutil.WriteSpec(t, dir, s)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Preserved descriptors are the caller's 3.. : run the create from a
	// child that has the pipe there.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCreatePreserved$")
	cmd.Env = append(os.Environ(), "BERTH_HELPER_ROOT="+e.root, "BERTH_HELPER_BUNDLE="+dir)
	cmd.ExtraFiles = []*os.File{w}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create with a preserved fd: %v %s", err, out)
	}
	w.Close()
	c, err := Load(e.root, "preserve")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	if got := strings.TrimSpace(string(buf[:n])); got != "through-fd3" {
		t.Fatalf("read %q from the preserved descriptor", got)
	}
	cg := cgroups.Load(c.s.CgroupPaths)
	waitFor(t, func() bool {
		pids, err := cg.Pids()
		return err == nil && len(pids) == 3
	})
	if err := c.Kill(unix.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		pids, err := cg.Pids()
		return err == nil && len(pids) == 0
	})
}

// TestHelperCreatePreserved is run by TestPreserveFDsAndKillAll in a child
// process whose fd 3 is to be preserved.
func TestHelperCreatePreserved(t *testing.T) {
	root := os.Getenv("BERTH_HELPER_ROOT")
	if root == "" {
		t.Skip("helper for TestPreserveFDsAndKillAll")
	}
	devnull, _ := os.Open(os.DevNull)
	o := CreateOpts{Bundle: os.Getenv("BERTH_HELPER_BUNDLE"), PreserveFDs: 1, Stdio: &[3]*os.File{devnull, devnull, devnull}}
	if _, err := Create(context.Background(), root, "preserve", o); err != nil {
		t.Fatal(err)
	}
}

// A process with neither root's uid nor any capability still gets past the
// exec FIFO and runs, whatever the runtime's umask.
func TestUnprivilegedUserWithoutCapabilities(t *testing.T) {
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "id", "-u")
	s.Process.User = specs.User{UID: 4242, GID: 4343}
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	testutil.WriteSpec(t, dir, s)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	code, out := e.run("nocaps", dir)
	if code != 0 || strings.TrimSpace(out) != "4242" {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestMemoryPolicyAndIntelRdt(t *testing.T) {
	if _, err := os.Stat("/proc/self/numa_maps"); err != nil {
		t.Skip("kernel without NUMA")
	}
	e := newEnv(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "head -1 /proc/self/numa_maps")
	s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: specs.MpolBind, Nodes: "0", Flags: []specs.MemoryPolicyFlagType{specs.MpolFStaticNodes}}
	testutil.WriteSpec(t, dir, s)
	code, out := e.run("mempol", dir)
	if code != 0 || !strings.Contains(out, "bind=static:0") {
		t.Fatalf("exit %d, numa_maps %q: want the bind policy on node 0", code, out)
	}
	for _, bad := range []specs.LinuxMemoryPolicy{
		{Mode: "MPOL_SOMETHING"}, {Mode: specs.MpolBind}, {Mode: specs.MpolBind, Nodes: "3-1"},
		{Mode: specs.MpolLocal, Nodes: "0"}, {Mode: specs.MpolBind, Nodes: "0", Flags: []specs.MemoryPolicyFlagType{"MPOL_F_X"}},
	} {
		s.Linux.MemoryPolicy = &bad
		testutil.WriteSpec(t, dir, s)
		if _, err := Create(context.Background(), e.root, "badpol", e.opts(dir)); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("memoryPolicy %+v: %v, want an invalid-argument error", bad, err)
		}
	}
	s.Linux.MemoryPolicy = nil
	s.Linux.IntelRdt = &specs.LinuxIntelRdt{L3CacheSchema: "L3:0=f"}
	testutil.WriteSpec(t, dir, s)
	if _, err := Create(context.Background(), e.root, "rdt", e.opts(dir)); err == nil || !strings.Contains(err.Error(), "intelRdt") {
		t.Fatalf("intelRdt: %v", err)
	}
}
