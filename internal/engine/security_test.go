package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	bmount "github.com/berth-project/berth/internal/mount"
)

// TestVolumesRootIsPrivate: the volumes directory is root's alone, also when
// an earlier daemon left it open, so no host user can reach a volume's
// _data (where a container's root may leave a setuid-root program).
func TestVolumesRootIsPrivate(t *testing.T) {
	ctx := context.Background()
	dataRoot := t.TempDir()
	volumes := filepath.Join(dataRoot, "volumes")
	if err := os.MkdirAll(volumes, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(volumes, 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := New(ctx, Config{DataRoot: dataRoot})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	check := func(when string) {
		t.Helper()
		fi, err := os.Stat(volumes)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s: %s is %#o, want 0700", when, volumes, perm)
		}
	}
	check("after the engine started")
	if err := os.RemoveAll(volumes); err != nil {
		t.Fatal(err)
	}
	if _, err := e.VolumeCreate(ctx, "v1", nil, nil); err != nil {
		t.Fatal(err)
	}
	check("made again by volume create")
}

// TestViewPopulatesVolumesFromRootFilesystemOnly: a stopped container's view
// fills a volume used for the first time with the image's content at its
// destination, read from the root filesystem alone, never through another
// of the container's mounts above it (a volume a running container shares,
// whose processes could swap a directory for a symlink under the copy).
func TestViewPopulatesVolumesFromRootFilesystemOnly(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	base := t.TempDir()
	rootfs, shared, vol := filepath.Join(base, "rootfs"), filepath.Join(base, "shared"), filepath.Join(base, "vol")
	for p, data := range map[string]string{
		filepath.Join(rootfs, "a", "b", "image-file"):  "from the image\n",
		filepath.Join(shared, "b", "other-mount-file"): "from another mount\n",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	mounts := []viewMount{
		{Dest: "/a", Source: shared, RW: true, Volume: "shared"},
		{Dest: "/a/b", Source: vol, RW: true, Volume: "fresh"},
	}
	populate := func(root string, m viewMount) error {
		if m.Volume != "fresh" {
			return nil // already populated
		}
		return copyImageContent(root, m.Dest, m.Source)
	}
	mountRootfs := func(target string) error {
		return bmount.Mount{Type: "bind", Source: rootfs, Options: []string{"rbind"}}.Mount(target)
	}
	v, err := openPrivateView(t.TempDir(), mountRootfs, mounts, false, populate)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if b, err := os.ReadFile(filepath.Join(vol, "image-file")); err != nil || string(b) != "from the image\n" {
		t.Errorf("the fresh volume lacks the image's file: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(vol, "other-mount-file")); err == nil {
		t.Errorf("the fresh volume was filled through another mount of the container")
	}
}

// TestExtractTakesWhiteoutNamesLiterally: cp into a container is not a
// layer: an entry named ".wh.<name>" is a file of that name, as in Docker;
// it neither deletes <name> nor marks the directory opaque.
func TestExtractTakesWhiteoutNamesLiterally(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	v := f.open(t, false)
	if err := v.extract(context.Background(), "/data", tarWith(t, ".wh.f", "literal\n"), false, ""); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.vol, "f")); err != nil || string(b) != "in the volume\n" {
		t.Errorf("the volume's f after extracting .wh.f: %q %v, want it untouched", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(f.vol, ".wh.f")); err != nil || string(b) != "literal\n" {
		t.Errorf(".wh.f: %q %v, want the archive's file", b, err)
	}
}

// TestVolumeOpsNeverWaitForAContainerLock: a start holds its container's
// lock while it takes the volume lock (to fill new volumes); volume rm,
// prune and the cleanup of a failed create hold the volume lock while they
// look for users, so they must not wait for any container's lock, or a start
// and a volume rm deadlock each other and every later volume operation.
func TestVolumeOpsNeverWaitForAContainerLock(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Config{DataRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := &ctr{rec: ctrRecord{ID: "c1", Name: "/c1", Mounts: []ctrMount{{Type: mount.TypeVolume, Name: "used", Destination: "/u"}}}}
	cs := &containers{e: e, log: e.log, byID: map[string]*ctr{"c1": c}, names: map[string]string{"/c1": "c1"}}
	stores.Store(e, cs)
	defer stores.Delete(e)
	for _, name := range []string{"used", "unused"} {
		if _, err := e.VolumeCreate(ctx, name, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A start of c1 in progress, waiting for the volume lock.
	c.mu.Lock()
	defer c.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		if err := e.VolumeRemove(ctx, "used", false); !errdefs.IsConflict(err) {
			done <- fmt.Errorf("rm of a volume in use: %v, want a conflict", err)
			return
		}
		done <- e.VolumeRemove(ctx, "unused", false)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("volume rm is still waiting for the lock of a container being started (deadlock)")
	}
}

// TestViewArchiveRefusesTreesDeeperThanAPath: cp out of a container whose
// processes nested directories deeper than any path can name is refused
// (the walk holds a name and a descriptor per level: memory grows with the
// square of the depth, a host's worth in a few hundred thousand levels).
func TestViewArchiveRefusesTreesDeeperThanAPath(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	p := filepath.Join(f.vol, "deep")
	for len(p)-len(f.vol) <= unix.PathMax {
		p = filepath.Join(p, strings.Repeat("d", 200))
	}
	// Made relative to each parent: the whole path is too long for mkdir.
	fd, err := unix.Open(f.vol, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Split(strings.TrimPrefix(p, f.vol+"/"), "/") {
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
	v := f.open(t, false)
	err = v.archive(context.Background(), "/data/deep", func(container.PathStat) {}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("archive of a tree deeper than PATH_MAX: %v, want a refusal", err)
	}
}
