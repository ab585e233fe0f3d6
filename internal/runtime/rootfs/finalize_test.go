package rootfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/berth-project/berth/internal/runtime/bundle"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestFinalize masks paths, makes paths and the root read-only.
func TestFinalize(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs}
		setupAll(t, c)
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		checkFinalize(t)
		return
	}
	rootfs := newRootfs(t)
	must(t, os.MkdirAll(filepath.Join(rootfs, "secret", "dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "secret", "dir", "f"), []byte("secret"), 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "secret", "file"), []byte("secret"), 0o644))
	must(t, os.MkdirAll(filepath.Join(rootfs, "rodir", "sub"), 0o755))
	s := baseSpec()
	s.Root.Readonly = true
	s.Mounts = append(s.Mounts, specMount("/rodir/sub", "tmpfs", "tmpfs"), specMount("/scratch", "tmpfs", "tmpfs"))
	s.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/secret/dir", "/secret/file", "/does/not/exist", "/etc/passwd/notadir"}
	s.Linux.ReadonlyPaths = []string{"/proc/sys", "/proc/sysrq-trigger", "/rodir", "/missing"}
	runChild(t, args{Rootfs: rootfs, Spec: s}, 0)
}

func checkFinalize(t *testing.T) {
	// (This kernel has no /proc/kcore or /proc/sysrq-trigger; keys and
	// timer_list stand for the procfs files.)
	for _, p := range []string{"/proc/keys", "/proc/timer_list", "/secret/file"} {
		f, err := os.Open(p)
		if err != nil {
			t.Errorf("open masked %s: %v", p, err)
			continue
		}
		n, err := f.Read(make([]byte, 1))
		f.Close()
		if n != 0 || err != io.EOF {
			t.Errorf("masked %s is readable: %d %v", p, n, err)
		}
		if m := topMount(t, p); m.FSType != "devtmpfs" && m.FSType != "tmpfs" {
			t.Errorf("masked %s: %+v", p, m)
		}
	}
	for _, p := range []string{"/sys/firmware", "/secret/dir"} {
		entries, err := os.ReadDir(p)
		if err != nil || len(entries) != 0 {
			t.Errorf("masked dir %s: %v %v", p, entries, err)
		}
		if m := topMount(t, p); m.FSType != "tmpfs" || !m.hasOpt("ro") {
			t.Errorf("masked dir %s: %+v", p, m)
		}
	}
	if _, err := os.Stat("/does/not/exist"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing masked path was created: %v", err)
	}
	if err := os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("write /proc/sys/kernel/hostname: %v, want EROFS", err)
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("0"), 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("write /proc/sys/vm/drop_caches: %v, want EROFS", err)
	}
	if err := writable("/rodir"); !errors.Is(err, unix.EROFS) {
		t.Errorf("/rodir: %v, want EROFS", err)
	}
	if err := writable("/rodir/sub"); !errors.Is(err, unix.EROFS) {
		t.Errorf("/rodir/sub (a submount of a read-only path): %v, want EROFS", err)
	}
	if _, err := os.Stat("/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing read-only path was created: %v", err)
	}
	// root.readonly: / is read-only, other mounts are not.
	if err := writable("/"); !errors.Is(err, unix.EROFS) {
		t.Errorf("/: %v, want EROFS", err)
	}
	if m := topMount(t, "/"); !m.hasOpt("ro") {
		t.Errorf("/: %+v", m)
	}
	for _, d := range []string{"/scratch", "/dev", "/dev/shm"} {
		if err := writable(d); err != nil {
			t.Errorf("%s not writable under a read-only root: %v", d, err)
		}
	}
}

// TestRootfsPropagation checks each linux.rootfsPropagation the way the
// OCI runtime-tools validation does: bind "/" recursively somewhere, mount
// something on "/", and look for it through the copy; "unbindable" must
// refuse the recursive bind.
func TestRootfsPropagation(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs}
		setupAll(t, c)
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		checkPropagation(t, a.Spec.Linux.RootfsPropagation)
		return
	}
	for _, p := range []string{"shared", "rshared", "slave", "private", "rprivate", "unbindable", "runbindable"} {
		s := baseSpec()
		s.Linux.RootfsPropagation = p
		runChild(t, args{Rootfs: newRootfs(t), Spec: s}, 0)
	}
}

func checkPropagation(t *testing.T, p string) {
	root := topMount(t, "/")
	must(t, os.MkdirAll("/target", 0o755))
	if strings.HasSuffix(p, "unbindable") {
		if root.Optional != "unbindable" {
			t.Errorf("%s: / is %q", p, root.Optional)
		}
		err := unix.Mount("/", "/target", "", unix.MS_BIND|unix.MS_REC, "")
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: rbind of / = %v, want EINVAL", p, err)
		}
		return
	}
	must(t, os.MkdirAll("/mnt/m", 0o755))
	must(t, os.MkdirAll("/test", 0o755))
	must(t, os.WriteFile("/test/example", nil, 0o644))
	must(t, unix.Mount("/", "/target", "", unix.MS_BIND|unix.MS_REC, ""))
	must(t, unix.Mount("/test", "/mnt/m", "", unix.MS_BIND|unix.MS_REC, ""))
	_, err := os.Stat("/target/mnt/m/example")
	seen := err == nil
	if want := strings.HasSuffix(p, "shared"); seen != want {
		t.Errorf("%s: a mount on / seen through its copy: %v, want %v (/ is %q)", p, seen, want, root.Optional)
	}
	if strings.HasSuffix(p, "shared") && !containsField(root.Optional, "shared:") {
		t.Errorf("%s: / is %q", p, root.Optional)
	}
}

// TestNoPivot moves the root with MS_MOVE and chroot instead of pivot_root
// and leaves no host mount reachable.
func TestNoPivot(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs, NoPivot: true}
		// A descriptor of the old root shows whether host mounts (/proc,
		// /sys) were detached: only their empty mount points remain.
		oldRoot, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		must(t, err)
		defer unix.Close(oldRoot)
		var st unix.Stat_t
		must(t, unix.Fstatat(oldRoot, "proc/self", &st, 0))
		setupAll(t, c)
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		if b, err := os.ReadFile("/etc/hostname"); err != nil || string(b) != "busybox\n" {
			t.Errorf("/etc/hostname of the rootfs: %q %v", b, err)
		}
		if wd, err := os.Getwd(); err != nil || wd != "/" {
			t.Errorf("cwd %q %v", wd, err)
		}
		for _, p := range []string{"proc/self", "sys/kernel", "sys/fs/cgroup/memory"} {
			if err := unix.Fstatat(oldRoot, p, &st, 0); !errors.Is(err, unix.ENOENT) {
				t.Errorf("host mount at /%s still attached after no-pivot: %v", p, err)
			}
		}
		if _, err := os.Stat(a.Rootfs); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host path %s visible after chroot: %v", a.Rootfs, err)
		}
		if m := topMount(t, "/proc"); m.FSType != "proc" {
			t.Errorf("/proc: %+v", m)
		}
		return
	}
	s := baseSpec()
	s.Root.Readonly = true
	runChild(t, args{Rootfs: newRootfs(t), Spec: s}, 0)
}

// TestBindConsole binds a pty slave onto /dev/console and refuses
// anything that is not one.
func TestBindConsole(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs, Console: true}
		if err := Prepare(c); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if fi, err := os.Lstat(filepath.Join(a.Rootfs, "dev/console")); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("Prepare with Console did not create /dev/console: %v", err)
		}
		if err := Pivot(c); err != nil {
			t.Fatalf("Pivot: %v", err)
		}
		if err := BindConsole("/dev/null"); !strings.Contains(errString(err), "not a pty slave") {
			t.Errorf("BindConsole(/dev/null) = %v", err)
		}
		ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatalf("open /dev/ptmx: %v", err)
		}
		defer ptmx.Close()
		var n uint32
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, ptmx.Fd(), unix.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
			t.Fatalf("TIOCGPTN: %v", e)
		}
		var unlock int32
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, ptmx.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
			t.Fatalf("TIOCSPTLCK: %v", e)
		}
		slave := "/dev/pts/" + strconv.Itoa(int(n))
		if err := BindConsole(slave); err != nil {
			t.Fatalf("BindConsole(%s): %v", slave, err)
		}
		var a1, a2 unix.Stat_t
		must(t, unix.Stat(slave, &a1))
		must(t, unix.Stat("/dev/console", &a2))
		if a1.Rdev != a2.Rdev || a2.Mode&unix.S_IFMT != unix.S_IFCHR {
			t.Errorf("/dev/console is %d:%d, slave %d:%d", unix.Major(a2.Rdev), unix.Minor(a2.Rdev), unix.Major(a1.Rdev), unix.Minor(a1.Rdev))
		}
		// A /dev/console swapped for a symlink is refused.
		must(t, unix.Unmount("/dev/console", unix.MNT_DETACH))
		must(t, os.Remove("/dev/console"))
		must(t, os.Symlink("/proc/sys/kernel/core_pattern", "/dev/console"))
		if err := BindConsole(slave); !strings.Contains(errString(err), "symlink") {
			t.Errorf("BindConsole onto a symlinked /dev/console = %v", err)
		}
		if isMountPoint(t, "/proc/sys/kernel/core_pattern") {
			t.Error("the pty was mounted over the symlink's target")
		}
		return
	}
	runChild(t, args{Rootfs: newRootfs(t), Spec: baseSpec()}, 0)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestRootlessSpec sets up the rootless default spec (binds for /sys and
// /dev/mqueue, no cgroup mount) in a user namespace, where flags of the
// host's mounts are locked and devices cannot be created.
func TestRootlessSpec(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs}
		setupAll(t, c)
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		if m := topMount(t, "/sys"); !m.hasOpt("ro") || !m.hasOpt("nosuid") || m.FSType != "sysfs" {
			t.Errorf("/sys: %+v", m)
		}
		if err := writable("/"); !errors.Is(err, unix.EROFS) {
			t.Errorf("/ with root.readonly: %v", err)
		}
		if err := os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0); !errors.Is(err, unix.EROFS) {
			t.Errorf("write /proc/sys/kernel/hostname: %v", err)
		}
		var st unix.Stat_t
		if err := unix.Stat("/dev/null", &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("/dev/null: %v", err)
		}
		return
	}
	s := bundle.Default(true)
	s.Process.Terminal = false
	if _, err := os.Stat("/dev/mqueue"); err != nil { // not mounted on this host
		var ms []specs.Mount
		for _, m := range s.Mounts {
			if m.Destination != "/dev/mqueue" {
				ms = append(ms, m)
			}
		}
		s.Mounts = ms
	}
	runChildUserNS(t, args{Rootfs: newRootfs(t), Spec: s})
}

// TestNoMountNamespace: a spec without a mount namespace shares the
// caller's; the mounts are made there under the rootfs, which the caller
// then chroots into, and the propagation of the caller's "/" is kept.
func TestNoMountNamespace(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		// Stand-in for a caller whose "/" is shared.
		must(t, unix.Mount("", "/", "", unix.MS_SHARED, ""))
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs}
		if err := Prepare(c); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if m := topMount(t, "/"); !containsField(m.Optional, "shared:") {
			t.Errorf("Prepare changed the propagation of the caller's /: %+v", m)
		}
		if m := topMount(t, filepath.Join(a.Rootfs, "proc")); m.FSType != "proc" {
			t.Errorf("proc not mounted under the rootfs: %+v", m)
		}
		must(t, unix.Chroot(a.Rootfs))
		must(t, unix.Chdir("/"))
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
		if err := writable("/"); !errors.Is(err, unix.EROFS) {
			t.Errorf("/ with root.readonly: %v", err)
		}
		if err := os.WriteFile("/proc/sys/kernel/hostname", []byte("x"), 0); !errors.Is(err, unix.EROFS) {
			t.Errorf("write /proc/sys/kernel/hostname: %v", err)
		}
		return
	}
	s := baseSpec()
	s.Root.Readonly = true
	s.Linux.ReadonlyPaths = []string{"/proc/sys"}
	var ns []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.MountNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
	runChild(t, args{Rootfs: newRootfs(t), Spec: s}, 0)
}
