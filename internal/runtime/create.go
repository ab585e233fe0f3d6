package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/bundle"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	"github.com/berth-project/berth/internal/runtime/process"
	"github.com/berth-project/berth/internal/runtime/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CreateOpts are the options of `create`.
type CreateOpts struct {
	Bundle        string // bundle directory (default: the current directory)
	PidFile       string // where to write the init's PID, atomically
	ConsoleSocket string // unix socket that receives the pty master when process.terminal is set
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFDs   int  // pass fds 3 .. 3+PreserveFDs-1 to the container
	SystemdCgroup bool // use the systemd cgroup driver
	// ConsoleConn replaces ConsoleSocket with an already connected socket
	// (used by `run` when it owns the terminal itself).
	ConsoleConn *os.File
	// Stdio replaces the runtime's own standard streams as the init's.
	Stdio *[3]*os.File
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// Create creates container id under root from a bundle and returns once the
// container's init waits for Start, as `berth-runtime create` does. On any
// failure nothing is left behind: no process, cgroup or state directory.
func Create(ctx context.Context, root, id string, o CreateOpts) (*Container, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if o.Bundle == "" {
		o.Bundle = "."
	}
	spec, bundleDir, err := bundle.Load(o.Bundle)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	plan, err := planNamespaces(spec)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if err := validateProcess(spec.Process, plan); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	filter, err := compileSeccomp(root, spec.Linux.Seccomp)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if err := validateSysctl(spec, plan); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if mp := spec.Linux.MemoryPolicy; mp != nil {
		if _, err := parseMemPolicy(mp); err != nil {
			return nil, fmt.Errorf("create %s: %w", id, err)
		}
	}
	if err := checkIntelRdt(spec.Linux.IntelRdt); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if spec.Process.Terminal && o.ConsoleSocket == "" && o.ConsoleConn == nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("create %s: process.terminal is set but no --console-socket was given", id))
	}
	rootfs := bundle.RootfsPath(bundleDir, spec)
	if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
		return nil, errdefs.InvalidArgument(fmt.Errorf("create %s: root filesystem %s is not a directory", id, rootfs))
	}

	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: state root %s: %w", id, root, err)
	}
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errdefs.AlreadyExists(fmt.Errorf("container %s already exists", id))
		}
		return nil, fmt.Errorf("create %s: state dir: %w", id, err)
	}
	c := &Container{root: root, dir: dir, s: saved{
		ID: id, Bundle: bundleDir, Rootfs: rootfs, Spec: spec,
		Created: time.Now().UTC(), Owner: ownerName(), Systemd: o.SystemdCgroup,
	}}
	p := &launch{c: c, opts: o, plan: plan, filter: filter}
	if err := p.run(ctx); err != nil {
		p.rollback()
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	return c, nil
}

// validateProcess checks the process against the host, or against a user
// namespace of its own where the plan gives it one.
func validateProcess(p *specs.Process, plan *nsPlan) error {
	if plan.unshare&unix.CLONE_NEWUSER != 0 || hasJoin(plan, unix.CLONE_NEWUSER) {
		return process.ValidateInUserNamespace(p)
	}
	return process.Validate(p)
}

// compileSeccomp compiles a seccomp profile for the init to load: once per
// profile, cached under the state root, so that a bad profile fails before
// anything is started and no container pays for libseccomp twice.
func compileSeccomp(root string, s *specs.LinuxSeccomp) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	prog, err := seccomp.CompileCached(filepath.Join(root, ".seccomp-cache"), s)
	if err != nil {
		return nil, err
	}
	return prog.MarshalBinary()
}

func hasJoin(p *nsPlan, flag int) bool {
	for _, j := range p.joins {
		if j.flag == flag {
			return true
		}
	}
	return false
}

// planNamespaces turns linux.namespaces into joins and new namespaces.
func planNamespaces(s *specs.Spec) (*nsPlan, error) {
	p := &nsPlan{}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return nil, errdefs.InvalidArgument(fmt.Errorf("unknown namespace type %q", ns.Type))
		}
		if seen[ns.Type] {
			return nil, errdefs.InvalidArgument(fmt.Errorf("namespace %q listed twice", ns.Type))
		}
		seen[ns.Type] = true
		if ns.Path != "" {
			p.joins = append(p.joins, nsJoin{flag: flag, path: ns.Path})
		} else {
			p.unshare |= flag
		}
	}
	userns := seen[specs.UserNamespace]
	if (len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0) && p.unshare&unix.CLONE_NEWUSER == 0 {
		if !userns {
			return nil, errdefs.InvalidArgument(fmt.Errorf("uidMappings/gidMappings need a user namespace"))
		}
	}
	if p.unshare&unix.CLONE_NEWUSER != 0 && (len(s.Linux.UIDMappings) == 0 || len(s.Linux.GIDMappings) == 0) {
		return nil, errdefs.InvalidArgument(fmt.Errorf("a new user namespace needs uidMappings and gidMappings"))
	}
	if len(s.Linux.TimeOffsets) > 0 {
		if p.unshare&unix.CLONE_NEWTIME == 0 {
			return nil, errdefs.InvalidArgument(fmt.Errorf("timeOffsets need a new time namespace"))
		}
		var t [4]int64
		for clock, off := range s.Linux.TimeOffsets {
			switch clock {
			case "monotonic":
				t[0], t[1] = off.Secs, int64(off.Nanosecs)
			case "boottime":
				t[2], t[3] = off.Secs, int64(off.Nanosecs)
			default:
				return nil, errdefs.InvalidArgument(fmt.Errorf("unknown timeOffsets clock %q", clock))
			}
		}
		p.timens = &t
	}
	return p, nil
}

// launch holds what Create has made so far, so that a failure can undo it.
type launch struct {
	c      *Container
	opts   CreateOpts
	plan   *nsPlan
	filter []byte // the compiled seccomp program
	cg     *cgroups.Manager
	cgSkip bool // rootless without a delegated cgroup: the container goes without
	sp     *spawned
}

func (l *launch) run(ctx context.Context) error {
	c, spec := l.c, l.c.s.Spec
	fifo := filepath.Join(c.dir, fifoName)
	if err := unix.Mkfifo(fifo, 0o622); err != nil {
		return fmt.Errorf("make exec fifo: %w", err)
	}
	// The init opens the FIFO after dropping to the container's user,
	// which may be anyone: it is writable by all, past the umask. Only the
	// init can reach it, through its descriptor: the state directory is
	// closed to everyone else.
	if err := os.Chmod(fifo, 0o622); err != nil {
		return fmt.Errorf("chmod exec fifo: %w", err)
	}
	rootUID, rootGID := hostID(spec.Linux.UIDMappings, 0), hostID(spec.Linux.GIDMappings, 0)
	if err := os.Chown(fifo, rootUID, rootGID); err != nil && (!Rootless() || !errors.Is(err, unix.EPERM)) {
		// Unprivileged, a container root mapped to a subordinate ID
		// cannot be given the FIFO; its mode is enough.
		return fmt.Errorf("chown exec fifo: %w", err)
	}
	fifoFD, err := unix.Open(fifo, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	fifoFile := os.NewFile(uintptr(fifoFD), "exec.fifo")
	defer fifoFile.Close()

	var extra []*os.File
	if spec.Process.Terminal {
		console := l.opts.ConsoleConn
		if console == nil {
			if console, err = dialConsole(l.opts.ConsoleSocket); err != nil {
				return err
			}
			defer console.Close()
		}
		extra = append(extra, console)
	}
	// The cgroup's directories come first, so that the init can enter it
	// by itself as it starts (see cgroups.JoinFiles).
	if err := l.prepareCgroup(); err != nil {
		return err
	}
	var tasks []*os.File
	var cgDir *os.File
	if l.cg != nil && !l.cgSkip {
		tasks, cgDir = l.cg.JoinFiles()
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
		preserveFDs: l.opts.PreserveFDs,
		extra:       append([]*os.File{fifoFile}, extra...),
		stdio:       l.opts.Stdio,
		plan:        l.plan,
		cgroupTasks: tasks,
		cgroupDir:   cgDir,
		beforeNS:    l.setCgroupLimits,
		inCgroup:    l.joinCgroup,
		userns:      func(pid int) error { return writeIDMaps(pid, spec.Linux) },
	})
	if err != nil {
		return err
	}
	l.sp = sp
	defer sp.ch.f.Close()
	pid, ch := sp.pid, sp.ch
	fifoChild, consoleFD := sp.fds[0], -1
	if len(sp.fds) > 1 {
		consoleFD = sp.fds[1]
	}
	l.c.s.Pid = pid
	start, _, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("read init process %d: %w", pid, err)
	}
	l.c.s.StartTime = start
	l.c.s.OwnPidNS = l.plan.unshare&unix.CLONE_NEWPID != 0

	cfg := &initConfig{
		ID: c.s.ID, Bundle: c.s.Bundle, Rootfs: c.s.Rootfs, Pid: pid, Spec: initSpec(spec),
		NoPivot: l.opts.NoPivot, NoNewKeyrng: l.opts.NoNewKeyring,
		CgroupPaths: c.s.CgroupPaths, CgroupNS: l.plan.unshare&unix.CLONE_NEWCGROUP != 0,
		PreserveFDs: l.opts.PreserveFDs, FifoFD: fifoChild, ConsoleFD: consoleFD,
		RunHooks: spec.Hooks != nil && (len(spec.Hooks.Prestart) > 0 || len(spec.Hooks.CreateRuntime) > 0),
		Seccomp:  l.filter,
	}
	if err := ch.send(cfg); err != nil {
		return fmt.Errorf("send config to init: %w", err)
	}
	for {
		var m message
		if err := ch.recv(&m); err != nil {
			if err == io.EOF {
				return fmt.Errorf("container init exited during setup")
			}
			return fmt.Errorf("read from init: %w", err)
		}
		switch m.Type {
		case msgHooks:
			// prestart hooks predate the creating status: they used to
			// run at start and still get "created", as in crun and the
			// runtime-tools suite; createRuntime hooks get "creating".
			st := c.State()
			st.Pid = pid
			st.Status = StatusCreated
			if err := runHooks("prestart", spec.Hooks.Prestart, st); err != nil {
				return err
			}
			st.Status = StatusCreating
			if err := runHooks("createRuntime", spec.Hooks.CreateRuntime, st); err != nil {
				return err
			}
			if err := ch.send(message{Type: msgAck}); err != nil {
				return fmt.Errorf("resume init after hooks: %w", err)
			}
		case msgSeccomp:
			if err := l.sendListener(m.FD); err != nil {
				return err
			}
			if err := ch.send(message{Type: msgAck}); err != nil {
				return fmt.Errorf("resume init after seccomp: %w", err)
			}
		case msgError:
			return errors.New(m.Error)
		case msgCreated:
			if err := c.save(); err != nil {
				return err
			}
			if l.opts.PidFile != "" {
				if err := writeFileAtomic(absPath(l.opts.PidFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
					return fmt.Errorf("pid file: %w", err)
				}
			}
			return nil
		default:
			return fmt.Errorf("unexpected message %q from init", m.Type)
		}
	}
}

// sendListener takes the seccomp notify descriptor fd out of the init
// (pidfd_getfd) and hands it to the listener at linux.seccomp.listenerPath,
// on the host, as runc does.
func (l *launch) sendListener(fd int) error {
	s := l.c.s.Spec.Linux.Seccomp
	pid := l.sp.pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("seccomp listener: open init %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("seccomp listener: take fd %d from init: %w", fd, err)
	}
	defer unix.Close(nfd)
	st := l.c.State()
	st.Status, st.Pid = StatusCreating, pid
	ps := specs.ContainerProcessState{
		Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: pid,
		Metadata: s.ListenerMetadata, State: st,
	}
	return seccomp.SendListener(s.ListenerPath, nfd, ps)
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// prepareCgroup creates the container's cgroup directories, before the
// init exists.
//
// Rootless, the cgroup is used only where it was delegated: when the kernel
// refuses it, the container goes without one, unless resources were asked
// for, which is an error.
func (l *launch) prepareCgroup() error {
	spec := l.c.s.Spec
	cg, err := cgroups.New(spec.Linux.CgroupsPath, l.c.s.ID, l.opts.SystemdCgroup)
	if err != nil {
		return err
	}
	l.cg = cg
	if err := cg.Apply(0); err != nil {
		return l.cgroupRefused(err)
	}
	l.c.s.CgroupPaths = cg.Paths()
	return nil
}

// cgroupRefused handles a failure to create the cgroup or to move the init
// into it: an error, except rootless where the cgroup was not delegated and
// no resources were asked for; then the container goes without it.
func (l *launch) cgroupRefused(err error) error {
	if !Rootless() || !cgroupPermissionError(err) {
		return err
	}
	if resourcesRequested(l.c.s.Spec.Linux.Resources) {
		return errdefs.FailedPrecondition(fmt.Errorf("linux.resources need a cgroup, and running unprivileged the runtime may not create one (it was not delegated to this user): %w", err))
	}
	l.cgSkip = true
	if l.cg.Destroy() == nil {
		l.cg = nil
		l.c.s.CgroupPaths = nil
		return nil
	}
	// The process already sits in some of the directories, which can go
	// only after it: delete removes them.
	l.c.s.CgroupPaths = l.cg.Paths()
	return nil
}

// setCgroupLimits applies the configured resources with the devices every
// container needs, while the init makes its namespaces. Rootless, the
// limits wait until the init is known to be in the cgroup (joinCgroup), as
// the cgroup may yet turn out not to be delegated.
func (l *launch) setCgroupLimits(int) error {
	if l.cg == nil || l.cgSkip || Rootless() {
		return nil
	}
	return l.applyLimits()
}

func (l *launch) applyLimits() error {
	r := l.c.s.Spec.Linux.Resources
	if r == nil {
		r = &specs.LinuxResources{}
	}
	withDefaults := *r
	withDefaults.Devices = append(append([]specs.LinuxDeviceCgroup(nil), r.Devices...), cgroups.DefaultDevices...)
	return l.cg.Set(&withDefaults)
}

// joinCgroup makes sure the init (pid) is in its cgroup in every hierarchy,
// moving it where it did not enter by itself.
func (l *launch) joinCgroup(pid int) error {
	if l.cg == nil || l.cgSkip {
		return nil
	}
	if err := l.cg.Join(pid); err != nil {
		return l.cgroupRefused(err)
	}
	if Rootless() {
		return l.applyLimits()
	}
	return nil
}

// rollback undoes a failed Create.
func (l *launch) rollback() {
	if l.sp != nil {
		l.sp.kill()
	}
	if l.cg != nil {
		l.cg.Destroy()
	}
	os.RemoveAll(l.c.dir)
}

func ownerName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

// validateSysctl refuses sysctls that would change the host: only the
// namespaced ones are allowed, and only with their namespace.
func validateSysctl(s *specs.Spec, p *nsPlan) error {
	has := func(flag int) bool { return p.unshare&flag != 0 || hasJoin(p, flag) }
	for key := range s.Linux.Sysctl {
		switch {
		case strings.HasPrefix(key, "net."):
			if !has(unix.CLONE_NEWNET) {
				return errdefs.InvalidArgument(fmt.Errorf("sysctl %q needs a network namespace", key))
			}
		case strings.HasPrefix(key, "fs.mqueue."), key == "kernel.msgmax", key == "kernel.msgmnb",
			key == "kernel.msgmni", key == "kernel.sem", key == "kernel.shmall", key == "kernel.shmmax",
			key == "kernel.shmmni", key == "kernel.shm_rmid_forced":
			if !has(unix.CLONE_NEWIPC) {
				return errdefs.InvalidArgument(fmt.Errorf("sysctl %q needs an ipc namespace", key))
			}
		case key == "kernel.hostname", key == "kernel.domainname":
			if !has(unix.CLONE_NEWUTS) {
				return errdefs.InvalidArgument(fmt.Errorf("sysctl %q needs a uts namespace", key))
			}
		default:
			return errdefs.InvalidArgument(fmt.Errorf("sysctl %q is not namespaced: it would change the host", key))
		}
	}
	return nil
}
