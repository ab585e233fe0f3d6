package seccomp

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// export renders a filter as a classic BPF program. libseccomp 2.5 can only
// write it to a file descriptor, so it goes through a memfd.
func export(filter *libseccomp.ScmpFilter) ([]unix.SockFilter, error) {
	fd, err := unix.MemfdCreate("berth-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: memfd for filter program: %w", err)
	}
	f := os.NewFile(uintptr(fd), "berth-seccomp")
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		return nil, fmt.Errorf("seccomp: export filter program: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp: rewind filter program: %w", err)
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("seccomp: read filter program: %w", err)
	}
	insns, err := decodeInsns(raw)
	if err != nil {
		return nil, fmt.Errorf("seccomp: exported %w", err)
	}
	return insns, nil
}

// install loads prog with seccomp(2) and flags bits for the calling thread.
// It returns the listener fd when bits has SECCOMP_FILTER_FLAG_NEW_LISTENER.
func install(prog []unix.SockFilter, bits uint) (int, error) {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(bits), uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return -1, errno
	}
	if bits&flagNewListener != 0 {
		return int(r), nil
	}
	if r != 0 {
		// With TSYNC and no listener, a positive result is the id of
		// a thread that could not be synchronised.
		return -1, fmt.Errorf("thread %d could not be synchronised", r)
	}
	return -1, nil
}
