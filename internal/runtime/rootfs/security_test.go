package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestSymlinkEscape is the CVE-2021-30465 class: symlinks in the image
// (absolute, relative with "..", and ".." in the destination itself) must
// not redirect a mount or a created target outside the rootfs. The host
// directory H the links name exists both on the host and inside the rootfs,
// so the mounts must land in rootfs/H; H on the host must stay untouched.
// A link to a path that does not exist inside the rootfs makes the mount
// fail, and nothing is created on the host either.
func TestSymlinkEscape(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		host := a.Extra["host"]
		if err := Prepare(&Config{Spec: a.Spec, Rootfs: a.Rootfs}); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		for _, m := range mounts(t) {
			if m.Point == host || strings.HasPrefix(m.Point, host+"/") {
				t.Errorf("mount escaped the rootfs: %+v", m)
			}
		}
		for _, p := range []string{"inner-abs", "inner-rel", "inner-dotdot", "file"} {
			if !isMountPoint(t, filepath.Join(a.Rootfs, host, p)) {
				t.Errorf("%s was not mounted inside the rootfs at %s", p, filepath.Join(a.Rootfs, host, p))
			}
		}
		// A symlink to a directory missing inside the rootfs (but present
		// on the host) cannot be created through: the mount fails.
		dangling := a.Extra["dangling"]
		s := baseSpec()
		s.Mounts = []specs.Mount{specMount("/dangling/inner", "tmpfs", "tmpfs")}
		if err := Prepare(&Config{Spec: s, Rootfs: dangling}); err == nil {
			t.Errorf("Prepare through a dangling symlink succeeded")
		}
		for _, m := range mounts(t) {
			if m.Point == host || strings.HasPrefix(m.Point, host+"/") {
				t.Errorf("mount escaped the rootfs: %+v", m)
			}
		}
		return
	}
	rootfs := newRootfs(t)
	host := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(rootfs, host), 0o755))
	hostFile := filepath.Join(t.TempDir(), "source")
	must(t, os.WriteFile(hostFile, []byte("source\n"), 0o644))
	must(t, os.Symlink(host, filepath.Join(rootfs, "abs")))
	must(t, os.Symlink(strings.Repeat("../", 12)+strings.TrimPrefix(host, "/"), filepath.Join(rootfs, "etc", "rel")))
	must(t, os.Symlink(filepath.Join(host, "file"), filepath.Join(rootfs, "etc", "evilfile")))
	s := baseSpec()
	s.Mounts = append(s.Mounts,
		specMount("/abs/inner-abs", "tmpfs", "tmpfs"),
		specMount("/etc/rel/inner-rel", "tmpfs", "tmpfs"),
		specMount("/../../../../.."+host+"/inner-dotdot", "tmpfs", "tmpfs"),
		specMount("/etc/evilfile", "bind", hostFile, "bind"),
	)
	dangling := newRootfs(t)
	must(t, os.Symlink(host, filepath.Join(dangling, "dangling")))
	runChild(t, args{Rootfs: rootfs, Spec: s, Extra: map[string]string{"host": host, "dangling": dangling}}, 0)
	if entries, err := os.ReadDir(host); err != nil || len(entries) != 0 {
		t.Errorf("the host directory behind the symlinks was changed: %v %v", entries, err)
	}
	// What was created went inside the rootfs.
	for _, p := range []string{"inner-abs", "inner-rel", "inner-dotdot", "file"} {
		if _, err := os.Lstat(filepath.Join(rootfs, host, p)); err != nil {
			t.Errorf("%s not created inside the rootfs: %v", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(rootfs, host, "file")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file bind target through a dangling last-component link: %v", err)
	}
}

// TestDeviceSymlinkEscape: with the image's own /dev a symlink to a host
// path, devices and /dev symlinks are still created inside the rootfs.
func TestDeviceSymlinkEscape(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		if err := Prepare(&Config{Spec: a.Spec, Rootfs: a.Rootfs}); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		return
	}
	rootfs := newRootfs(t)
	host := t.TempDir()
	must(t, os.Remove(filepath.Join(rootfs, "dev")))
	must(t, os.Symlink(host, filepath.Join(rootfs, "dev")))
	s := baseSpec()
	var ms []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/dev") {
			ms = append(ms, m)
		}
	}
	s.Mounts = ms
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/extra", Type: "c", Major: 1, Minor: 3}}
	runChild(t, args{Rootfs: rootfs, Spec: s}, 0)
	if entries, err := os.ReadDir(host); err != nil || len(entries) != 0 {
		t.Errorf("devices were created outside the rootfs: %v %v", entries, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(rootfs, host, "null"), &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("/dev/null not created inside the rootfs: %v", err)
	}
	if err := unix.Lstat(filepath.Join(rootfs, host, "extra"), &st); err != nil {
		t.Errorf("/dev/extra not created inside the rootfs: %v", err)
	}
}

// TestProcTarget: proc and sysfs are mounted only on real directories
// (CVE-2019-19921 class); a symlink or a file there is an error.
func TestProcTarget(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		for _, r := range []string{a.Extra["symlink"], a.Extra["file"], a.Extra["syssymlink"]} {
			err := Prepare(&Config{Spec: a.Spec, Rootfs: r})
			if err == nil || !(strings.Contains(err.Error(), "symlink") || strings.Contains(err.Error(), "not a directory")) {
				t.Errorf("Prepare with a bad proc or sys target in %s: %v", r, err)
			}
		}
		// Inside the container's procfs only lxcfs-style files may be
		// covered; /proc/self/attr (CVE-2019-16884) may not.
		s := baseSpec()
		s.Mounts = append(s.Mounts[:1], specMount("/proc/self/attr/current", "bind", "/etc/hostname", "bind"))
		err := Prepare(&Config{Spec: s, Rootfs: a.Extra["procattr"]})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "inside procfs") {
			t.Errorf("bind onto /proc/self/attr/current: %v", err)
		}
		s.Mounts = append(s.Mounts[:1], specMount("/proc/uptime", "bind", "/proc/uptime", "bind"),
			specMount("/proc/sys/kernel/ns_last_pid", "bind", "/etc/hostname", "bind"))
		if err := Prepare(&Config{Spec: s, Rootfs: a.Extra["procok"]}); err != nil {
			t.Errorf("bind onto /proc/uptime: %v", err)
		}
		for _, m := range mounts(t) {
			if (m.FSType == "proc" || m.FSType == "sysfs") && (strings.Contains(m.Point, "/tmp/fakeproc") ||
				m.Point == filepath.Join(a.Extra["file"], "proc") || m.Point == filepath.Join(a.Extra["syssymlink"], "tmp")) {
				t.Errorf("proc or sysfs mounted somewhere unexpected: %+v", m)
			}
		}
		return
	}
	symlinked := newRootfs(t)
	must(t, os.Remove(filepath.Join(symlinked, "proc")))
	must(t, os.MkdirAll(filepath.Join(symlinked, "tmp", "fakeproc"), 0o755))
	must(t, os.Symlink("/tmp/fakeproc", filepath.Join(symlinked, "proc")))
	file := newRootfs(t)
	must(t, os.Remove(filepath.Join(file, "proc")))
	must(t, os.WriteFile(filepath.Join(file, "proc"), nil, 0o644))
	sys := newRootfs(t)
	must(t, os.Remove(filepath.Join(sys, "sys")))
	must(t, os.Symlink("/tmp", filepath.Join(sys, "sys")))
	runChild(t, args{Spec: baseSpec(), Extra: map[string]string{"symlink": symlinked, "file": file, "syssymlink": sys,
		"procattr": newRootfs(t), "procok": newRootfs(t)}}, 0)
}

// TestMaskVerifiesDevNull is the CVE-2025-31133 class: masking binds
// /dev/null only after checking it is the real null device, and never
// follows a symlink in a masked or read-only path.
func TestMaskVerifiesDevNull(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs}
		setupAll(t, c)
		// The container swaps /dev/null for a symlink to a procfs file.
		must(t, os.Remove("/dev/null"))
		must(t, os.Symlink("/proc/sys/kernel/core_pattern", "/dev/null"))
		err := Finalize(c)
		if err == nil || !strings.Contains(err.Error(), "not the null device") {
			t.Errorf("Finalize with /dev/null a symlink: %v", err)
		}
		// And for a regular file.
		must(t, os.Remove("/dev/null"))
		must(t, os.WriteFile("/dev/null", []byte("not null"), 0o644))
		err = Finalize(c)
		if err == nil || !strings.Contains(err.Error(), "not the null device") {
			t.Errorf("Finalize with /dev/null a regular file: %v", err)
		}
		if isMountPoint(t, "/etc/hostname") {
			t.Error("a fake /dev/null was bound over a masked path")
		}
		// A masked or read-only path that is a symlink is refused, and
		// nothing is mounted at the symlink's target.
		must(t, os.Remove("/dev/null"))
		must(t, unix.Mknod("/dev/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.Symlink("/proc/sys/kernel/core_pattern", "/etc/masklink"))
		for _, s := range []func(){
			func() { c.Spec.Linux.MaskedPaths = []string{"/etc/masklink"}; c.Spec.Linux.ReadonlyPaths = nil },
			func() { c.Spec.Linux.MaskedPaths = nil; c.Spec.Linux.ReadonlyPaths = []string{"/etc/masklink"} },
		} {
			s()
			if err := Finalize(c); err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Finalize with a symlink in masked %v / read-only %v: %v", c.Spec.Linux.MaskedPaths, c.Spec.Linux.ReadonlyPaths, err)
			}
			if isMountPoint(t, "/proc/sys/kernel/core_pattern") || isMountPoint(t, "/proc/sys/kernel") {
				t.Error("something was mounted over the symlink's target")
			}
		}
		// With the real device back, masking works.
		c.Spec.Linux.MaskedPaths, c.Spec.Linux.ReadonlyPaths = []string{"/etc/hostname"}, nil
		if err := Finalize(c); err != nil {
			t.Fatalf("Finalize with a real /dev/null: %v", err)
		}
		if b, err := os.ReadFile("/etc/hostname"); err != nil || len(b) != 0 {
			t.Errorf("masked /etc/hostname: %q %v", b, err)
		}
		return
	}
	s := baseSpec()
	s.Linux.MaskedPaths = []string{"/etc/hostname"}
	runChild(t, args{Rootfs: newRootfs(t), Spec: s}, 0)
}

// TestSymlinkSwapRace: while Prepare runs, another thread keeps swapping a
// directory on the mount targets' path for a symlink to a host directory
// (the CVE-2021-30465 attack). Prepare may fail, but no mount and no
// created file may ever land outside the rootfs.
func TestSymlinkSwapRace(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		host := a.Extra["host"]
		for i := range 20 {
			rootfs := filepath.Join(a.Extra["roots"], strconv.Itoa(i))
			swap := filepath.Join(rootfs, "swap")
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					os.Rename(swap, swap+"-dir")
					os.Symlink(host, swap)
					os.Remove(swap)
					os.Rename(swap+"-dir", swap)
				}
			}()
			err := Prepare(&Config{Spec: a.Spec, Rootfs: rootfs})
			close(stop)
			<-done
			t.Logf("round %d: Prepare: %v", i, err)
			for _, m := range mounts(t) {
				if m.Point == host || strings.HasPrefix(m.Point, host+"/") {
					t.Fatalf("round %d: mount escaped the rootfs: %+v", i, m)
				}
			}
		}
		return
	}
	testutil.RequiresRoot(t)
	host := t.TempDir()
	roots := t.TempDir()
	for i := range 20 {
		r := filepath.Join(roots, strconv.Itoa(i))
		must(t, os.MkdirAll(filepath.Join(r, "swap"), 0o755))
		// The link's target exists inside the rootfs too, so following it
		// (inside the rootfs) succeeds.
		must(t, os.MkdirAll(filepath.Join(r, host), 0o755))
	}
	s := baseSpec()
	s.Mounts = nil
	for i := range 8 {
		s.Mounts = append(s.Mounts, specMount("/swap/d"+strconv.Itoa(i), "tmpfs", "tmpfs"),
			specMount("/swap/f"+strconv.Itoa(i), "bind", "/etc/hostname", "bind"))
	}
	s.Linux.Devices = nil
	runChild(t, args{Spec: s, Extra: map[string]string{"host": host, "roots": roots}}, 0)
	if entries, err := os.ReadDir(host); err != nil || len(entries) != 0 {
		t.Errorf("the race created files outside the rootfs: %v %v", entries, err)
	}
}
