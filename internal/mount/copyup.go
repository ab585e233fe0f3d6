package mount

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyTree copies the directory tree at the descriptor src into dst (the
// root of a new, still detached tmpfs), keeping modes, owners, symlinks and
// device nodes. Nothing is followed: every entry is opened with O_NOFOLLOW
// relative to its parent's descriptor.
func copyTree(src, dst int) error {
	sfd, err := unix.Openat(src, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open source directory: %w", err)
	}
	sdir := os.NewFile(uintptr(sfd), "source")
	defer sdir.Close()
	dfd, err := unix.Openat(dst, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open tmpfs root: %w", err)
	}
	ddir := os.NewFile(uintptr(dfd), "tmpfs")
	defer ddir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return fmt.Errorf("stat source directory: %w", err)
	}
	if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown tmpfs root: %w", err)
	}
	if err := unix.Fchmod(dfd, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod tmpfs root: %w", err)
	}
	return copyDir(sdir, ddir)
}

func copyDir(sdir, ddir *os.File) error {
	names, err := sdir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", sdir.Name(), err)
	}
	sfd, dfd := int(sdir.Fd()), int(ddir.Fd())
	for _, name := range names {
		if err := copyEntry(sfd, dfd, name); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	return nil
}

func copyEntry(sfd, dfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	perm := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
			return err
		}
		s, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sub := os.NewFile(uintptr(s), name)
		defer sub.Close()
		d, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		dsub := os.NewFile(uintptr(d), name)
		defer dsub.Close()
		if err := copyDir(sub, dsub); err != nil {
			return err
		}
		if err := unix.Fchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Fchmod(d, perm)
	case unix.S_IFREG:
		s, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		in := os.NewFile(uintptr(s), name)
		defer in.Close()
		d, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(d), name)
		defer out.Close()
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		if err := unix.Fchown(d, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return unix.Fchmod(d, perm)
	case unix.S_IFLNK:
		target, err := readlinkat(sfd, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dfd, name); err != nil {
			return err
		}
		return unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	default: // devices, FIFOs, sockets
		if err := unix.Mknodat(dfd, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		if err := unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		// The tmpfs is still detached: nobody can have replaced the node.
		return unix.Fchmodat(dfd, name, perm, 0)
	}
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
