package shim

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// attachWriteTimeout bounds how long one attach client may stall the
// process's output before it is dropped.
const attachWriteTimeout = 10 * time.Second

// ioDrainTimeout bounds how long the shim waits, after a process exited,
// for its output to end (a process it left behind may hold the pipes).
const ioDrainTimeout = 5 * time.Second

// proc is a process of the container the shim watches: the init or an
// exec. It holds the process's stdio (pipes, or the pty master) and fans
// its output out to the log and to attach clients.
type proc struct {
	id       string // "" for the init
	pid      int
	tty      bool
	console  *os.File   // pty master when tty
	stdinW   *os.File   // write end of the stdin pipe (not tty)
	outputs  []*os.File // what copyOutput reads: pipes or the console
	hasStdin bool
	once     bool // close stdin when the first attached stdin ends

	mu        sync.Mutex
	subs      map[*subscriber]struct{}
	ended     bool // output ended: new subscribers end at once
	inClosed  bool
	stdinUsed bool

	outDone chan struct{} // closed when all output is copied
	exited  chan struct{} // closed when exit is set
	exit    ExitStatus
}

type subscriber struct {
	conn           *os.File
	wmu            sync.Mutex
	stdout, stderr bool
}

func newProc(id string) *proc {
	return &proc{id: id, subs: map[*subscriber]struct{}{}, outDone: make(chan struct{}), exited: make(chan struct{})}
}

func (s *subscriber) send(kind byte, p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(attachWriteTimeout))
	return writeFrame(s.conn, kind, p)
}

// subscribe adds an attach client; when the output already ended it gets
// the end frame at once.
func (p *proc) subscribe(s *subscriber) {
	p.mu.Lock()
	if !p.ended {
		p.subs[s] = struct{}{}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	s.send(frameEnd, nil)
	s.conn.Close()
}

func (p *proc) unsubscribe(s *subscriber) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
}

func (p *proc) broadcast(kind byte, b []byte) {
	p.mu.Lock()
	subs := make([]*subscriber, 0, len(p.subs))
	for s := range p.subs {
		if (kind == frameStdout && s.stdout) || (kind == frameStderr && s.stderr) {
			subs = append(subs, s)
		}
	}
	p.mu.Unlock()
	for _, s := range subs {
		if err := s.send(kind, b); err != nil {
			p.unsubscribe(s)
			s.conn.Close()
		}
	}
}

// endOutput tells every attach client the output ended and closes them.
func (p *proc) endOutput() {
	p.mu.Lock()
	p.ended = true
	subs := p.subs
	p.subs = map[*subscriber]struct{}{}
	p.mu.Unlock()
	for s := range subs {
		s.send(frameEnd, nil)
		s.conn.Close()
	}
}

// copyOutput copies one output source to the log (when log is not nil)
// and to attach clients until EOF (EIO on a pty master whose slave closed).
func (p *proc) copyOutput(src *os.File, kind byte, log *lineSplitter, wg *sync.WaitGroup) {
	defer wg.Done()
	defer src.Close()
	// 8 KiB a read: a reader blocks on its own stack with this buffer for
	// the container's whole life, and a larger one doubles that stack.
	buf := make([]byte, 8*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if log != nil {
				if _, lerr := log.Write(buf[:n]); lerr != nil {
					logf("container %s: %v", p.id, lerr)
				}
			}
			p.broadcast(kind, buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				logf("read output of %s: %v", p.name(), err)
			}
			break
		}
	}
	if log != nil {
		if err := log.Flush(); err != nil {
			logf("container %s: %v", p.id, err)
		}
	}
}

func (p *proc) name() string {
	if p.id == "" {
		return "init"
	}
	return "exec " + p.id
}

// writeStdin forwards an attach client's input to the process.
func (p *proc) writeStdin(b []byte) error {
	p.mu.Lock()
	closed := p.inClosed
	p.mu.Unlock()
	if closed {
		return os.ErrClosed
	}
	var err error
	if p.tty {
		_, err = p.console.Write(b)
	} else if p.stdinW != nil {
		_, err = p.stdinW.Write(b)
	}
	return err
}

// stdinEOF handles the end of an attach client's input: with close (the
// client's StdinOnce) or the process's StdinOnce the process's stdin is
// closed, as Docker does; otherwise it stays open for the next client.
func (p *proc) stdinEOF(close bool) {
	p.mu.Lock()
	if (!close && !p.once) || p.inClosed {
		p.mu.Unlock()
		return
	}
	p.inClosed = true
	w := p.stdinW
	p.stdinW = nil
	p.mu.Unlock()
	if w != nil {
		w.Close()
	}
}

func (p *proc) resize(h, w uint16) error {
	if p.console == nil {
		return errNotTTY
	}
	return setWinsize(p.console, h, w)
}

func (p *proc) isExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// setWinsize sets a terminal's size without taking its descriptor out of
// the runtime poller (as File.Fd would).
func setWinsize(f *os.File, h, w uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: h, Col: w})
	}); err != nil {
		return err
	}
	return ierr
}
