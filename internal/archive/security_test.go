package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChmodOfNodeNeverFollowsASymlink: a fifo or device entry's mode is set
// after the node is made; a process sharing the directory (a running
// container, for docker cp) that swaps the node for a symlink to a host
// file in between must not get that file's mode changed.
func TestChmodOfNodeNeverFollowsASymlink(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "ctr")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(base, "host-secret")
	if err := os.WriteFile(host, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What the container left where the fifo was just made.
	if err := os.Symlink(host, filepath.Join(dir, "node")); err != nil {
		t.Fatal(err)
	}
	rt, err := openRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	x := &extractor{root: rt, opts: applyOptions{}, parentFd: -1}
	hdr := &tar.Header{Name: "node", Typeflag: tar.TypeFifo, Mode: 0o4777}
	err = x.setMetaAt(rt.fd(), "node", hdr, true)
	if err == nil {
		t.Errorf("chmod of a fifo entry replaced by a symlink succeeded")
	}
	fi, serr := os.Stat(host)
	if serr != nil {
		t.Fatal(serr)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("the symlink's target (a host file) became %v (error %v), want -rw-------", fi.Mode(), err)
	}
	// A real node still gets its mode.
	if err := unix.Mknod(filepath.Join(dir, "fifo"), unix.S_IFIFO|0o600, 0); err != nil {
		t.Fatal(err)
	}
	if err := x.setMetaAt(rt.fd(), "fifo", &tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o640}, true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "fifo")); err != nil || fi.Mode().Perm() != 0o640 || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo after chmod: %v %v, want a named pipe 0640", fi.Mode(), err)
	}
}

// TestDiffReadsOnlyTheRegularFileItStatted: Diff (export of a running
// container) stats a file, then opens it; a process that replaces it in
// between by a device node (which the engine, outside the container's
// device cgroup, could open: a host disk) or a FIFO must get an error, not
// the device's content in the archive nor a hang.
func TestDiffReadsOnlyTheRegularFileItStatted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod of a device node needs root")
	}
	dir := t.TempDir()
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	p := filepath.Join(dir, "f")
	for _, swap := range []struct {
		kind string
		mode uint32
		dev  int
	}{{"device", unix.S_IFCHR | 0o644, int(unix.Mkdev(1, 5))}, {"fifo", unix.S_IFIFO | 0o644, 0}} {
		if err := os.WriteFile(p, []byte("real\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, "f", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		// The container's move: /dev/zero stands for a host disk.
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, swap.mode, swap.dev); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		d := &differ{ctx: context.Background(), tw: tar.NewWriter(&buf), links: map[fileID]string{}}
		hdr := &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: st.Size, Mode: 0o644}
		if err := d.regular(dirfd, "f", hdr, &st); err == nil || buf.Len() > 0 {
			t.Errorf("a regular file replaced by a %s was archived (error %v): %d bytes written", swap.kind, err, buf.Len())
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// deepTree nests directories (of 200-byte names) under dir until the
// relative path of the deepest is longer than PATH_MAX.
func deepTree(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 200)
	for i := 0; i <= unix.PathMax/len(name)+1; i++ {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// TestDiffRefusesTreesDeeperThanAPath: a container can nest directories
// without bound; Diff (export, commit) holds each level's name, so its
// memory grows with the square of the depth (a few hundred thousand levels
// exhaust a host's memory). It refuses what no path can name.
func TestDiffRefusesTreesDeeperThanAPath(t *testing.T) {
	dir := t.TempDir()
	deepTree(t, dir)
	var buf bytes.Buffer
	err := Diff(context.Background(), &buf, dir, nil)
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Diff of a tree deeper than PATH_MAX: %v, want a refusal", err)
	}
}
