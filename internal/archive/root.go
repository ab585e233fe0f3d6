package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/berth-project/berth/internal/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// root is a directory that paths are resolved in, never outside: every lookup
// goes through openat2(RESOLVE_IN_ROOT), which treats symlinks (absolute or
// relative) and ".." as if the directory were "/". Where the kernel lacks
// openat2, pathrs-lite's emulation of the same does the walking.
type root struct {
	f    *os.File // O_PATH handle of the directory
	path string
}

var noOpenat2 atomic.Bool

func openRoot(dir string) (*root, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &root{f: f, path: dir}, nil
}

func (r *root) close() { r.f.Close() }

func (r *root) fd() int { return int(r.f.Fd()) }

// cleanName turns a tar entry name into a path relative to the root. An
// absolute name is taken relative to the root ("/etc/x" is "etc/x"), as
// Docker does; a relative name that climbs out of the root with ".." is
// refused. The root itself is ".".
func cleanName(name string) (string, error) {
	if !strings.HasPrefix(name, "/") {
		if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
			return "", errdefs.InvalidArgument(fmt.Errorf("path %q escapes the layer directory", name))
		}
	}
	p := path.Clean("/" + name)
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}

// openDir returns an O_PATH descriptor of the directory rel (cleaned,
// relative) resolved inside the root. The caller closes it.
func (r *root) openDir(rel string) (int, error) {
	if rel == "." {
		return unix.Dup(r.fd())
	}
	if !noOpenat2.Load() {
		for {
			fd, err := unix.Openat2(r.fd(), rel, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
			})
			if err == nil {
				return fd, nil
			}
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.ENOSYS) {
				noOpenat2.Store(true)
				break
			}
			return -1, err
		}
	}
	f, err := pathrs.OpenatInRoot(r.f, rel)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return -1, unix.ENOTDIR
	}
	return unix.Dup(int(f.Fd()))
}

// mkdirAll is openDir that creates missing directories (mode 0755, owned by
// the caller) on the way, all inside the root.
func (r *root) mkdirAll(rel string) (int, error) {
	fd, err := r.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	f, err := pathrs.MkdirAllHandle(r.f, rel, 0o755)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	return unix.Dup(int(f.Fd()))
}

// procPath names the entry base in the directory open as dirfd through
// /proc/self/fd, for the calls that have no *at form (lsetxattr, lgetxattr).
// Only the final component is looked up, without following it.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

// removeAt removes base (a file, or a directory with everything in it) from
// the directory dirfd without following symlinks.
func removeAt(dirfd int, base string) error {
	err := unix.Unlinkat(dirfd, base, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	// os.RemoveAll walks with openat(O_NOFOLLOW) and unlinkat below the
	// directory it is given; /proc/self/fd/N pins that directory.
	if err := os.RemoveAll(procPath(dirfd, base)); err != nil {
		return fmt.Errorf("remove directory %s: %w", base, err)
	}
	return nil
}
