package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair: the controlling side the test
// drives and the terminal the client runs on.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		t.Fatalf("pty number: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		t.Fatalf("set the pty size: %v", err)
	}
	t.Cleanup(func() { ptm.Close(); pts.Close() })
	return ptm, pts
}

// ptyClient is a client command running on a pseudo-terminal.
type ptyClient struct {
	cmd  *exec.Cmd
	ptm  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (e *ctrEnv) startOnPTY(t *testing.T, args ...string) *ptyClient {
	t.Helper()
	ptm, pts := openPTY(t)
	full := args
	env := append(os.Environ(), "DOCKER_CONFIG="+e.c.Config, "TERM=xterm")
	if e.c.Name == "berth" {
		full = append([]string{"-H", e.d.Host}, args...)
		env = append(env, "BERTH_HOST=", "DOCKER_HOST=")
	} else {
		env = append(env, "DOCKER_HOST="+e.d.Host, "DOCKER_CONTEXT=", "DOCKER_CLI_HINTS=false")
	}
	cmd := exec.Command(e.c.Path, full...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	p := &ptyClient{cmd: cmd, ptm: ptm, done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *ptyClient) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *ptyClient) send(t *testing.T, s string) {
	t.Helper()
	if _, err := p.ptm.Write([]byte(s)); err != nil {
		t.Fatalf("write to the pty: %v", err)
	}
}

// waitOutput waits until the terminal shows want.
func (p *ptyClient) waitOutput(t *testing.T, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%q on the terminal", want), func() bool { return strings.Contains(p.output(), want) })
}

// wait waits for the client to exit and returns its exit code.
func (p *ptyClient) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		return ctrExitCode(t, err)
	case <-time.After(CommandTimeout):
		t.Fatalf("the client did not exit; terminal:\n%s", p.output())
		return -1
	}
}

func TestContainersInteractiveTTY(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		// A shell on a terminal: the window size, input, and the exit code.
		p := e.startOnPTY(t, e.runArgs("-it", "--rm", e.image, "sh")...)
		p.send(t, "stty size; tty; echo mark-$((6*7))\r")
		p.waitOutput(t, "mark-42")
		out := p.output()
		if !strings.Contains(out, "30 100") {
			t.Errorf("the container's terminal is not 30x100:\n%s", out)
		}
		if !strings.Contains(out, "/dev/pts/") && !strings.Contains(out, "/dev/console") {
			t.Errorf("tty inside the container:\n%s", out)
		}
		p.send(t, "exit 5\r")
		if code := p.wait(t); code != 5 {
			t.Errorf("run -it exit code %d, want 5; terminal:\n%s", code, p.output())
		}

		// Ctrl-P Ctrl-Q detaches; the container keeps running and attach
		// comes back to it.
		p = e.startOnPTY(t, e.runArgs("-it", "--name", "detachme", e.image, "sh")...)
		p.send(t, "echo ready-$((1+1))\r")
		p.waitOutput(t, "ready-2")
		p.send(t, "\x10\x11")
		if code := p.wait(t); code != 0 {
			t.Errorf("detach exit code %d; terminal:\n%s", code, p.output())
		}
		if in := e.inspect(t, "detachme"); !in.State.Running {
			t.Fatalf("container stopped after detaching: %+v", in.State)
		}
		a := e.startOnPTY(t, "attach", "detachme")
		a.send(t, "echo again-$((2+2))\r")
		a.waitOutput(t, "again-4")
		a.send(t, "exit 9\r")
		if code := a.wait(t); code != 9 {
			t.Errorf("attach exit code %d, want 9; terminal:\n%s", code, a.output())
		}

		// exec -it into a running container.
		e.mustRun(t, "-d", "--name", "execit", e.image, "sleep", "1000")
		x := e.startOnPTY(t, "exec", "-it", "execit", "sh")
		x.send(t, "stty size; echo exec-$((3+3))\r")
		x.waitOutput(t, "exec-6")
		if !strings.Contains(x.output(), "30 100") {
			t.Errorf("exec -it terminal size:\n%s", x.output())
		}
		x.send(t, "exit 4\r")
		if code := x.wait(t); code != 4 {
			t.Errorf("exec -it exit code %d, want 4", code)
		}
	})
}
