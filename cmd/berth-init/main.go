// Command berth-init is the init Berth binds into containers run with
// --init, at /sbin/docker-init where Docker puts its own. A container's
// command is rarely written to be PID 1: the kernel re-parents every
// orphan of the PID namespace to PID 1, which must wait for it or leave a
// zombie, and delivers to PID 1 only the signals it has a handler for, so
// a shell or a server as PID 1 ignores SIGTERM and `stop` ends in SIGKILL
// after the timeout. berth-init is that PID 1: it starts the command as its
// only child, forwards the signals it receives to it, reaps every process
// that dies in the namespace and exits with the command's status.
//
// Usage:
//
//	berth-init [-s] [-g] [--] command [args...]
//
// The command runs in its own process group; when stdin is the controlling
// terminal (run -it), that group becomes the terminal's foreground, so
// Ctrl-C and Ctrl-Z reach the command directly. Every catchable signal but
// SIGCHLD (which triggers reaping), SIGTTIN and SIGTTOU (job control of the
// init itself) and SIGURG (which the Go runtime sends itself to preempt
// goroutines) is forwarded to the command, or with -g
// (TINI_KILL_PROCESS_GROUP set) to its process group. When the command
// exits, berth-init exits with its exit code, or 128+N when signal N killed
// it. A command that is not found exits 127 and one that cannot be
// executed 126, as in a shell, with an error naming it.
//
// When berth-init is not PID 1 (a container sharing another's PID
// namespace, or a test), it registers as a child subreaper so orphans of
// its descendants come to it; -s (TINI_SUBREAPER set) makes a failure to
// do so fatal, else it warns that orphans will not be reaped.
//
// It must be built static (CGO_ENABLED=0; the Makefile does): it runs
// inside arbitrary root filesystems, which may have no libc and no dynamic
// loader. It imports neither fmt nor os/exec to stay small.
package main

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const usage = `usage: berth-init [-s] [-g] [--] command [args...]

Runs command as the child of an init that reaps zombies and forwards
signals, and exits with the command's status.

  -s   register as a child subreaper (automatic when not PID 1; with -s a
       failure is fatal)
  -g   forward signals to the command's process group, not only to it
`

// defaultPath is the search path for a command named without a slash when
// the environment has no PATH, as a shell's.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// options are the parsed command line.
type options struct {
	subreaper bool // -s
	group     bool // -g
	help      bool // -h, --help
	args      []string
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		os.Stderr.WriteString("berth-init: " + err.Error() + "\n" + usage)
		os.Exit(1)
	}
	if opts.help {
		os.Stdout.WriteString(usage)
		os.Exit(0)
	}
	if os.Getenv("TINI_SUBREAPER") != "" {
		opts.subreaper = true
	}
	if os.Getenv("TINI_KILL_PROCESS_GROUP") != "" {
		opts.group = true
	}
	os.Exit(run(opts))
}

// parseArgs reads the options before the command: single-letter flags,
// combinable ("-sg"), ended by "--" or the first argument that is not one.
func parseArgs(argv []string) (options, error) {
	var o options
	for len(argv) > 0 {
		a := argv[0]
		if a == "--" {
			argv = argv[1:]
			break
		}
		if a == "--help" {
			o.help = true
			return o, nil
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, c := range a[1:] {
			switch c {
			case 's':
				o.subreaper = true
			case 'g':
				o.group = true
			case 'h':
				o.help = true
				return o, nil
			default:
				return o, errors.New("unknown option " + strconv.Quote(a))
			}
		}
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return o, errors.New("no command given")
	}
	o.args = argv
	return o, nil
}

// run starts the command and serves as its init until it exits; it
// returns berth-init's exit status.
func run(o options) int {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			if o.subreaper {
				warn("register as a child subreaper: " + err.Error())
				return 1
			}
			warn("not PID 1 and cannot register as a child subreaper (" + err.Error() + "): orphaned processes will not be reaped")
		}
	}
	// Catch signals before the command exists: one that arrives while it
	// starts is forwarded once it runs, instead of ending the init.
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs, catchable()...)

	pid, err := start(o.args)
	if err != nil {
		warn(err.Error())
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return 127
		}
		return 126
	}
	target := pid
	if o.group {
		target = -pid
	}
	for {
		if status, exited := reap(pid); exited {
			return status
		}
		switch sig := (<-sigs).(syscall.Signal); sig {
		case unix.SIGCHLD, unix.SIGTTIN, unix.SIGTTOU:
		default:
			// ESRCH: the command has just exited; its SIGCHLD is queued.
			_ = unix.Kill(target, sig)
		}
	}
}

// catchable lists the signals berth-init handles: all but SIGKILL and
// SIGSTOP, which cannot be caught, and SIGURG, which the Go runtime sends
// its own threads (a handled SIGURG would be forwarded for every
// preemption).
func catchable() []os.Signal {
	var out []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		if s != unix.SIGKILL && s != unix.SIGSTOP && s != unix.SIGURG {
			out = append(out, s)
		}
	}
	return out
}

// start runs args as a child in a new process group, in the terminal's
// foreground when stdin is the controlling terminal. Signal dispositions
// are reset to the default in the child; the environment and open file
// descriptors are inherited.
func start(args []string) (int, error) {
	path, err := lookPath(args[0])
	if err != nil {
		return 0, &execError{name: args[0], err: err}
	}
	_, ttyErr := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: ttyErr == nil, Ctty: 0},
	})
	if err != nil {
		return 0, &execError{name: args[0], err: err}
	}
	return pid, nil
}

// execError is a failure to start the command, naming it.
type execError struct {
	name string
	err  error
}

func (e *execError) Error() string { return "exec " + strconv.Quote(e.name) + ": " + e.err.Error() }
func (e *execError) Unwrap() error { return e.err }

// lookPath finds a command named without a slash in $PATH as a shell
// does: the first executable regular file; EACCES when only files that
// cannot be executed were found, ENOENT when none.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if name == "" {
		return "", unix.ENOENT
	}
	dirs, ok := os.LookupEnv("PATH")
	if !ok {
		dirs = defaultPath
	}
	var notExec error
	for _, dir := range filepath.SplitList(dirs) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if dir == "." {
				return "./" + name, nil
			}
			return p, nil
		}
		notExec = unix.EACCES
	}
	if notExec != nil {
		return "", notExec
	}
	return "", unix.ENOENT
}

// reap waits for every child that has exited without blocking; it
// reports the command's status once the command (pid) is among them.
func reap(pid int) (status int, exited bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got <= 0 {
			return status, exited
		}
		if got != pid {
			continue
		}
		exited = true
		switch {
		case ws.Exited():
			status = ws.ExitStatus()
		case ws.Signaled():
			status = 128 + int(ws.Signal())
		}
	}
}

func warn(msg string) { os.Stderr.WriteString("berth-init: " + msg + "\n") }
