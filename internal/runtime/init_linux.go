package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/runtime/nsenter"
	"github.com/berth-project/berth/internal/runtime/process"
	"github.com/berth-project/berth/internal/runtime/rootfs"
	"github.com/berth-project/berth/internal/runtime/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// IsInit reports whether this process was started as a container init.
func IsInit() bool { return os.Getenv(nsenter.EnvInitPipe) != "" }

// Init runs the container init: it is `berth-runtime init`, started by Create
// and already inside the container's namespaces. It returns only on failure,
// after reporting the error to the runtime (or, once the runtime is gone, to
// the container's standard error); on success it becomes the user's program.
// The caller must have locked the main goroutine to its thread.
func Init() error {
	fd, err := strconv.Atoi(os.Getenv(nsenter.EnvInitPipe))
	if err != nil {
		return fmt.Errorf("init: bad %s", nsenter.EnvInitPipe)
	}
	os.Unsetenv(nsenter.EnvInitPipe)
	ch := newChannel(os.NewFile(uintptr(fd), "init-pipe"))
	var cfg initConfig
	if err := ch.recv(&cfg); err != nil {
		return fmt.Errorf("init: read config: %w", err)
	}
	in := &initProc{ch: ch, cfg: &cfg}
	if cfg.Exec {
		err = in.setupExec()
	} else {
		err = in.setup()
	}
	if err != nil && !in.detached && ch.send(message{Type: msgError, Error: err.Error()}) == nil {
		return ErrReported
	}
	return err
}

// ErrReported is what Init returns when the runtime has the error already:
// the init should exit without printing it again.
var ErrReported = errors.New("error reported to the runtime")

type initProc struct {
	ch       *channel
	cfg      *initConfig
	detached bool // the runtime has gone: errors go to stderr
}

func (in *initProc) state(status specs.ContainerState) specs.State {
	return specs.State{
		Version: specs.Version, ID: in.cfg.ID, Status: status, Pid: in.cfg.Pid,
		Bundle: in.cfg.Bundle, Annotations: in.cfg.Spec.Annotations,
	}
}

func (in *initProc) setup() error {
	cfg, spec := in.cfg, in.cfg.Spec
	// No descriptor of the runtime's survives into the container
	// (CVE-2024-21626): everything past stdio and the preserved ones
	// closes on exec.
	if err := closeOnExecFrom(3 + cfg.PreserveFDs); err != nil {
		return err
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	if !cfg.NoNewKeyrng {
		if _, err := unix.KeyctlJoinSessionKeyring("_ses." + cfg.ID); err != nil && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("join session keyring: %w", err)
		}
	}
	rc := &rootfs.Config{
		Spec: spec, Rootfs: cfg.Rootfs, NoPivot: cfg.NoPivot, CgroupPaths: cfg.CgroupPaths,
		CgroupNS: cfg.CgroupNS, Console: spec.Process.Terminal,
	}
	if err := rootfs.Prepare(rc); err != nil {
		return err
	}
	if cfg.RunHooks {
		if err := in.ch.send(message{Type: msgHooks}); err != nil {
			return fmt.Errorf("ask runtime to run hooks: %w", err)
		}
		var m message
		if err := in.ch.recv(&m); err != nil || m.Type != msgAck {
			return fmt.Errorf("wait for runtime hooks: %v", err)
		}
	}
	if spec.Hooks != nil {
		if err := runHooks("createContainer", spec.Hooks.CreateContainer, in.state(StatusCreating)); err != nil {
			return err
		}
	}
	if hasNamespace(spec, specs.MountNamespace) {
		if err := rootfs.Pivot(rc); err != nil {
			return err
		}
	} else if err := chroot(cfg.Rootfs); err != nil {
		// Without a mount namespace of its own the container shares the
		// runtime's: pivot_root would move every process in it, so only
		// the init's root changes.
		return err
	}
	if err := unix.Access(spec.Process.Cwd, unix.F_OK); errors.Is(err, unix.ENOENT) {
		if err := makeCwd(spec.Process.Cwd); err != nil {
			return err
		}
	}
	if spec.Process.Terminal {
		if err := setupConsole(cfg.ConsoleFD, spec.Process.ConsoleSize); err != nil {
			return err
		}
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("set domainname %q: %w", spec.Domainname, err)
		}
	}
	for key, value := range spec.Linux.Sysctl {
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
	}
	if err := rootfs.Finalize(rc); err != nil {
		return err
	}
	if p := spec.Linux.Personality; p != nil {
		if err := setPersonality(p); err != nil {
			return err
		}
	}
	u, err := in.prepareProcess()
	if err != nil {
		return err
	}
	if err := in.ch.send(message{Type: msgCreated}); err != nil {
		return fmt.Errorf("report created: %w", err)
	}
	in.detached = true
	if err := waitStart(cfg.FifoFD); err != nil {
		return err
	}
	if spec.Hooks != nil {
		if err := runHooks("startContainer", spec.Hooks.StartContainer, in.state(StatusCreated)); err != nil {
			return err
		}
	}
	return in.exec(u)
}

// setupExec prepares a process exec'd into a running container: it is in
// the container's namespaces and cgroup already; what is left is its
// terminal and its own attributes.
func (in *initProc) setupExec() error {
	cfg, p := in.cfg, in.cfg.Spec.Process
	if err := closeOnExecFrom(3 + cfg.PreserveFDs); err != nil {
		return err
	}
	if p.Terminal {
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
		if _, err := openConsole(cfg.ConsoleFD, p.ConsoleSize); err != nil {
			return err
		}
	}
	u, err := in.prepareProcess()
	if err != nil {
		return err
	}
	return in.exec(u)
}

// userProcess is the user's program, ready to be exec'd.
type userProcess struct {
	argv0 string
	env   []string
	prog  *seccomp.Program // the seccomp filter, if any
	early bool             // prog is loaded already
}

// prepareProcess finds the program, enters the working directory and
// applies the process's attributes: everything up to waiting for start.
//
// Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN, so it
// happens before the capabilities are dropped (as in runc); a notify filter
// is loaded early too, since its descriptor must reach the runtime before
// create returns. Otherwise the filter waits until just before exec. The
// working directory is checked first either way, so a filter that denies
// getcwd cannot get in the way; it is entered again after dropping
// privileges so that the user's own permissions apply.
func (in *initProc) prepareProcess() (*userProcess, error) {
	// Credentials, capabilities, LSM labels and seccomp are set per thread,
	// and execve must come from the same thread: from here on the init
	// stays on it. (Locking earlier would make every blocking call of the
	// rootfs setup a hand-off between threads.)
	goruntime.LockOSThread()
	cfg, p := in.cfg, in.cfg.Spec.Process
	if mp := cfg.Spec.Linux.MemoryPolicy; mp != nil {
		pol, err := parseMemPolicy(mp)
		if err != nil {
			return nil, err
		}
		if err := pol.apply(); err != nil {
			return nil, err
		}
	}
	u := &userProcess{env: withHome(p.Env, p.User.UID)}
	var err error
	if u.argv0, err = lookPath(p.Args[0], u.env); err != nil {
		return nil, err
	}
	if len(cfg.Seccomp) > 0 {
		u.prog = new(seccomp.Program)
		if err := u.prog.UnmarshalBinary(cfg.Seccomp); err != nil {
			return nil, err
		}
		u.early = !p.NoNewPrivileges || u.prog.Notify()
	}
	if err := enterCwd(p.Cwd); err != nil && !errors.Is(err, unix.EACCES) {
		return nil, err
	}
	if u.early {
		if err := in.loadSeccomp(u.prog); err != nil {
			return nil, err
		}
	}
	if err := process.Apply(p); err != nil {
		return nil, err
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return nil, fmt.Errorf("chdir to cwd %q: %w", p.Cwd, err)
	}
	return u, nil
}

// exec loads a late seccomp filter and becomes the user's program.
func (in *initProc) exec(u *userProcess) error {
	if u.prog != nil && !u.early {
		if err := in.loadSeccomp(u.prog); err != nil {
			return err
		}
	}
	args := in.cfg.Spec.Process.Args
	if err := unix.Exec(u.argv0, args, u.env); err != nil {
		return fmt.Errorf("exec %s: %w", args[0], err)
	}
	return nil
}

// closeOnExecFrom marks every descriptor from first up close-on-exec.
func closeOnExecFrom(first int) error {
	err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	ents, derr := os.ReadDir("/proc/self/fd")
	if derr != nil {
		return fmt.Errorf("close inherited descriptors: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// enterCwd changes to the process's working directory and makes sure it is
// inside the container: a directory reached through a descriptor or mount
// outside the root shows as unreachable (CVE-2024-21626).
func enterCwd(cwd string) error {
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd %q: %w", cwd, err)
	}
	wd, err := unix.Getwd()
	if err != nil {
		return fmt.Errorf("cwd %q: %w", cwd, err)
	}
	if !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("cwd %q is outside the container (%s)", cwd, wd)
	}
	return nil
}

// waitStart blocks until `start` opens the exec FIFO, then signals it. The
// FIFO stays open, close-on-exec, so that `start` sees it close when the
// user's program replaces the init (or the init fails).
func waitStart(fifoFD int) error {
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fifoFD), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	unix.Close(fifoFD)
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return fmt.Errorf("write exec fifo: %w", err)
	}
	return nil
}

// lookPath finds the program to run the way a shell in the container would:
// a name with a slash as is, otherwise along the process's own PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("exec %q: %w", name, err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in $PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("permission denied")
	}
	return nil
}

// withHome adds HOME from the container's /etc/passwd when env lacks it.
func withHome(env []string, uid uint32) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	if f, err := os.Open("/etc/passwd"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) >= 6 && fields[2] == strconv.FormatUint(uint64(uid), 10) {
				home = fields[5]
				break
			}
		}
		f.Close()
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func chroot(dir string) error {
	if err := unix.Chroot(dir); err != nil {
		return fmt.Errorf("chroot %s: %w", dir, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir / after chroot: %w", err)
	}
	return nil
}
