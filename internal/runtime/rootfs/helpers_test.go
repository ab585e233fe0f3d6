package rootfs

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/runtime/bundle"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed test binary running a test's namespaced
// half; childArgs carries that half's parameters as JSON.
const (
	childEnv  = "BERTH_ROOTFS_TEST_CHILD"
	childArgs = "BERTH_ROOTFS_TEST_ARGS"
)

// args is what a parent test hands to its child.
type args struct {
	Rootfs string
	Spec   *specs.Spec
	Extra  map[string]string
}

// isChild reports whether this process is the namespaced child of a test.
func isChild() bool { return os.Getenv(childEnv) == "1" }

// childArgsOf decodes the parameters a parent passed and, first of all,
// makes every mount of the child's namespace private so nothing it does
// can propagate to the host.
func childArgsOf(t *testing.T) args {
	t.Helper()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / rprivate: %v", err)
	}
	var a args
	if err := json.Unmarshal([]byte(os.Getenv(childArgs)), &a); err != nil {
		t.Fatalf("decode child args: %v", err)
	}
	return a
}

// runChild re-executes the running (top-level) test in new mount, PID, UTS
// and IPC namespaces (plus extraFlags) and fails t with the child's output
// if the child fails. The parent keeps everything on the host side: the
// child's mounts vanish with its namespace.
func runChild(t *testing.T, a args, extraFlags uintptr) string {
	t.Helper()
	return runChildAttr(t, a, &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | extraFlags,
		Pdeathsig:  syscall.SIGKILL,
	})
}

// runChildUserNS is runChild in a new user namespace as well, mapping the
// first 65536 ids of the host to themselves.
func runChildUserNS(t *testing.T, a args) string {
	t.Helper()
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}
	return runChildAttr(t, a, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		UidMappings: ids, GidMappings: ids, Pdeathsig: syscall.SIGKILL,
	})
}

func runChildAttr(t *testing.T, a args, attr *syscall.SysProcAttr) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", childArgs+"="+string(b))
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("namespaced child failed: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("namespaced child:\n%s", out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("namespaced child did not run the test:\n%s", out)
	}
	return string(out)
}

// baseSpec is the default spec with a writable root and no masked or
// read-only paths, for tests to extend.
func baseSpec() *specs.Spec {
	s := bundle.Default(false)
	s.Root.Readonly = false
	s.Process.Terminal = false
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	return s
}

// newRootfs makes a busybox root filesystem for one test.
func newRootfs(t *testing.T) string {
	t.Helper()
	testutil.RequiresRoot(t)
	return testutil.BusyboxRootfs(t)
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	ID, Parent   string
	Root, Point  string
	Options      string
	Optional     string
	FSType       string
	Source       string
	SuperOptions string
}

func (m mountEntry) hasOpt(o string) bool {
	for _, x := range strings.Split(m.Options, ",") {
		if x == o {
			return true
		}
	}
	return false
}

func (m mountEntry) hasSuperOpt(o string) bool {
	for _, x := range strings.Split(m.SuperOptions, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// mounts reads this process's mount table.
func mounts(t *testing.T) []mountEntry {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read mountinfo: %v", err)
	}
	defer f.Close()
	var out []mountEntry
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, _ := strings.Cut(s.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 6 || len(b) < 3 {
			continue
		}
		out = append(out, mountEntry{ID: a[0], Parent: a[1], Root: unescape(a[3]), Point: unescape(a[4]), Options: a[5],
			Optional: strings.Join(a[6:], " "), FSType: b[0], Source: b[1], SuperOptions: b[2]})
	}
	return out
}

func unescape(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// topMount returns the topmost mount at point, failing t if there is none.
func topMount(t *testing.T, point string) mountEntry {
	t.Helper()
	var found *mountEntry
	for _, m := range mounts(t) {
		if m.Point == point {
			m := m
			found = &m
		}
	}
	if found == nil {
		t.Fatalf("no mount at %s", point)
	}
	return *found
}

// isMountPoint reports whether anything is mounted at point.
func isMountPoint(t *testing.T, point string) bool {
	t.Helper()
	for _, m := range mounts(t) {
		if m.Point == point {
			return true
		}
	}
	return false
}

// setupAll runs Prepare and Pivot, failing t on error.
func setupAll(t *testing.T, c *Config) {
	t.Helper()
	if err := Prepare(c); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if err := Pivot(c); err != nil {
		t.Fatalf("Pivot: %v", err)
	}
}

// writable reports whether a new file can be created in dir.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, "w")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// specMount is a spec mount with options.
func specMount(dest, typ, source string, options ...string) specs.Mount {
	return specs.Mount{Destination: dest, Type: typ, Source: source, Options: options}
}
