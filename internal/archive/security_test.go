package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
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
