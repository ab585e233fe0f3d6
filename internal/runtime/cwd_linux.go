package runtime

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// makeCwd creates the init's working directory, and its missing parents
// (0755, owned by the init's current credentials, i.e. root), when the
// root filesystem lacks it: runc does, and Docker users rely on `-w DIR`
// making DIR. It runs after the root has changed, before the root
// filesystem may become read-only. Every step is resolved with openat2
// from the container's root: symlinks stay inside it (RESOLVE_IN_ROOT) and
// no /proc magic link can lead to a host directory through a descriptor
// (RESOLVE_NO_MAGICLINKS, the shape of CVE-2024-21626).
func makeCwd(cwd string) error {
	cwd = path.Clean("/" + cwd)
	if cwd == "/" {
		return nil
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's root: %w", err)
	}
	defer unix.Close(root)
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	parts := strings.Split(strings.TrimPrefix(cwd, "/"), "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		fd, err := unix.Openat2(root, sub, how)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("make cwd %q: resolve %s: %w", cwd, "/"+sub, err)
		}
		parent := root
		if i > 0 {
			if parent, err = unix.Openat2(root, strings.Join(parts[:i], "/"), how); err != nil {
				return fmt.Errorf("make cwd %q: resolve the parent of %s: %w", cwd, "/"+sub, err)
			}
		}
		err = unix.Mkdirat(parent, parts[i], 0o755)
		if parent != root {
			unix.Close(parent)
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("make cwd %q: mkdir %s: %w", cwd, "/"+sub, err)
		}
	}
	return nil
}
