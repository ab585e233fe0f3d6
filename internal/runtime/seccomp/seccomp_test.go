package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
)

// The child mode: the test binary re-executed with these variables loads a
// profile on its locked thread, as the container init does, then execs
// busybox (or reports its threads' filters).
const (
	envChild    = "BERTH_SECCOMP_TEST_CHILD" // JSON childSpec
	exitLoad    = 120                        // Load failed
	exitSend    = 121                        // SendListener failed
	exitExec    = 122                        // execve failed
	threadsMode = "report-thread-filters"    // instead of exec
	noNNPMode   = "without-no-new-privs"     // skip PR_SET_NO_NEW_PRIVS
	probeMode   = "probe-syscalls"           // call the syscall numbers in Args
)

type childSpec struct {
	Profile specs.LinuxSeccomp `json:"profile"`
	Args    []string           `json:"args"`
	Mode    string             `json:"mode,omitempty"`
	// Program, when set, is a marshalled Program the child installs
	// instead of compiling Profile, as an init given one by create does.
	Program []byte `json:"program,omitempty"`

	attr *syscall.SysProcAttr // how the parent starts the child
	exe  string               // the test binary to run, if not os.Args[0]
}

func TestMain(m *testing.M) {
	if v := os.Getenv(envChild); v != "" {
		os.Exit(child(v))
	}
	os.Exit(m.Run())
}

func child(v string) int {
	runtime.LockOSThread()
	var cs childSpec
	if err := json.Unmarshal([]byte(v), &cs); err != nil {
		fmt.Fprintln(os.Stderr, "child spec:", err)
		return 2
	}
	if cs.Mode == threadsMode {
		// Make sure the process has several threads to synchronise.
		done := make(chan struct{})
		for range 4 {
			go func() { runtime.LockOSThread(); <-done }()
		}
		defer close(done)
	}
	if cs.Mode != noNNPMode {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "no_new_privs:", err)
			return 2
		}
	}
	var fd int
	var err error
	if cs.Program != nil {
		var p Program
		if err = p.UnmarshalBinary(cs.Program); err == nil {
			fd, err = p.Load()
		}
	} else {
		fd, err = Load(&cs.Profile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return exitLoad
	}
	if fd >= 0 {
		st := specs.ContainerProcessState{
			Pid:      os.Getpid(),
			Metadata: cs.Profile.ListenerMetadata,
			State:    specs.State{Version: specs.Version, ID: "seccomp-test", Status: specs.StateCreating, Pid: os.Getpid()},
		}
		if err := SendListener(cs.Profile.ListenerPath, fd, st); err != nil {
			fmt.Fprintln(os.Stderr, "send listener:", err)
			return exitSend
		}
		unix.Close(fd)
	}
	if cs.Mode == probeMode {
		for _, a := range cs.Args {
			nr, _ := strconv.Atoi(a)
			_, _, e := unix.Syscall(uintptr(nr), 0, 0, 0)
			fmt.Printf("%d:%s\n", nr, unix.ErrnoName(e))
		}
		return 0
	}
	if cs.Mode == threadsMode {
		tid := unix.Gettid()
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "status"))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
					who := "other"
					if t.Name() == strconv.Itoa(tid) {
						who = "self"
					}
					fmt.Printf("%s %s\n", who, strings.TrimSpace(v))
				}
			}
		}
		return 0
	}
	err = unix.Exec(testutil.BusyboxPath, append([]string{"busybox"}, cs.Args...), []string{"PATH=/bin"})
	fmt.Fprintln(os.Stderr, "exec:", err)
	return exitExec
}

type result struct {
	out  string
	code int
	sig  syscall.Signal
	pid  int
}

// runChild runs profile in a re-executed test binary that then runs
// busybox with args, and returns its combined output and exit status.
func runChild(t *testing.T, profile specs.LinuxSeccomp, mode string, args ...string) result {
	t.Helper()
	return runChildSpec(t, childSpec{Profile: profile, Args: args, Mode: mode})
}

func runChildSpec(t *testing.T, cs childSpec) result {
	t.Helper()
	args := cs.Args
	if _, err := os.Stat(testutil.BusyboxPath); err != nil {
		t.Fatalf("busybox-static is needed: %v", err)
	}
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	exe := os.Args[0]
	if cs.exe != "" {
		exe = cs.exe
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+string(b))
	cmd.Dir = "/"
	cmd.SysProcAttr = cs.attr
	out, err := cmd.CombinedOutput()
	if cmd.Process == nil {
		t.Fatalf("start child: %v", err)
	}
	r := result{out: string(out), pid: cmd.Process.Pid}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			r.sig = ws.Signal()
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		t.Fatalf("run child: %v", err)
	}
	t.Logf("child %v: exit %d, signal %d, output %q", args, r.code, int(r.sig), r.out)
	return r
}

func uintp(v uint) *uint { return &v }

func TestValidateAcceptsGoodProfiles(t *testing.T) {
	for name, p := range map[string]*specs.LinuxSeccomp{
		"nil":   nil,
		"allow": {DefaultAction: specs.ActAllow},
		"full": {
			DefaultAction:   specs.ActErrno,
			DefaultErrnoRet: uintp(38),
			Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64},
			Flags:           []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
			ListenerPath:    "/run/agent.sock",
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "write", "no_such_syscall_anywhere"}, Action: specs.ActAllow},
				{Names: []string{"mkdir"}, Action: specs.ActErrno, ErrnoRet: uintp(30)},
				{Names: []string{"ptrace"}, Action: specs.ActTrace, ErrnoRet: uintp(1)},
				{Names: []string{"mount"}, Action: specs.ActNotify},
				{Names: []string{"kill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
					{Index: 1, Op: specs.OpMaskedEqual, Value: 0, ValueTwo: 0x10}, {Index: 5, Op: specs.OpNotEqual}}},
			},
		},
	} {
		if err := Validate(p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateRejectsBadFields(t *testing.T) {
	allow := func(mod func(*specs.LinuxSeccomp)) *specs.LinuxSeccomp {
		p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno}}}
		mod(p)
		return p
	}
	for _, tc := range []struct {
		name string
		p    *specs.LinuxSeccomp
		want string
	}{
		{"unknown default action", allow(func(p *specs.LinuxSeccomp) { p.DefaultAction = "SCMP_ACT_BOGUS" }), `defaultAction: unknown action "SCMP_ACT_BOGUS"`},
		{"missing default action", allow(func(p *specs.LinuxSeccomp) { p.DefaultAction = "" }), "defaultAction: action is required"},
		{"default errno on allow", allow(func(p *specs.LinuxSeccomp) { p.DefaultErrnoRet = uintp(1) }), "errnoRet 1 is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"},
		{"default notify", allow(func(p *specs.LinuxSeccomp) { p.DefaultAction = specs.ActNotify; p.ListenerPath = "/x" }), "defaultAction SCMP_ACT_NOTIFY is not allowed"},
		{"unknown arch", allow(func(p *specs.LinuxSeccomp) { p.Architectures = []specs.Arch{"SCMP_ARCH_Z80"} }), `unknown architecture "SCMP_ARCH_Z80"`},
		{"unknown flag", allow(func(p *specs.LinuxSeccomp) { p.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FAST"} }), `unknown flag "SECCOMP_FILTER_FLAG_FAST"`},
		{"unknown rule action", allow(func(p *specs.LinuxSeccomp) { p.Syscalls[0].Action = "SCMP_ACT_MAYBE" }), `syscalls[0] (mkdir): action: unknown action "SCMP_ACT_MAYBE"`},
		{"errno on kill", allow(func(p *specs.LinuxSeccomp) {
			p.Syscalls[0].Action = specs.ActKillProcess
			p.Syscalls[0].ErrnoRet = uintp(5)
		}), "syscalls[0] (mkdir): action: errnoRet 5 is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_KILL_PROCESS"},
		{"errno too big", allow(func(p *specs.LinuxSeccomp) { p.Syscalls[0].ErrnoRet = uintp(70000) }), "errnoRet 70000 out of range"},
		{"no names", allow(func(p *specs.LinuxSeccomp) { p.Syscalls[0].Names = nil }), "syscalls[0]: names must list at least one syscall"},
		{"empty name", allow(func(p *specs.LinuxSeccomp) { p.Syscalls[0].Names = []string{"mkdir", ""} }), "empty syscall name"},
		{"unknown operator", allow(func(p *specs.LinuxSeccomp) {
			p.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_SIMILAR"}}
		}), `syscalls[0] (mkdir): args[0]: unknown operator "SCMP_CMP_SIMILAR"`},
		{"arg index 6", allow(func(p *specs.LinuxSeccomp) {
			p.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}
		}), "args[0]: argument index 6 out of range"},
		{"notify without listener", allow(func(p *specs.LinuxSeccomp) { p.Syscalls[0].Action = specs.ActNotify }), "SCMP_ACT_NOTIFY is used but listenerPath is not set"},
		{"notify on write", allow(func(p *specs.LinuxSeccomp) {
			p.ListenerPath = "/x"
			p.Syscalls[0].Action = specs.ActNotify
			p.Syscalls[0].Names = []string{"mount", "write"}
		}), "SCMP_ACT_NOTIFY on write is not allowed"},
		{"metadata without listener", allow(func(p *specs.LinuxSeccomp) { p.ListenerMetadata = "m" }), "listenerMetadata is set but listenerPath is not"},
	} {
		err := Validate(tc.p)
		if err == nil {
			t.Errorf("%s: Validate accepted it", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.want)
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: error %q is not InvalidArgument", tc.name, err)
		}
		// Load refuses what Validate refuses, before touching the thread.
		if _, lerr := Load(tc.p); lerr == nil || lerr.Error() != err.Error() {
			t.Errorf("%s: Load error %v, want %v", tc.name, lerr, err)
		}
	}
}

func TestFlagProbe(t *testing.T) {
	if flagSupported(1 << 30) {
		t.Error("an undefined flag bit is reported supported")
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	// SECCOMP_FILTER_FLAG_TSYNC exists since Linux 3.17, LOG since 4.14.
	if !flagSupported(flagTsync) || !flagSupported(flagLog) {
		t.Errorf("TSYNC or LOG reported unsupported on %s", unix.ByteSliceToString(uts.Release[:]))
	}
}

func TestFeatures(t *testing.T) {
	f := Features()
	if f.Enabled == nil || !*f.Enabled {
		t.Error("seccomp not reported enabled")
	}
	for _, a := range []specs.LinuxSeccompAction{specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap,
		specs.ActErrno, specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify} {
		if !slices.Contains(f.Actions, string(a)) {
			t.Errorf("action %s missing from %v", a, f.Actions)
		}
	}
	if len(f.Actions) != 9 || len(f.Operators) != 7 {
		t.Errorf("got %d actions, %d operators; want 9, 7", len(f.Actions), len(f.Operators))
	}
	// The reported architectures are exactly those a profile may use.
	for a := range archs {
		err := Validate(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{a}})
		if reported := slices.Contains(f.Archs, string(a)); reported != (err == nil) {
			t.Errorf("arch %s: reported %v, Validate: %v", a, reported, err)
		}
	}
	if !slices.Contains(f.Operators, string(specs.OpMaskedEqual)) || !slices.Contains(f.Archs, string(specs.ArchX86_64)) {
		t.Errorf("operators %v / archs %v incomplete", f.Operators, f.Archs)
	}
	want := []string{"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
	if !slices.Equal(f.KnownFlags, want) {
		t.Errorf("known flags %v, want %v", f.KnownFlags, want)
	}
	for _, s := range f.SupportedFlags {
		if !slices.Contains(f.KnownFlags, s) {
			t.Errorf("supported flag %s is not a known flag", s)
		}
	}
	if !slices.Contains(f.SupportedFlags, "SECCOMP_FILTER_FLAG_TSYNC") {
		t.Errorf("supported flags %v lack TSYNC", f.SupportedFlags)
	}
}

func TestConditionsSameIndexAreORed(t *testing.T) {
	sets, err := conditions([]specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: 0}, {Index: 1, Op: specs.OpEqualTo, Value: 28}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || len(sets[0]) != 1 || len(sets[1]) != 1 {
		t.Errorf("same-index args gave %v, want two single-condition rules", sets)
	}
	sets, err = conditions([]specs.LinuxSeccompArg{{Index: 0, Op: specs.OpGreaterThan, Value: 0}, {Index: 1, Op: specs.OpEqualTo, Value: 28}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 1 || len(sets[0]) != 2 {
		t.Errorf("distinct-index args gave %v, want one rule with both conditions", sets)
	}
	sets, _ = conditions(nil)
	if len(sets) != 1 || sets[0] != nil {
		t.Errorf("no args gave %v, want one unconditional rule", sets)
	}
}

func allowWith(rules ...specs.LinuxSyscall) specs.LinuxSeccomp {
	return specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules}
}

func TestLoadErrnoDeniesWithDefaultAndCustomErrno(t *testing.T) {
	for _, tc := range []struct {
		errnoRet *uint
		msg      string
	}{
		{nil, "Operation not permitted"},
		{uintp(uint(unix.EROFS)), "Read-only file system"},
	} {
		dir := filepath.Join(t.TempDir(), "made")
		r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: tc.errnoRet}),
			"", "sh", "-c", "echo before; mkdir "+dir)
		if r.code != 1 || !strings.Contains(r.out, "before") || !strings.Contains(r.out, tc.msg) {
			t.Errorf("errnoRet %v: exit %d output %q, want exit 1 with %q", tc.errnoRet, r.code, r.out, tc.msg)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("errnoRet %v: directory was created (stat: %v)", tc.errnoRet, err)
		}
	}
}

func TestLoadUnknownSyscallNamesAreSkipped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made")
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"no_such_syscall_anywhere", "mkdir", "mkdirat"}, Action: specs.ActErrno}),
		"", "mkdir", dir)
	if r.code != 1 || !strings.Contains(r.out, "Operation not permitted") {
		t.Errorf("exit %d output %q, want mkdir denied", r.code, r.out)
	}
}

// The runtime-tools linux_seccomp case: getcwd denied must not stop the
// container process from starting.
func TestLoadDenyGetcwdStillExecs(t *testing.T) {
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"getcwd"}, Action: specs.ActErrno}), "", "sh", "-c", "echo started; busybox pwd")
	if !strings.Contains(r.out, "started") || r.code == 0 {
		t.Errorf("exit %d output %q, want the shell started and pwd failing", r.code, r.out)
	}
}

func TestLoadArgumentOperators(t *testing.T) {
	// The shell signals itself with 0 (probe) and 28 (SIGWINCH, ignored by
	// default) and prints which kill(2) calls the filter denied.
	const script = `kill -0 $$ 2>/dev/null && echo 0:allowed || echo 0:denied; kill -28 $$ 2>/dev/null && echo 28:allowed || echo 28:denied`
	for _, tc := range []struct {
		name string
		args []specs.LinuxSeccompArg
		want string
	}{
		{"NE 0", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpNotEqual, Value: 0}}, "0:allowed 28:denied"},
		{"LT 28", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpLessThan, Value: 28}}, "0:denied 28:allowed"},
		{"LE 0", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpLessEqual, Value: 0}}, "0:denied 28:allowed"},
		{"EQ 28", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: 28}}, "0:allowed 28:denied"},
		{"GE 28", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpGreaterEqual, Value: 28}}, "0:allowed 28:denied"},
		{"GT 0", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpGreaterThan, Value: 0}}, "0:allowed 28:denied"},
		{"MASKED_EQ 0x10", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpMaskedEqual, Value: 0x10, ValueTwo: 0x10}}, "0:allowed 28:denied"},
		{"same index ORed", []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: 0}, {Index: 1, Op: specs.OpEqualTo, Value: 28}}, "0:denied 28:denied"},
		{"distinct index ANDed", []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1}, {Index: 1, Op: specs.OpEqualTo, Value: 28}}, "0:allowed 28:allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"kill"}, Action: specs.ActErrno, Args: tc.args}), "", "sh", "-c", script)
			if got := strings.Join(strings.Fields(r.out), " "); got != tc.want || r.code != 0 {
				t.Errorf("exit %d output %q, want %q", r.code, got, tc.want)
			}
		})
	}
}

func TestLoadPersonalityArgument(t *testing.T) {
	// linux32 calls personality(PER_LINUX32); querying (0xffffffff) stays allowed.
	p := allowWith(specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EROFS)),
		Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpNotEqual, Value: 0xffffffff}}})
	r := runChild(t, p, "", "linux32", "true")
	if r.code == 0 || !strings.Contains(r.out, "Read-only file system") {
		t.Errorf("linux32: exit %d output %q, want personality denied with EROFS", r.code, r.out)
	}
}

// basicSyscalls lets busybox and the Go runtime of the test child work.
var basicSyscalls = []string{"read", "write", "close", "execve", "exit", "exit_group", "brk", "mmap", "munmap", "mprotect",
	"arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "getrandom", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "futex", "getpid", "gettid", "tgkill", "getuid", "geteuid",
	"getgid", "getegid", "getppid", "uname", "readlink", "newfstatat", "fstat", "stat", "lstat", "openat", "open",
	"fcntl", "ioctl", "sched_yield", "nanosleep", "clock_gettime", "madvise", "prctl", "clone", "wait4", "getcwd"}

func TestLoadDefaultErrnoWithAllowList(t *testing.T) {
	p := specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.EACCES)),
		Syscalls: []specs.LinuxSyscall{{Names: basicSyscalls, Action: specs.ActAllow}}}
	dir := filepath.Join(t.TempDir(), "made")
	r := runChild(t, p, "", "sh", "-c", "echo allowed-ok; mkdir "+dir)
	if r.code != 1 || !strings.Contains(r.out, "allowed-ok") || !strings.Contains(r.out, "Permission denied") {
		t.Errorf("exit %d output %q, want echo to work and mkdir to fail with EACCES", r.code, r.out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory was created (stat: %v)", err)
	}
}

func TestLoadKillActions(t *testing.T) {
	for _, a := range []specs.LinuxSeccompAction{specs.ActKillProcess, specs.ActKill, specs.ActKillThread} {
		dir := filepath.Join(t.TempDir(), "made")
		r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: a}), "", "mkdir", dir)
		if r.sig != unix.SIGSYS {
			t.Errorf("%s: exit %d signal %v, want killed by SIGSYS", a, r.code, r.sig)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: directory was created (stat: %v)", a, err)
		}
	}
}

func TestLoadTrapSendsSIGSYS(t *testing.T) {
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActTrap}), "", "mkdir", filepath.Join(t.TempDir(), "m"))
	if r.sig != unix.SIGSYS {
		t.Errorf("exit %d signal %v, want SIGSYS", r.code, r.sig)
	}
}

func TestLoadTraceWithoutTracerFailsWithENOSYS(t *testing.T) {
	// With no tracer attached, SECCOMP_RET_TRACE makes the syscall fail with ENOSYS.
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActTrace}), "", "mkdir", filepath.Join(t.TempDir(), "m"))
	if r.code != 1 || !strings.Contains(r.out, "Function not implemented") {
		t.Errorf("exit %d output %q, want ENOSYS", r.code, r.out)
	}
}

func TestLoadLogAllows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made")
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActLog}), "", "mkdir", dir)
	if r.code != 0 || r.sig != 0 {
		t.Errorf("exit %d signal %v output %q, want success", r.code, r.sig, r.out)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("directory not created: %v", err)
	}
}

func TestLoadFlags(t *testing.T) {
	supported := Features().SupportedFlags
	for _, f := range []specs.LinuxSeccompFlag{FlagTsync, specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv} {
		if !slices.Contains(supported, string(f)) {
			t.Logf("%s not supported by this kernel", f)
			continue
		}
		p := allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno})
		p.Flags = []specs.LinuxSeccompFlag{f}
		r := runChild(t, p, "", "sh", "-c", "echo ok; mkdir "+filepath.Join(t.TempDir(), "m"))
		if r.code != 1 || !strings.Contains(r.out, "ok") || !strings.Contains(r.out, "Operation not permitted") {
			t.Errorf("%s: exit %d output %q, want the filter in force", f, r.code, r.out)
		}
	}
}

// Without TSYNC only the calling thread is filtered; with it, every thread.
func TestLoadTsyncScope(t *testing.T) {
	count := func(out string) (self, others, filtered int) {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			who, n, _ := strings.Cut(l, " ")
			switch {
			case who == "self":
				self++
				if n != "0" {
					filtered++
				}
			case who == "other":
				others++
				if n != "0" {
					filtered++
				}
			}
		}
		return
	}
	p := allowWith(specs.LinuxSyscall{Names: []string{"mkdir"}, Action: specs.ActErrno})
	r := runChild(t, p, threadsMode)
	self, others, filtered := count(r.out)
	if r.code != 0 || self != 1 || others < 1 || filtered != 1 {
		t.Errorf("without TSYNC: exit %d output %q, want only the calling thread filtered", r.code, r.out)
	}
	if !flagSupported(flagTsync) {
		return
	}
	p.Flags = []specs.LinuxSeccompFlag{FlagTsync}
	r = runChild(t, p, threadsMode)
	self, others, filtered = count(r.out)
	if r.code != 0 || self != 1 || others < 1 || filtered != self+others {
		t.Errorf("with TSYNC: exit %d output %q, want every thread filtered", r.code, r.out)
	}
}

func TestLoadWithoutNoNewPrivsNeedsCapSysAdmin(t *testing.T) {
	testutil.RequiresRoot(t)
	cs := childSpec{Profile: allowWith(specs.LinuxSyscall{Names: []string{"mkdir"}, Action: specs.ActErrno}), Mode: noNNPMode, Args: []string{"true"},
		attr: &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}}
	// The unprivileged child runs a copy of the test binary it can reach.
	dir, err := os.MkdirTemp("", "berth-seccomp-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	cs.exe = filepath.Join(dir, "seccomp.test")
	if err := os.WriteFile(cs.exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	r := runChildSpec(t, cs)
	if r.code != exitLoad || !strings.Contains(r.out, "no_new_privs is not set and the thread lacks CAP_SYS_ADMIN") {
		t.Errorf("exit %d output %q, want Load to explain the EACCES", r.code, r.out)
	}
	// As root (CAP_SYS_ADMIN), no_new_privs is not needed.
	cs.attr = nil
	if r := runChildSpec(t, cs); r.code != 0 {
		t.Errorf("as root without no_new_privs: exit %d output %q", r.code, r.out)
	}
}

func TestUsesNotify(t *testing.T) {
	if UsesNotify(nil) || UsesNotify(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}) || !UsesNotify(notifyProfile()) {
		t.Error("UsesNotify is wrong")
	}
}

func TestLoadDeniedExecveIsReported(t *testing.T) {
	r := runChild(t, allowWith(specs.LinuxSyscall{Names: []string{"execve", "execveat"}, Action: specs.ActErrno}), "", "true")
	if r.code != exitExec || !strings.Contains(r.out, "exec: operation not permitted") {
		t.Errorf("exit %d output %q, want the init to report exec denied", r.code, r.out)
	}
}

// agentResult is what a test seccomp agent saw: it accepts one connection,
// decodes the container process state, takes the listener fd from it and
// answers every notification with EROFS until the filtered process is gone.
type agentResult struct {
	state    specs.ContainerProcessState
	notified []string
	err      error
}

// runAgent serves sock; the result comes once stop was called (after the
// child exited), so a child that never connects cannot hang the test.
func runAgent(t *testing.T, sock string) (result <-chan agentResult, stop func()) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stop = func() { l.Close() }
	t.Cleanup(stop)
	ch := make(chan agentResult, 1)
	go func() {
		var res agentResult
		defer func() { ch <- res }()
		conn, err := l.AcceptUnix()
		if err != nil {
			res.err = err
			return
		}
		defer conn.Close()
		buf := make([]byte, 64<<10)
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			res.err = fmt.Errorf("read state: %w", err)
			return
		}
		// The whole JSON may come in more than one read.
		data := buf[:n]
		for !json.Valid(data) {
			m, err := conn.Read(buf[n:])
			if err != nil {
				res.err = fmt.Errorf("read rest of state %q: %w", data, err)
				return
			}
			n += m
			data = buf[:n]
		}
		if err := json.Unmarshal(data, &res.state); err != nil {
			res.err = fmt.Errorf("decode state %q: %w", data, err)
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			res.err = fmt.Errorf("control messages %v: %v", msgs, err)
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			res.err = fmt.Errorf("rights %v: %v", fds, err)
			return
		}
		fd := libseccomp.ScmpFd(fds[0])
		defer unix.Close(fds[0])
		for {
			req, err := libseccomp.NotifReceive(fd)
			if err != nil {
				// ENOENT once the filtered process has exited.
				return
			}
			name, _ := req.Data.Syscall.GetName()
			res.notified = append(res.notified, name)
			if err := libseccomp.NotifRespond(fd, &libseccomp.ScmpNotifResp{ID: req.ID, Error: int32(unix.EROFS)}); err != nil {
				res.err = fmt.Errorf("respond: %w", err)
				return
			}
		}
	}()
	return ch, stop
}

func TestLoadNotifySendsListenerToAgent(t *testing.T) {
	for _, fl := range [][]specs.LinuxSeccompFlag{nil, {FlagTsync}, {specs.LinuxSeccompFlagWaitKillableRecv}} {
		t.Run(fmt.Sprint(fl), func(t *testing.T) {
			for _, f := range fl {
				if !slices.Contains(Features().SupportedFlags, string(f)) {
					t.Skipf("%s not supported by this kernel", f)
				}
			}
			sock := filepath.Join(t.TempDir(), "agent.sock")
			agent, stop := runAgent(t, sock)
			p := allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActNotify})
			p.ListenerPath = sock
			p.ListenerMetadata = "berth-test-metadata"
			p.Flags = fl
			dir := filepath.Join(t.TempDir(), "made")
			r := runChild(t, p, "", "sh", "-c", "echo ok; mkdir "+dir)
			stop()
			res := <-agent
			if res.err != nil {
				t.Fatalf("agent: %v", res.err)
			}
			if r.code != 1 || !strings.Contains(r.out, "ok") || !strings.Contains(r.out, "Read-only file system") {
				t.Errorf("exit %d output %q, want mkdir failing with the agent's EROFS", r.code, r.out)
			}
			if !slices.Equal(res.notified, []string{"mkdir"}) {
				t.Errorf("agent saw %v, want [mkdir]", res.notified)
			}
			st := res.state
			if st.Version != specs.Version || !slices.Equal(st.Fds, []string{specs.SeccompFdName}) || st.Pid != r.pid ||
				st.Metadata != "berth-test-metadata" || st.State.ID != "seccomp-test" || st.State.Status != specs.StateCreating {
				t.Errorf("state %+v, want version %s, fds [seccompFd], pid %d, the metadata and the container state", st, specs.Version, r.pid)
			}
		})
	}
}

func TestSendListenerErrors(t *testing.T) {
	err := SendListener(filepath.Join(t.TempDir(), "nobody-listens.sock"), 0, specs.ContainerProcessState{})
	if err == nil || !strings.Contains(err.Error(), "connect to listener") {
		t.Errorf("got %v, want a connect error naming the listener", err)
	}
	if err := SendListener("/x", -1, specs.ContainerProcessState{}); err == nil {
		t.Error("a negative fd was accepted")
	}
}
