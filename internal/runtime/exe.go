package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mfdExec asks for an executable memfd where the kernel restricts memfds by
// default (vm.memfd_noexec); older kernels reject the flag.
const mfdExec = 0x10

// sealedSelf returns a read-only view of the running binary to start the
// container's init from, never /proc/self/exe itself, so that a process in
// the container that opens the init's /proc/PID/exe can write neither the
// runtime binary on the host nor its copy (CVE-2019-5736).
//
// The view is the binary opened through a detached, read-only overlayfs
// mount of its directory: nothing is copied, the page cache is shared, and
// the mount disappears with the last process using it. Where that is not
// possible (no overlayfs, or no privilege to mount it) it is a sealed
// in-memory copy.
func sealedSelf() (*os.File, error) {
	if f, err := overlaySelf(); err == nil {
		return f, nil
	}
	return memfdSelf()
}

// overlaySelf opens the running binary through a private read-only overlay:
// its directory over an empty, read-only tmpfs (overlayfs needs two lower
// layers when it has no upper one). Neither mount is attached anywhere.
func overlaySelf() (*os.File, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil || !filepath.IsAbs(exe) || strings.HasSuffix(exe, " (deleted)") {
		return nil, fmt.Errorf("runtime binary path %q unusable", exe)
	}
	dir, base := filepath.Split(exe)
	dirFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirFD)
	empty, err := detachedMount("tmpfs", nil)
	if err != nil {
		return nil, err
	}
	defer unix.Close(empty)
	lower := fmt.Sprintf("/proc/self/fd/%d:/proc/self/fd/%d", dirFD, empty)
	mnt, err := detachedMount("overlay", map[string]string{"lowerdir": lower})
	if err != nil {
		return nil, err
	}
	defer unix.Close(mnt)
	fd, err := unix.Openat(mnt, base, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	var got, want unix.Stat_t
	if unix.Fstat(fd, &got) != nil || unix.Fstatat(dirFD, base, &want, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		got.Mode&unix.S_IFMT != unix.S_IFREG || got.Size != want.Size {
		unix.Close(fd)
		return nil, fmt.Errorf("runtime binary changed under the overlay")
	}
	return os.NewFile(uintptr(fd), "berth-runtime"), nil
}

// detachedMount makes a read-only mount of a new filesystem that is not
// attached to any mount tree and returns its descriptor.
func detachedMount(fstype string, opts map[string]string) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	for k, v := range opts {
		if err := unix.FsconfigSetString(fs, k, v); err != nil {
			return -1, fmt.Errorf("%s %s: %w", fstype, k, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
}

// memfdSelf returns a sealed in-memory copy of the running binary.
func memfdSelf() (*os.File, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open runtime binary: %w", err)
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat runtime binary: %w", err)
	}
	fd, err := unix.MemfdCreate("berth-runtime", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|mfdExec)
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate("berth-runtime", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "berth-runtime")
	if err := copyAll(fd, int(self.Fd()), st.Size()); err != nil {
		mem.Close()
		return nil, fmt.Errorf("copy runtime binary: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal runtime binary copy: %w", err)
	}
	return mem, nil
}

// copyAll copies size bytes from in to out inside the kernel.
func copyAll(out, in int, size int64) error {
	for size > 0 {
		n, err := unix.Sendfile(out, in, nil, int(min(size, 1<<30)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("short copy: %d bytes left", size)
		}
		size -= int64(n)
	}
	return nil
}
