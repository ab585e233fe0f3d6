package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestRealNamedVolume: a named volume is created with its first container,
// receives the image's content at its mount point, keeps its data across
// containers and their removal (also with volumes=true), and goes only with
// a volume remove.
func TestRealNamedVolume(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx := context.Background()
	data := filepath.Join(r.dataRoot, "volumes", "named1", "_data")
	id := r.create("", &container.HostConfig{Binds: []string{"named1:/srv"}},
		"sh", "-c", "cat /srv/hello.txt; echo added > /srv/added.txt")
	v, err := r.e.VolumeInspect(ctx, "named1")
	if err != nil {
		t.Fatalf("volume named1 after create: %v", err)
	}
	if v.Mountpoint != data || v.Driver != "local" {
		t.Errorf("volume named1: mountpoint %s driver %s, want %s local", v.Mountpoint, v.Driver, data)
	}
	mounts := r.inspect(id).Mounts
	if len(mounts) != 1 || mounts[0].Type != mount.TypeVolume || mounts[0].Name != "named1" || mounts[0].Destination != "/srv" || !mounts[0].RW || mounts[0].Source != data {
		t.Errorf("inspect mounts: %+v, want the rw volume named1 at /srv from %s", mounts, data)
	}
	r.start(id)
	if code := r.wait(id); code != 0 {
		_, e := r.logsOf(id)
		t.Fatalf("first container: exit %d, stderr %q", code, e)
	}
	if out, _ := r.logsOf(id); out != helloText {
		t.Errorf("first container read %q from the volume, want the image's %q", out, helloText)
	}
	for name, want := range map[string]string{"hello.txt": helloText, "added.txt": "added\n"} {
		if got, err := os.ReadFile(filepath.Join(data, name)); err != nil || string(got) != want {
			t.Errorf("volume file %s: %q %v, want %q", name, got, err, want)
		}
	}
	if err := r.e.VolumeRemove(ctx, "named1", false); !errdefs.IsConflict(err) {
		t.Errorf("volume rm of a volume a container uses: %v, want a conflict", err)
	}
	if err := r.e.ContainerRemove(ctx, id, false, true); err != nil {
		t.Fatalf("rm -v: %v", err)
	}
	if _, err := r.e.VolumeInspect(ctx, "named1"); err != nil {
		t.Fatalf("named volume after rm -v of its container: %v (only anonymous volumes go with -v)", err)
	}

	// A new container sees the data as left, without a second copy of the
	// image's content (the removed file stays removed).
	if err := os.Remove(filepath.Join(data, "hello.txt")); err != nil {
		t.Fatal(err)
	}
	id2 := r.run(&container.HostConfig{Binds: []string{"named1:/srv:ro"}}, "sh", "-c", "ls /srv; cat /srv/added.txt; if touch /srv/x 2>/dev/null; then echo writable; fi")
	if code := r.wait(id2); code != 0 {
		_, e := r.logsOf(id2)
		t.Fatalf("second container: exit %d, stderr %q", code, e)
	}
	if out, _ := r.logsOf(id2); out != "added.txt\nadded\n" {
		t.Errorf("second container (volume read-only): %q, want %q", out, "added.txt\nadded\n")
	}
	if err := r.e.ContainerRemove(ctx, id2, false, false); err != nil {
		t.Fatalf("rm second container: %v", err)
	}
	if err := r.e.VolumeRemove(ctx, "named1", false); err != nil {
		t.Fatalf("volume rm: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(r.dataRoot, "volumes", "named1")); !os.IsNotExist(err) {
		t.Errorf("volume directory after volume rm: lstat %v, want it gone", err)
	}
	if _, err := r.e.VolumeInspect(ctx, "named1"); !errdefs.IsNotFound(err) {
		t.Errorf("volume inspect after volume rm: %v, want not found", err)
	}
}

// TestRealAnonymousVolume: an image VOLUME gets an anonymous volume with the
// image's content; rm with volumes removes it, rm without keeps it.
func TestRealAnonymousVolume(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx := context.Background()
	img := r.importImage([]string{"VOLUME /srv"})
	run := func() (string, string) {
		t.Helper()
		id, err := r.tryCreateConfig("", &container.Config{Image: img, Cmd: []string{"cat", "/srv/hello.txt"}}, nil)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		ms := r.inspect(id).Mounts
		if len(ms) != 1 || ms[0].Type != mount.TypeVolume || ms[0].Destination != "/srv" || len(ms[0].Name) != 64 {
			t.Fatalf("mounts of a container of an image with VOLUME /srv: %+v, want one anonymous volume at /srv", ms)
		}
		r.start(id)
		if code := r.wait(id); code != 0 {
			t.Fatalf("exit %d", code)
		}
		if out, _ := r.logsOf(id); out != helloText {
			t.Errorf("anonymous volume content: %q, want the image's %q", out, helloText)
		}
		return id, ms[0].Name
	}
	id, vol := run()
	if err := r.e.ContainerRemove(ctx, id, false, true); err != nil {
		t.Fatalf("rm -v: %v", err)
	}
	if _, err := r.e.VolumeInspect(ctx, vol); !errdefs.IsNotFound(err) {
		t.Errorf("anonymous volume after rm -v: %v, want not found", err)
	}
	if _, err := os.Lstat(filepath.Join(r.dataRoot, "volumes", vol)); !os.IsNotExist(err) {
		t.Errorf("anonymous volume directory after rm -v: lstat %v, want it gone", err)
	}
	id, vol = run()
	if err := r.e.ContainerRemove(ctx, id, false, false); err != nil {
		t.Fatalf("rm: %v", err)
	}
	if _, err := r.e.VolumeInspect(ctx, vol); err != nil {
		t.Errorf("anonymous volume after rm without -v: %v, want it kept", err)
	}
	if err := r.e.VolumeRemove(ctx, vol, false); err != nil {
		t.Errorf("volume rm %s: %v", vol, err)
	}
}
