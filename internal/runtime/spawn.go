package runtime

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-project/berth/internal/runtime/nsenter"
	"golang.org/x/sys/unix"
)

// spawnOpts describe a process started from the sealed runtime binary and
// moved into namespaces by the nsenter constructor: a container's init, or a
// process exec'd into a running container.
type spawnOpts struct {
	preserveFDs int          // the caller's fds 3.. 3+preserveFDs-1 pass through
	extra       []*os.File   // more descriptors for the init; spawned.fds says where
	stdio       *[3]*os.File // nil: the runtime's own standard streams
	plan        *nsPlan
	// cgroupTasks are cgroup v1 "tasks" files the process writes itself
	// into as it starts, and cgroupDir a cgroup v2 directory it is cloned
	// into (CLONE_INTO_CGROUP); both optional (see cgroups.JoinFiles).
	cgroupTasks []*os.File
	cgroupDir   *os.File
	// beforeNS runs once the process exists, while it makes its
	// namespaces: the cgroup's limits go here. The process waits for it
	// before it creates its cgroup namespace and forks into its PID
	// namespace.
	beforeNS func(pid int) error
	// inCgroup runs after beforeNS, once the process has made its
	// namespaces and written itself into cgroupTasks: it checks that the
	// process is in its cgroup, and moves it there where it is not.
	inCgroup func(pid int) error
	// userns writes the ID maps of a user namespace the plan creates.
	userns func(pid int) error
}

// spawned is a started process, inside its namespaces and waiting for its
// configuration on ch.
type spawned struct {
	cmd *exec.Cmd
	ch  *channel
	pid int   // host PID of the process that goes on (after a PID namespace fork)
	fds []int // the descriptor numbers of spawnOpts.extra in the process
}

// spawn starts the process. On error nothing it started is left running.
func spawn(o spawnOpts) (*spawned, error) {
	exe, err := sealedSelf()
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	parent, child, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer child.Close()

	// Descriptors: 0-2 stdio, the preserved ones, then the runtime's.
	var files []*os.File
	for i := 0; i < o.preserveFDs; i++ {
		files = append(files, os.NewFile(uintptr(3+i), "preserved-"+strconv.Itoa(3+i)))
	}
	add := func(f *os.File) int { files = append(files, f); return 2 + len(files) }
	childFD, exeFD := add(child), add(exe)
	s := &spawned{}
	for _, f := range o.extra {
		s.fds = append(s.fds, add(f))
	}
	// One processor from the start: the init is single-threaded work.
	env := []string{initPipeEnv(childFD), "GOMAXPROCS=1"}
	if len(o.cgroupTasks) > 0 {
		nums := make([]string, len(o.cgroupTasks))
		for i, f := range o.cgroupTasks {
			nums[i] = strconv.Itoa(add(f))
		}
		env = append(env, nsenter.EnvCgroupFDs+"="+strings.Join(nums, ","))
	}
	command := func(cgroupDir *os.File) *exec.Cmd {
		cmd := &exec.Cmd{
			Path:       "/proc/self/fd/" + strconv.Itoa(exeFD),
			Args:       []string{"berth-runtime", "init"},
			Env:        env,
			ExtraFiles: files,
			Stdin:      os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		}
		if o.stdio != nil {
			cmd.Stdin, cmd.Stdout, cmd.Stderr = o.stdio[0], o.stdio[1], o.stdio[2]
		}
		if cgroupDir != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroupDir.Fd())}
		}
		return cmd
	}
	cmd := command(o.cgroupDir)
	err = cmd.Start()
	if err != nil && o.cgroupDir != nil {
		// A kernel without clone3 or one that refuses the cgroup
		// (its controllers, delegation): start it outside, and let
		// inCgroup move it.
		cmd = command(nil)
		err = cmd.Start()
	}
	if err != nil {
		parent.Close()
		return nil, fmt.Errorf("start init: %w", err)
	}
	s.cmd, s.ch = cmd, newChannel(parent)
	child.Close()
	fail := func(err error) (*spawned, error) {
		s.kill()
		return nil, err
	}
	// The plan goes first, so that the process makes its namespaces
	// while the cgroup is set up here; it waits for the cgroup before the
	// cgroup namespace and the fork.
	if err := s.ch.sendPlan(o.plan); err != nil {
		return fail(err)
	}
	var cgErr error
	if o.beforeNS != nil {
		cgErr = o.beforeNS(cmd.Process.Pid)
	}
	inCgroup := func() error {
		if cgErr != nil || o.inCgroup == nil {
			return cgErr
		}
		return o.inCgroup(cmd.Process.Pid)
	}
	pid, err := s.ch.enterNamespaces(cmd.Process.Pid, o.userns, inCgroup)
	if err != nil {
		if cgErr != nil {
			err = cgErr
		}
		return fail(err)
	}
	s.pid = pid
	if pid != cmd.Process.Pid {
		// The constructor forked into the PID namespace: reap its parent.
		cmd.Wait()
	} else {
		cmd.Process.Release()
	}
	return s, nil
}

// kill ends the spawned process (and the constructor's parent, if it is
// still there) and closes the channel.
func (s *spawned) kill() {
	if s.pid > 0 {
		unix.Kill(s.pid, unix.SIGKILL)
	}
	if s.cmd.Process != nil && (s.pid == 0 || s.pid == s.cmd.Process.Pid) {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
	s.ch.f.Close()
}

// dialConsole connects to a console socket, which will receive the pty
// master.
func dialConsole(path string) (*os.File, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect to console socket %s: %w", path, err)
	}
	defer conn.Close()
	f, err := conn.File()
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return f, nil
}
