package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func u32(v uint32) *uint32 { return &v }

func fileMode(m os.FileMode) *os.FileMode { return &m }

// TestDevices creates the default and configured devices and the /dev
// symlinks, and checks them from inside the container.
func TestDevices(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		setupAll(t, &Config{Spec: a.Spec, Rootfs: a.Rootfs})
		checkDevices(t, a.Spec)
		return
	}
	s := baseSpec()
	s.Linux.Devices = []specs.LinuxDevice{
		{Path: "/dev/myfull", Type: "c", Major: 1, Minor: 7, FileMode: fileMode(0o600), UID: u32(1000), GID: u32(1001)},
		{Path: "/dev/myloop", Type: "b", Major: 7, Minor: 200, FileMode: fileMode(0o640), GID: u32(6)},
		{Path: "/dev/unbuffered", Type: "u", Major: 1, Minor: 5},
		{Path: "/dev/fifo", Type: "p", FileMode: fileMode(0o620)},
		{Path: "/dev/sub/dir/zero", Type: "c", Major: 1, Minor: 5, FileMode: fileMode(0o444)},
		// The same entry twice is not a conflict.
		{Path: "/dev/myfull", Type: "c", Major: 1, Minor: 7, FileMode: fileMode(0o600), UID: u32(1000), GID: u32(1001)},
	}
	runChild(t, args{Rootfs: newRootfs(t), Spec: s}, 0)
}

func checkDevices(t *testing.T, s *specs.Spec) {
	for _, d := range defaultDevices {
		var st unix.Stat_t
		if err := unix.Lstat(d.path, &st); err != nil {
			t.Errorf("default device %s: %v", d.path, err)
			continue
		}
		if !d.matches(st) || st.Mode&0o7777 != 0o666 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("default device %s: mode %#o rdev %d:%d owner %d:%d", d.path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, st.Gid)
		}
	}
	for _, d := range s.Linux.Devices {
		var st unix.Stat_t
		if err := unix.Lstat(d.Path, &st); err != nil {
			t.Errorf("device %s: %v", d.Path, err)
			continue
		}
		typ := map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}[d.Type]
		if st.Mode&unix.S_IFMT != typ {
			t.Errorf("device %s: type %#o, want %#o", d.Path, st.Mode&unix.S_IFMT, typ)
		}
		if typ != unix.S_IFIFO && (int64(unix.Major(st.Rdev)) != d.Major || int64(unix.Minor(st.Rdev)) != d.Minor) {
			t.Errorf("device %s: %d:%d, want %d:%d", d.Path, unix.Major(st.Rdev), unix.Minor(st.Rdev), d.Major, d.Minor)
		}
		perm := uint32(0o666)
		if d.FileMode != nil {
			perm = uint32(d.FileMode.Perm())
		}
		if st.Mode&0o7777 != perm {
			t.Errorf("device %s: mode %#o, want %#o", d.Path, st.Mode&0o7777, perm)
		}
		if (d.UID != nil && st.Uid != *d.UID) || (d.GID != nil && st.Gid != *d.GID) {
			t.Errorf("device %s: owner %d:%d", d.Path, st.Uid, st.Gid)
		}
	}
	links := map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
		"/dev/stderr": "/proc/self/fd/2", "/dev/ptmx": "pts/ptmx"}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links["/dev/core"] = "/proc/kcore"
	}
	for l, want := range links {
		if got, err := os.Readlink(l); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want %q", l, got, err, want)
		}
	}
	// The devices work: /dev/null swallows, /dev/zero gives zeros.
	if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
		t.Errorf("write /dev/null: %v", err)
	}
	if _, err := os.Stat("/dev/console"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/dev/console exists without a terminal: %v", err)
	}
}

// TestDevicesHostDev: a bind of the host's /dev replaces device creation.
func TestDevicesHostDev(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		setupAll(t, &Config{Spec: a.Spec, Rootfs: a.Rootfs})
		if m := topMount(t, "/dev"); m.FSType != a.Extra["devfs"] {
			t.Errorf("/dev is not the host's %s: %+v", a.Extra["devfs"], m)
		}
		var st unix.Stat_t
		if err := unix.Stat("/dev/null", &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("/dev/null: %v", err)
		}
		return
	}
	s := baseSpec()
	var ms []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/dev") {
			ms = append(ms, m)
		}
	}
	s.Mounts = append(ms, specs.Mount{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind"}})
	rootfs := newRootfs(t)
	runChild(t, args{Rootfs: rootfs, Spec: s, Extra: map[string]string{"devfs": topMount(t, "/dev").FSType}}, 0)
	if entries, _ := os.ReadDir(filepath.Join(rootfs, "dev")); len(entries) != 0 {
		t.Errorf("devices were created under the host /dev bind: %v", entries)
	}
}

// TestDevicesConflict: an existing file that is not the requested device,
// and two configured entries that disagree, are errors.
func TestDevicesConflict(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		err := Prepare(&Config{Spec: a.Spec, Rootfs: a.Rootfs})
		if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "/dev/mine") {
			t.Fatalf("Prepare with /dev/mine a regular file: %v", err)
		}
		return
	}
	s := baseSpec()
	var ms []specs.Mount
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.Destination, "/dev") {
			ms = append(ms, m)
		}
	}
	s.Mounts = ms // no tmpfs on /dev: the image's /dev is used
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/mine", Type: "c", Major: 1, Minor: 3}}
	rootfs := newRootfs(t)
	must(t, os.WriteFile(filepath.Join(rootfs, "dev", "mine"), []byte("not a device"), 0o644))
	runChild(t, args{Rootfs: rootfs, Spec: s}, 0)
}

func TestDeviceListValidation(t *testing.T) {
	for name, devs := range map[string][]specs.LinuxDevice{
		"conflict":      {{Path: "/dev/a", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/a", Type: "c", Major: 1, Minor: 5}},
		"conflict-mode": {{Path: "/dev/a", Type: "c", Major: 1, Minor: 3}, {Path: "/dev/a", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(0o600)}},
		"type":          {{Path: "/dev/a", Type: "x", Major: 1, Minor: 3}},
		"relative":      {{Path: "dev/a", Type: "c", Major: 1, Minor: 3}},
		"negative":      {{Path: "/dev/a", Type: "c", Major: -1, Minor: 3}},
		"huge-minor":    {{Path: "/dev/a", Type: "b", Major: 1, Minor: 1 << 21}},
		"mode-bits":     {{Path: "/dev/a", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(os.ModeDir | 0o600)}},
		"dev-itself":    {{Path: "/dev", Type: "c", Major: 1, Minor: 3}},
	} {
		s := baseSpec()
		s.Linux.Devices = devs
		if _, err := deviceList(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: deviceList = %v, want an invalid-argument error", name, err)
		}
	}
	s := baseSpec()
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(0o600)}, {Path: "/dev/../dev/x", Type: "p"}}
	list, err := deviceList(s)
	if err != nil {
		t.Fatal(err)
	}
	nulls := 0
	for _, d := range list {
		if d.path == "/dev/null" {
			nulls++
			if d.perm != 0o600 {
				t.Errorf("configured /dev/null did not replace the default: %+v", d)
			}
		}
		if strings.Contains(d.path, "..") {
			t.Errorf("device path not cleaned: %s", d.path)
		}
	}
	if nulls != 1 || len(list) != len(defaultDevices)+1 {
		t.Errorf("merged list: %+v", list)
	}
}

// TestPrepareRejectsBadRoot: a relative rootfs is refused before anything
// is touched.
func TestPrepareRejectsBadRoot(t *testing.T) {
	if err := Prepare(&Config{Spec: baseSpec(), Rootfs: "relative"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Prepare with a relative rootfs = %v", err)
	}
	if err := Prepare(&Config{Rootfs: "/x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Prepare without a spec = %v", err)
	}
}

// TestDevicesUserNS: in a user namespace mknod is not allowed, so the
// host's device nodes are bound over empty files instead.
func TestDevicesUserNS(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		if !runningInUserNS() {
			t.Fatal("the child is not in a user namespace")
		}
		// The host node must be the requested device.
		root, err := openRoot(a.Rootfs)
		must(t, err)
		err = bindDevice(root, device{path: "/dev/kmsg", typ: unix.S_IFCHR, major: 1, minor: 3})
		root.Close()
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not the requested device") {
			t.Errorf("binding a host node that is another device: %v", err)
		}
		setupAll(t, &Config{Spec: a.Spec, Rootfs: a.Rootfs})
		for _, d := range append(defaultDevices, device{path: "/dev/kmsg", typ: unix.S_IFCHR, major: 1, minor: 11}) {
			var st unix.Stat_t
			if err := unix.Stat(d.path, &st); err != nil || !d.matches(st) {
				t.Errorf("%s: %v %d:%d", d.path, err, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
			if !isMountPoint(t, d.path) {
				t.Errorf("%s is not a bind mount", d.path)
			}
		}
		return
	}
	rootfs := newRootfs(t)
	s := baseSpec()
	var ms []specs.Mount
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/proc", "/dev", "/dev/pts", "/dev/shm":
			ms = append(ms, m)
		}
	}
	s.Mounts = ms
	// A configured device is bound from the host node of the same path.
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		t.Skipf("host has no /dev/kmsg: %v", err)
	}
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}}
	runChildUserNS(t, args{Rootfs: rootfs, Spec: s})
}
