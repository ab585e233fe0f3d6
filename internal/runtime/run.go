package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Run creates and starts a container and, unless detach is set, waits for
// its init to exit, deletes it and returns its exit code (128+signal for a
// signal), as `run` does. While it waits it forwards the signals it receives
// to the container, and with process.terminal and no console socket it owns
// the terminal itself: the pty is proxied to its own standard streams.
func Run(ctx context.Context, root, id string, o CreateOpts, detach bool, warn func(error)) (int, error) {
	// The init may be forked into a PID namespace and so not be our
	// child; as a subreaper we still reap it.
	if !detach {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return -1, fmt.Errorf("become subreaper: %w", err)
		}
	}
	sigs := make(chan os.Signal, 32)
	if !detach {
		signal.Notify(sigs)
		defer signal.Stop(sigs)
	}
	var tty *ptyProxy
	if !detach && o.ConsoleSocket == "" {
		p, err := newPtyProxy()
		if err != nil {
			return -1, err
		}
		defer p.Close()
		tty = p
		o.ConsoleConn = p.remote
	}
	c, err := Create(ctx, root, id, o)
	if err != nil {
		return -1, err
	}
	if tty != nil && c.s.Spec.Process.Terminal {
		if err := tty.attach(); err != nil {
			c.Delete(ctx, true, warn)
			return -1, err
		}
	}
	if err := c.Start(ctx, warn); err != nil {
		c.Delete(ctx, true, warn)
		return -1, err
	}
	if detach {
		return 0, nil
	}
	status := waitProcess(c.s.Pid, sigs, tty, func(sig unix.Signal) { c.signalInit(sig) })
	if tty != nil {
		tty.drain()
	}
	if err := c.Delete(ctx, true, warn); err != nil {
		return status, err
	}
	return status, nil
}

// waitProcess reaps children until pid exits and returns its exit code
// (128+signal when a signal ended it), passing the signals the runtime
// receives on to forward and window size changes to the terminal.
func waitProcess(pid int, sigs chan os.Signal, tty *ptyProxy, forward func(unix.Signal)) int {
	exited := make(chan int, 1)
	go func() {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				exited <- 255
				return
			}
			if got != pid {
				continue
			}
			switch {
			case ws.Exited():
				exited <- ws.ExitStatus()
			case ws.Signaled():
				exited <- 128 + int(ws.Signal())
			default:
				continue
			}
			return
		}
	}()
	for {
		select {
		case code := <-exited:
			return code
		case s := <-sigs:
			sig := s.(unix.Signal)
			switch sig {
			case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE:
			case unix.SIGWINCH:
				if tty != nil {
					tty.resize()
				}
			default:
				forward(sig)
			}
		}
	}
}

// ptyProxy receives a container's pty master and copies it to and from the
// runtime's own standard streams, with the local terminal in raw mode.
type ptyProxy struct {
	local, remote *os.File
	master        *os.File
	restore       func()
	done          chan struct{}
}

func newPtyProxy() (*ptyProxy, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socketpair: %w", err)
	}
	return &ptyProxy{local: os.NewFile(uintptr(fds[0]), "console"), remote: os.NewFile(uintptr(fds[1]), "console-remote")}, nil
}

// attach receives the master and starts copying.
func (p *ptyProxy) attach() error {
	p.remote.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(p.local.Fd()), buf, oob, 0)
	if err != nil {
		return fmt.Errorf("receive pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return fmt.Errorf("receive pty master: no descriptor")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return fmt.Errorf("receive pty master: no descriptor")
	}
	p.master = os.NewFile(uintptr(fds[0]), "pty-master")
	if term.IsTerminal(int(os.Stdin.Fd())) {
		if old, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			p.restore = func() { term.Restore(int(os.Stdin.Fd()), old) }
		}
		p.resize()
	}
	p.done = make(chan struct{})
	go io.Copy(p.master, os.Stdin)
	go func() { io.Copy(os.Stdout, p.master); close(p.done) }()
	return nil
}

func (p *ptyProxy) resize() {
	if p.master == nil {
		return
	}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
		unix.IoctlSetWinsize(int(p.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// drain waits for the output the container wrote before it exited.
func (p *ptyProxy) drain() {
	if p.done != nil {
		<-p.done
	}
}

func (p *ptyProxy) Close() {
	if p.restore != nil {
		p.restore()
	}
	if p.master != nil {
		p.master.Close()
	}
	p.local.Close()
	p.remote.Close()
}
