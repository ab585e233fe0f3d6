// Package seccomp owns the container's system call filter: it validates the
// runtime-spec "linux.seccomp" object on the host (so `create` fails early
// with an error naming the bad field), builds the filter with libseccomp and
// loads it with seccomp(2) for the init's exec thread, hands a user
// notification listener to a seccomp agent, and reports what the runtime
// supports for `berth-runtime features`.
//
// The filter is compiled by libseccomp but loaded by this package with the
// exact flags the profile asks for: libseccomp-golang always requests
// SECCOMP_FILTER_FLAG_TSYNC and may set no_new_privs itself, while the
// runtime-spec leaves both to the profile and to process.noNewPrivileges.
// Like runc, a deny-by-default (SCMP_ACT_ERRNO) profile answers ENOSYS for
// syscalls newer than any it names (see enosys.go), so that programs fall
// back from syscalls the profile's author could not know.
package seccomp

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// Kernel filter flags (linux/seccomp.h). x/sys/unix lacks the newer ones.
const (
	flagTsync            = 1 << 0 // SECCOMP_FILTER_FLAG_TSYNC
	flagLog              = 1 << 1 // SECCOMP_FILTER_FLAG_LOG
	flagSpecAllow        = 1 << 2 // SECCOMP_FILTER_FLAG_SPEC_ALLOW
	flagNewListener      = 1 << 3 // SECCOMP_FILTER_FLAG_NEW_LISTENER
	flagTsyncEsrch       = 1 << 4 // SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	flagWaitKillableRecv = 1 << 5 // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
)

// FlagTsync is the runtime-spec name of SECCOMP_FILTER_FLAG_TSYNC, which
// specs-go has no constant for.
const FlagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

// flags maps each runtime-spec flag to its kernel bit, in the order
// `features` reports them.
var flags = []struct {
	name specs.LinuxSeccompFlag
	bit  uint
}{
	{FlagTsync, flagTsync},
	{specs.LinuxSeccompFlagLog, flagLog},
	{specs.LinuxSeccompFlagSpecAllow, flagSpecAllow},
	{specs.LinuxSeccompFlagWaitKillableRecv, flagWaitKillableRecv},
}

// actions maps each runtime-spec action to libseccomp's.
var actions = map[specs.LinuxSeccompAction]libseccomp.ScmpAction{
	specs.ActKill:        libseccomp.ActKillThread,
	specs.ActKillProcess: libseccomp.ActKillProcess,
	specs.ActKillThread:  libseccomp.ActKillThread,
	specs.ActTrap:        libseccomp.ActTrap,
	specs.ActErrno:       libseccomp.ActErrno,
	specs.ActTrace:       libseccomp.ActTrace,
	specs.ActAllow:       libseccomp.ActAllow,
	specs.ActLog:         libseccomp.ActLog,
	specs.ActNotify:      libseccomp.ActNotify,
}

// operators maps each runtime-spec argument operator to libseccomp's.
var operators = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual:     libseccomp.CompareNotEqual,
	specs.OpLessThan:     libseccomp.CompareLess,
	specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
	specs.OpEqualTo:      libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
	specs.OpGreaterThan:  libseccomp.CompareGreater,
	specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
}

// archs maps each runtime-spec architecture to libseccomp's.
var archs = map[specs.Arch]libseccomp.ScmpArch{
	specs.ArchX86:         libseccomp.ArchX86,
	specs.ArchX86_64:      libseccomp.ArchAMD64,
	specs.ArchX32:         libseccomp.ArchX32,
	specs.ArchARM:         libseccomp.ArchARM,
	specs.ArchAARCH64:     libseccomp.ArchARM64,
	specs.ArchMIPS:        libseccomp.ArchMIPS,
	specs.ArchMIPS64:      libseccomp.ArchMIPS64,
	specs.ArchMIPS64N32:   libseccomp.ArchMIPS64N32,
	specs.ArchMIPSEL:      libseccomp.ArchMIPSEL,
	specs.ArchMIPSEL64:    libseccomp.ArchMIPSEL64,
	specs.ArchMIPSEL64N32: libseccomp.ArchMIPSEL64N32,
	specs.ArchPPC:         libseccomp.ArchPPC,
	specs.ArchPPC64:       libseccomp.ArchPPC64,
	specs.ArchPPC64LE:     libseccomp.ArchPPC64LE,
	specs.ArchS390:        libseccomp.ArchS390,
	specs.ArchS390X:       libseccomp.ArchS390X,
	specs.ArchPARISC:      libseccomp.ArchPARISC,
	specs.ArchPARISC64:    libseccomp.ArchPARISC64,
	specs.ArchRISCV64:     libseccomp.ArchRISCV64,
	specs.ArchLOONGARCH64: libseccomp.ArchLOONGARCH64,
	specs.ArchM68K:        libseccomp.ArchM68K,
	specs.ArchSH:          libseccomp.ArchSH,
	specs.ArchSHEB:        libseccomp.ArchSHEB,
}

// takesErrno reports whether an action carries a return code.
func takesErrno(a specs.LinuxSeccompAction) bool {
	return a == specs.ActErrno || a == specs.ActTrace
}

func invalid(format string, args ...any) error {
	return errdefs.InvalidArgument(fmt.Errorf("seccomp: "+format, args...))
}

// Validate checks a profile without loading it. Unknown syscall names are
// skipped (a profile lists syscalls of many kernels and architectures); an
// unknown action, operator, architecture or flag is an error naming it, as
// is an errnoRet on an action without a return code, an argument index
// beyond the sixth, SCMP_ACT_NOTIFY without a listenerPath, and a flag the
// running kernel does not support. Errors are errdefs.InvalidArgument,
// or errdefs.NotImplemented for a valid flag this kernel lacks.
//
// Validate also compiles the filter (and discards it), so what libseccomp
// refuses, such as an architecture this libseccomp does not know or rules
// that contradict each other, fails here too.
func Validate(s *specs.LinuxSeccomp) error {
	if s == nil {
		return nil
	}
	if err := check(s); err != nil {
		return err
	}
	filter, err := build(s)
	if err != nil {
		return errdefs.InvalidArgument(err)
	}
	filter.Release()
	return nil
}

// check validates a profile's fields, without libseccomp.
func check(s *specs.LinuxSeccomp) error {
	if err := checkAction("defaultAction", s.DefaultAction, s.DefaultErrnoRet); err != nil {
		return err
	}
	if s.DefaultAction == specs.ActNotify {
		return invalid("defaultAction SCMP_ACT_NOTIFY is not allowed: the init could not hand over the listener (use SCMP_ACT_NOTIFY on named syscalls)")
	}
	notify := false
	for _, a := range s.Architectures {
		if _, ok := archs[a]; !ok {
			return invalid("unknown architecture %q", a)
		}
	}
	if _, err := kernelFlags(s.Flags); err != nil {
		return err
	}
	for i, sc := range s.Syscalls {
		where := fmt.Sprintf("syscalls[%d] (%s)", i, strings.Join(sc.Names, ","))
		if len(sc.Names) == 0 {
			return invalid("syscalls[%d]: names must list at least one syscall", i)
		}
		for _, n := range sc.Names {
			if n == "" {
				return invalid("%s: empty syscall name", where)
			}
		}
		if err := checkAction(where+": action", sc.Action, sc.ErrnoRet); err != nil {
			return err
		}
		if sc.Action == specs.ActNotify {
			notify = true
			for _, n := range sc.Names {
				if notifyForbidden[n] {
					return invalid("%s: SCMP_ACT_NOTIFY on %s is not allowed: the init needs %s to hand the listener over before exec", where, n, n)
				}
			}
		}
		for j, a := range sc.Args {
			if _, ok := operators[a.Op]; !ok {
				return invalid("%s: args[%d]: unknown operator %q", where, j, a.Op)
			}
			if a.Index > 5 {
				return invalid("%s: args[%d]: argument index %d out of range (a syscall has 6 arguments, 0 to 5)", where, j, a.Index)
			}
		}
	}
	if notify && s.ListenerPath == "" {
		return invalid("SCMP_ACT_NOTIFY is used but listenerPath is not set")
	}
	if s.ListenerMetadata != "" && s.ListenerPath == "" {
		return invalid("listenerMetadata is set but listenerPath is not")
	}
	return nil
}

// notifyForbidden are the syscalls the init makes between Load and execve
// to pass the listener on: notifying them would wait for an agent that does
// not have the listener yet.
var notifyForbidden = map[string]bool{"write": true, "sendmsg": true, "sendto": true, "close": true}

func checkAction(where string, a specs.LinuxSeccompAction, errnoRet *uint) error {
	if _, ok := actions[a]; !ok {
		if a == "" {
			return invalid("%s: action is required", where)
		}
		return invalid("%s: unknown action %q", where, a)
	}
	if errnoRet != nil {
		if !takesErrno(a) {
			return invalid("%s: errnoRet %d is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not %s", where, *errnoRet, a)
		}
		if *errnoRet > 0xffff {
			return invalid("%s: errnoRet %d out of range (at most 65535)", where, *errnoRet)
		}
	}
	return nil
}

// kernelFlags turns the profile's flags into seccomp(2) flag bits, failing
// on an unknown flag or one the kernel does not support.
func kernelFlags(names []specs.LinuxSeccompFlag) (uint, error) {
	var bits uint
next:
	for _, n := range names {
		for _, f := range flags {
			if f.name == n {
				if !flagSupported(f.bit) {
					return 0, errdefs.NotImplemented(fmt.Errorf("seccomp: flag %s is not supported by this kernel", n))
				}
				bits |= f.bit
				continue next
			}
		}
		return 0, invalid("unknown flag %q", n)
	}
	return bits, nil
}

// flagSupported asks the kernel whether it knows a filter flag: loading a
// NULL program with a known flag fails with EFAULT (the program address is
// checked after the flags), an unknown flag with EINVAL.
// WAIT_KILLABLE_RECV is only valid with a listener, so it is asked with one.
func flagSupported(bit uint) bool {
	if bit&flagWaitKillableRecv != 0 {
		bit |= flagNewListener
	}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(bit), 0)
	return errno == unix.EFAULT
}

// action converts a validated runtime-spec action with its return code.
func action(a specs.LinuxSeccompAction, errnoRet *uint) libseccomp.ScmpAction {
	act := actions[a]
	if takesErrno(a) {
		code := uint(unix.EPERM)
		if errnoRet != nil {
			code = *errnoRet
		}
		act = act.SetReturnCode(int16(code))
	}
	return act
}

// build compiles a checked profile into a libseccomp filter.
func build(s *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	filter, err := libseccomp.NewFilter(action(s.DefaultAction, s.DefaultErrnoRet))
	if err != nil {
		return nil, fmt.Errorf("seccomp: create filter with default action %s: %w", s.DefaultAction, err)
	}
	ok := false
	defer func() {
		if !ok {
			filter.Release()
		}
	}()
	for _, a := range s.Architectures {
		if err := filter.AddArch(archs[a]); err != nil {
			return nil, fmt.Errorf("seccomp: add architecture %s: %w", a, err)
		}
	}
	defAct := action(s.DefaultAction, s.DefaultErrnoRet)
	for _, sc := range s.Syscalls {
		act := action(sc.Action, sc.ErrnoRet)
		if act == defAct {
			// libseccomp refuses rules that repeat the default action.
			continue
		}
		conds, err := conditions(sc.Args)
		if err != nil {
			return nil, err
		}
		for _, name := range sc.Names {
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				// Unknown on this architecture or to this libseccomp:
				// profiles carry syscalls of many kernels, skip it.
				continue
			}
			for _, c := range conds {
				if err := filter.AddRuleConditional(call, act, c); err != nil {
					return nil, fmt.Errorf("seccomp: add rule %s for syscall %s: %w", sc.Action, name, err)
				}
			}
		}
	}
	ok = true
	return filter, nil
}

// conditions groups a rule's argument conditions into the condition sets to
// add as separate rules. Conditions on distinct arguments are ANDed in one
// rule; conditions that repeat an argument index cannot be ANDed by
// libseccomp, so, as runc does, each such condition becomes its own rule
// (ORed). No args gives one unconditional set.
func conditions(args []specs.LinuxSeccompArg) ([][]libseccomp.ScmpCondition, error) {
	conds := make([]libseccomp.ScmpCondition, 0, len(args))
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		c, err := libseccomp.MakeCondition(a.Index, operators[a.Op], a.Value, a.ValueTwo)
		if err != nil {
			return nil, fmt.Errorf("seccomp: argument %d %s %d: %w", a.Index, a.Op, a.Value, err)
		}
		if seen[a.Index] {
			repeated = true
		}
		seen[a.Index] = true
		conds = append(conds, c)
	}
	if len(conds) == 0 {
		return [][]libseccomp.ScmpCondition{nil}, nil
	}
	if !repeated {
		return [][]libseccomp.ScmpCondition{conds}, nil
	}
	sets := make([][]libseccomp.ScmpCondition, 0, len(conds))
	for _, c := range conds {
		sets = append(sets, []libseccomp.ScmpCondition{c})
	}
	return sets, nil
}

// explain adds the usual cause to a seccomp(2) failure.
func explain(err error) error {
	switch {
	case errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (no_new_privs is not set and the thread lacks CAP_SYS_ADMIN)", err)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%w (another thread could not be synchronised)", err)
	}
	return err
}

// Features reports what `berth-runtime features` lists under linux.seccomp:
// every action and operator, the architectures the linked libseccomp
// supports, the filter flags Berth knows and those the kernel supports.
func Features() *features.Seccomp {
	enabled := true
	f := &features.Seccomp{Enabled: &enabled}
	for a := range actions {
		f.Actions = append(f.Actions, string(a))
	}
	for o := range operators {
		f.Operators = append(f.Operators, string(o))
	}
	if scratch, err := libseccomp.NewFilter(libseccomp.ActAllow); err == nil {
		for name, a := range archs {
			// Only the architectures this libseccomp can filter.
			if scratch.AddArch(a) == nil {
				f.Archs = append(f.Archs, string(name))
			}
		}
		scratch.Release()
	}
	sort.Strings(f.Actions)
	sort.Strings(f.Operators)
	sort.Strings(f.Archs)
	f.KnownFlags = []string{}
	f.SupportedFlags = []string{}
	for _, fl := range flags {
		f.KnownFlags = append(f.KnownFlags, string(fl.name))
		if flagSupported(fl.bit) {
			f.SupportedFlags = append(f.SupportedFlags, string(fl.name))
		}
	}
	return f
}
