package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	"github.com/berth-project/berth/internal/testutil"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

const childEnv = "BERTH_SNAPSHOT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "mount" {
		os.Exit(mountChild())
	}
	os.Exit(m.Run())
}

// mountChild runs in its own mount namespace: it mounts $MOUNTS (JSON) on
// $TARGET and runs the shell script $SCRIPT there.
func mountChild() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintln(os.Stderr, "make / private:", err)
		return 1
	}
	var mounts []mount.Mount
	if err := json.Unmarshal([]byte(os.Getenv("MOUNTS")), &mounts); err != nil {
		fmt.Fprintln(os.Stderr, "mounts:", err)
		return 1
	}
	target := os.Getenv("TARGET")
	for _, m := range mounts {
		if err := m.Mount(target); err != nil {
			fmt.Fprintln(os.Stderr, "mount:", err)
			return 1
		}
	}
	cmd := exec.Command("/bin/sh", "-ec", os.Getenv("SCRIPT"))
	cmd.Dir = target
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "script:", err)
		return 1
	}
	return 0
}

// inMount mounts mounts in a child process with its own mount namespace and
// runs script in the mounted tree, returning its output.
func inMount(t *testing.T, mounts []mount.Mount, script string) string {
	t.Helper()
	b, _ := json.Marshal(mounts)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=mount", "TARGET="+t.TempDir(), "MOUNTS="+string(b), "SCRIPT="+script)
	cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("in mount child: %v: %s%s", err, out, stderr.String())
	}
	return string(out)
}

func newSnapshotter(t *testing.T) *Snapshotter {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The expected values were computed outside Go:
//
//	c1=sha256:$(printf '%s' "$d0 $d1" | sha256sum | cut -d' ' -f1)
//	c2=sha256:$(printf '%s' "$c1 $d2" | sha256sum | cut -d' ' -f1)
func TestChainID(t *testing.T) {
	d0 := digest.Digest("sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4")
	d1 := digest.Digest("sha256:0ab8d0b6ba6b3f8e1a2b5d6c2b4d2d6e1d2a8a1a3cb8b5b2e5c1f1f0a0b0c0d0")
	d2 := digest.Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
	c1 := digest.Digest("sha256:20f32cb8e78c870b5609a5c8c21d157348c2a90a8e22dd895534c01869aabbbc")
	c2 := digest.Digest("sha256:deb92ab14be58d4b99071526f162d354152ea65890704518aa9cb3ea41b704b0")
	if got := ChainID(nil); got != "" {
		t.Fatalf("ChainID() = %q", got)
	}
	if got := ChainID([]digest.Digest{d0}); got != d0 {
		t.Fatalf("ChainID(d0) = %s", got)
	}
	if got := ChainID([]digest.Digest{d0, d1}); got != c1 {
		t.Fatalf("ChainID(d0 d1) = %s, want %s", got, c1)
	}
	if got := ChainID([]digest.Digest{d0, d1, d2}); got != c2 {
		t.Fatalf("ChainID(d0 d1 d2) = %s, want %s", got, c2)
	}
	ids := ChainIDs([]digest.Digest{d0, d1, d2})
	if len(ids) != 3 || ids[0] != d0 || ids[1] != c1 || ids[2] != c2 {
		t.Fatalf("ChainIDs = %v", ids)
	}
}

func layerTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1600000000, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

// unpack unpacks layer (a tar) on top of parent with archive.Apply.
func unpack(t *testing.T, s *Snapshotter, parent digest.Digest, layer []byte) digest.Digest {
	t.Helper()
	diffID := digest.FromBytes(layer)
	chain := diffID
	if parent != "" {
		chain = ChainID([]digest.Digest{parent, diffID})
	}
	err := s.Unpack(context.Background(), chain, parent, func(dir string) error {
		got, _, err := archive.Apply(context.Background(), dir, bytes.NewReader(layer))
		if err == nil && got != diffID {
			err = fmt.Errorf("diffID %s, want %s", got, diffID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func TestUnpackOnce(t *testing.T) {
	s := newSnapshotter(t)
	chain := digest.FromString("layer")
	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	extract := func(dir string) error {
		calls.Add(1)
		close(started)
		<-release
		return os.WriteFile(filepath.Join(dir, "file"), []byte("content"), 0o644)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- s.Unpack(context.Background(), chain, "", extract) }()
	<-started // the first extraction is under way; the rest must wait for it
	for range 7 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.Unpack(context.Background(), chain, "", extract) }()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("extracted %d times", n)
	}
	if !s.Exists(chain) {
		t.Fatal("layer does not exist after Unpack")
	}
	info, err := s.Stat(context.Background(), chain.String())
	if err != nil || info.Kind != KindLayer {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	b, err := os.ReadFile(filepath.Join(s.fsDir(&info), "file"))
	if err != nil || string(b) != "content" {
		t.Fatalf("layer content %q %v", b, err)
	}
	if entries, _ := os.ReadDir(s.tmpDir()); len(entries) != 0 {
		t.Fatalf("tmp not empty: %v", entries)
	}
}

func TestUnpackFailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	chain := digest.FromString("layer")
	boom := errors.New("boom")
	err := s.Unpack(ctx, chain, "", func(dir string) error {
		os.WriteFile(filepath.Join(dir, "partial"), []byte("x"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Unpack: %v", err)
	}
	if s.Exists(chain) {
		t.Fatal("failed layer exists")
	}
	if entries, _ := os.ReadDir(s.tmpDir()); len(entries) != 0 {
		t.Fatalf("tmp not empty: %v", entries)
	}
	if entries, _ := os.ReadDir(s.snapshotsDir()); len(entries) != 0 {
		t.Fatalf("snapshots not empty: %v", entries)
	}
	// A missing parent is refused before extracting.
	err = s.Unpack(ctx, chain, digest.FromString("nope"), func(string) error { t.Fatal("extracted"); return nil })
	if !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Fatalf("Unpack on a missing parent: %v", err)
	}
	// A retry succeeds.
	if err := s.Unpack(ctx, chain, "", func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// A crash mid-extraction leaves only a temporary directory, which New
// deletes; snapshots persist across New.
func TestRecovery(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "a"}))
	top := unpack(t, s, base, layerTar(t, map[string]string{"b": "b"}))
	if _, err := s.Prepare(ctx, "container", top); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 during an extraction leaves.
	debris := filepath.Join(root, "tmp", "unpack-123")
	os.MkdirAll(filepath.Join(debris, "fs", "usr"), 0o755)
	os.WriteFile(filepath.Join(debris, "fs", "usr", "half"), []byte("x"), 0o644)

	s2, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(debris); !os.IsNotExist(err) {
		t.Fatalf("debris survived New: %v", err)
	}
	if !s2.Exists(base) || !s2.Exists(top) {
		t.Fatal("layers lost across New")
	}
	var keys []string
	s2.Walk(ctx, func(key, parent string) error { keys = append(keys, key+"<"+parent); return nil })
	want := []string{base.String() + "<", top.String() + "<" + base.String(), "container<" + top.String()}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("Walk = %v, want %v", keys, want)
	}
	// New numbers continue after the existing ones.
	third := unpack(t, s2, top, layerTar(t, map[string]string{"c": "c"}))
	info, _ := s2.Stat(ctx, third.String())
	if info.id != "4" {
		t.Fatalf("new snapshot numbered %s", info.id)
	}
}

func TestMountsShape(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "a"}))
	top := unpack(t, s, base, layerTar(t, map[string]string{"b": "b"}))
	bi, _ := s.Stat(ctx, base.String())
	ti, _ := s.Stat(ctx, top.String())

	m, err := s.Prepare(ctx, "c1", top)
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := s.Stat(ctx, "c1")
	if len(m) != 1 || m[0].Type != "overlay" || !contains(m[0].Options, "lowerdir="+s.fsDir(&ti)+":"+s.fsDir(&bi)) ||
		!contains(m[0].Options, "upperdir="+s.fsDir(&ci)) || !contains(m[0].Options, "workdir="+filepath.Join(s.dir(&ci), "work")) {
		t.Fatalf("Prepare on two layers: %+v", m)
	}
	if m, _ := s.Prepare(ctx, "c2", ""); len(m) != 1 || m[0].Type != "bind" || contains(m[0].Options, "ro") {
		t.Fatalf("Prepare without parent: %+v", m)
	}
	if m, _ := s.View(ctx, "v1", base); len(m) != 1 || m[0].Type != "bind" || m[0].Source != s.fsDir(&bi) || !contains(m[0].Options, "ro") {
		t.Fatalf("View of one layer: %+v", m)
	}
	if m, _ := s.View(ctx, "v2", top); len(m) != 1 || m[0].Type != "overlay" || !contains(m[0].Options, "lowerdir="+s.fsDir(&ti)+":"+s.fsDir(&bi)) {
		t.Fatalf("View of two layers: %+v", m)
	}
	if _, err := s.Prepare(ctx, "c1", top); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of an existing key: %v", err)
	}
	if _, err := s.Prepare(ctx, "c3", digest.FromString("missing")); !errdefs.IsNotFound(err) {
		t.Fatalf("Prepare on a missing layer: %v", err)
	}
	if _, err := s.Prepare(ctx, "c3", digest.Digest("c1")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Prepare on a non-digest parent: %v", err)
	}
	// Layers are stacked only on unpacked layers.
	if err := s.Unpack(ctx, digest.FromString("x"), digest.Digest("sha256:"+strings.Repeat("0", 64)), func(string) error { return nil }); !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Fatalf("Unpack on a missing parent: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "a"}))
	top := unpack(t, s, base, layerTar(t, map[string]string{"b": "b"}))
	if _, err := s.Prepare(ctx, "c", top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{base.String(), top.String()} {
		if err := s.Remove(ctx, k); !errors.Is(err, errdefs.ErrFailedPrecond) {
			t.Fatalf("Remove of %s with children: %v", k, err)
		}
	}
	for _, k := range []string{"c", top.String(), base.String()} {
		if err := s.Remove(ctx, k); err != nil {
			t.Fatalf("Remove %s: %v", k, err)
		}
		if _, err := s.Stat(ctx, k); !errdefs.IsNotFound(err) {
			t.Fatalf("%s still there: %v", k, err)
		}
	}
	if err := s.Remove(ctx, "c"); !errdefs.IsNotFound(err) {
		t.Fatalf("second Remove: %v", err)
	}
	for _, d := range []string{s.snapshotsDir(), s.tmpDir()} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Fatalf("%s not empty: %v", d, entries)
		}
	}
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"big": strings.Repeat("x", 100000)}))
	n, err := s.Usage(ctx, base.String())
	if err != nil || n < 100000 {
		t.Fatalf("Usage = %d, %v", n, err)
	}
	// Symlinks are not followed: a container's link to a big tree elsewhere
	// costs it nothing.
	if _, err := s.Prepare(ctx, "c", ""); err != nil {
		t.Fatal(err)
	}
	paths, _ := s.Paths(ctx, "c")
	elsewhere := t.TempDir()
	os.WriteFile(filepath.Join(elsewhere, "big"), bytes.Repeat([]byte("x"), 1<<20), 0o644)
	os.Symlink(elsewhere, filepath.Join(paths[0], "link"))
	os.Mkdir(filepath.Join(paths[0], "d"), 0o755)
	os.WriteFile(filepath.Join(paths[0], "d", "small"), []byte("x"), 0o644)
	if n, err := s.Usage(ctx, "c"); err != nil || n >= 1<<20 || n == 0 {
		t.Fatalf("Usage of a container with a symlink out = %d, %v", n, err)
	}
	if _, err := s.Usage(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("Usage of a missing snapshot: %v", err)
	}
}

// A container writes through its overlay mount; the write lands in its own
// upper directory, whiteouts of the layers hide files, a view is read-only,
// and Remove cleans up.
func TestPrepareMountWriteRemove(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"etc/keep": "keep", "etc/gone": "gone"}))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.WriteHeader(&tar.Header{Name: "etc/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("new"))
	tw.Close()
	top := unpack(t, s, base, buf.Bytes())

	mounts, err := s.Prepare(ctx, "c1", top)
	if err != nil {
		t.Fatal(err)
	}
	out := inMount(t, mounts, `
		test ! -e etc/gone
		cat etc/keep etc/new
		echo written > etc/written
		rm etc/keep
		ls etc`)
	if out != "keepnewnew\nwritten\n" {
		t.Fatalf("container view:\n%s", out)
	}
	ci, _ := s.Stat(ctx, "c1")
	upper := s.fsDir(&ci)
	if b, err := os.ReadFile(filepath.Join(upper, "etc/written")); err != nil || string(b) != "written\n" {
		t.Fatalf("write did not land in the upper dir: %q %v", b, err)
	}
	// The layers are untouched; the delete is a whiteout in the upper dir.
	bi, _ := s.Stat(ctx, base.String())
	if _, err := os.Stat(filepath.Join(s.fsDir(&bi), "etc/keep")); err != nil {
		t.Fatalf("layer changed: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc/keep"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Fatalf("no whiteout in the upper dir: %v", err)
	}
	// The container's changes as a layer.
	var diff bytes.Buffer
	if err := s.Diff(ctx, &diff, "c1"); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&diff)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "etc/ etc/.wh.keep etc/written" {
		t.Fatalf("diff entries: %v", names)
	}

	// Views are read-only, of one layer (bind) or of a chain (overlay).
	for _, parent := range []digest.Digest{base, top} {
		key := "view-" + parent.Encoded()[:8]
		mounts, err := s.View(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		out := inMount(t, mounts, `cat etc/keep; if touch x 2>/dev/null; then echo writable; fi`)
		if out != "keep" {
			t.Fatalf("view of %s: %q", parent, out)
		}
		if err := s.Remove(ctx, key); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(upper); !os.IsNotExist(err) {
		t.Fatalf("upper dir survived Remove: %v", err)
	}
}

// Commit turns a container's changes into a layer that others build on.
func TestCommit(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "from base"}))
	mounts, err := s.Prepare(ctx, "build-step", base)
	if err != nil {
		t.Fatal(err)
	}
	inMount(t, mounts, `echo step > b`)
	var diff bytes.Buffer
	if err := s.Diff(ctx, &diff, "build-step"); err != nil {
		t.Fatal(err)
	}
	chain := ChainID([]digest.Digest{base, digest.FromBytes(diff.Bytes())})
	if err := s.Commit(ctx, "build-step", chain); err != nil {
		t.Fatal(err)
	}
	if !s.Exists(chain) {
		t.Fatal("committed layer missing")
	}
	if _, err := s.Stat(ctx, "build-step"); !errdefs.IsNotFound(err) {
		t.Fatalf("active key survived Commit: %v", err)
	}
	mounts, err = s.Prepare(ctx, "next", chain)
	if err != nil {
		t.Fatal(err)
	}
	if out := inMount(t, mounts, `cat a b`); out != "from basestep\n" {
		t.Fatalf("on the committed layer: %q", out)
	}
	// And it survives a restart as a layer.
	s2, err := New(s.root)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Exists(chain) {
		t.Fatal("committed layer lost across New")
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "a"}))
	kept := unpack(t, s, base, layerTar(t, map[string]string{"kept": "1"}))
	dropped := unpack(t, s, base, layerTar(t, map[string]string{"dropped": "1"}))
	droppedTop := unpack(t, s, dropped, layerTar(t, map[string]string{"top": "1"}))
	used := unpack(t, s, "", layerTar(t, map[string]string{"used by a container": "1"}))
	orphan := unpack(t, s, "", layerTar(t, map[string]string{"orphan": "1"}))
	if _, err := s.Prepare(ctx, "container", used); err != nil {
		t.Fatal(err)
	}
	removed, err := s.GC(ctx, []digest.Digest{kept})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(removed, " ")
	// Children first.
	if got != strings.Join([]string{orphan.String(), droppedTop.String(), dropped.String()}, " ") {
		t.Fatalf("GC removed %v", removed)
	}
	for _, k := range []digest.Digest{base, kept, used} {
		if !s.Exists(k) {
			t.Errorf("GC removed needed layer %s", k)
		}
	}
	if _, err := s.Stat(ctx, "container"); err != nil {
		t.Errorf("GC removed the container snapshot: %v", err)
	}
}

// A deep chain mounts with every layer in order: later layers win.
func TestDeepChain(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	s := newSnapshotter(t)
	var parent digest.Digest
	for i := range 40 {
		parent = unpack(t, s, parent, layerTar(t, map[string]string{
			fmt.Sprintf("layer%02d", i): "x",
			"top":                       fmt.Sprint(i),
		}))
	}
	mounts, err := s.Prepare(ctx, "deep", parent)
	if err != nil {
		t.Fatal(err)
	}
	out := inMount(t, mounts, `ls | wc -l; cat top`)
	if out != "41\n39" {
		t.Fatalf("deep chain view: %q", out)
	}
	mounts, err = s.View(ctx, "deep-view", parent)
	if err != nil {
		t.Fatal(err)
	}
	if out := inMount(t, mounts, `cat top layer00`); out != "39x" {
		t.Fatalf("deep chain read-only view: %q", out)
	}
}

func TestPaths(t *testing.T) {
	ctx := context.Background()
	s := newSnapshotter(t)
	base := unpack(t, s, "", layerTar(t, map[string]string{"a": "a"}))
	top := unpack(t, s, base, layerTar(t, map[string]string{"b": "b"}))
	if _, err := s.Prepare(ctx, "c", top); err != nil {
		t.Fatal(err)
	}
	paths, err := s.Paths(ctx, "c")
	if err != nil || len(paths) != 3 {
		t.Fatalf("Paths = %v, %v", paths, err)
	}
	for i, want := range []string{"", "b", "a"} {
		if want == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(paths[i], want)); err != nil {
			t.Errorf("path %d (%s) lacks %s", i, paths[i], want)
		}
	}
	if p, _ := s.Paths(ctx, top.String()); len(p) != 2 || p[0] != paths[1] || p[1] != paths[2] {
		t.Fatalf("Paths of the top layer = %v", p)
	}
	if _, err := s.Paths(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("Paths of a missing snapshot: %v", err)
	}
}
