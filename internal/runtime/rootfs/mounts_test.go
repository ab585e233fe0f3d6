package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestMounts performs spec mounts of each option family and checks the
// result from inside the container.
func TestMounts(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		// A submount inside the host source (in this namespace only) tells
		// rbind from bind.
		if err := unix.Mount("tmpfs", filepath.Join(a.Extra["hostdir"], "sub"), "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("submount: %v", err)
		}
		setupAll(t, &Config{Spec: a.Spec, Rootfs: a.Rootfs})
		checkMounts(t)
		return
	}
	rootfs := newRootfs(t)
	host := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(host, "dir", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(host, "dir", "hello"), []byte("hello\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(host, "file"), []byte("a file\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(rootfs, "etc", "copyme"), 0o750))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc", "copyme", "f"), []byte("up\n"), 0o640))
	must(t, os.Symlink("../passwd", filepath.Join(rootfs, "etc", "copyme", "link")))
	must(t, os.MkdirAll(filepath.Join(rootfs, "etc", "copyro", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc", "copyro", "sub", "g"), []byte("ro\n"), 0o600))

	s := baseSpec()
	dir, file := filepath.Join(host, "dir"), filepath.Join(host, "file")
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/mnt/tmpfs", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "size=1m", "mode=0710"}},
		specs.Mount{Destination: "/mnt/ro", Type: "tmpfs", Source: "tmpfs", Options: []string{"ro", "noatime"}},
		specs.Mount{Destination: "/mnt/bind", Type: "bind", Source: dir, Options: []string{"bind", "ro", "nosuid"}},
		specs.Mount{Destination: "/mnt/rbind", Type: "none", Source: dir, Options: []string{"rbind"}},
		specs.Mount{Destination: "/mnt/rbind-rro", Type: "bind", Source: dir, Options: []string{"rbind", "rro"}},
		specs.Mount{Destination: "/etc/hostfile", Type: "bind", Source: file, Options: []string{"bind"}},
		specs.Mount{Destination: "/mnt/shared", Type: "tmpfs", Source: "tmpfs", Options: []string{"rshared"}},
		specs.Mount{Destination: "/mnt/unbindable", Type: "bind", Source: dir, Options: []string{"bind", "unbindable"}},
		specs.Mount{Destination: "/mnt/strict", Type: "tmpfs", Source: "tmpfs", Options: []string{"strictatime", "nodiratime"}},
		// Order: the second mount goes over the first, the third into it.
		specs.Mount{Destination: "/mnt/over", Type: "tmpfs", Source: "first", Options: []string{"size=1m"}},
		specs.Mount{Destination: "/mnt/over", Type: "tmpfs", Source: "second", Options: []string{"size=2m"}},
		specs.Mount{Destination: "/mnt/over/inner", Type: "tmpfs", Source: "third"},
		specs.Mount{Destination: "/etc/copyme", Type: "tmpfs", Source: "tmpfs", Options: []string{"tmpcopyup"}},
		specs.Mount{Destination: "/etc/copyro", Type: "tmpfs", Source: "tmpfs", Options: []string{"tmpcopyup", "ro"}},
		specs.Mount{Destination: "/mnt/remount", Type: "tmpfs", Source: "tmpfs"},
		specs.Mount{Destination: "/mnt/remount", Type: "tmpfs", Source: "tmpfs", Options: []string{"remount", "ro"}},
	)
	runChild(t, args{Rootfs: rootfs, Spec: s, Extra: map[string]string{"hostdir": dir}}, 0)
	// The host side is untouched: no mount leaked, the source is as it was.
	if isMountPoint(t, filepath.Join(dir, "sub")) || isMountPoint(t, filepath.Join(rootfs, "mnt", "bind")) {
		t.Error("a mount of the child is visible on the host")
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "etc", "hostfile")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("file bind target was not created as a regular file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "mnt", "bind")); err != nil || !fi.IsDir() {
		t.Errorf("directory bind target was not created as a directory: %v", err)
	}
}

func checkMounts(t *testing.T) {
	m := topMount(t, "/mnt/tmpfs")
	if m.FSType != "tmpfs" || !m.hasOpt("nosuid") || !m.hasOpt("nodev") || !m.hasOpt("noexec") || !m.hasSuperOpt("size=1024k") || !m.hasSuperOpt("mode=710") {
		t.Errorf("/mnt/tmpfs: %+v", m)
	}
	if fi, err := os.Stat("/mnt/tmpfs"); err != nil || fi.Mode().Perm() != 0o710 {
		t.Errorf("/mnt/tmpfs mode: %v %v", fi.Mode(), err)
	}
	m = topMount(t, "/mnt/ro")
	if !m.hasOpt("ro") || !m.hasOpt("noatime") {
		t.Errorf("/mnt/ro: %+v", m)
	}
	if err := writable("/mnt/ro"); !errors.Is(err, unix.EROFS) {
		t.Errorf("/mnt/ro writable: %v", err)
	}
	m = topMount(t, "/mnt/bind")
	if !m.hasOpt("ro") || !m.hasOpt("nosuid") {
		t.Errorf("/mnt/bind: %+v", m)
	}
	if b, err := os.ReadFile("/mnt/bind/hello"); err != nil || string(b) != "hello\n" {
		t.Errorf("/mnt/bind/hello: %q %v", b, err)
	}
	if err := writable("/mnt/bind"); !errors.Is(err, unix.EROFS) {
		t.Errorf("/mnt/bind writable: %v", err)
	}
	if isMountPoint(t, "/mnt/bind/sub") {
		t.Error("bind (not rbind) took the submount along")
	}
	if !isMountPoint(t, "/mnt/rbind/sub") {
		t.Error("rbind lost the submount")
	}
	if err := writable("/mnt/rbind/sub"); err != nil {
		t.Errorf("/mnt/rbind/sub not writable: %v", err)
	}
	if m := topMount(t, "/mnt/rbind-rro/sub"); !m.hasOpt("ro") {
		t.Errorf("rro did not reach the submount: %+v", m)
	}
	if m := topMount(t, "/mnt/rbind-rro"); !m.hasOpt("ro") {
		t.Errorf("rro: %+v", m)
	}
	if b, err := os.ReadFile("/etc/hostfile"); err != nil || string(b) != "a file\n" {
		t.Errorf("/etc/hostfile: %q %v", b, err)
	}
	if m := topMount(t, "/mnt/shared"); !containsField(m.Optional, "shared:") {
		t.Errorf("/mnt/shared not shared: %+v", m)
	}
	if m := topMount(t, "/mnt/unbindable"); m.Optional != "unbindable" {
		t.Errorf("/mnt/unbindable: %+v", m)
	}
	if m := topMount(t, "/mnt/strict"); m.hasOpt("relatime") || !m.hasOpt("nodiratime") {
		t.Errorf("/mnt/strict: %+v", m)
	}
	over := topMount(t, "/mnt/over")
	if over.Source != "second" || !over.hasSuperOpt("size=2048k") {
		t.Errorf("/mnt/over is not the second mount: %+v", over)
	}
	if inner := topMount(t, "/mnt/over/inner"); inner.Source != "third" || inner.Parent != over.ID {
		t.Errorf("/mnt/over/inner is not inside the second mount: %+v (second %s)", inner, over.ID)
	}
	if m := topMount(t, "/etc/copyme"); m.FSType != "tmpfs" {
		t.Errorf("/etc/copyme: %+v", m)
	}
	if b, err := os.ReadFile("/etc/copyme/f"); err != nil || string(b) != "up\n" {
		t.Errorf("tmpcopyup file: %q %v", b, err)
	}
	if fi, err := os.Stat("/etc/copyme"); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("tmpcopyup root mode: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink("/etc/copyme/link"); err != nil || l != "../passwd" {
		t.Errorf("tmpcopyup symlink: %q %v", l, err)
	}
	if b, err := os.ReadFile("/etc/copyro/sub/g"); err != nil || string(b) != "ro\n" {
		t.Errorf("read-only tmpcopyup file: %q %v", b, err)
	}
	if err := writable("/etc/copyro"); !errors.Is(err, unix.EROFS) {
		t.Errorf("read-only tmpcopyup is writable: %v", err)
	}
	if m := topMount(t, "/mnt/remount"); !m.hasOpt("ro") {
		t.Errorf("remount ro: %+v", m)
	}
	// The default mounts are there with their types.
	for point, fstype := range map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue", "/sys": "sysfs"} {
		if m := topMount(t, point); m.FSType != fstype {
			t.Errorf("%s: type %s, want %s", point, m.FSType, fstype)
		}
	}
	if m := topMount(t, "/sys"); !m.hasOpt("ro") {
		t.Errorf("/sys not read-only: %+v", m)
	}
	if m := topMount(t, "/"); m.hasOpt("ro") {
		t.Errorf("/ is read-only without root.readonly: %+v", m)
	}
}

func containsField(s, prefix string) bool {
	for _, f := range splitFields(s) {
		if len(f) >= len(prefix) && f[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

func splitFields(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == ' ' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
