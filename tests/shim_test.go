package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// shimRuntimes is the table every shim test runs against: Berth's own
// runtime, runc and crun, whose command lines the shim drives identically.
var shimRuntimes = []struct {
	name string
	path func(t *testing.T) string
}{
	{"berth-runtime", func(t *testing.T) string { return RequireBinary(t, "berth-runtime") }},
	{"runc", func(t *testing.T) string { return shimRequireHostBinary(t, "/usr/sbin/runc") }},
	{"crun", shimRequireCrun},
}

// shimRequireCrun returns crun's path, or skips on a host whose cgroup v2
// mount holds controllers next to v1 ones: crun 1.8 refuses that hybrid
// layout outright ("cgroups in hybrid mode not supported"), with or
// without --cgroup-manager=disabled.
func shimRequireCrun(t *testing.T) string {
	p := shimRequireHostBinary(t, "/usr/bin/crun")
	if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		t.Skipf("crun cannot run on this host: cgroup v2 controllers %q in hybrid mode", bytes.TrimSpace(b))
	}
	return p
}

func shimRequireHostBinary(t *testing.T, p string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s is not installed: %v", p, err)
	}
	return p
}

// forEachShimRuntime runs f as a subtest per runtime.
func forEachShimRuntime(t *testing.T, f func(t *testing.T, runtime string)) {
	testutil.RequiresRoot(t)
	for _, r := range shimRuntimes {
		t.Run(r.name, func(t *testing.T) { f(t, r.path(t)) })
	}
}

// shimCtx bounds one shim call so that a hung shim fails the test.
func shimCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// shimContainer is a container a test spawned a shim for.
type shimContainer struct {
	*shim.Client
	opts   shim.Opts
	bundle string
}

// shimOpts makes the bundle and opts for a shim running args; mutate may
// change the spec before it is written.
func shimOpts(t *testing.T, runtime string, mutate func(*specs.Spec), args ...string) (shim.Opts, string) {
	t.Helper()
	bundle, spec := testutil.BusyboxBundle(t, args...)
	if filepath.Base(runtime) == "crun" {
		spec.Version = "1.0.2" // crun 1.8 refuses newer spec versions
	}
	if mutate != nil {
		mutate(spec)
	}
	testutil.WriteSpec(t, bundle, spec)
	// A short base keeps the shim socket under the sun_path limit.
	base, err := os.MkdirTemp("", "bshim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	id := fmt.Sprintf("shim-%d-%d", os.Getpid(), time.Now().UnixNano())
	return shim.Opts{
		ID:          id,
		Bundle:      bundle,
		StateDir:    filepath.Join(base, "s"),
		ShimBinary:  RequireBinary(t, "berth-shim"),
		Runtime:     runtime,
		RuntimeRoot: filepath.Join(base, "root"),
		LogPath:     filepath.Join(base, "ctr.log"),
	}, bundle
}

// spawnShim spawns a shim for o and makes sure that when the test ends the
// container is deleted and the shim has exited.
func spawnShim(t *testing.T, o shim.Opts, bundle string) *shimContainer {
	t.Helper()
	c, err := shim.Spawn(shimCtx(t), o)
	if err != nil {
		t.Fatalf("spawn shim: %v", err)
	}
	cleanupShim(t, o, c.ShimPid())
	return &shimContainer{Client: c, opts: o, bundle: bundle}
}

func cleanupShim(t *testing.T, o shim.Opts, shimPid int) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := shim.Connect(ctx, o.StateDir)
		if err == nil {
			if _, err = c.Delete(ctx, true); err == nil {
				return
			}
		}
		if shimProcessGone(shimPid) {
			// Deleted by the test already; make sure the runtime agrees.
			if out, err := exec.Command(o.Runtime, "--root", o.RuntimeRoot, "state", o.ID).CombinedOutput(); err == nil {
				t.Errorf("container %s still known to the runtime after its shim exited: %s", o.ID, out)
				exec.Command(o.Runtime, "--root", o.RuntimeRoot, "delete", "--force", o.ID).Run()
			}
			return
		}
		t.Errorf("clean up shim %d: %v", shimPid, err)
		exec.Command(o.Runtime, "--root", o.RuntimeRoot, "delete", "--force", o.ID).Run()
		syscall.Kill(shimPid, syscall.SIGKILL)
	})
}

func shimProcessGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// shimReadLog returns the entries of a container's log, all of them.
func shimReadLog(t *testing.T, path string) []shim.LogEntry {
	t.Helper()
	var out []shim.LogEntry
	for e, err := range shim.ReadLogs(shimCtx(t), path, shim.ReadOpts{Tail: -1}) {
		if err != nil {
			t.Fatalf("read log %s: %v", path, err)
		}
		out = append(out, e)
	}
	return out
}

func TestShimRunExitCodeAndLogs(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sh", "-c", "echo out; echo err >&2; exit 3")
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		if c.Pid() <= 0 {
			t.Fatalf("init pid %d", c.Pid())
		}
		st, err := c.State(ctx)
		if err != nil || st.Status != "created" {
			t.Fatalf("state before start: %+v, %v", st, err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		exit, err := c.Wait(ctx)
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		if exit.Code != 3 || exit.ExitedAt.IsZero() {
			t.Fatalf("exit %+v, want code 3 with a time", exit)
		}
		st, err = c.State(ctx)
		if err != nil || st.Status != "stopped" || st.Exit == nil || st.Exit.Code != 3 {
			t.Fatalf("state after exit: %+v, %v", st, err)
		}
		got := map[string]string{}
		for _, e := range shimReadLog(t, o.LogPath) {
			got[e.Stream] += string(e.Line)
			if e.Time.IsZero() {
				t.Errorf("entry without time: %+v", e)
			}
		}
		if got["stdout"] != "out\n" || got["stderr"] != "err\n" {
			t.Fatalf("log = %q", got)
		}
		raw, _ := os.ReadFile(o.LogPath)
		var first map[string]string
		if err := json.Unmarshal(bytes.SplitN(raw, []byte("\n"), 2)[0], &first); err != nil || first["log"] == "" || first["stream"] == "" || first["time"] == "" {
			t.Fatalf("json-file line %q: %v", raw, err)
		}
		shimPid := c.ShimPid()
		if _, err := c.Delete(ctx, false); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if !shimProcessGone(shimPid) {
			t.Fatalf("shim %d still runs after delete", shimPid)
		}
		if err := exec.Command(runtime, "--root", o.RuntimeRoot, "state", o.ID).Run(); err == nil {
			t.Fatalf("runtime still knows %s after delete", o.ID)
		}
	})
}

// shimBuffer is a bytes.Buffer safe for one writer and a polling reader.
type shimBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *shimBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *shimBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the test's shim deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShimAttachStdin(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sh", "-c", `while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye`)
		o.OpenStdin, o.StdinOnce = true, true
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)

		// Two clients: one with stdin, one only watching stdout.
		inR, inW := io.Pipe()
		var out1, err1, out2 shimBuffer
		attached := make(chan struct{}, 2)
		errs := make(chan error, 2)
		go func() {
			errs <- c.Attach(ctx, inR, &out1, &err1, shim.AttachOpts{OnAttached: func() { attached <- struct{}{} }})
		}()
		go func() {
			errs <- c.Attach(ctx, nil, &out2, nil, shim.AttachOpts{OnAttached: func() { attached <- struct{}{} }})
		}()
		<-attached
		<-attached
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		io.WriteString(inW, "one\n")
		waitFor(t, "first echo", func() bool { return strings.Contains(out1.String(), "got one\n") })
		io.WriteString(inW, "two\n")
		inW.Close() // StdinOnce: the container's stdin closes, the loop ends
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("attach: %v", err)
			}
		}
		want := "got one\ngot two\nbye\n"
		if out1.String() != want || out2.String() != want {
			t.Fatalf("attached stdout %q and %q, want %q", out1.String(), out2.String(), want)
		}
		if err1.String() != "err one\nerr two\n" {
			t.Fatalf("attached stderr %q", err1.String())
		}
		if exit, err := c.Wait(ctx); err != nil || exit.Code != 0 {
			t.Fatalf("wait: %+v %v", exit, err)
		}
		// A client attaching after the end returns at once.
		if err := c.Attach(ctx, nil, io.Discard, io.Discard, shim.AttachOpts{}); err != nil {
			t.Fatalf("attach after exit: %v", err)
		}
	})
}

func TestShimStdinStaysOpenWithoutStdinOnce(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sh", "-c", `while read l; do echo "got $l"; done; echo closed`)
		o.OpenStdin = true
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		// The first client sends a line and ends its input; the
		// container's stdin stays open.
		var out1 shimBuffer
		actx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- c.Attach(actx, strings.NewReader("a\n"), &out1, nil, shim.AttachOpts{}) }()
		waitFor(t, "first client's echo", func() bool { return strings.Contains(out1.String(), "got a\n") })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("detached attach returned %v", err)
		}
		// A second client still reaches it, then stdin is closed on request.
		var out2 shimBuffer
		go func() { errc <- c.Attach(ctx, strings.NewReader("b\n"), &out2, nil, shim.AttachOpts{}) }()
		waitFor(t, "second client's echo", func() bool { return strings.Contains(out2.String(), "got b\n") })
		if err := c.CloseStdin(ctx); err != nil {
			t.Fatalf("close stdin: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("attach: %v", err)
		}
		if got := out2.String(); got != "got b\nclosed\n" {
			t.Fatalf("second client saw %q", got)
		}
		if exit, err := c.Wait(ctx); err != nil || exit.Code != 0 {
			t.Fatalf("wait: %+v %v", exit, err)
		}
	})
}

func TestShimSpawnFailure(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, _ := shimOpts(t, runtime, func(s *specs.Spec) { s.Root.Path = "no-such-rootfs" }, "true")
		c, err := shim.Spawn(shimCtx(t), o)
		if err == nil {
			cleanupShim(t, o, c.ShimPid())
			t.Fatal("spawn with a missing rootfs succeeded")
		}
		t.Logf("spawn error: %v", err)
		if !strings.Contains(err.Error(), "create") {
			t.Fatalf("error %q does not name the failed create", err)
		}
		if _, err := os.Stat(filepath.Join(o.StateDir, "shim.sock")); !os.IsNotExist(err) {
			t.Fatalf("a failed shim left its socket: %v", err)
		}
		if _, err := shim.Connect(shimCtx(t), o.StateDir); err == nil {
			t.Fatal("connected to a shim that failed")
		}
		if out, err := exec.Command(runtime, "--root", o.RuntimeRoot, "state", o.ID).CombinedOutput(); err == nil {
			t.Fatalf("the runtime knows %s after a failed create: %s", o.ID, out)
		}
	})
}

func TestShimDeleteCreated(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sleep", "1000")
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		// Never started: deleted without force, like a stopped container.
		if _, err := c.Delete(ctx, false); err != nil {
			t.Fatalf("delete created container: %v", err)
		}
		if !shimProcessGone(c.ShimPid()) {
			t.Fatal("shim still runs")
		}
	})
}

func TestShimTTYResize(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, func(s *specs.Spec) { s.Process.Terminal = true },
			"sh", "-c", `stty size; read x; stty size; echo "done $x"`)
		o.OpenStdin = true
		o.ConsoleHeight, o.ConsoleWidth = 24, 80
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		if !c.Terminal() {
			t.Fatal("container without a terminal")
		}
		inR, inW := io.Pipe()
		var out shimBuffer
		attached := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- c.Attach(ctx, inR, &out, nil, shim.AttachOpts{OnAttached: func() { close(attached) }})
		}()
		<-attached
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		waitFor(t, "initial size", func() bool { return strings.Contains(out.String(), "24 80") })
		if err := c.Resize(ctx, 40, 123); err != nil {
			t.Fatalf("resize: %v", err)
		}
		io.WriteString(inW, "now\n")
		if err := <-errc; err != nil {
			t.Fatalf("attach: %v", err)
		}
		inW.Close()
		if !strings.Contains(out.String(), "40 123") || !strings.Contains(out.String(), "done now") {
			t.Fatalf("tty output %q, want the new size 40 123", out.String())
		}
		if exit, err := c.Wait(ctx); err != nil || exit.Code != 0 {
			t.Fatalf("wait: %+v %v", exit, err)
		}
		// The log holds the terminal's output as stdout.
		var logged string
		for _, e := range shimReadLog(t, o.LogPath) {
			if e.Stream != "stdout" {
				t.Errorf("tty entry on %s", e.Stream)
			}
			logged += string(e.Line)
		}
		if !strings.Contains(logged, "40 123") {
			t.Fatalf("log %q lacks the new size", logged)
		}
	})
}

func TestShimExecAndKill(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sleep", "1000")
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		st, err := c.State(ctx)
		if err != nil || st.Status != "running" {
			t.Fatalf("state: %+v %v", st, err)
		}

		// A plain exec with stdin, stdout, stderr and an exit code.
		var out, errOut bytes.Buffer
		proc := specs.Process{Args: []string{"sh", "-c", "read x; echo out $x; echo err >&2; exit 5"}, Cwd: "/", Env: []string{"PATH=/bin"}}
		e, err := c.Exec(ctx, "e1", proc, shim.Stdio{Stdin: strings.NewReader("in\n"), Stdout: &out, Stderr: &errOut}, false)
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		exit, err := e.Wait(ctx)
		if err != nil || exit.Code != 5 {
			t.Fatalf("exec wait: %+v %v", exit, err)
		}
		if out.String() != "out in\n" || errOut.String() != "err\n" {
			t.Fatalf("exec output %q %q", out.String(), errOut.String())
		}
		if _, err := c.Exec(ctx, "e1", proc, shim.Stdio{}, false); err == nil {
			t.Fatal("a second exec e1 was accepted")
		}

		// A tty exec with an initial size and a resize.
		inR, inW := io.Pipe()
		var tout shimBuffer
		tproc := specs.Process{Args: []string{"sh", "-c", "echo ready; read x; stty size"}, Cwd: "/", Env: []string{"PATH=/bin"}}
		te, err := c.Exec(ctx, "e2", tproc, shim.Stdio{Stdin: inR, Stdout: &tout, Height: 30, Width: 90}, true)
		if err != nil {
			t.Fatalf("tty exec: %v", err)
		}
		waitFor(t, "exec start", func() bool { return strings.Contains(tout.String(), "ready") })
		if err := te.Resize(ctx, 50, 132); err != nil {
			t.Fatalf("exec resize: %v", err)
		}
		io.WriteString(inW, "x\n")
		if exit, err := te.Wait(ctx); err != nil || exit.Code != 0 {
			t.Fatalf("tty exec wait: %+v %v", exit, err)
		}
		inW.Close()
		if !strings.Contains(tout.String(), "50 132") {
			t.Fatalf("tty exec output %q lacks 50 132", tout.String())
		}

		// Exec output never goes to the container's log.
		for _, le := range shimReadLog(t, o.LogPath) {
			t.Errorf("unexpected log entry %q", le.Line)
		}

		if err := c.Kill(ctx, syscall.SIGKILL, false); err != nil {
			t.Fatalf("kill: %v", err)
		}
		exit, err = c.Wait(ctx)
		if err != nil || exit.Code != 128+int(syscall.SIGKILL) {
			t.Fatalf("wait after kill: %+v %v", exit, err)
		}
		if _, err := c.Exec(ctx, "e3", proc, shim.Stdio{}, false); err == nil {
			t.Fatal("exec in a stopped container was accepted")
		}
	})
}

func TestShimPauseResume(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		o, bundle := shimOpts(t, runtime, nil, "sleep", "1000")
		c := spawnShim(t, o, bundle)
		ctx := shimCtx(t)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if err := c.Pause(ctx); err != nil {
			t.Fatalf("pause: %v", err)
		}
		if st, err := c.State(ctx); err != nil || st.Status != "paused" {
			t.Fatalf("state after pause: %+v %v", st, err)
		}
		if err := c.Resume(ctx); err != nil {
			t.Fatalf("resume: %v", err)
		}
		if st, err := c.State(ctx); err != nil || st.Status != "running" {
			t.Fatalf("state after resume: %+v %v", st, err)
		}
		if _, err := c.Delete(ctx, false); err == nil {
			t.Fatal("delete of a running container without force succeeded")
		}
		if _, err := c.Delete(ctx, true); err != nil {
			t.Fatalf("forced delete: %v", err)
		}
	})
}

func TestShimReconnect(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		ctx := shimCtx(t)
		// Still running when the client comes back.
		o, bundle := shimOpts(t, runtime, nil, "sleep", "1000")
		c := spawnShim(t, o, bundle)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if _, err := shim.Spawn(ctx, o); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("second spawn into a served state dir: %v, want already exists", err)
		}
		pid := c.Pid()
		c.Close()
		c2, err := shim.Connect(ctx, o.StateDir)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if c2.Pid() != pid || c2.ID() != o.ID {
			t.Fatalf("reconnected to pid %d id %s, want %d %s", c2.Pid(), c2.ID(), pid, o.ID)
		}
		if err := c2.Kill(ctx, syscall.SIGKILL, false); err != nil {
			t.Fatalf("kill: %v", err)
		}
		if exit, err := c2.Wait(ctx); err != nil || exit.Code != 128+int(syscall.SIGKILL) {
			t.Fatalf("wait: %+v %v", exit, err)
		}

		// Exited while no client was there.
		o2, bundle2 := shimOpts(t, runtime, nil, "sh", "-c", "exit 7")
		c3 := spawnShim(t, o2, bundle2)
		if err := c3.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		c3.Close()
		waitFor(t, "recorded exit", func() bool { _, err := shim.ReadExit(o2.StateDir); return err == nil })
		c4, err := shim.Connect(ctx, o2.StateDir)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if exit, err := c4.Wait(ctx); err != nil || exit.Code != 7 {
			t.Fatalf("wait after reconnect: %+v %v", exit, err)
		}
		if exit, err := c4.Delete(ctx, false); err != nil || exit.Code != 7 {
			t.Fatalf("delete: %+v %v", exit, err)
		}
		// With the shim gone the recorded status remains.
		if exit, err := shim.ReadExit(o2.StateDir); err != nil || exit.Code != 7 {
			t.Fatalf("read exit: %+v %v", exit, err)
		}
		if _, err := shim.Connect(ctx, o2.StateDir); err == nil {
			t.Fatal("connected to a shim that exited")
		}
	})
}

// shimSpawnerEnv makes TestShimSpawnerProcess act as a stand-in berthd:
// it spawns a shim from the opts in the variable, starts the container,
// says so on stdout and waits to be killed.
const shimSpawnerEnv = "BERTH_TEST_SHIM_SPAWNER"

func TestShimSpawnerProcess(t *testing.T) {
	raw := os.Getenv(shimSpawnerEnv)
	if raw == "" {
		t.Skip("helper process for TestShimSurvivesSpawnerKill")
	}
	var o shim.Opts
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	c, err := shim.Spawn(context.Background(), o)
	if err == nil {
		err = c.Start(context.Background())
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("started", c.ShimPid())
	select {}
}

func TestShimSurvivesSpawnerKill(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		ctx := shimCtx(t)
		const n = 10000
		// The container waits for /go, then prints n numbered lines.
		o, bundle := shimOpts(t, runtime, nil, "sh", "-c",
			`while [ ! -e /go ]; do usleep 10000; done; i=1; while [ $i -le `+strconv.Itoa(n)+` ]; do echo "line $i"; i=$((i+1)); done`)
		o.LogMaxSize, o.LogMaxFiles = 64*1024, 20 // rotates ~5 times, keeps everything

		b, _ := json.Marshal(o)
		cmd := exec.Command(os.Args[0], "-test.run=^TestShimSpawnerProcess$", "-test.v")
		cmd.Env = append(os.Environ(), shimSpawnerEnv+"="+string(b))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Kill()
			cmd.Wait()
		}()
		var shimPid int
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "started" {
				shimPid, _ = strconv.Atoi(f[1])
				break
			}
			if strings.HasPrefix(sc.Text(), "error:") {
				t.Fatalf("spawner: %s", sc.Text())
			}
		}
		if shimPid == 0 {
			t.Fatal("spawner ended without starting the container")
		}
		cleanupShim(t, o, shimPid)
		go io.Copy(io.Discard, stdout)

		// Output starts, and the spawner dies the hard way at once.
		if err := os.WriteFile(filepath.Join(bundle, "rootfs", "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		c, err := shim.Connect(ctx, o.StateDir)
		if err != nil {
			t.Fatalf("connect after the spawner died: %v", err)
		}
		if exit, err := c.Wait(ctx); err != nil || exit.Code != 0 {
			t.Fatalf("wait: %+v %v", exit, err)
		}
		if _, err := os.Stat(o.LogPath + ".1"); err != nil {
			t.Fatalf("log never rotated: %v", err)
		}
		entries := shimReadLog(t, o.LogPath)
		if len(entries) != n {
			t.Fatalf("log holds %d entries, want %d", len(entries), n)
		}
		for i, e := range entries {
			if want := fmt.Sprintf("line %d\n", i+1); string(e.Line) != want || e.Stream != "stdout" {
				t.Fatalf("entry %d = %s %q, want %q", i, e.Stream, e.Line, want)
			}
		}
		if _, err := c.Delete(ctx, false); err != nil {
			t.Fatalf("delete: %v", err)
		}
	})
}

// TestShimRSS measures the resident memory of shims: one holding an idle
// container, and one whose container writes a thousand lines a second while
// it served twenty execs, right after the calls and once the shim had a
// moment to trim. It reports them and fails past twice the 4 MiB goal.
func TestShimRSS(t *testing.T) {
	forEachShimRuntime(t, func(t *testing.T, runtime string) {
		ctx := shimCtx(t)
		o, bundle := shimOpts(t, runtime, nil, "sleep", "1000")
		idle := spawnShim(t, o, bundle)
		if err := idle.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		if _, err := idle.State(ctx); err != nil {
			t.Fatal(err)
		}

		o, bundle = shimOpts(t, runtime, nil, "sh", "-c", "while true; do echo tick; usleep 1000; done")
		c := spawnShim(t, o, bundle)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		for i := range 20 {
			if _, err := c.State(ctx); err != nil {
				t.Fatal(err)
			}
			e, err := c.Exec(ctx, "rss"+strconv.Itoa(i), specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, shim.Stdio{}, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		measure := func(when string) {
			for _, m := range []struct {
				what string
				pid  int
			}{{"idle container", idle.ShimPid()}, {"busy container after 20 execs", c.ShimPid()}} {
				rss, anon, file := shimRSS(t, m.pid)
				t.Logf("berth-shim RSS, %s, %s (%s): %d KiB (anonymous %d KiB, file %d KiB shared by all shims; PSS %d KiB)", m.what, when, filepath.Base(runtime), rss, anon, file, shimPSS(t, m.pid))
				if rss > 8*1024 {
					t.Errorf("shim RSS %d KiB, over twice the 4 MiB goal", rss)
				}
			}
		}
		measure("right after the last call")
		// The shim trims its memory once calls stop for a moment.
		time.Sleep(time.Second)
		measure("a second later")
	})
}

// shimPSS returns a process's proportional set size in KiB: its private
// memory plus its share of what it shares, such as the shim binary's pages.
func shimPSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no Pss in /proc/%d/smaps_rollup", pid)
	return 0
}

// shimRSS returns a process's resident set size, total, anonymous and file
// backed, in KiB.
func shimRSS(t *testing.T, pid int) (rss, anon, file int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "RssAnon:":
			anon = n
		case "RssFile:":
			file = n
		}
	}
	if rss == 0 {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, anon, file
}
