package mount

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

const childEnv = "BERTH_MOUNT_TEST_CHILD"

// inNamespace runs the calling test again in a child process in a new
// mount namespace (made rprivate first, so nothing reaches the host) and
// reports whether this is that child. The parent fails t when the child does.
func inNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make / rprivate: %v", err)
		}
		return true
	}
	testutil.RequiresRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("namespaced child: %v\n%s", err, out)
	}
	return false
}

// mountAt returns the mountinfo fields of the topmost mount at point.
func mountAt(t *testing.T, point string) (opts, fstype, super string, ok bool) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, _ := strings.Cut(s.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) > 5 && len(b) > 2 && a[4] == point {
			opts, fstype, super, ok = a[5], b[0], b[2], true
		}
	}
	return
}

func has(list, opt string) bool {
	for _, o := range strings.Split(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

func TestMountInNamespace(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	dir := t.TempDir()
	a, b, file := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "file")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// A new filesystem on a plain path, with flags and data.
	if err := (Mount{Type: "tmpfs", Source: "berth-test", Options: []string{"nosuid", "nodev", "size=1m", "mode=700"}}).Mount(a); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	opts, fstype, super, ok := mountAt(t, a)
	if !ok || fstype != "tmpfs" || !has(opts, "nosuid") || !has(opts, "nodev") || !has(super, "size=1024k") || !has(super, "mode=700") {
		t.Errorf("tmpfs: %q %q %q %v", opts, fstype, super, ok)
	}
	if err := os.WriteFile(filepath.Join(a, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A bind onto a descriptor, read-only, from a descriptor.
	src, err := os.OpenFile(a, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(b, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	fd := func(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }
	if err := (Mount{Type: "bind", Source: fd(src), Options: []string{"bind", "ro", "noexec"}}).Mount(fd(dst)); err != nil {
		t.Fatalf("bind onto descriptor: %v", err)
	}
	opts, _, _, ok = mountAt(t, b)
	if !ok || !has(opts, "ro") || !has(opts, "noexec") || has(opts, "nosuid") {
		t.Errorf("bind flags replace the source's: %q %v", opts, ok)
	}
	if got, err := os.ReadFile(filepath.Join(b, "x")); err != nil || string(got) != "x" {
		t.Errorf("bind content: %q %v", got, err)
	}
	if _, s, _, _ := mountAt(t, a); s != "tmpfs" {
		t.Error("the source mount changed")
	}
	if opts, _, _, _ := mountAt(t, a); has(opts, "ro") {
		t.Error("the bind's flags reached its source")
	}

	// A bind without flags keeps its source's.
	if err := (Mount{Type: "none", Source: a, Options: []string{"bind"}}).Mount(file + "-dir-does-not-exist"); err == nil {
		t.Error("bind onto a missing target succeeded")
	}
	c := filepath.Join(dir, "c")
	if err := os.Mkdir(c, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (Mount{Source: a, Options: []string{"bind"}}).Mount(c); err != nil {
		t.Fatalf("plain bind: %v", err)
	}
	if opts, _, _, _ := mountAt(t, c); !has(opts, "nosuid") || !has(opts, "nodev") {
		t.Errorf("plain bind lost the source's flags: %q", opts)
	}

	// Remount in place.
	if err := (Mount{Options: []string{"remount", "ro", "nosuid", "nodev"}}).Mount(a); err != nil {
		t.Fatalf("remount: %v", err)
	}
	if opts, _, _, _ := mountAt(t, a); !has(opts, "ro") {
		t.Errorf("remount ro: %q", opts)
	}

	// Errors name what failed.
	err = (Mount{Type: "no-such-fs", Source: "x"}).Mount(c)
	if err == nil || !strings.Contains(err.Error(), "no-such-fs") {
		t.Errorf("unknown filesystem: %v", err)
	}
	err = (Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"nonsense=1"}}).Mount(c)
	if err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("bad filesystem option: %v", err)
	}
	err = (Mount{Type: "bind", Source: a, Options: []string{"bind", "tmpcopyup"}}).Mount(c)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("tmpcopyup on a bind: %v", err)
	}
	if err := (Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap"}}).Mount(c); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("idmap: %v", err)
	}

	// Unmount, and unmounting what is not a mount point is an error.
	src.Close()
	dst.Close()
	for _, p := range []string{c, b, a} {
		if err := Unmount(p, 0); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	}
	if _, _, _, ok := mountAt(t, a); ok {
		t.Error("still mounted after Unmount")
	}
	if err := Unmount(a, 0); err == nil {
		t.Error("unmounting a plain directory succeeded")
	}
	if err := Unmount(filepath.Join(dir, "missing"), 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unmount of a missing path: %v", err)
	}
}

// TestMountPropagationInNamespace: propagation options apply to the new
// mount, in order.
func TestMountPropagationInNamespace(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	dir := t.TempDir()
	for i, opts := range [][]string{{"shared"}, {"rshared", "rslave"}, {"unbindable"}, {"shared", "private"}} {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := (Mount{Type: "tmpfs", Source: "tmpfs", Options: opts}).Mount(p); err != nil {
			t.Fatalf("mount with %v: %v", opts, err)
		}
		t.Cleanup(func() { Unmount(p, unix.MNT_DETACH) })
	}
	f, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0": "shared:", "1": "", "2": "unbindable", "3": ""}
	for _, line := range strings.Split(string(f), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 7 || filepath.Dir(fields[4]) != dir {
			continue
		}
		pre, _, _ := strings.Cut(line, " - ")
		opt := strings.Join(strings.Fields(pre)[6:], " ")
		w := want[filepath.Base(fields[4])]
		if (w == "" && opt != "") || (w != "" && !strings.HasPrefix(opt, w)) {
			t.Errorf("%s: optional fields %q, want %q", fields[4], opt, w)
		}
		delete(want, filepath.Base(fields[4]))
	}
	if len(want) != 0 {
		t.Errorf("mounts missing: %v", want)
	}
}

// TestMountOnDescriptorIgnoresSwap: a target given as a descriptor stays
// the inode it was opened on, even when its path is swapped for a symlink
// to somewhere else afterwards (the CVE-2021-30465 race, made
// deterministic).
func TestMountOnDescriptorIgnoresSwap(t *testing.T) {
	if !inNamespace(t) {
		return
	}
	dir := t.TempDir()
	target, moved, outside := filepath.Join(dir, "target"), filepath.Join(dir, "moved"), filepath.Join(dir, "outside")
	for _, d := range []string{target, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := os.OpenFile(target, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := os.Rename(target, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, target); err != nil {
		t.Fatal(err)
	}
	if err := (Mount{Type: "tmpfs", Source: "swap-test"}).Mount("/proc/self/fd/" + strconv.Itoa(int(fd.Fd()))); err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { Unmount(moved, unix.MNT_DETACH) })
	if _, fstype, _, ok := mountAt(t, outside); ok {
		t.Errorf("the mount followed the swapped-in symlink to %s (%s)", outside, fstype)
	}
	if _, fstype, _, ok := mountAt(t, moved); !ok || fstype != "tmpfs" {
		t.Errorf("the mount is not on the inode the descriptor names: %v %s", ok, fstype)
	}
}
