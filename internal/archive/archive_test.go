package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func TestDetectCompression(t *testing.T) {
	plain := makeTar(t, file("a", "x", 0o644))
	for _, tc := range []struct {
		name string
		data []byte
		want Compression
		err  bool
	}{
		{"plain", plain, Uncompressed, false},
		{"gzip", compress(t, plain, Gzip), Gzip, false},
		{"zstd", compress(t, plain, Zstd), Zstd, false},
		{"empty", nil, Uncompressed, false},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, Uncompressed, true},
		{"bzip2", []byte("BZh91AY&SY"), Uncompressed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(tc.data))
			got, err := DetectCompression(br)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("DetectCompression = %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error class: %v", err)
			}
			// Nothing consumed.
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, tc.data) {
				t.Fatal("DetectCompression consumed input")
			}
		})
	}
}

// fullLayer has one entry of every kind Apply handles.
func fullLayer(t *testing.T) []byte {
	suid := file("bin/suid", "#!/bin/sh\n", 0o4755)
	suid.hdr.Uid, suid.hdr.Gid = 1000, 1001
	caps := file("bin/ping", "ELF", 0o755)
	// security.capability v2: cap_net_raw permitted+effective.
	caps.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability":      string([]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		"SCHILY.xattr.user.note":                "hello",
		"SCHILY.xattr.trusted.overlay.redirect": "/etc",
	}
	sl := symlink("bin/sh", "busybox")
	sl.hdr.Uid, sl.hdr.Gid = 7, 8
	fifo := entry{hdr: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o620, ModTime: time.Unix(1300000000, 0)}}
	null := entry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: time.Unix(1300000000, 0)}}
	loop := entry{hdr: tar.Header{Name: "dev/loop0", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 7, Devminor: 0, Gid: 6, ModTime: time.Unix(1300000000, 0)}}
	tmp := dir("tmp/", 0o1777)
	return makeTar(t,
		dir("./", 0o755),
		dir("bin/", 0o755),
		file("bin/busybox", strings.Repeat("busybox", 1000), 0o755),
		sl, suid, caps,
		hardlink("bin/ls", "bin/busybox"),
		hardlink("bin/ls2", "/bin/busybox"),
		dir("etc/", 0o755),
		file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		file("deep/nested/missing/parents", "p", 0o600),
		tmp, fifo, null, loop,
		dir("dev/", 0o755),
	)
}

func TestApply(t *testing.T) {
	testutil.RequiresRoot(t)
	layer := fullLayer(t)
	want := digest.FromBytes(layer)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			d := t.TempDir()
			id, size, err := Apply(context.Background(), d, bytes.NewReader(compress(t, layer, c)))
			if err != nil {
				t.Fatal(err)
			}
			if id != want || size != int64(len(layer)) {
				t.Fatalf("diffID %s size %d, want %s %d", id, size, want, len(layer))
			}
			checkFullLayer(t, d)
		})
	}
}

func checkFullLayer(t *testing.T, d string) {
	t.Helper()
	st := func(p string) unix.Stat_t {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(d, p), &s); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		return s
	}
	if s := st("bin/suid"); s.Mode&0o7777 != 0o4755 || s.Uid != 1000 || s.Gid != 1001 || s.Mtim.Sec != 1600000000 {
		t.Errorf("bin/suid: mode %o owner %d:%d mtime %d", s.Mode&0o7777, s.Uid, s.Gid, s.Mtim.Sec)
	}
	if s := st("bin/sh"); s.Mode&unix.S_IFMT != unix.S_IFLNK || s.Uid != 7 || s.Gid != 8 || s.Mtim.Sec != 1400000000 {
		t.Errorf("bin/sh: %+v", s)
	}
	if l, _ := os.Readlink(filepath.Join(d, "bin/sh")); l != "busybox" {
		t.Errorf("bin/sh -> %q", l)
	}
	bb, ls, ls2 := st("bin/busybox"), st("bin/ls"), st("bin/ls2")
	if bb.Ino != ls.Ino || bb.Ino != ls2.Ino || bb.Nlink != 3 {
		t.Errorf("hardlinks not linked: %d %d %d nlink %d", bb.Ino, ls.Ino, ls2.Ino, bb.Nlink)
	}
	if v, err := getxattr(filepath.Join(d, "bin/ping"), "security.capability"); err != nil || len(v) != 20 {
		t.Errorf("security.capability: %v %v", v, err)
	}
	if v, err := getxattr(filepath.Join(d, "bin/ping"), "user.note"); err != nil || string(v) != "hello" {
		t.Errorf("user.note: %q %v", v, err)
	}
	if _, err := getxattr(filepath.Join(d, "bin/ping"), "trusted.overlay.redirect"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("trusted.overlay.redirect from the layer was applied: %v", err)
	}
	if s := st("run/fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO || s.Mode&0o777 != 0o620 {
		t.Errorf("run/fifo mode %o", s.Mode)
	}
	if s := st("dev/null"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != unix.Mkdev(1, 3) || s.Mode&0o777 != 0o666 {
		t.Errorf("dev/null %o %d", s.Mode, s.Rdev)
	}
	if s := st("dev/loop0"); s.Mode&unix.S_IFMT != unix.S_IFBLK || s.Rdev != unix.Mkdev(7, 0) || s.Gid != 6 {
		t.Errorf("dev/loop0 %o %d", s.Mode, s.Rdev)
	}
	if s := st("tmp"); s.Mode&0o7777 != 0o1777 || s.Mtim.Sec != 1500000000 {
		t.Errorf("tmp mode %o mtime %d", s.Mode&0o7777, s.Mtim.Sec)
	}
	// Directory mtimes hold although entries were created in them later.
	for _, p := range []string{"bin", "dev", "."} {
		if s := st(p); s.Mtim.Sec != 1500000000 {
			t.Errorf("%s mtime %d", p, s.Mtim.Sec)
		}
	}
	if s := st("deep/nested/missing"); s.Mode&0o777 != 0o755 {
		t.Errorf("implicit parent mode %o", s.Mode&0o777)
	}
}

func TestApplyDevicesNotAllowed(t *testing.T) {
	testutil.RequiresRoot(t)
	d := t.TempDir()
	if _, _, err := Apply(context.Background(), d, bytes.NewReader(fullLayer(t)), WithDevices(false)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dev/null", "dev/loop0"} {
		if _, err := os.Lstat(filepath.Join(d, p)); !os.IsNotExist(err) {
			t.Errorf("%s created with devices disallowed: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(d, "run/fifo")); err != nil {
		t.Errorf("fifo: %v", err)
	}
}

// whiteoutLayers returns a base layer and an upper layer that deletes a file
// and a directory and makes another directory opaque.
func whiteoutLayers(t *testing.T) (base, upper []byte) {
	base = makeTar(t,
		dir("etc/", 0o755),
		file("etc/keep", "keep", 0o644),
		file("etc/gone", "gone", 0o644),
		dir("olddir/", 0o755),
		file("olddir/a", "a", 0o644),
		dir("opaque/", 0o755),
		file("opaque/old1", "1", 0o644),
		file("opaque/old2", "2", 0o644),
	)
	upper = makeTar(t,
		file("etc/.wh.gone", "", 0o644),
		file(".wh.olddir", "", 0o644),
		dir("opaque/", 0o755),
		file("opaque/.wh..wh..opq", "", 0o644),
		file("opaque/new", "new", 0o644),
		file("etc/.wh..wh.plnk", "", 0o644),
	)
	return base, upper
}

func TestApplyWhiteouts(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	baseTar, upperTar := whiteoutLayers(t)
	base, upper := t.TempDir(), t.TempDir()
	if _, _, err := Apply(ctx, base, bytes.NewReader(compress(t, baseTar, Gzip))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Apply(ctx, upper, bytes.NewReader(compress(t, upperTar, Zstd))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/gone", "olddir"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, p), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s is not an overlay whiteout: %v mode %o rdev %d", p, err, st.Mode, st.Rdev)
		}
	}
	if v, err := getxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque"); err != nil || string(v) != "y" {
		t.Errorf("opaque xattr: %q %v", v, err)
	}
	for _, p := range []string{"etc/.wh.gone", ".wh.olddir", "opaque/.wh..wh..opq", "etc/.wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(upper, p)); !os.IsNotExist(err) {
			t.Errorf("whiteout file %s extracted as is", p)
		}
	}
	merged := mergedView(t, upper, base)
	for _, want := range []string{"etc/keep ", "opaque/new "} {
		if !strings.Contains(merged, "\n"+want) {
			t.Errorf("merged view lacks %s:\n%s", want, merged)
		}
	}
	for _, gone := range []string{"etc/gone", "olddir", "opaque/old1", "opaque/old2"} {
		if strings.Contains(merged, "\n"+gone+" ") {
			t.Errorf("merged view still has %s:\n%s", gone, merged)
		}
	}
}

// outsideCheck makes a layer directory beside a sentinel directory and
// returns a function that fails t if anything appeared in the sentinel.
func outsideCheck(t *testing.T) (layerDir, outside string, check func()) {
	parent := t.TempDir()
	layerDir = filepath.Join(parent, "layer")
	outside = filepath.Join(parent, "outside")
	for _, d := range []string{layerDir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return layerDir, outside, func() {
		t.Helper()
		entries, _ := os.ReadDir(outside)
		if len(entries) != 0 {
			t.Fatalf("extraction wrote outside the layer: %v", entries)
		}
		top, _ := os.ReadDir(parent)
		if len(top) != 2 {
			t.Fatalf("extraction wrote beside the layer: %v", top)
		}
	}
}

func TestApplyEscapes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		entries func(outside string) []entry
		wantErr bool
		inside  func(outside string) []string // paths that must exist inside the layer afterwards
	}{
		{"dotdot", func(string) []entry {
			return []entry{file("a/../inside", "x", 0o644), file("a/../../../outside/evil", "x", 0o644)}
		}, true, func(string) []string { return []string{"inside"} }},
		{"dotdot alone", func(string) []entry {
			return []entry{dir("..", 0o755)}
		}, true, nil},
		{"absolute dotdot", func(string) []entry {
			return []entry{file("/../../outside/evil", "x", 0o644)}
		}, false, func(string) []string { return []string{"outside/evil"} }},
		{"absolute", func(o string) []entry {
			return []entry{file(o+"/evil", "x", 0o644)}
		}, false, func(o string) []string { return []string{o + "/evil"} }},
		{"symlink absolute then write", func(o string) []entry {
			return []entry{symlink("link", o), file("link/evil", "x", 0o644)}
		}, true, nil},
		{"symlink relative then write", func(string) []entry {
			return []entry{symlink("link", "../outside"), file("link/evil", "x", 0o644)}
		}, true, nil},
		{"symlink to root then write", func(string) []entry {
			return []entry{symlink("link", "/"), symlink("up", "../../../../.."), file("link/evil", "x", 0o644), file("up/evil2", "x", 0o644)}
		}, false, func(string) []string { return []string{"evil", "evil2", "link", "up"} }},
		{"symlink chain", func(string) []entry {
			return []entry{symlink("a", "b"), symlink("b", "../../../.."), dir("a/outside/", 0o755), file("a/outside/evil", "x", 0o644)}
		}, false, func(string) []string { return []string{"outside/evil"} }},
		{"directory replaced by symlink", func(o string) []entry {
			return []entry{dir("d/", 0o755), file("d/f", "x", 0o644), symlink("d", o), file("d/evil", "x", 0o644)}
		}, true, nil},
		{"symlink as final component", func(o string) []entry {
			return []entry{symlink("f", o+"/evil"), file("f", "replaced", 0o644)}
		}, false, func(string) []string { return []string{"f"} }},
		{"hardlink absolute", func(string) []entry {
			return []entry{hardlink("shadow", "/etc/shadow")}
		}, true, nil},
		{"hardlink dotdot", func(string) []entry {
			return []entry{hardlink("shadow", "../../../../../../etc/shadow")}
		}, true, nil},
		{"hardlink through symlink", func(string) []entry {
			return []entry{symlink("etc", "/etc"), hardlink("shadow", "etc/shadow")}
		}, true, nil},
		{"hardlink to a symlink to outside", func(o string) []entry {
			return []entry{symlink("evil", o+"/victim"), hardlink("x", "evil"), symlink("evildir", o), hardlink("y", "evildir/victim")}
		}, true, nil},
		{"directory removed by a later whiteout", func(string) []entry {
			return []entry{dir("gone/", 0o755), file("gone/f", "x", 0o644), file(".wh.gone", "", 0o644)}
		}, false, func(string) []string { return []string{"gone"} }},
		{"whiteout through symlink", func(o string) []entry {
			return []entry{symlink("link", o), file("link/.wh.victim", "", 0o644)}
		}, true, nil},
		{"whiteout of a symlink to outside", func(o string) []entry {
			return []entry{symlink("victim", o+"/victim"), file(".wh.victim", "", 0o644), symlink("dirlink", o), file(".wh.dirlink", "", 0o644)}
		}, false, func(string) []string { return []string{"victim", "dirlink"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "whiteout") {
				testutil.RequiresRoot(t)
			}
			d, outside, check := outsideCheck(t)
			os.WriteFile(filepath.Join(outside, ".keep"), nil, 0o644) // a victim for whiteouts
			victim := filepath.Join(outside, "victim")
			os.WriteFile(victim, []byte("v"), 0o644)
			os.Remove(filepath.Join(outside, ".keep"))
			layer := makeTar(t, tc.entries(outside)...)
			_, _, err := Apply(ctx, d, bytes.NewReader(layer), WithOwnership(false))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Apply: %v, want error %v", err, tc.wantErr)
			}
			if es := tc.entries(outside); err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", es[len(es)-1].hdr.Name)) {
				t.Fatalf("error does not name the entry: %v", err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "v" {
				t.Fatalf("file outside changed: %q %v", b, err)
			}
			os.Remove(victim)
			check()
			if tc.inside == nil {
				return
			}
			for _, p := range tc.inside(outside) {
				if _, err := os.Lstat(filepath.Join(d, p)); err != nil {
					t.Errorf("%s not extracted inside: %v", p, err)
				}
			}
		})
	}
}

func TestApplyLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("size", func(t *testing.T) {
		// 64 MiB of zeros compress to about 64 KiB.
		bomb := makeTar(t, file("zeros", string(make([]byte, 64<<20)), 0o644))
		gz := compress(t, bomb, Gzip)
		if len(gz) > 1<<20 {
			t.Fatalf("bomb compressed to %d bytes", len(gz))
		}
		d := t.TempDir()
		_, _, err := Apply(ctx, d, bytes.NewReader(gz), WithMaxSize(8<<20), WithOwnership(false))
		if !errors.Is(err, ErrLimit) || !errdefs.IsInvalidArgument(err) {
			t.Fatalf("Apply of a bomb: %v, want ErrLimit", err)
		}
		if !strings.Contains(err.Error(), "zeros") {
			t.Errorf("error does not name the entry: %v", err)
		}
		if st, err := os.Stat(filepath.Join(d, "zeros")); err == nil && st.Size() > 8<<20 {
			t.Fatalf("wrote %d bytes past the bound", st.Size())
		}
	})
	t.Run("entries", func(t *testing.T) {
		var es []entry
		for i := range 100 {
			es = append(es, file("f"+strings.Repeat("x", i), "", 0o644))
		}
		_, _, err := Apply(ctx, t.TempDir(), bytes.NewReader(makeTar(t, es...)), WithMaxEntries(50), WithOwnership(false))
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("Apply of 100 entries with a bound of 50: %v", err)
		}
	})
	t.Run("within", func(t *testing.T) {
		layer := makeTar(t, file("small", "data", 0o644))
		if _, _, err := Apply(ctx, t.TempDir(), bytes.NewReader(layer), WithMaxSize(int64(len(layer))), WithMaxEntries(1), WithOwnership(false)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestApplyCorrupt(t *testing.T) {
	ctx := context.Background()
	layer := makeTar(t, file("a", strings.Repeat("a", 100000), 0o644))
	gz := compress(t, layer, Gzip)
	if _, _, err := Apply(ctx, t.TempDir(), bytes.NewReader(gz[:len(gz)/2]), WithOwnership(false)); err == nil {
		t.Fatal("truncated gzip layer applied")
	}
	if _, _, err := Apply(ctx, t.TempDir(), bytes.NewReader(layer[:700]), WithOwnership(false)); err == nil {
		t.Fatal("truncated tar applied")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := Apply(cctx, t.TempDir(), bytes.NewReader(layer), WithOwnership(false)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context: %v", err)
	}
}

func TestApplyReplace(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	layer := makeTar(t,
		file("x", "file", 0o644),
		dir("x/", 0o755), // a directory replaces the file
		file("x/inner", "i", 0o644),
		dir("y/", 0o755),
		file("y/inner", "i", 0o644),
		file("y", "now a file", 0o600), // a file replaces the directory
		dir("z/", 0o700),
		file("z/keep", "k", 0o644),
		dir("z/", 0o755), // a directory over a directory keeps its content
	)
	if _, _, err := Apply(ctx, d, bytes.NewReader(layer), WithOwnership(false)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(d, "x/inner")); err != nil || string(b) != "i" {
		t.Errorf("x/inner: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(d, "y")); err != nil || string(b) != "now a file" {
		t.Errorf("y: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(d, "z")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("z: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(d, "z/keep")); err != nil {
		t.Errorf("z/keep: %v", err)
	}
}

// The same extraction and escape checks through the path Apply takes when
// the kernel has no openat2 (before 5.6): every lookup goes through
// pathrs-lite, which on this kernel still uses openat2 itself but whose
// results Apply must then handle the same way.
func TestApplyThroughPathrs(t *testing.T) {
	noOpenat2.Store(true)
	defer noOpenat2.Store(false)
	t.Run("escapes", TestApplyEscapes)
	t.Run("replace", TestApplyReplace)
	t.Run("full", TestApply)
	t.Run("roundtrip", TestDiffRoundTrip)
}
