package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecOpts are the options of `exec`.
type ExecOpts struct {
	Process       *specs.Process // the process to run; its fields are the spec's
	PidFile       string
	ConsoleSocket string
	Detach        bool
	PreserveFDs   int
	Stdio         *[3]*os.File // nil: the runtime's own standard streams
}

// procNSNames maps namespace types to their /proc/PID/ns entries.
var procNSNames = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: "pid", specs.NetworkNamespace: "net", specs.MountNamespace: "mnt",
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.UserNamespace: "user",
	specs.CgroupNamespace: "cgroup", specs.TimeNamespace: "time",
}

// Exec runs another process in a created or running container: it joins
// every namespace and the cgroup of the container's init and gets the same
// protections (a sealed binary, no leaked descriptors, a working directory
// inside the container, the container's seccomp filter). Unless detached it
// waits for the process, forwarding signals, and returns its exit code.
func (c *Container) Exec(ctx context.Context, o ExecOpts) (int, error) {
	st := c.Status()
	if st != StatusRunning && st != StatusCreated {
		return -1, errdefs.FailedPrecondition(fmt.Errorf("cannot exec in container %s: it is %s", c.s.ID, st))
	}
	p := o.Process
	if p == nil || len(p.Args) == 0 {
		return -1, errdefs.InvalidArgument(fmt.Errorf("exec in %s: no command given", c.s.ID))
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if !filepath.IsAbs(p.Cwd) {
		return -1, errdefs.InvalidArgument(fmt.Errorf("exec in %s: cwd %q is not absolute", c.s.ID, p.Cwd))
	}
	spec := *c.s.Spec
	spec.Process = p
	plan := &nsPlan{}
	for _, ns := range spec.Linux.Namespaces {
		plan.joins = append(plan.joins, nsJoin{
			flag: nsFlags[ns.Type],
			path: fmt.Sprintf("/proc/%d/ns/%s", c.s.Pid, procNSNames[ns.Type]),
		})
	}
	if err := validateProcess(p, plan); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.s.ID, err)
	}
	filter, err := compileSeccomp(c.root, spec.Linux.Seccomp)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.s.ID, err)
	}

	if !o.Detach {
		// A process forked into the PID namespace is not our child;
		// as a subreaper we still reap it and learn its status.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return -1, fmt.Errorf("become subreaper: %w", err)
		}
	}
	var extra []*os.File
	var tty *ptyProxy
	if p.Terminal {
		var console *os.File
		switch {
		case o.ConsoleSocket != "":
			if console, err = dialConsole(o.ConsoleSocket); err != nil {
				return -1, err
			}
			defer console.Close()
		case !o.Detach:
			if tty, err = newPtyProxy(); err != nil {
				return -1, err
			}
			defer tty.Close()
			console = tty.remote
		default:
			return -1, errdefs.InvalidArgument(fmt.Errorf("exec in %s: a detached terminal needs --console-socket", c.s.ID))
		}
		extra = append(extra, console)
	}
	// The process enters the container's cgroup by itself as it starts
	// (see cgroups.JoinFiles); inCgroup checks that it did.
	var cg *cgroups.Manager
	var tasks []*os.File
	var cgDir *os.File
	if len(c.s.CgroupPaths) > 0 {
		cg = cgroups.Load(c.s.CgroupPaths)
		tasks, cgDir = cg.JoinFiles()
		defer func() {
			for _, f := range tasks {
				f.Close()
			}
			if cgDir != nil {
				cgDir.Close()
			}
		}()
	}
	sp, err := spawn(spawnOpts{
		preserveFDs: o.PreserveFDs,
		extra:       extra,
		stdio:       o.Stdio,
		plan:        plan,
		cgroupTasks: tasks,
		cgroupDir:   cgDir,
		inCgroup: func(pid int) error {
			if cg == nil {
				return nil
			}
			return cg.Join(pid)
		},
	})
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.s.ID, err)
	}
	defer sp.ch.f.Close()
	consoleFD := -1
	if len(sp.fds) > 0 {
		consoleFD = sp.fds[0]
	}
	cfg := &initConfig{
		ID: c.s.ID, Bundle: c.s.Bundle, Rootfs: c.s.Rootfs, Pid: sp.pid, Spec: initSpec(&spec),
		PreserveFDs: o.PreserveFDs, ConsoleFD: consoleFD, FifoFD: -1, Exec: true, Seccomp: filter,
	}
	if err := c.awaitExec(sp, cfg); err != nil {
		sp.kill()
		return -1, fmt.Errorf("exec in %s: %w", c.s.ID, err)
	}
	if o.PidFile != "" {
		if err := writeFileAtomic(absPath(o.PidFile), []byte(strconv.Itoa(sp.pid)), 0o644); err != nil {
			return -1, fmt.Errorf("exec in %s: pid file: %w", c.s.ID, err)
		}
	}
	if tty != nil {
		if err := tty.attach(); err != nil {
			return -1, err
		}
	}
	if o.Detach {
		return 0, nil
	}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	code := waitProcess(sp.pid, sigs, tty, func(sig unix.Signal) { unix.Kill(sp.pid, sig) })
	if tty != nil {
		tty.drain()
	}
	return code, nil
}

// awaitExec sends the configuration and follows the process until it has
// exec'd: its end of the channel closes on exec, or it reports an error.
func (c *Container) awaitExec(sp *spawned, cfg *initConfig) error {
	if err := sp.ch.send(cfg); err != nil {
		return fmt.Errorf("send config: %w", err)
	}
	for {
		var m message
		err := sp.ch.recv(&m)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read from process: %w", err)
		}
		switch m.Type {
		case msgSeccomp:
			l := &launch{c: c, sp: sp}
			if err := l.sendListener(m.FD); err != nil {
				return err
			}
			if err := sp.ch.send(message{Type: msgAck}); err != nil {
				return err
			}
		case msgError:
			return fmt.Errorf("%s", m.Error)
		default:
			return fmt.Errorf("unexpected message %q", m.Type)
		}
	}
}
