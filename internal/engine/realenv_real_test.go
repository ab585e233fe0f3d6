package engine

// The *_real_test.go files run real containers through the engine's own API:
// berth-shim and berth-runtime built from this module, a busybox image
// imported from internal/testutil's root filesystem, private data and exec
// roots. Each test re-runs itself in a child process with its own mount
// namespace (the engine mounts container root filesystems in the process
// that runs it), and checks when it ends that no container, mount, cgroup or
// shim process is left behind.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/testutil"
)

const (
	// realChildEnv is set in the mount-namespace child a real test runs in.
	realChildEnv = "BERTH_ENGINE_REAL_CHILD"
	// realBinEnv names the directory holding the built berth-shim and
	// berth-runtime.
	realBinEnv = "BERTH_ENGINE_REAL_BIN"
	// realDaemonEnv makes the test binary act as one berthd run: it opens
	// the engine described by the JSON in the variable, creates and starts
	// containers, prints their IDs and exits (see runDaemonProcess).
	realDaemonEnv = "BERTH_ENGINE_REAL_DAEMON"
)

var (
	realBinOnce sync.Once
	realBinDir  string
	realBinErr  error
	realBinSkip string
)

func TestMain(m *testing.M) {
	if v := os.Getenv(realDaemonEnv); v != "" {
		os.Exit(daemonProcess(v))
	}
	// The containers' cgroups go under the engine's default parent; the
	// parent itself is removed afterwards when these tests made it.
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/" + strings.TrimPrefix(DefaultCgroupParent, "/"))
	code := m.Run()
	if realBinDir != "" && os.Getenv(realBinEnv) == "" {
		os.RemoveAll(realBinDir)
	}
	if len(parents) == 0 {
		left, _ := filepath.Glob("/sys/fs/cgroup/*/" + strings.TrimPrefix(DefaultCgroupParent, "/"))
		for _, p := range left {
			os.Remove(p) // only when empty: a cgroup still in use stays
		}
	}
	os.Exit(code)
}

// realBinaries builds berth-shim and berth-runtime once per test binary and
// returns their directory. It skips t when no Go toolchain can build them.
func realBinaries(t *testing.T) string {
	t.Helper()
	if d := os.Getenv(realBinEnv); d != "" {
		return d
	}
	realBinOnce.Do(func() {
		goBin := filepath.Join(goruntime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			realBinSkip = fmt.Sprintf("cannot build berth-shim and berth-runtime: no go binary at %s (GOROOT of the test binary): %v", goBin, err)
			return
		}
		if _, err := os.Stat("../../go.mod"); err != nil {
			realBinSkip = fmt.Sprintf("cannot build berth-shim and berth-runtime: the module source is not at ../.. of the test's directory: %v", err)
			return
		}
		dir, err := os.MkdirTemp("", "berth-engine-real-bin-")
		if err != nil {
			realBinErr = err
			return
		}
		realBinDir = dir
		cmd := exec.Command(goBin, "build", "-o", dir+"/",
			"github.com/berth-project/berth/cmd/berth-shim", "github.com/berth-project/berth/cmd/berth-runtime")
		if out, err := cmd.CombinedOutput(); err != nil {
			realBinErr = fmt.Errorf("go build berth-shim berth-runtime: %v\n%s", err, out)
		}
	})
	if realBinSkip != "" {
		t.Skip(realBinSkip)
	}
	if realBinErr != nil {
		t.Fatal(realBinErr)
	}
	return realBinDir
}

// inRealChild reports whether this process is the mount-namespace child of
// a real test. In the parent it runs the current test in such a child,
// relays its result (failure, skip or pass) and returns false: the test
// body then returns at once.
func inRealChild(t *testing.T) bool {
	t.Helper()
	testutil.RequiresRoot(t)
	if os.Getenv(realChildEnv) != "" {
		// Mounts made here must not reach the host's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make / private in the test's mount namespace: %v", err)
		}
		return true
	}
	bin := realBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1", "-test.timeout=150s")
	cmd.Env = append(os.Environ(), realChildEnv+"=1", realBinEnv+"="+bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	text := string(out)
	switch {
	case err != nil || strings.Contains(text, "--- FAIL"):
		t.Fatalf("%s in its own mount namespace failed (%v):\n%s", t.Name(), err, text)
	case strings.Contains(text, "--- SKIP: "+t.Name()):
		t.Skipf("skipped in its mount namespace:\n%s", text)
	case !strings.Contains(text, "--- PASS: "+t.Name()):
		t.Fatalf("%s did not run in its mount namespace:\n%s", t.Name(), text)
	}
	if testing.Verbose() {
		t.Logf("in its mount namespace:\n%s", text)
	}
	return false
}

// realEnv is an engine with containers enabled on private roots.
type realEnv struct {
	t        *testing.T
	e        *Engine
	dataRoot string
	execRoot string
	bin      string
	image    string // the busybox image's ID
	// shimBinary, when set, replaces the built berth-shim.
	shimBinary string
	logs       *syncBuffer
	ids        map[string]bool // every container the test created
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startReal returns a real-container environment with the busybox image
// imported, or nil in the parent process (the test has then run in its
// child; the caller returns). Cleanups remove every container, close the
// engine and check that nothing is left behind.
func startReal(t *testing.T) *realEnv {
	t.Helper()
	if !inRealChild(t) {
		return nil
	}
	// The exec root is short: the shims' sockets live under
	// <exec-root>/containers/<id>/ and sun_path holds 107 bytes.
	execRoot, err := os.MkdirTemp("/run", "bt")
	if err != nil {
		t.Fatalf("create exec root: %v", err)
	}
	r := &realEnv{t: t, dataRoot: t.TempDir(), execRoot: execRoot, bin: os.Getenv(realBinEnv), logs: &syncBuffer{}, ids: map[string]bool{}}
	t.Cleanup(r.cleanup)
	r.open()
	r.image = r.importImage(nil)
	return r
}

// config is the engine's container configuration.
func (r *realEnv) config() ContainerConfig {
	shimBin := filepath.Join(r.bin, "berth-shim")
	if r.shimBinary != "" {
		shimBin = r.shimBinary
	}
	return ContainerConfig{
		ExecRoot:   r.execRoot,
		ShimBinary: shimBin,
		Runtimes:   map[string]string{"berth-runtime": filepath.Join(r.bin, "berth-runtime"), "missing-runtime": "/nonexistent/runtime"},
	}
}

// open opens the engine on the environment's roots, as berthd starts.
func (r *realEnv) open() {
	r.t.Helper()
	if r.e != nil {
		r.t.Fatal("open: the engine is already open")
	}
	ctx := context.Background()
	e, err := New(ctx, Config{DataRoot: r.dataRoot, Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		r.t.Fatalf("open engine on %s: %v", r.dataRoot, err)
	}
	if err := e.EnableContainers(ctx, r.config()); err != nil {
		e.Close()
		r.t.Fatalf("enable containers (exec root %s): %v", r.execRoot, err)
	}
	r.e = e
}

// closeEngine closes the engine as berthd does when it stops; containers
// keep running under their shims.
func (r *realEnv) closeEngine() {
	r.t.Helper()
	if r.e == nil {
		return
	}
	r.e.ContainersShutdown()
	if err := r.e.Close(); err != nil {
		r.t.Errorf("close engine: %v", err)
	}
	r.e = nil
}

// importImage imports the busybox root filesystem plus /srv/hello.txt as an
// image with CMD ["sh"] and the given extra Dockerfile changes, and returns
// its ID.
func (r *realEnv) importImage(changes []string) string {
	r.t.Helper()
	layer := busyboxLayerWithSrv(r.t)
	id, err := r.e.Import(context.Background(), bytes.NewReader(layer), ImportOptions{Changes: append([]string{`CMD ["sh"]`}, changes...)})
	if err != nil {
		r.t.Fatalf("import busybox image: %v", err)
	}
	return id.String()
}

// helloText is the content of /srv/hello.txt in the test image.
const helloText = "hello from the image\n"

var (
	layerOnce sync.Once
	layerTar  []byte
	layerErr  error
)

// busyboxLayerWithSrv is testutil.BusyboxTar with /srv/hello.txt added.
func busyboxLayerWithSrv(t *testing.T) []byte {
	t.Helper()
	layerOnce.Do(func() {
		base, err := testutil.BusyboxTar()
		if err != nil {
			layerErr = err
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tr := tar.NewReader(bytes.NewReader(base))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				layerErr = err
				return
			}
			if err := tw.WriteHeader(h); err != nil {
				layerErr = err
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				layerErr = err
				return
			}
		}
		for _, h := range []*tar.Header{
			{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: testutil.FixtureTime},
			{Name: "srv/hello.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(helloText)), ModTime: testutil.FixtureTime},
		} {
			if err := tw.WriteHeader(h); err != nil {
				layerErr = err
				return
			}
			if h.Typeflag == tar.TypeReg {
				io.WriteString(tw, helloText)
			}
		}
		layerErr = tw.Close()
		layerTar = buf.Bytes()
	})
	if layerErr != nil {
		t.Fatalf("make busybox layer: %v", layerErr)
	}
	return layerTar
}

// create creates a container from the test image running cmd.
func (r *realEnv) create(name string, hc *container.HostConfig, cmd ...string) string {
	r.t.Helper()
	id, err := r.tryCreate(name, hc, cmd...)
	if err != nil {
		r.t.Fatalf("create container %q running %q: %v", name, cmd, err)
	}
	return id
}

func (r *realEnv) tryCreate(name string, hc *container.HostConfig, cmd ...string) (string, error) {
	return r.tryCreateConfig(name, &container.Config{Image: r.image, Cmd: cmd}, hc)
}

func (r *realEnv) tryCreateConfig(name string, cfg *container.Config, hc *container.HostConfig) (string, error) {
	id, err := r.e.ContainerCreate(context.Background(), CreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if err == nil {
		r.ids[id] = true
	}
	return id, err
}

// run creates and starts a container running cmd.
func (r *realEnv) run(hc *container.HostConfig, cmd ...string) string {
	r.t.Helper()
	id := r.create("", hc, cmd...)
	r.start(id)
	return id
}

func (r *realEnv) start(id string) {
	r.t.Helper()
	if err := r.e.ContainerStart(context.Background(), id); err != nil {
		r.t.Fatalf("start container %s: %v\nengine log:\n%s", id, err, r.logs)
	}
}

// wait waits for the container to be not running and returns its exit code.
func (r *realEnv) wait(id string) int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := r.e.ContainerWaitChan(ctx, id, WaitNotRunning)
	if err != nil {
		r.t.Fatalf("wait for container %s: %v", id, err)
	}
	code, ok := <-ch
	if !ok {
		r.t.Fatalf("container %s did not exit within 30s: %v", id, ctx.Err())
	}
	return code
}

func (r *realEnv) inspect(id string) container.InspectResponse {
	r.t.Helper()
	resp, err := r.e.ContainerInspect(context.Background(), id, false)
	if err != nil {
		r.t.Fatalf("inspect container %s: %v", id, err)
	}
	return resp
}

// logs returns the container's logged stdout and stderr.
func (r *realEnv) logsOf(id string) (stdout, stderr string) {
	r.t.Helper()
	_, seq, err := r.e.ContainerLogs(context.Background(), id, LogsOptions{Tail: -1})
	if err != nil {
		r.t.Fatalf("logs of container %s: %v", id, err)
	}
	var o, e strings.Builder
	for entry, err := range seq {
		if err != nil {
			r.t.Fatalf("read logs of container %s: %v", id, err)
		}
		switch entry.Stream {
		case "stdout":
			o.Write(entry.Line)
		case "stderr":
			e.Write(entry.Line)
		default:
			r.t.Errorf("log entry of container %s on unknown stream %q: %q", id, entry.Stream, entry.Line)
		}
	}
	return o.String(), e.String()
}

// waitLog waits until the container's stdout holds want (a container
// telling that it is ready).
func (r *realEnv) waitLog(id, want string) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := r.logsOf(id)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("container %s did not print %q within 20s; stdout so far %q, state %+v", id, want, out, r.inspect(id).State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// execIn runs cmd in the container and returns its output and exit code.
func (r *realEnv) execIn(id string, cmd ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xid, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		r.t.Fatalf("exec create %q in %s: %v", cmd, id, err)
	}
	var o, e bytes.Buffer
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{Stdout: &o, Stderr: &e}); err != nil {
		r.t.Fatalf("exec start %q in %s: %v", cmd, id, err)
	}
	xi, err := r.e.ExecInspect(ctx, xid)
	if err != nil {
		r.t.Fatalf("exec inspect %s: %v", xid, err)
	}
	if xi.Running || xi.ExitCode == nil {
		r.t.Fatalf("exec %q in %s: inspect after its start returned says running=%v exitCode=%v", cmd, id, xi.Running, xi.ExitCode)
	}
	return o.String(), e.String(), *xi.ExitCode
}

// mountsUnder lists the mount points under any of roots in this process's
// mount namespace.
func mountsUnder(roots ...string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		for _, root := range roots {
			if mp == root || strings.HasPrefix(mp, root+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 and friends) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupsOf lists the cgroup directories of a container (the engine puts
// them at /berth/<id> in every hierarchy).
func cgroupsOf(id string) []string {
	var out []string
	for _, pat := range []string{"/sys/fs/cgroup/*/berth/" + id, "/sys/fs/cgroup/berth/" + id} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

// processesMentioning lists the PIDs of processes whose command line holds
// s (the shims of an exec root name their state directory in it).
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(s)) {
			out = append(out, pid)
		}
	}
	return out
}

// assertNoTrace fails t for anything left of container id: its record,
// directory, snapshot, shim state, cgroups and mounts.
func (r *realEnv) assertNoTrace(id string) {
	r.t.Helper()
	if r.e != nil {
		if _, err := r.e.ContainerInspect(context.Background(), id, false); err == nil {
			r.t.Errorf("container %s is still known to the engine", id)
		}
		if _, err := r.e.snaps.Mounts(context.Background(), "container-"+id); err == nil {
			r.t.Errorf("snapshot container-%s of container %s still exists", id, id)
		}
	}
	for _, p := range []string{
		filepath.Join(r.dataRoot, "containers", id),
		filepath.Join(r.execRoot, "containers", id),
		filepath.Join(r.execRoot, "containers", id[:16]),
	} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			r.t.Errorf("%s of container %s is left behind (lstat: %v)", p, id, err)
		}
	}
	if cg := cgroupsOf(id); len(cg) > 0 {
		r.t.Errorf("cgroups of container %s are left behind: %v", id, cg)
	}
	ms, err := mountsUnder(filepath.Join(r.dataRoot, "containers", id))
	if err != nil {
		r.t.Errorf("read mountinfo: %v", err)
	}
	if len(ms) > 0 {
		r.t.Errorf("mounts of container %s are left behind: %v", id, ms)
	}
	snaps, _ := os.ReadDir(filepath.Join(r.dataRoot, "snapshots"))
	for _, s := range snaps {
		if strings.Contains(s.Name(), id) {
			r.t.Errorf("snapshot entry %s of container %s is left behind", s.Name(), id)
		}
	}
}

// cleanup removes every container, closes the engine and checks that no
// mount, cgroup, shim process or state directory remains; what remains is
// reported and then removed.
func (r *realEnv) cleanup() {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r.e == nil && len(r.ids) > 0 {
		// The test closed the engine; reopen it to remove what it left.
		r.open()
	}
	if r.e != nil {
		list, err := r.e.ContainerList(ctx, ContainerListOptions{All: true})
		if err != nil {
			t.Errorf("cleanup: list containers: %v", err)
		}
		for _, s := range list {
			r.ids[s.ID] = true
			if err := r.e.ContainerRemove(ctx, s.ID, true, true); err != nil {
				t.Errorf("cleanup: remove container %s: %v", s.ID, err)
			}
		}
		for id := range r.ids {
			r.assertNoTrace(id)
		}
		r.closeEngine()
	}
	if pids := processesMentioning(r.execRoot); len(pids) > 0 {
		t.Errorf("processes of exec root %s left running: %v", r.execRoot, pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for id := range r.ids {
		for _, cg := range cgroupsOf(id) {
			t.Errorf("cgroup %s left behind", cg)
			if data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
			os.Remove(cg)
		}
	}
	ms, err := mountsUnder(r.dataRoot, r.execRoot)
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
	}
	for i := len(ms) - 1; i >= 0; i-- {
		t.Errorf("mount left behind: %s", ms[i])
		unix.Unmount(ms[i], unix.MNT_DETACH)
	}
	if err := os.RemoveAll(r.execRoot); err != nil {
		t.Errorf("remove exec root %s: %v", r.execRoot, err)
	}
	if t.Failed() {
		t.Logf("engine log:\n%s", r.logs)
	}
}

// daemonRequest is what runDaemonProcess asks the daemon process to do.
type daemonRequest struct {
	DataRoot string
	Config   ContainerConfig
	Create   []CreateOptions
	// Stop and Pause list indexes into Create of containers to stop (as a
	// client's stop) or pause once all are started; WaitRestarting those
	// whose restart policy must have them between two runs (a restart
	// pending) when the daemon exits.
	Stop, Pause, WaitRestarting []int
}

// runDaemonProcess runs one life of berthd in a child process: it opens an
// engine on the environment's roots, creates and starts the containers of
// opts, and exits without stopping them. The environment's own engine must
// be closed. It returns the new containers' IDs.
func (r *realEnv) runDaemonProcess(opts ...CreateOptions) []string {
	r.t.Helper()
	return r.runDaemon(daemonRequest{Create: opts})
}

// runDaemon is runDaemonProcess with stops and pauses.
func (r *realEnv) runDaemon(dr daemonRequest) []string {
	r.t.Helper()
	if r.e != nil {
		r.t.Fatal("runDaemonProcess: close the engine first (one engine opens the roots at a time)")
	}
	dr.DataRoot, dr.Config = r.dataRoot, r.config()
	req, err := json.Marshal(dr)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), realDaemonEnv+"="+string(req))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("daemon process: %v\n%s", err, stderr.String())
	}
	var ids []string
	if err := json.Unmarshal(out, &ids); err != nil {
		r.t.Fatalf("daemon process output %q: %v\n%s", out, err, stderr.String())
	}
	for _, id := range ids {
		r.ids[id] = true
	}
	return ids
}

// daemonProcess is the child of runDaemonProcess.
func daemonProcess(reqJSON string) int {
	var req daemonRequest
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		fmt.Fprintln(os.Stderr, "decode request:", err)
		return 2
	}
	ctx := context.Background()
	e, err := New(ctx, Config{DataRoot: req.DataRoot, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open engine:", err)
		return 1
	}
	if err := e.EnableContainers(ctx, req.Config); err != nil {
		fmt.Fprintln(os.Stderr, "enable containers:", err)
		return 1
	}
	ids := []string{}
	for _, o := range req.Create {
		id, err := e.ContainerCreate(ctx, o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "create %q: %v\n", o.Name, err)
			return 1
		}
		if err := e.ContainerStart(ctx, id); err != nil {
			fmt.Fprintf(os.Stderr, "start %q: %v\n", o.Name, err)
			return 1
		}
		ids = append(ids, id)
	}
	for _, i := range req.Stop {
		timeout := 10
		if err := e.ContainerStop(ctx, ids[i], "", &timeout); err != nil {
			fmt.Fprintf(os.Stderr, "stop %s: %v\n", ids[i], err)
			return 1
		}
	}
	for _, i := range req.Pause {
		if err := e.ContainerPause(ctx, ids[i]); err != nil {
			fmt.Fprintf(os.Stderr, "pause %s: %v\n", ids[i], err)
			return 1
		}
	}
	for _, i := range req.WaitRestarting {
		deadline := time.Now().Add(20 * time.Second)
		for {
			in, err := e.ContainerInspect(ctx, ids[i], false)
			if err == nil && in.State.Restarting {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "container %s did not get to restarting: %+v %v\n", ids[i], in.State, err)
				return 1
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	e.ContainersShutdown()
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close engine:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(ids); err != nil {
		return 1
	}
	return 0
}

// unixKill0 reports (nil) whether a process pid exists.
func unixKill0(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("no pid")
	}
	return syscall.Kill(pid, 0)
}

// eventsUntil returns the container's events since since once done holds
// for them (or, after 20s, as they are).
func (r *realEnv) eventsUntil(id string, since time.Time, done func([]events.Message) bool) []events.Message {
	deadline := time.Now().Add(20 * time.Second)
	for {
		past, _ := r.e.Events(context.Background(), since, time.Now(), EventFilter{"container": {id}})
		if done(past) || time.Now().After(deadline) {
			return past
		}
		time.Sleep(10 * time.Millisecond)
	}
}
