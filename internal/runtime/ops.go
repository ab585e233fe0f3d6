package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	"golang.org/x/sys/unix"
)

// Start runs the user's program in a created container, as `start` does:
// it releases the init waiting on the exec FIFO, then runs the poststart
// hooks (a failing one is reported as a warning through warn).
func (c *Container) Start(ctx context.Context, warn func(error)) error {
	unlock, err := lockDir(c.dir)
	if err != nil {
		return fmt.Errorf("start %s: lock: %w", c.s.ID, err)
	}
	defer unlock()
	if st := c.Status(); st != StatusCreated {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot start container %s: it is %s, not created", c.s.ID, st))
	}
	// The pidfd first: once the FIFO is open the init goes on, and a
	// short-lived program may be gone and reaped by the time we look.
	pidfd, err := unix.PidfdOpen(c.s.Pid, 0)
	if err != nil {
		return fmt.Errorf("start %s: init process %d: %w", c.s.ID, c.s.Pid, err)
	}
	defer unix.Close(pidfd)
	path := filepath.Join(c.dir, fifoName)
	fifo, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("start %s: open exec fifo: %w", c.s.ID, err)
	}
	defer unix.Close(fifo)
	// The init opens the FIFO for writing, writes one byte, runs the
	// startContainer hooks and execs, which closes the FIFO. Wait for the
	// byte and then the close, so that the container's program is running
	// when start returns; or for the init to die.
	fds := []unix.PollFd{{Fd: int32(fifo), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	started := false
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("start %s: wait for init: %w", c.s.ID, err)
		}
		if fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			var b [1]byte
			n, err := unix.Read(fifo, b[:])
			if n == 1 {
				started = true
			} else if n == 0 && err == nil && started {
				break // the init exec'd (or exited): the FIFO closed
			}
		}
		if fds[1].Revents != 0 {
			if started {
				break // the program ran and has exited already
			}
			return fmt.Errorf("start %s: the container init exited before starting the process", c.s.ID)
		}
		fds[0].Revents, fds[1].Revents = 0, 0
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("start %s: remove exec fifo: %w", c.s.ID, err)
	}
	if h := c.s.Spec.Hooks; h != nil {
		// The process was started: that is the state poststart hooks
		// describe, even if it has already exited.
		st := c.State()
		st.Status, st.Pid = StatusRunning, c.s.Pid
		runHooksWarn("poststart", h.Poststart, st, warn)
	}
	return nil
}

// ParseSignal accepts a signal as a number or a name with or without SIG.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.InvalidArgument(fmt.Errorf("invalid signal number %d", n))
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 34+n <= 64 {
			return unix.Signal(34 + n), nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMAX-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 64-n >= 34 {
			return unix.Signal(64 - n), nil
		}
	}
	return 0, errdefs.InvalidArgument(fmt.Errorf("unknown signal %q", s))
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup. A stopped container cannot be signalled.
func (c *Container) Kill(sig unix.Signal, all bool) error {
	st := c.Status()
	if st == StatusStopped {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot kill container %s: it is not running", c.s.ID))
	}
	if all {
		return c.killAll(sig, st == StatusPaused)
	}
	return c.signalInit(sig)
}

// signalInit signals the init through a pidfd, so that a recycled PID can
// never receive it.
func (c *Container) signalInit(sig unix.Signal) error {
	pidfd, err := unix.PidfdOpen(c.s.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errdefs.FailedPrecondition(fmt.Errorf("cannot kill container %s: it is not running", c.s.ID))
		}
		return fmt.Errorf("kill %s: %w", c.s.ID, err)
	}
	defer unix.Close(pidfd)
	if !c.alive() {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot kill container %s: it is not running", c.s.ID))
	}
	if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
		return fmt.Errorf("kill %s with %s: %w", c.s.ID, unix.SignalName(sig), err)
	}
	return nil
}

// killAll signals every process of the container. With its own PID
// namespace, SIGKILL to the init takes everything with it; otherwise the
// cgroup is frozen so that no process forks away while being signalled,
// and thawed afterwards, as runc does. A paused container is thawed after
// SIGKILL too: frozen processes cannot die, and a caller waiting for the
// exit would wait for ever.
func (c *Container) killAll(sig unix.Signal, paused bool) error {
	if c.s.OwnPidNS && sig == unix.SIGKILL {
		if err := c.signalInit(sig); err != nil {
			return err
		}
		if paused && len(c.s.CgroupPaths) > 0 {
			if err := cgroups.Load(c.s.CgroupPaths).Thaw(); err != nil {
				return fmt.Errorf("thaw %s after SIGKILL: %w", c.s.ID, err)
			}
		}
		return nil
	}
	if len(c.s.CgroupPaths) == 0 {
		// Without a cgroup (rootless), the PID namespace finds them.
		return c.killPidNS(sig)
	}
	cg := cgroups.Load(c.s.CgroupPaths)
	frozen := cg.Freeze() == nil
	pids, err := cg.Pids()
	if err == nil {
		for _, pid := range pids {
			unix.Kill(pid, sig)
		}
	}
	if frozen {
		cg.Thaw()
	}
	if err != nil {
		return fmt.Errorf("kill all processes of %s: %w", c.s.ID, err)
	}
	return nil
}

// killPidNS signals every process in the init's PID namespace, or the init
// alone when the container shares the host's.
func (c *Container) killPidNS(sig unix.Signal) error {
	if !c.s.OwnPidNS {
		return c.signalInit(sig)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.s.Pid))
	if err != nil {
		return fmt.Errorf("kill all processes of %s: %w", c.s.ID, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("kill all processes of %s: %w", c.s.ID, err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && other == ns {
			unix.Kill(pid, sig)
		}
	}
	return nil
}

// Delete removes a stopped container: it runs the poststop hooks (failures
// go to warn), removes the cgroup and the state. A container that is not
// stopped is refused unless force is set; then it is killed first.
func (c *Container) Delete(ctx context.Context, force bool, warn func(error)) error {
	unlock, err := lockDir(c.dir)
	if err != nil {
		return fmt.Errorf("delete %s: lock: %w", c.s.ID, err)
	}
	defer unlock()
	if st := c.Status(); st != StatusStopped {
		if !force {
			return errdefs.FailedPrecondition(fmt.Errorf("cannot delete container %s: it is %s, not stopped (use --force)", c.s.ID, st))
		}
		if st == StatusPaused {
			cgroups.Load(c.s.CgroupPaths).Thaw()
		}
		if err := c.killAll(unix.SIGKILL, false); err != nil && !errdefs.IsConflict(err) {
			return err
		}
		if err := c.waitExit(ctx, 10*time.Second); err != nil {
			return fmt.Errorf("delete %s: %w", c.s.ID, err)
		}
	}
	if err := c.destroy(); err != nil {
		return fmt.Errorf("delete %s: %w", c.s.ID, err)
	}
	if h := c.s.Spec.Hooks; h != nil {
		st := c.State()
		st.Status = StatusStopped
		runHooksWarn("poststop", h.Poststop, st, warn)
	}
	return nil
}

// destroy removes the container's cgroup and state directory.
func (c *Container) destroy() error {
	if len(c.s.CgroupPaths) > 0 {
		if err := cgroups.Load(c.s.CgroupPaths).Destroy(); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}

// waitExit waits until the init has exited (a zombie counts).
func (c *Container) waitExit(ctx context.Context, timeout time.Duration) error {
	pidfd, err := unix.PidfdOpen(c.s.Pid, 0)
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(pidfd)
	deadline := time.Now().Add(timeout)
	for c.alive() {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return fmt.Errorf("container init %d did not exit", c.s.Pid)
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond))
	}
	return nil
}

// paused reports whether the container's cgroup is frozen.
func (c *Container) paused() bool {
	if len(c.s.CgroupPaths) == 0 {
		return false
	}
	st, err := cgroups.Load(c.s.CgroupPaths).FreezerState()
	return err == nil && st != "THAWED"
}

// Pause freezes every process of a running container.
func (c *Container) Pause() error {
	if st := c.Status(); st != StatusRunning {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot pause container %s: it is %s, not running", c.s.ID, st))
	}
	if err := cgroups.Load(c.s.CgroupPaths).Freeze(); err != nil {
		return fmt.Errorf("pause %s: %w", c.s.ID, err)
	}
	return nil
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	if st := c.Status(); st != StatusPaused {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot resume container %s: it is %s, not paused", c.s.ID, st))
	}
	if err := cgroups.Load(c.s.CgroupPaths).Thaw(); err != nil {
		return fmt.Errorf("resume %s: %w", c.s.ID, err)
	}
	return nil
}
