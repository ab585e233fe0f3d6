package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A directory swapped for a symlink between the moment the walk sees it
// and the moment it descends (what a running container can do to its
// upper layer during docker diff) is not followed out of the tree.
func TestWalkNoFollowDoesNotFollowASwappedDirectory(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "host-secret"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a/b/f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := walkNoFollow(root, func(rel string, st *unix.Stat_t, parent int) error {
		seen = append(seen, rel)
		if rel == "a" {
			// The container's move: the directory becomes a symlink to
			// a host directory before the walk opens it.
			if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "moved")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, "a")); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range seen {
		if filepath.Base(rel) == "host-secret" {
			t.Fatalf("the walk left the tree: %v", seen)
		}
	}
	if !slices.Contains(seen, "link") || !slices.Contains(seen, "c") {
		t.Errorf("walk saw %v, want link and c among them", seen)
	}
}

// The walk refuses paths longer than PATH_MAX instead of growing with a
// container's unbounded nesting.
func TestWalkNoFollowRefusesOverlongPaths(t *testing.T) {
	root := t.TempDir()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("d", 200)
	for depth := 0; depth < 25; depth++ { // 25 * 201 bytes > 4096
		if err := unix.Mkdirat(fd, long, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, long, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	t.Cleanup(func() { removeDeep(root, long) })
	if err := walkNoFollow(root, func(string, *unix.Stat_t, int) error { return nil }); err == nil {
		t.Fatal("walk of a tree deeper than PATH_MAX succeeded")
	}
}

// removeDeep removes a chain of directories deeper than PATH_MAX, which
// os.RemoveAll handles but t.TempDir's cleanup may not in older Go.
func removeDeep(root, name string) {
	fds := []int{}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	for err == nil {
		fds = append(fds, fd)
		fd, err = unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	}
	for i := len(fds) - 1; i >= 0; i-- {
		if i > 0 {
			unix.Unlinkat(fds[i-1], name, unix.AT_REMOVEDIR)
		}
		unix.Close(fds[i])
	}
}
