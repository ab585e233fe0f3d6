package process

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// I/O priority encoding from linux/ioprio.h.
const (
	ioprioWhoProcess = 1
	ioprioClassShift = 13
)

var ioprioClasses = map[specs.IOPriorityClass]int{
	specs.IOPRIO_CLASS_RT:   1,
	specs.IOPRIO_CLASS_BE:   2,
	specs.IOPRIO_CLASS_IDLE: 3,
}

func validateIOPriority(io *specs.LinuxIOPriority) error {
	if io == nil {
		return nil
	}
	if _, ok := ioprioClasses[io.Class]; !ok {
		return errdefs.InvalidArgument(fmt.Errorf("process.ioPriority: unknown class %q", io.Class))
	}
	if io.Priority < 0 || io.Priority > 7 {
		return errdefs.InvalidArgument(fmt.Errorf("process.ioPriority: priority %d of class %s is outside [0,7]", io.Priority, io.Class))
	}
	return nil
}

// applyIOPriority sets the I/O priority of the calling thread, which the
// process it execs keeps.
func applyIOPriority(io *specs.LinuxIOPriority) error {
	if err := validateIOPriority(io); err != nil {
		return err
	}
	value := ioprioClasses[io.Class]<<ioprioClassShift | io.Priority
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, uintptr(value)); errno != 0 {
		return fmt.Errorf("ioprio_set class %s priority %d: %w", io.Class, io.Priority, errno)
	}
	return nil
}

var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther:    unix.SCHED_NORMAL,
	specs.SchedFIFO:     unix.SCHED_FIFO,
	specs.SchedRR:       unix.SCHED_RR,
	specs.SchedBatch:    unix.SCHED_BATCH,
	specs.SchedIdle:     unix.SCHED_IDLE,
	specs.SchedDeadline: unix.SCHED_DEADLINE,
}

var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork:  unix.SCHED_FLAG_RESET_ON_FORK,
	specs.SchedFlagReclaim:      unix.SCHED_FLAG_RECLAIM,
	specs.SchedFlagDLOverrun:    unix.SCHED_FLAG_DL_OVERRUN,
	specs.SchedFlagKeepPolicy:   unix.SCHED_FLAG_KEEP_POLICY,
	specs.SchedFlagKeepParams:   unix.SCHED_FLAG_KEEP_PARAMS,
	specs.SchedFlagUtilClampMin: unix.SCHED_FLAG_UTIL_CLAMP_MIN,
	specs.SchedFlagUtilClampMax: unix.SCHED_FLAG_UTIL_CLAMP_MAX,
}

// schedAttr checks s and turns it into the sched_setattr(2) argument.
func schedAttr(s *specs.Scheduler) (*unix.SchedAttr, error) {
	policy, ok := schedPolicies[s.Policy]
	if !ok {
		if s.Policy == specs.SchedISO {
			return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: policy %s is not supported by Linux", s.Policy))
		}
		return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: unknown policy %q", s.Policy))
	}
	if s.Nice < -20 || s.Nice > 19 {
		return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: nice %d is outside [-20,19]", s.Nice))
	}
	switch s.Policy {
	case specs.SchedFIFO, specs.SchedRR:
		if s.Priority < 1 || s.Priority > 99 {
			return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: priority %d for %s is outside [1,99]", s.Priority, s.Policy))
		}
	default:
		if s.Priority != 0 {
			return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: priority %d must be 0 for %s", s.Priority, s.Policy))
		}
	}
	if s.Policy == specs.SchedDeadline {
		period := s.Period
		if period == 0 {
			period = s.Deadline
		}
		if s.Runtime == 0 || s.Runtime > s.Deadline || s.Deadline > period {
			return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: %s needs 0 < runtime (%d) <= deadline (%d) <= period (%d)", s.Policy, s.Runtime, s.Deadline, s.Period))
		}
	}
	attr := &unix.SchedAttr{
		Size:     unix.SizeofSchedAttr,
		Policy:   policy,
		Nice:     s.Nice,
		Priority: uint32(s.Priority),
		Runtime:  s.Runtime,
		Deadline: s.Deadline,
		Period:   s.Period,
	}
	for _, f := range s.Flags {
		v, ok := schedFlags[f]
		if !ok {
			return nil, errdefs.InvalidArgument(fmt.Errorf("process.scheduler: unknown flag %q", f))
		}
		attr.Flags |= v
	}
	return attr, nil
}

// applyScheduler sets the scheduling policy and attributes of the calling
// thread, which the process it execs keeps.
func applyScheduler(s *specs.Scheduler) error {
	attr, err := schedAttr(s)
	if err != nil {
		return err
	}
	if err := unix.SchedSetAttr(0, attr, 0); err != nil {
		return fmt.Errorf("sched_setattr policy %s nice %d priority %d: %w", s.Policy, s.Nice, s.Priority, err)
	}
	return nil
}

// maxCPUs is the number of CPUs a unix.CPUSet can hold.
const maxCPUs = int(unsafe.Sizeof(unix.CPUSet{})) * 8

// ParseCPUList parses a Linux CPU list such as "0-3,7" (the format of
// process.execCPUAffinity and of cpuset.cpus).
func ParseCPUList(list string) (unix.CPUSet, error) {
	var set unix.CPUSet
	if strings.TrimSpace(list) == "" {
		return set, errdefs.InvalidArgument(fmt.Errorf("empty CPU list"))
	}
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil || first < 0 {
			return set, errdefs.InvalidArgument(fmt.Errorf("CPU list %q: bad CPU %q", list, lo))
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil || last < first {
				return set, errdefs.InvalidArgument(fmt.Errorf("CPU list %q: bad range %q", list, part))
			}
		}
		if last >= maxCPUs {
			return set, errdefs.InvalidArgument(fmt.Errorf("CPU list %q: CPU %d is beyond the %d supported", list, last, maxCPUs))
		}
		for c := first; c <= last; c++ {
			set.Set(c)
		}
	}
	return set, nil
}

func validateCPUAffinity(a *specs.CPUAffinity) error {
	if a == nil {
		return nil
	}
	for _, f := range []struct{ name, list string }{{"initial", a.Initial}, {"final", a.Final}} {
		if f.list == "" {
			continue
		}
		if _, err := ParseCPUList(f.list); err != nil {
			return fmt.Errorf("process.execCPUAffinity.%s: %w", f.name, err)
		}
	}
	return nil
}

// SetCPUAffinity pins a thread to the CPUs of list: the calling thread (and
// so the process it execs) when pid is 0, else the thread whose id is pid
// (a process's main thread has the process's id). The spec applies
// process.execCPUAffinity to processes started by `exec`, not to the
// container's init, so Apply leaves it alone: the exec path sets Initial
// before the process joins the container's cgroup and Final after.
func SetCPUAffinity(pid int, list string) error {
	set, err := ParseCPUList(list)
	if err != nil {
		return err
	}
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		return fmt.Errorf("sched_setaffinity of %d to CPUs %s: %w", pid, list, err)
	}
	return nil
}
