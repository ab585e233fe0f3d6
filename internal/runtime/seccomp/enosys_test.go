package seccomp

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

func TestEnosysStubOnlyForErrnoDefault(t *testing.T) {
	if _, ok := nativeAudit[runtime.GOARCH]; !ok {
		t.Skipf("no ENOSYS stub on %s", runtime.GOARCH)
	}
	rules := []specs.LinuxSyscall{{Names: basicSyscalls, Action: specs.ActAllow}}
	for _, tc := range []struct {
		p    specs.LinuxSeccomp
		stub bool
	}{
		{specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: rules}, true},
		{specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(1), Syscalls: rules}, true},
		{specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.ENOSYS)), Syscalls: rules}, false},
		{specs.LinuxSeccomp{DefaultAction: specs.ActErrno}, false},
		{specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Syscalls: rules}, false},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno}}}, false},
	} {
		f, err := build(&tc.p)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := export(f)
		f.Release()
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(&tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if got := !slices.Equal(p.insns, plain); got != tc.stub {
			errno := "unset"
			if tc.p.DefaultErrnoRet != nil {
				errno = strconv.Itoa(int(*tc.p.DefaultErrnoRet))
			}
			t.Errorf("default %s errno %s, %d rules: stub %v, want %v", tc.p.DefaultAction, errno, len(tc.p.Syscalls), got, tc.stub)
		}
		if tc.stub && !slices.Equal(p.insns[len(p.insns)-len(plain):], plain) {
			t.Errorf("the stub changed the libseccomp program")
		}
	}
}

// Syscalls newer than any the profile names fail with ENOSYS; the ones it
// does not allow but could have known keep the default errno.
func TestLoadEnosysForSyscallsNewerThanProfile(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("syscall numbers below are x86-64's")
	}
	last := -1
	for _, n := range basicSyscalls {
		nr, err := libseccomp.GetSyscallFromName(n)
		if err != nil {
			t.Fatal(n, err)
		}
		last = max(last, int(nr))
	}
	const mkdir, pidfdOpen, faccessat2 = 83, 434, 439
	if last >= pidfdOpen {
		t.Fatalf("allow list reaches syscall %d", last)
	}
	p := specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: basicSyscalls, Action: specs.ActAllow}}}
	// (Not uretprobe, 335: the kernel runs it past seccomp.)
	r := runChild(t, p, probeMode, strconv.Itoa(mkdir), strconv.Itoa(pidfdOpen), strconv.Itoa(faccessat2))
	want := []string{"83:EPERM", "434:ENOSYS", "439:ENOSYS"}
	if got := strings.Fields(r.out); r.code != 0 || !slices.Equal(got, want) {
		t.Errorf("exit %d output %q, want %v", r.code, r.out, want)
	}
	// With KILL_PROCESS as default no stub softens it.
	p.DefaultAction = specs.ActKillProcess
	r = runChild(t, p, probeMode, strconv.Itoa(faccessat2))
	if r.sig != unix.SIGSYS {
		t.Errorf("default KILL_PROCESS: exit %d signal %v output %q, want SIGSYS", r.code, r.sig, r.out)
	}
}
