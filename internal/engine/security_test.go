package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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
