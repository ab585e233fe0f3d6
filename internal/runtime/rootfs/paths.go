package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"

	"github.com/berth-project/berth/internal/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// maxSymlinks bounds how many dangling symlinks mkTarget follows.
const maxSymlinks = 40

// fdPath names the descriptor of f for the mount package, which uses the
// descriptor itself rather than resolving the string.
func fdPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}

// cleanPath makes p an absolute, lexically clean path inside a root.
func cleanPath(p string) string {
	return path.Clean("/" + p)
}

// openRoot opens dir as the O_PATH handle every lookup inside it starts from.
func openRoot(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return f, nil
}

// mkTarget returns an O_PATH handle to p inside root, creating it when
// missing: an empty regular file when file is set, else a directory, with
// any missing parent directories. Every lookup stays inside root (openat2
// RESOLVE_IN_ROOT or its emulation): symlinks are followed as if root were
// "/", ".." cannot climb above it, and a dangling symlink as the last
// component is followed (inside root) to create its target, as runc does.
func mkTarget(root *os.File, p string, file bool) (*os.File, error) {
	p = cleanPath(p)
	for range maxSymlinks {
		h, err := pathrs.OpenatInRoot(root, p)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("resolve %s in root: %w", p, err)
		}
		if p == "/" {
			return nil, fmt.Errorf("resolve / in root: %w", err)
		}
		parent, err := pathrs.MkdirAllHandle(root, path.Dir(p), 0o755)
		if err != nil {
			return nil, fmt.Errorf("create parent directories of %s in root: %w", p, err)
		}
		base := path.Base(p)
		if file {
			var fd int
			fd, err = unix.Openat(int(parent.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		} else {
			err = unix.Mkdirat(int(parent.Fd()), base, 0o755)
		}
		if errors.Is(err, unix.EEXIST) {
			// Either created meanwhile or a dangling symlink: follow it.
			target, lerr := readlinkat(int(parent.Fd()), base)
			if lerr == nil {
				if path.IsAbs(target) {
					p = cleanPath(target)
				} else {
					p = cleanPath(path.Join(path.Dir(p), target))
				}
			}
			err = nil
		}
		parent.Close()
		if err != nil {
			return nil, fmt.Errorf("create %s in root: %w", p, err)
		}
	}
	return nil, fmt.Errorf("create %s in root: %w", p, unix.ELOOP)
}

// mkDirNoFollow returns an O_PATH handle to the directory p inside root,
// creating it (and its parents) when missing. Unlike mkTarget it refuses a
// last component that is a symlink or not a directory: proc and sysfs are
// mounted only on real directories.
func mkDirNoFollow(root *os.File, p string) (*os.File, error) {
	p = cleanPath(p)
	if p == "/" {
		return nil, errdefs.InvalidArgument(errors.New("refusing to mount over the root"))
	}
	parent, err := pathrs.MkdirAllHandle(root, path.Dir(p), 0o755)
	if err != nil {
		return nil, fmt.Errorf("create parent directories of %s in root: %w", p, err)
	}
	defer parent.Close()
	base := path.Base(p)
	if err := unix.Mkdirat(int(parent.Fd()), base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s in root: %w", p, err)
	}
	fd, err := unix.Openat(int(parent.Fd()), base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in root: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s in root: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return nil, errdefs.InvalidArgument(fmt.Errorf("%s in root is a %s, not a directory", p, typeName(st.Mode)))
	}
	return f, nil
}

// openNoFollow returns an O_PATH handle to p inside root without following
// a symlink in the last component (earlier components resolve inside root).
func openNoFollow(root *os.File, p string) (*os.File, error) {
	p = cleanPath(p)
	if p == "/" {
		return nil, errdefs.InvalidArgument(errors.New("path is the root itself"))
	}
	parent, err := pathrs.OpenatInRoot(root, path.Dir(p))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), path.Base(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// fstat stats the file behind a handle.
func fstat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	return st, err
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "file of unknown type"
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
