package seccomp

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// A deny-by-default profile (defaultAction SCMP_ACT_ERRNO, usually EPERM,
// as in Docker's) also denies the syscalls added to Linux after the profile
// was written, and a C library that probes a new syscall falls back to an
// older one on ENOSYS only, not on EPERM. So, as runc does, the filter
// answers ENOSYS for native syscalls numbered above every syscall the profile
// names: those the profile's author could not have known. Syscalls the
// profile names, and those of other architectures, keep the profile's
// actions. Profiles with another default action (ALLOW, LOG, KILL, TRAP,
// TRACE) are left exactly as written.

// nativeAudit maps the Go architecture to the kernel's AUDIT_ARCH value in
// seccomp_data.arch. Architectures without an entry get no ENOSYS stub.
var nativeAudit = map[string]uint32{
	"amd64":   unix.AUDIT_ARCH_X86_64,
	"arm64":   unix.AUDIT_ARCH_AARCH64,
	"riscv64": unix.AUDIT_ARCH_RISCV64,
	"ppc64le": unix.AUDIT_ARCH_PPC64LE,
}

// x32SyscallBit marks x32 syscalls, which the kernel reports with the
// x86-64 audit architecture.
const x32SyscallBit = 0x40000000

// bpfMaxInsns is the kernel's limit on a filter program (BPF_MAXINSNS).
const bpfMaxInsns = 4096

// enosysStub returns the instructions to put before the libseccomp program
// of s, or nil when s gets none.
func enosysStub(s *specs.LinuxSeccomp) []unix.SockFilter {
	if s.DefaultAction != specs.ActErrno || (s.DefaultErrnoRet != nil && *s.DefaultErrnoRet == uint(unix.ENOSYS)) {
		return nil
	}
	arch, ok := nativeAudit[runtime.GOARCH]
	if !ok {
		return nil
	}
	last := int32(-1)
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			// Names this libseccomp does not know, or that only exist
			// on other architectures (negative pseudo numbers), do not
			// count: the stub is about native numbers.
			if nr, err := libseccomp.GetSyscallFromName(name); err == nil && int32(nr) > last {
				last = int32(nr)
			}
		}
	}
	if last < 0 {
		return nil
	}
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jgt   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		// offsetof(struct seccomp_data, nr) and (…, arch)
		offNr, offArch = 0, 4
	)
	// Jump offsets count the instructions skipped: "to program" is the
	// distance to the first instruction after the stub.
	stub := []unix.SockFilter{
		{Code: ldAbs, K: offArch},
		{Code: jeq, K: arch}, // Jf: to program, set below
		{Code: ldAbs, K: offNr},
	}
	if runtime.GOARCH == "amd64" {
		stub = append(stub, unix.SockFilter{Code: jset, K: x32SyscallBit, Jt: 2}) // x32: to program
	}
	stub = append(stub,
		unix.SockFilter{Code: jgt, K: uint32(last), Jf: 1}, // known: to program
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	)
	stub[1].Jf = uint8(len(stub) - 2)
	return stub
}

// withEnosysStub prepends the stub for s to a libseccomp program. The
// program must start by loading seccomp_data.arch, as libseccomp's do, since
// the stub leaves other values in the accumulator.
func withEnosysStub(s *specs.LinuxSeccomp, prog []unix.SockFilter) []unix.SockFilter {
	stub := enosysStub(s)
	if stub == nil || len(prog) == 0 || len(stub)+len(prog) > bpfMaxInsns ||
		prog[0] != (unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}) {
		return prog
	}
	return append(stub, prog...)
}
