package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
)

// LogsOptions are the parameters of GET /containers/{id}/logs.
type LogsOptions struct {
	Follow       bool
	Since, Until time.Time
	Tail         int // negative for all
}

// logFile is the container's json-file log, empty when its log driver is
// none (the shim then keeps no log). The caller holds c.mu.
func (c *ctr) logFile() string {
	if c.rec.HostConfig != nil && c.rec.HostConfig.LogConfig.Type == "none" {
		return ""
	}
	return c.logPath()
}

// ContainerLogs returns the container's log entries selected by opts and
// whether it has a terminal (its output is then one stream). Following
// ends when the container exits.
func (e *Engine) ContainerLogs(ctx context.Context, ref string, opts LogsOptions) (bool, iter.Seq2[shim.LogEntry, error], error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return false, nil, err
	}
	c.mu.Lock()
	tty := c.rec.Config.Tty
	path := c.logFile()
	exitCh, running := c.exitCh, c.running() || c.rec.State.Status == StateRestarting
	c.mu.Unlock()
	if path == "" {
		return false, nil, errdefs.NotImplemented(fmt.Errorf("configured logging driver does not support reading"))
	}
	stop := make(chan struct{})
	ro := shim.ReadOpts{Follow: opts.Follow, Since: opts.Since, Until: opts.Until, Tail: opts.Tail, Stop: stop}
	if !running {
		close(stop)
	} else {
		go func() {
			select {
			case <-exitCh:
			case <-ctx.Done():
			}
			close(stop)
		}()
	}
	return tty, shim.ReadLogs(ctx, path, ro), nil
}

// AttachOptions are the parameters of an attach.
type AttachOptions struct {
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // nil: that stream is not wanted
	// Logs replays the container's log first; Stream attaches to live
	// output.
	Logs, Stream bool
	// DetachKeys ends the attach (not the container) when read from stdin;
	// empty for Docker's ctrl-p,ctrl-q.
	DetachKeys string
	// Registered, if set, is called once the attach is registered with the
	// container: from then on a start cannot run its process unseen. It
	// releases a ContainerAttachReserve.
	Registered func()
}

// ContainerAttachReserve holds the container's next start until the attach
// that follows (or release) is registered. The API server reserves before it
// answers the client's attach request, because the client sends its start
// as soon as it has that answer: without the reservation the start can win
// the race and the first output is missed. A start waits at most a few
// seconds for reservations.
func (e *Engine) ContainerAttachReserve(ref string) (release func(), err error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.pendingAttach.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.pendingAttach.Add(-1) }) }, nil
}

// waitAttachReservations gives reserved attach requests a bounded time to
// register before a start.
func (c *ctr) waitAttachReservations(max time.Duration) {
	deadline := time.Now().Add(max)
	for c.pendingAttach.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// ErrDetached says an attach ended because the client typed the detach keys.
var ErrDetached = errors.New("detached from container")

// ContainerAttachable checks that a container can be attached to before
// an API handler hijacks the connection, and reports whether it has a tty.
func (e *Engine) ContainerAttachable(ref string) (tty bool, err error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.State.Status == StatePaused {
		return false, errdefs.Conflict(fmt.Errorf("container %s is paused, unpause the container before attach", c.rec.ID))
	}
	if c.rec.State.Status == StateRestarting {
		return false, errdefs.Conflict(fmt.Errorf("container %s is restarting, wait until the container is running", c.rec.ID))
	}
	return c.rec.Config.Tty, nil
}

// ContainerAttach streams the container's stdio to and from the client
// until the container's output ends, ctx is done or the client detaches
// (ErrDetached). A container that is not running is attached at its next
// start, before its process runs.
func (e *Engine) ContainerAttach(ctx context.Context, ref string, opts AttachOptions) error {
	_, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	path := c.logFile()
	c.mu.Unlock()
	if opts.Logs && path != "" {
		for entry, err := range shim.ReadLogs(ctx, path, shim.ReadOpts{Tail: -1}) {
			if err != nil {
				return err
			}
			w := opts.Stdout
			if entry.Stream == "stderr" {
				w = opts.Stderr
			}
			if w != nil {
				if _, err := w.Write(entry.Line); err != nil {
					return err
				}
			}
		}
	}
	if !opts.Stream {
		return nil
	}
	e.emit("container", "attach", c.rec.ID, c.attributes())
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdin := opts.Stdin
	var detached chan struct{}
	if stdin != nil {
		keys, err := parseDetachKeys(opts.DetachKeys)
		if err != nil {
			return err
		}
		c.mu.Lock()
		tty := c.rec.Config.Tty
		c.mu.Unlock()
		dr := &detachReader{r: stdin, keys: keys, cancel: cancel, done: make(chan struct{}), eofEnds: tty}
		defer close(dr.done)
		detached = make(chan struct{})
		dr.detached = detached
		stdin = dr
	}
	c.mu.Lock()
	closeStdin := c.rec.Config.StdinOnce && !c.rec.Config.Tty
	ao := shim.AttachOpts{CloseStdin: closeStdin}
	var res chan error
	registered := func() {
		if opts.Registered != nil {
			opts.Registered()
		}
	}
	if c.shim != nil && c.running() {
		cl := c.shim
		c.mu.Unlock()
		registered()
		err = cl.Attach(actx, stdin, opts.Stdout, opts.Stderr, ao)
	} else {
		res = make(chan error, 1)
		c.attachers = append(c.attachers, func(cl *shim.Client, ready func()) {
			var once sync.Once
			ao.OnAttached = func() { once.Do(ready) }
			go func() {
				err := cl.Attach(actx, stdin, opts.Stdout, opts.Stderr, ao)
				once.Do(ready)
				res <- err
			}()
		})
		removed := c.removedCh
		c.mu.Unlock()
		registered()
		select {
		case err = <-res:
		case <-actx.Done():
			err = actx.Err()
		case <-removed:
			return errdefs.NotFound(fmt.Errorf("container %s was removed", c.rec.ID))
		}
	}
	if detached != nil {
		select {
		case <-detached:
			e.emit("container", "detach", c.rec.ID, c.attributes())
			return ErrDetached
		default:
		}
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// parseDetachKeys parses Docker's detach key syntax: comma-separated
// single characters or ctrl-<char>.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = "ctrl-p,ctrl-q"
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(strings.ToLower(k), "ctrl-") && len(k) == 6:
			ch := k[5]
			switch {
			case ch >= 'a' && ch <= 'z':
				out = append(out, ch-'a'+1)
			case ch >= 'A' && ch <= 'Z':
				out = append(out, ch-'A'+1)
			case ch == '@':
				out = append(out, 0)
			case ch >= '[' && ch <= '_':
				out = append(out, ch-'['+27)
			default:
				return nil, errdefs.InvalidArgument(fmt.Errorf("invalid detach keys %q: unknown character %q", s, k))
			}
		default:
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid detach keys %q: %q is neither a character nor ctrl-<char>", s, k))
		}
	}
	return out, nil
}

// detachReader passes stdin through until the detach key sequence appears;
// then it cancels the attach and blocks until the attach is over, so the
// container's stdin is not closed by the detach.
type detachReader struct {
	r        io.Reader
	keys     []byte
	held     []byte // a partial match not yet passed on
	pending  []byte // bytes to pass on before reading more
	cancel   func()
	done     chan struct{}
	detached chan struct{}
	// eofEnds: the end of stdin ends the attach instead of reaching the
	// process (terminals).
	eofEnds bool
}

func (d *detachReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		buf := make([]byte, len(p))
		n, err := d.r.Read(buf)
		var out bytes.Buffer
		for _, b := range buf[:n] {
			if b == d.keys[len(d.held)] {
				d.held = append(d.held, b)
				if len(d.held) == len(d.keys) {
					out.WriteTo(io.Discard)
					d.pending = nil
					close(d.detached)
					d.cancel()
					<-d.done
					return 0, ErrDetached
				}
				continue
			}
			out.Write(d.held)
			d.held = d.held[:0]
			if b == d.keys[0] {
				d.held = append(d.held, b)
				continue
			}
			out.WriteByte(b)
		}
		if err != nil && len(d.held) > 0 {
			out.Write(d.held) // a partial sequence at the end is input
			d.held = d.held[:0]
		}
		d.pending = out.Bytes()
		if err != nil {
			if len(d.pending) == 0 {
				if d.eofEnds && errors.Is(err, io.EOF) {
					// A terminal's stdin is never closed by a client
					// going away (as Docker): the attach just ends.
					d.cancel()
					<-d.done
				}
				return 0, err
			}
			break
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}
