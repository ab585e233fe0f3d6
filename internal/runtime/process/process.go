// Package process owns the credentials and attributes of a container's
// process: capabilities, user and groups, rlimits, umask, oom_score_adj,
// no_new_privs, LSM exec labels, I/O priority and scheduler, as given by the
// runtime-spec `process` object.
//
// It exists so that one place decides what the kernel is asked, in which
// order, and what is refused up front. `create` calls Validate on the host
// so that a config the kernel would reject fails before any container
// exists; the container init, locked to one OS thread, calls Apply just
// before it execs the user's process on that same thread (capabilities,
// no_new_privs, the scheduler and LSM exec attributes belong to a thread).
package process

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// DefaultUmask is the umask of a process whose config gives none.
const DefaultUmask = 0o022

// invalidID is (uid_t)-1, which setresuid and friends read as "unchanged".
const invalidID = ^uint32(0)

// Validate checks p against the host without changing anything, for a
// container that shares the host's user namespace. The error names what is
// wrong: an unknown capability, a capability outside the runtime's own
// bounding set, inconsistent capability sets, an unknown or duplicated
// rlimit, soft above hard, a hard limit the runtime may not raise, an
// AppArmor profile or SELinux label on a host without that module, an
// oomScoreAdj outside [-1000,1000], a bad ioPriority, scheduler or
// execCPUAffinity. A nil p has nothing to check.
func Validate(p *specs.Process) error {
	return validate(p, false)
}

// ValidateInUserNamespace is Validate for a container with its own user
// namespace: its process starts with a full bounding set there, so the
// capability sets are not held against the runtime's own bounding set.
func ValidateInUserNamespace(p *specs.Process) error {
	return validate(p, true)
}

func validate(p *specs.Process, userns bool) error {
	if p == nil {
		return nil
	}
	if err := validateCaps(p.Capabilities, userns); err != nil {
		return err
	}
	if err := validateUser(&p.User); err != nil {
		return err
	}
	if err := validateRlimits(p.Rlimits); err != nil {
		return err
	}
	if err := validateLSM(p.ApparmorProfile, p.SelinuxLabel); err != nil {
		return err
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return errdefs.InvalidArgument(fmt.Errorf("process.oomScoreAdj %d is outside [-1000,1000]", *p.OOMScoreAdj))
	}
	if err := validateIOPriority(p.IOPriority); err != nil {
		return err
	}
	if p.Scheduler != nil {
		if _, err := schedAttr(p.Scheduler); err != nil {
			return err
		}
	}
	return validateCPUAffinity(p.ExecCPUAffinity)
}

func validateUser(u *specs.User) error {
	if u.UID == invalidID {
		return errdefs.InvalidArgument(fmt.Errorf("process.user.uid %d is not a valid user id", u.UID))
	}
	if u.GID == invalidID {
		return errdefs.InvalidArgument(fmt.Errorf("process.user.gid %d is not a valid group id", u.GID))
	}
	for _, g := range u.AdditionalGids {
		if g == invalidID {
			return errdefs.InvalidArgument(fmt.Errorf("process.user.additionalGids: %d is not a valid group id", g))
		}
	}
	if u.Umask != nil && *u.Umask > 0o777 {
		return errdefs.InvalidArgument(fmt.Errorf("process.user.umask %#o has bits outside 0777", *u.Umask))
	}
	return nil
}

// Apply sets up the calling thread and process for p, in this order: rlimits,
// oom_score_adj, I/O priority, scheduler, AppArmor exec profile, SELinux exec
// label, then (with capabilities) PR_SET_KEEPCAPS and the bounding set, then
// supplementary groups, gid and uid, then (with capabilities) the effective,
// permitted, inheritable and ambient sets, then the umask and no_new_privs.
//
// The caller must hold runtime.LockOSThread and execve on the same thread.
// The uid, gid and groups change on every thread of the process; the rest is
// the calling thread's. A nil p.Capabilities leaves the capability sets to
// the kernel's uid-change rules. process.execCPUAffinity is not applied here
// (see SetCPUAffinity). Apply needs /proc mounted (oom_score_adj, LSM
// attributes). It checks only what it must (names, ranges) and leaves the
// rest to the kernel, whose refusal it reports with the likely cause; on an
// error the process is half set up and must exit rather than exec.
func Apply(p *specs.Process) error {
	if p == nil {
		return errdefs.InvalidArgument(fmt.Errorf("apply process: no process given"))
	}
	if err := validateUser(&p.User); err != nil {
		return err
	}
	var caps capSets
	if p.Capabilities != nil {
		var err error
		if caps, err = parseCaps(p.Capabilities); err != nil {
			return err
		}
	}
	if err := applyRlimits(p.Rlimits); err != nil {
		return err
	}
	if p.OOMScoreAdj != nil {
		if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
			return err
		}
	}
	if p.IOPriority != nil {
		if err := applyIOPriority(p.IOPriority); err != nil {
			return err
		}
	}
	if p.Scheduler != nil {
		if err := applyScheduler(p.Scheduler); err != nil {
			return err
		}
	}
	if p.ApparmorProfile != "" {
		if err := setAppArmorExec(p.ApparmorProfile); err != nil {
			return err
		}
	}
	if p.SelinuxLabel != "" {
		if err := setSELinuxExec(p.SelinuxLabel); err != nil {
			return err
		}
	}
	if p.Capabilities != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl PR_SET_KEEPCAPS 1: %w", err)
		}
		if err := dropBounding(caps.bounding); err != nil {
			return err
		}
	}
	if err := setUser(&p.User); err != nil {
		return err
	}
	if p.Capabilities != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl PR_SET_KEEPCAPS 0: %w", err)
		}
		if err := setCaps(caps); err != nil {
			return err
		}
	}
	umask := uint32(DefaultUmask)
	if p.User.Umask != nil {
		umask = *p.User.Umask
	}
	unix.Umask(int(umask))
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl PR_SET_NO_NEW_PRIVS: %w", err)
		}
	}
	return nil
}

// setOOMScoreAdj writes the process's oom_score_adj.
func setOOMScoreAdj(v int) error {
	if v < -1000 || v > 1000 {
		return errdefs.InvalidArgument(fmt.Errorf("process.oomScoreAdj %d is outside [-1000,1000]", v))
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(v)), 0); err != nil {
		if os.IsPermission(err) {
			return fmt.Errorf("set oom_score_adj to %d: %w (lowering it below the inherited minimum needs CAP_SYS_RESOURCE)", v, err)
		}
		return fmt.Errorf("set oom_score_adj to %d: %w", v, err)
	}
	return nil
}

// setgroupsDenied reports whether this process is in a user namespace whose
// setgroups(2) is disabled (/proc/self/setgroups says "deny").
func setgroupsDenied() (bool, error) {
	b, err := os.ReadFile("/proc/self/setgroups")
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, fmt.Errorf("read /proc/self/setgroups: %w", err)
	}
	return string(bytes.TrimSpace(b)) == "deny", nil
}

// setUser sets the supplementary groups, then the gids, then the uids, on
// every thread of the process (Go's syscall package does so for the set*id
// calls).
func setUser(u *specs.User) error {
	denied, err := setgroupsDenied()
	if err != nil {
		return err
	}
	if denied {
		if len(u.AdditionalGids) > 0 {
			return errdefs.FailedPrecondition(fmt.Errorf("set additional gids %v: setgroups is denied in this user namespace", u.AdditionalGids))
		}
	} else {
		gids := make([]int, len(u.AdditionalGids))
		for i, g := range u.AdditionalGids {
			gids[i] = int(g)
		}
		if err := syscall.Setgroups(gids); err != nil {
			return fmt.Errorf("setgroups %v: %w", u.AdditionalGids, err)
		}
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setresgid %d: %w", u.GID, err)
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setresuid %d: %w", u.UID, err)
	}
	return nil
}
