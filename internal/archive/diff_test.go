package archive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

// makeUpper builds what an overlay upper directory holds after a container
// changed things: new and modified files, a whiteout, an opaque directory,
// hardlinks, a symlink, a fifo, a device, xattrs and odd modes and owners.
func makeUpper(t *testing.T, d string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"etc", "opaque/sub", "usr/bin", "empty"} {
		must(os.MkdirAll(filepath.Join(d, p), 0o755))
	}
	must(os.WriteFile(filepath.Join(d, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "usr/bin/tool"), bytes.Repeat([]byte("tool"), 50000), 0o755))
	must(unix.Chmod(filepath.Join(d, "usr/bin/tool"), 0o4755))
	must(os.Link(filepath.Join(d, "usr/bin/tool"), filepath.Join(d, "usr/bin/tool-link")))
	must(os.Link(filepath.Join(d, "usr/bin/tool"), filepath.Join(d, "etc/z-link")))
	must(os.Symlink("../etc/hosts", filepath.Join(d, "usr/hosts")))
	must(unix.Mknod(filepath.Join(d, "etc/removed"), unix.S_IFCHR, 0))
	must(unix.Mknod(filepath.Join(d, "usr/tty"), unix.S_IFCHR|0o620, int(unix.Mkdev(5, 0))))
	must(unix.Mkfifo(filepath.Join(d, "usr/fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(d, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(d, "opaque/sub/new"), []byte("new"), 0o600))
	must(unix.Setxattr(filepath.Join(d, "etc/hosts"), "user.origin", []byte("test"), 0))
	must(unix.Setxattr(filepath.Join(d, "etc/hosts"), "trusted.overlay.origin", []byte("junk"), 0))
	must(os.Chown(filepath.Join(d, "etc/hosts"), 123, 456))
	must(unix.Lchown(filepath.Join(d, "usr/hosts"), 11, 12))
	must(unix.Chmod(filepath.Join(d, "empty"), 0o1777))
	// Fixed times, directories last.
	for _, p := range []string{"etc/hosts", "usr/bin/tool", "opaque/sub/new", "usr/tty", "usr/fifo", "etc/removed"} {
		tm := time.Unix(1700000000, 123456789)
		must(os.Chtimes(filepath.Join(d, p), tm, tm))
	}
	ts := []unix.Timespec{{Sec: 1690000000}, {Sec: 1690000000}}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(d, "usr/hosts"), ts, unix.AT_SYMLINK_NOFOLLOW))
	for _, p := range []string{"etc", "opaque/sub", "opaque", "usr/bin", "usr", "empty"} {
		tm := time.Unix(1650000000, 0)
		must(os.Chtimes(filepath.Join(d, p), tm, tm))
	}
}

func TestDiffRoundTrip(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	upper := t.TempDir()
	makeUpper(t, upper)
	var tar1, tar2 bytes.Buffer
	if err := Diff(ctx, &tar1, upper, nil); err != nil {
		t.Fatal(err)
	}
	if err := Diff(ctx, &tar2, upper, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tar1.Bytes(), tar2.Bytes()) {
		t.Fatal("Diff is not deterministic")
	}
	out := t.TempDir()
	if _, _, err := Apply(ctx, out, bytes.NewReader(tar1.Bytes())); err != nil {
		t.Fatal(err)
	}
	want, err := listTree(upper)
	if err != nil {
		t.Fatal(err)
	}
	got, err := listTree(out)
	if err != nil {
		t.Fatal(err)
	}
	// Overlay's own xattrs are not part of a layer, except the opaque marker
	// which Apply recreates.
	want = strings.ReplaceAll(want, ` xattr:trusted.overlay.origin="junk"`, "")
	// The layer root's attributes are not recorded.
	want, got = dropLine(want, ". "), dropLine(got, ". ")
	if got != want {
		t.Fatalf("Apply(Diff(x)) differs from x:\nwant:\n%s\ngot:\n%s", want, got)
	}
	if !strings.Contains(got, `opaque type=40000 mode=755 owner=0:0 mtime=1650000000 xattr:trusted.overlay.opaque="y"`) {
		t.Fatalf("opaque dir lost:\n%s", got)
	}
}

func dropLine(s, prefix string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// Whiteouts that hide nothing in the lowers are left out.
func TestDiffLowers(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	lower, upper := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(lower, "present"), []byte("x"), 0o644)
	for _, n := range []string{"present", "absent"} {
		if err := unix.Mknod(filepath.Join(upper, n), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Diff(ctx, &buf, upper, []string{lower}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	if strings.Join(names, ",") != ".wh.present" {
		t.Fatalf("entries %v, want only .wh.present", names)
	}
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := newTarReader(b)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}
