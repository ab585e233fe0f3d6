package runtime

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mfdExec asks for an executable memfd where the kernel restricts memfds by
// default (vm.memfd_noexec); older kernels reject the flag.
const mfdExec = 0x10

// sealedSelf returns a sealed, read-only in-memory copy of the running
// binary. The container's init is started from this copy, never from
// /proc/self/exe, so a process in the container that opens the init's
// /proc/PID/exe can neither write the runtime binary on the host nor the copy
// (CVE-2019-5736).
func sealedSelf() (*os.File, error) {
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
