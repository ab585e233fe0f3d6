package tests

// Drop-in tests: Debian's containerd (ctr), podman and dockerd run
// berth-runtime where they would run runc. Each engine runs with private
// state directories and sockets under one temporary directory, from a
// busybox image made here (no registry, no network), and everything it made
// is removed at the end: the daemons and shims it started (by PID), mounts
// left under the temporary directory, and the containers' cgroups.
//
// The runtime the engines get is a small shell script that records each
// command line in a log and then execs berth-runtime, so a failing test shows
// exactly what the engine asked. BERTH_DROPIN_RUNTIME=/usr/sbin/runc runs the
// same tests with another runtime (to tell an engine problem from a
// berth-runtime one); BERTH_DROPIN_TRACE=1 also records each command's exit
// status and standard error.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// dropinImage is the name the busybox image is loaded under in every engine.
const dropinImage = "docker.io/berth-dropin/busybox:latest"

// dropinCmdTimeout bounds one engine command; a hung engine fails the test
// instead of the whole run.
const dropinCmdTimeout = 90 * time.Second

// dropinRequirePeer returns the path of an engine binary or skips t naming the
// package that brings it.
func dropinRequirePeer(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s is not installed (%v): run scripts/install-dropin-deps.sh (Debian package %s)", bin, err, pkg)
	}
	return p
}

// dropin is what every engine's tests share: the temporary directory, the
// runtime script the engine runs, and the cgroup parent its containers go
// under.
type dropin struct {
	t        *testing.T
	dir      string   // everything the engine writes lives here
	runtime  string   // the script the engine runs as its runc
	target   string   // the runtime the script execs
	callLog  string   // one line per runtime command
	cgroup   string   // cgroup parent (relative to each hierarchy's root) of the containers
	hostDirs []string // directories outside dir the engine may create, absent at the start
}

// newDropin prepares the shared parts for one engine and registers their
// cleanup: mounts left under the directory are detached, the cgroups the
// containers left under the parent are removed, and a failing test logs the
// runtime's command lines.
func newDropin(t *testing.T, engine string) *dropin {
	t.Helper()
	testutil.RequiresRoot(t)
	target := os.Getenv("BERTH_DROPIN_RUNTIME")
	if target == "" {
		target = RequireBinary(t, "berth-runtime")
	}
	// A short base keeps socket paths under the 108-byte sun_path limit.
	dir, err := os.MkdirTemp("", "berth-"+engine+"-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dropin{
		t:       t,
		dir:     dir,
		target:  target,
		callLog: filepath.Join(dir, "runtime-calls.log"),
		cgroup:  "berth-dropin-" + engine + "-" + filepath.Base(dir)[len("berth-"+engine+"-"):],
	}
	// Registered first, so it runs last: after the engine's daemons stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runtime command lines (%s):\n%s", d.callLog, tail(dropinRead(d.callLog), 80))
		}
		for _, p := range dropinKillUnder(dir) {
			t.Errorf("cleanup: killed a process left behind: %s", p)
		}
		if err := dropinUnmountUnder(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := dropinRemoveCgroups(d.cgroup); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// Deepest first; only empty ones: anything else in them is not ours.
		for i := len(d.hostDirs) - 1; i >= 0; i-- {
			os.Remove(d.hostDirs[i])
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: remove %s: %v", dir, err)
		}
	})
	d.runtime = d.writeRuntimeScript("berth-runtime")
	return d
}

// hostPaths notes directories outside the test's directory that the engine
// creates whatever it is told (containerd's shim sockets under
// /run/containerd/s, for one). Those absent now are removed at the end if
// they are empty; list parents before children.
func (d *dropin) hostPaths(dirs ...string) {
	for _, p := range dirs {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			d.hostDirs = append(d.hostDirs, p)
		}
	}
}

// writeRuntimeScript writes the runtime the engine runs, named name, in its
// own directory: it logs its command line and execs the target runtime. With
// BERTH_DROPIN_TRACE=1 it runs the target as a child instead, to log its exit
// status and standard error too.
func (d *dropin) writeRuntimeScript(name string) string {
	d.t.Helper()
	binDir := filepath.Join(d.dir, "rtbin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		d.t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"$$ $*\" >>%s\nexec %s \"$@\"\n", dropinQuote(d.callLog), dropinQuote(d.target))
	if os.Getenv("BERTH_DROPIN_TRACE") == "1" {
		errLog := d.callLog + ".stderr"
		script = fmt.Sprintf("#!/bin/sh\necho \"$$ $*\" >>%[1]s\n%[2]s \"$@\" 2>%[3]s.$$\nrc=$?\n"+
			"echo \"$$ exit $rc: $(cat %[3]s.$$)\" >>%[1]s\ncat %[3]s.$$ >&2\nrm -f %[3]s.$$\nexit $rc\n",
			dropinQuote(d.callLog), dropinQuote(d.target), dropinQuote(errLog))
	}
	p := filepath.Join(binDir, name)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		d.t.Fatal(err)
	}
	return p
}

// runtimeCalls returns the runtime commands the engine ran so far, each
// without the logging shell's PID.
func (d *dropin) runtimeCalls() []string {
	var out []string
	for _, l := range Lines(dropinRead(d.callLog)) {
		if _, rest, ok := strings.Cut(l, " "); ok && !strings.HasPrefix(rest, "exit ") {
			out = append(out, rest)
		}
	}
	return out
}

// requireCalled fails t unless the engine ran the runtime with a command
// whose words include all of words (for example "exec", "--pid-file").
func (d *dropin) requireCalled(t testing.TB, words ...string) {
	t.Helper()
	for _, c := range d.runtimeCalls() {
		f := strings.Fields(c)
		all := true
		for _, w := range words {
			if !dropinHasWord(f, w) {
				all = false
				break
			}
		}
		if all {
			return
		}
	}
	t.Fatalf("the engine never ran the runtime with %q; it ran:\n%s", words, strings.Join(d.runtimeCalls(), "\n"))
}

func dropinHasWord(fields []string, w string) bool {
	for _, f := range fields {
		if f == w {
			return true
		}
	}
	return false
}

// imageArchive writes the busybox image as a docker-archive tar (what
// `docker save` writes, which ctr, podman and docker all load) tagged
// dropinImage, and returns its path.
func (d *dropin) imageArchive(t testing.TB) string {
	t.Helper()
	rootfs := filepath.Join(d.dir, "image-rootfs")
	if err := testutil.MakeBusyboxRootfs(rootfs); err != nil {
		t.Fatalf("make busybox rootfs: %v", err)
	}
	img, err := testutil.DirImage(rootfs, "sh")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(dropinImage)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.dir, "busybox.tar")
	if err := tarball.WriteToFile(p, ref, img); err != nil {
		t.Fatalf("write image archive %s: %v", p, err)
	}
	if err := os.RemoveAll(rootfs); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs an engine command with env added to the test's environment, its
// output going to files (a container may inherit the streams and keep a pipe
// open after the command ends). It returns stdout, stderr and the error,
// and gives up after dropinCmdTimeout.
func (d *dropin) run(t testing.TB, env []string, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dropinCmdTimeout)
	defer cancel()
	outF, err1 := os.CreateTemp(d.dir, "out-")
	errF, err2 := os.CreateTemp(d.dir, "err-")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	defer os.Remove(outF.Name())
	defer os.Remove(errF.Name())
	defer outF.Close()
	defer errF.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = outF, errF
	// The engines drop files in their working directory (conmon writes
	// "oom" there when a container is OOM-killed): keep them in ours.
	cmd.Dir = d.dir
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", dropinCmdTimeout, err)
	}
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(e)))
	}
	return string(o), string(e), err
}

// daemonProc is an engine daemon the test started.
type daemonProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startDaemon starts an engine daemon with its output in logPath and
// registers its stop: SIGTERM, then SIGKILL after 20 seconds, by PID.
func (d *dropin) startDaemon(logPath string, env []string, bin string, args ...string) *daemonProc {
	d.t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start: %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", bin, err)
	}
	p := &daemonProc{name: filepath.Base(bin), cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	d.t.Cleanup(func() {
		p.stop(d.t)
		if d.t.Failed() {
			d.t.Logf("%s log (%s):\n%s", p.name, logPath, tail(dropinRead(logPath), 60))
		}
	})
	return p
}

// exited reports whether the daemon has exited.
func (p *daemonProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the daemon (idempotent).
func (p *daemonProc) stop(t testing.TB) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s (pid %d) ignored SIGTERM for 20s; killing it", p.name, p.cmd.Process.Pid)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls ready until it returns nil, the daemon exits, or a
// minute passes.
func (p *daemonProc) waitFor(t testing.TB, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := ready()
		if err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited before %s (%v):\n%s", p.name, what, p.err, tail(dropinRead(p.log), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within a minute: %v\n%s", p.name, what, err, tail(dropinRead(p.log), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dropinKillUnder ends (SIGKILL, by PID) every process whose command line
// names dir, the test's private directory: shims and monitors the engine
// started and left behind. It returns what it killed.
func dropinKillUnder(dir string) []string {
	var killed []string
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
		}
	}
	return killed
}

// dropinUnmountUnder detaches every mount whose mount point lies under dir,
// deepest first.
func dropinUnmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := dropinUnescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// dropinUnescape undoes the octal escapes (\040 for a space) of a
// mountinfo path.
func dropinUnescape(s string) string {
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

// dropinCgroupRoots are the mounted cgroup hierarchies: each v1 controller's and
// the v2 one.
func dropinCgroupRoots() []string {
	var roots []string
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		_, after, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		fstype := strings.Fields(after)[0]
		if fstype == "cgroup" || fstype == "cgroup2" {
			roots = append(roots, dropinUnescape(strings.Fields(l)[4]))
		}
	}
	return roots
}

// dropinRemoveCgroups removes the cgroup parent (relative to every
// hierarchy's root) and everything below it, deepest first. The engines
// have removed their containers by now: a process still in one of these
// cgroups is a container left behind; it is thawed, killed (SIGKILL, by PID)
// and reported in the error.
func dropinRemoveCgroups(parent string) error {
	var errs []error
	for _, root := range dropinCgroupRoots() {
		top := filepath.Join(root, parent)
		var dirs []string
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if pids := Lines(dropinRead(filepath.Join(dirs[i], "cgroup.procs"))); len(pids) > 0 {
				os.WriteFile(filepath.Join(dirs[i], "freezer.state"), []byte("THAWED"), 0o644)
				for _, p := range pids {
					if pid, err := strconv.Atoi(p); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				errs = append(errs, fmt.Errorf("cgroup %s still held processes %v: killed them", dirs[i], pids))
			}
			var err error
			for try := 0; try < 100; try++ {
				// A cgroup whose last process just died may be busy for a moment.
				if err = unix.Rmdir(dirs[i]); err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// dropinCgroupFile reads a file of a container's cgroup in the v1 controller ctrl.
func dropinCgroupFile(ctrl, cgroupPath, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, cgroupPath, file))
	return strings.TrimSpace(string(b)), err
}

func dropinRead(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func dropinQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// dropinEventually retries check until it returns nil or 30 seconds pass.
func dropinEventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
