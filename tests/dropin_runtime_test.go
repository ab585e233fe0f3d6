package tests

// What the engines' drop-in tests found, reduced to berth-runtime alone:
// each test drives the runtime the way an engine does and holds the answer
// runc gives.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// dropinCgroupParent returns a cgroup parent for one test's containers and
// removes it (and everything under it) when the test ends.
func dropinCgroupParent(t *testing.T) string {
	t.Helper()
	parent := fmt.Sprintf("berth-dropin-rt-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	t.Cleanup(func() {
		if err := dropinRemoveCgroups(parent); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return parent
}

// newDropinRT is newRT driving BERTH_DROPIN_RUNTIME when that is set (to
// see runc's answer to the same commands).
func newDropinRT(t *testing.T) *rt {
	r := newRT(t)
	if bin := os.Getenv("BERTH_DROPIN_RUNTIME"); bin != "" {
		r.bin = bin
	}
	return r
}

// Docker 20.10 sends "blockIO": {"weight": 0} and "cpu": {"shares": 0}
// in every container's spec (and in every `update --resources`) when the
// user set neither. runc reads 0 as "not set" and writes nothing; the
// kernel refuses 0 as a blkio weight (the range is 10-1000, 1-1000 for BFQ).
func TestDropinRuntimeZeroWeightsAreUnset(t *testing.T) {
	r := newDropinRT(t)
	parent := dropinCgroupParent(t)
	dir, s := testutil.BusyboxBundle(t, "sleep", "100")
	zero16, zero64 := uint16(0), uint64(0)
	s.Linux.CgroupsPath = "/" + parent + "/c1"
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: &zero16}
	s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: &zero64}
	testutil.WriteSpec(t, dir, s)
	r.ok("create", "--bundle", dir, "c1")
	defer r.ok("delete", "--force", "c1")
	if got, err := dropinCgroupFile("cpu", s.Linux.CgroupsPath, "cpu.shares"); err != nil || got != "1024" {
		t.Fatalf("cpu.shares with shares 0 in the spec: %q (%v), want the kernel's default 1024", got, err)
	}
	res := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(res, []byte(`{"blockIO": {"weight": 0}, "cpu": {"shares": 0}, "memory": {"limit": 67108864}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.ok("update", "--resources", res, "c1")
	if got, err := dropinCgroupFile("memory", s.Linux.CgroupsPath, "memory.limit_in_bytes"); err != nil || got != "67108864" {
		t.Fatalf("memory.limit_in_bytes after update: %q (%v)", got, err)
	}
}

// runc's list warns about entries of its root that are not containers and
// lists the rest; berth-runtime keeps its own seccomp cache in the root.
func TestDropinRuntimeListSkipsOtherEntries(t *testing.T) {
	r := newDropinRT(t)
	dir, s := testutil.BusyboxBundle(t, "sleep", "100")
	s.Linux.CgroupsPath = "/" + dropinCgroupParent(t) + "/c1"
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mknod"}, Action: specs.ActErrno}},
	}
	testutil.WriteSpec(t, dir, s)
	r.ok("create", "--bundle", dir, "c1")
	defer r.ok("delete", "--force", "c1")
	if err := os.Mkdir(filepath.Join(r.root, "not-a-container"), 0o700); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(r.root)
	out, errOut, err := r.exec("list", "--quiet")
	if err != nil {
		t.Fatalf("list in a root holding %v: %v: %s", ents, err, errOut)
	}
	if ids := strings.Fields(out); len(ids) != 1 || ids[0] != "c1" {
		t.Fatalf("list --quiet: %q, want only c1", out)
	}
}

// podman gives each device's fileMode with the file type bits (020666
// for a character device); runc takes the type from "type" and creates the
// node with the permission bits.
func TestDropinRuntimeDeviceModeWithTypeBits(t *testing.T) {
	r := newDropinRT(t)
	dir, s := testutil.BusyboxBundle(t, "sh", "-c", "test -c /dev/berth-null && stat -c %a /dev/berth-null")
	s.Linux.CgroupsPath = "/" + dropinCgroupParent(t) + "/c1"
	mode := os.FileMode(unix.S_IFCHR | 0o640)
	uid := uint32(0)
	s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/berth-null", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid, GID: &uid})
	testutil.WriteSpec(t, dir, s)
	out, errOut, err := r.exec("run", "--bundle", dir, "dev1")
	if err != nil || strings.TrimSpace(out) != "640" {
		t.Fatalf("run with a device of fileMode %#o: %q (%v): %s", uint32(mode), out, err, errOut)
	}
}

// containerd's shim, podman and dockerd run `delete --force` for
// containers that may be gone already; runc answers it with success.
func TestDropinRuntimeForceDeleteOfMissingContainer(t *testing.T) {
	r := newDropinRT(t)
	r.ok("delete", "--force", "never-created")
	if msg := r.fails("delete", "never-created"); !strings.Contains(msg, "does not exist") {
		t.Fatalf("delete without --force of a missing container: %q", msg)
	}
}

// containerd's shim is a child subreaper: it reaps a container's init the
// moment it exits. A container whose process ends at once (docker run --rm
// busybox echo) must still start: runc's start succeeds once the init has
// taken the go-ahead, whatever happens to it after.
func TestDropinRuntimeStartUnderSubreaper(t *testing.T) {
	testutil.RequiresRoot(t)
	bin := os.Getenv("BERTH_DROPIN_RUNTIME")
	if bin == "" {
		bin = RequireBinary(t, "berth-runtime")
	}
	dir, s := testutil.BusyboxBundle(t, "true")
	s.Linux.CgroupsPath = "/" + dropinCgroupParent(t) + "/c"
	testutil.WriteSpec(t, dir, s)
	// The subreaper is a child: the test process keeps its own parentage.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDropinRuntimeSubreaperChild$", "-test.v")
	cmd.Env = append(os.Environ(), "BERTH_DROPIN_SUBREAPER_BIN="+bin, "BERTH_DROPIN_SUBREAPER_BUNDLE="+dir,
		"BERTH_DROPIN_SUBREAPER_ROOT="+t.TempDir())
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDropinRuntimeSubreaperChild") {
		t.Fatalf("create/start of short-lived containers under a reaping subreaper: %v\n%s", err, out)
	}
}

// TestDropinRuntimeSubreaperChild is TestDropinRuntimeStartUnderSubreaper's
// child: a subreaper that reaps each init as it exits, as containerd's shim
// does, while it creates and starts containers running true.
func TestDropinRuntimeSubreaperChild(t *testing.T) {
	bin := os.Getenv("BERTH_DROPIN_SUBREAPER_BIN")
	if bin == "" {
		t.Skip("run by TestDropinRuntimeStartUnderSubreaper")
	}
	bundle, root := os.Getenv("BERTH_DROPIN_SUBREAPER_BUNDLE"), os.Getenv("BERTH_DROPIN_SUBREAPER_ROOT")
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	// One CPU for everything, and start at the lowest priority: when start
	// lets the init go, the scheduler runs the init (and this reaper) first,
	// which is what a loaded machine does now and then.
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	nice, err := exec.LookPath("nice")
	if err != nil {
		t.Skipf("nice: %v", err)
	}
	// Output goes to a file: a created container holds the runtime's
	// standard streams, and a pipe would never reach its end.
	outPath := filepath.Join(root, "out")
	run := func(args ...string) (string, error) {
		f, err := os.Create(outPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(bin, append([]string{"--root", root}, args...)...)
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		return dropinRead(outPath), err
	}
	runNice := func(nice string, args ...string) (string, error) {
		cmd := exec.Command(nice, append([]string{"-n", "19", bin, "--root", root}, args...)...)
		out, err := cmd.CombinedOutput() // start leaves no process holding the pipe
		return string(out), err
	}
	var failed []string
	for i := 0; i < dropinStarts; i++ {
		id := "s" + strconv.Itoa(i)
		pidFile := filepath.Join(root, id+".pid")
		if out, err := run("create", "--bundle", bundle, "--pid-file", pidFile, id); err != nil {
			t.Fatalf("create %s: %v: %s", id, err, out)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		reaped := make(chan struct{})
		go func() { // reap the init the moment it exits
			var st unix.WaitStatus
			for {
				if _, err := unix.Wait4(pid, &st, 0, nil); err != unix.EINTR {
					break
				}
			}
			close(reaped)
		}()
		if out, err := runNice(nice, "start", id); err != nil {
			failed = append(failed, fmt.Sprintf("start %s: %v: %s", id, err, strings.TrimSpace(out)))
		}
		<-reaped
		if out, err := run("delete", "--force", id); err != nil {
			t.Errorf("delete %s: %v: %s", id, err, out)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d starts failed:\n%s", len(failed), dropinStarts, strings.Join(failed, "\n"))
	}
}

// dropinStarts is how many short-lived containers the subreaper starts: with
// everything on one CPU and start niced, a runtime that looks at the init
// after letting it go loses the race about once in twenty.
const dropinStarts = 150
