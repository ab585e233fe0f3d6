package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
	"github.com/berth-project/berth/internal/specgen"
)

// execRecord is an exec of a container (kept in memory, as Docker does).
type execRecord struct {
	mu       sync.Mutex
	id       string
	c        *ctr
	cfg      container.ExecCreateRequest
	started  bool
	running  bool
	exitCode *int
	pid      int
	proc     *shim.Exec
	done     chan struct{}
	size     [2]uint16 // a terminal size set before the process started
}

// maxExecsPerContainer bounds the finished execs a container keeps.
const maxExecsPerContainer = 64

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// execIDs lists the container's execs. The caller holds c.mu.
func (c *ctr) execIDs() []string {
	var out []string
	for id := range c.execs {
		out = append(out, id)
	}
	return out
}

// ExecCreate prepares a process to run in a running container.
func (e *Engine) ExecCreate(ctx context.Context, ref string, cfg container.ExecCreateRequest) (string, error) {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return "", err
	}
	if len(cfg.Cmd) == 0 {
		return "", errdefs.InvalidArgument(fmt.Errorf("no exec command specified"))
	}
	if _, err := parseDetachKeys(cfg.DetachKeys); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running() {
		return "", errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	if c.rec.State.Status == StatePaused {
		// Docker's words, with the name the client gave.
		return "", errdefs.Conflict(fmt.Errorf("Container %s is paused, unpause the container before exec", ref))
	}
	if len(c.execs) >= maxExecsPerContainer {
		for id, x := range c.execs {
			x.mu.Lock()
			finished := x.exitCode != nil
			x.mu.Unlock()
			if finished {
				delete(c.execs, id)
				cs.mu.Lock()
				delete(cs.execs, id)
				cs.mu.Unlock()
			}
		}
	}
	x := &execRecord{id: newID(), c: c, cfg: cfg, done: make(chan struct{})}
	if c.execs == nil {
		c.execs = map[string]*execRecord{}
	}
	c.execs[x.id] = x
	cs.mu.Lock()
	if cs.execs == nil {
		cs.execs = map[string]*execRecord{}
	}
	cs.execs[x.id] = x
	cs.mu.Unlock()
	e.emit("container", "exec_create: "+cfg.Cmd[0], c.rec.ID, c.attributesLocked("execID", x.id))
	return x.id, nil
}

func (cs *containers) getExec(id string) (*execRecord, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if x, ok := cs.execs[id]; ok {
		return x, nil
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such exec instance: %s", id))
}

// execProcess builds the exec's process from the container's spec.
func (cs *containers) execProcess(c *ctr, cfg container.ExecCreateRequest) (specs.Process, error) {
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(c.bundle(), "config.json"))
	if err != nil {
		return specs.Process{}, fmt.Errorf("read spec of container %s: %w", c.rec.ID, err)
	}
	if err := json.Unmarshal(data, &spec); err != nil || spec.Process == nil {
		return specs.Process{}, fmt.Errorf("decode spec of container %s: %v", c.rec.ID, err)
	}
	p := *spec.Process
	p.Args = cfg.Cmd
	p.Terminal = cfg.Tty
	p.ConsoleSize = nil
	env := map[string]int{}
	for i, kv := range p.Env {
		k, _, _ := cutEnv(kv)
		env[k] = i
	}
	for _, kv := range cfg.Env {
		k, _, _ := cutEnv(kv)
		if i, ok := env[k]; ok {
			p.Env[i] = kv
		} else {
			env[k] = len(p.Env)
			p.Env = append(p.Env, kv)
		}
	}
	if cfg.WorkingDir != "" {
		p.Cwd = cfg.WorkingDir
	}
	if cfg.User != "" {
		u, err := specgen.LookupUser(c.rootfs(), cfg.User, c.rec.HostConfig.GroupAdd)
		if err != nil {
			return specs.Process{}, errdefs.InvalidArgument(fmt.Errorf("exec user %q: %w", cfg.User, err))
		}
		p.User = u
	}
	if cfg.Privileged && p.Capabilities != nil {
		all, err := specgen.Capabilities(cs.host.Capabilities, nil, nil, true)
		if err != nil {
			return specs.Process{}, err
		}
		p.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	}
	return p, nil
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// ExecStartOptions are the stdio of an exec start.
type ExecStartOptions struct {
	Detach         bool
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Height, Width  uint16
}

// ExecStart runs the exec; unless detached it streams its stdio until its
// output ends and returns when it exited (ErrDetached when the client
// typed the detach keys).
func (e *Engine) ExecStart(ctx context.Context, id string, opts ExecStartOptions) error {
	cs, err := e.ctrs()
	if err != nil {
		return err
	}
	x, err := cs.getExec(id)
	if err != nil {
		return err
	}
	x.mu.Lock()
	if x.started {
		x.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("exec %s has already been started", id))
	}
	x.started = true
	x.mu.Unlock()
	c := x.c
	c.mu.Lock()
	cl := c.shim
	if cl == nil || !c.running() {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	proc, err := cs.execProcess(c, x.cfg)
	c.mu.Unlock()
	if err != nil {
		// As Docker: an exec that could not start ends with status 126.
		code := 126
		x.mu.Lock()
		x.exitCode = &code
		x.mu.Unlock()
		close(x.done)
		return err
	}
	sctx := ctx
	if opts.Detach {
		sctx = context.WithoutCancel(ctx)
	}
	sctx, cancel := context.WithCancel(sctx)
	stdio := shim.Stdio{Height: opts.Height, Width: opts.Width}
	x.mu.Lock()
	if stdio.Height == 0 && stdio.Width == 0 {
		stdio.Height, stdio.Width = x.size[0], x.size[1]
	}
	x.mu.Unlock()
	var detached chan struct{}
	var dr *detachReader
	if !opts.Detach {
		if x.cfg.AttachStdin && opts.Stdin != nil {
			keys, _ := parseDetachKeys(x.cfg.DetachKeys)
			detached = make(chan struct{})
			dr = &detachReader{r: opts.Stdin, keys: keys, cancel: cancel, done: make(chan struct{}), detached: detached, eofEnds: x.cfg.Tty}
			stdio.Stdin = dr
		}
		if x.cfg.AttachStdout {
			stdio.Stdout = opts.Stdout
		}
		if x.cfg.AttachStderr {
			stdio.Stderr = opts.Stderr
		}
	}
	p, err := cl.Exec(sctx, id, proc, stdio, x.cfg.Tty)
	if err != nil {
		cancel()
		code := 126
		x.mu.Lock()
		x.exitCode = &code
		x.mu.Unlock()
		close(x.done)
		return fmt.Errorf("exec in container %s: %w", c.rec.ID, err)
	}
	x.mu.Lock()
	x.proc, x.running, x.pid = p, true, p.Pid()
	x.mu.Unlock()
	e.emit("container", "exec_start: "+x.cfg.Cmd[0], c.rec.ID, c.attributes("execID", id))
	finish := func() {
		defer cancel()
		es, err := p.Wait(context.WithoutCancel(sctx))
		code := es.Code
		if err != nil {
			code = 126
		}
		x.mu.Lock()
		x.running = false
		x.exitCode = &code
		x.mu.Unlock()
		close(x.done)
		p.Close()
		e.emit("container", "exec_die", c.rec.ID, c.attributes("execID", id, "exitCode", fmt.Sprint(code)))
	}
	if opts.Detach {
		go finish()
		return nil
	}
	waited := make(chan struct{})
	go func() { finish(); close(waited) }()
	select {
	case <-waited:
	case <-sctx.Done():
	}
	if dr != nil {
		close(dr.done)
	}
	if detached != nil {
		select {
		case <-detached:
			return ErrDetached
		default:
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	<-waited
	return nil
}

// ExecResize sets the size of an exec's terminal.
func (e *Engine) ExecResize(ctx context.Context, id string, height, width uint16) error {
	cs, err := e.ctrs()
	if err != nil {
		return err
	}
	x, err := cs.getExec(id)
	if err != nil {
		return err
	}
	x.mu.Lock()
	p, finished := x.proc, x.exitCode != nil
	if p == nil && !finished {
		// Clients resize right after starting, racing the start: the
		// size is used when the terminal is made.
		x.size = [2]uint16{height, width}
	}
	x.mu.Unlock()
	if finished {
		return errdefs.Conflict(fmt.Errorf("exec %s is not running", id))
	}
	if p == nil {
		return nil
	}
	return p.Resize(ctx, height, width)
}

// ExecInspect describes an exec.
func (e *Engine) ExecInspect(ctx context.Context, id string) (container.ExecInspectResponse, error) {
	cs, err := e.ctrs()
	if err != nil {
		return container.ExecInspectResponse{}, err
	}
	x, err := cs.getExec(id)
	if err != nil {
		return container.ExecInspectResponse{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	priv := x.cfg.Privileged
	return container.ExecInspectResponse{
		ID: x.id, Running: x.running, ExitCode: x.exitCode,
		ProcessConfig: &container.ExecProcessConfig{
			Tty: x.cfg.Tty, Entrypoint: x.cfg.Cmd[0], Arguments: x.cfg.Cmd[1:], Privileged: &priv, User: x.cfg.User,
		},
		OpenStdin: x.cfg.AttachStdin, OpenStdout: x.cfg.AttachStdout, OpenStderr: x.cfg.AttachStderr,
		CanRemove: x.exitCode != nil, ContainerID: x.c.rec.ID, DetachKeys: []byte(x.cfg.DetachKeys), Pid: x.pid,
	}, nil
}

// ExecTty reports whether an exec was created with a terminal.
func (e *Engine) ExecTty(id string) (bool, error) {
	cs, err := e.ctrs()
	if err != nil {
		return false, err
	}
	x, err := cs.getExec(id)
	if err != nil {
		return false, err
	}
	return x.cfg.Tty, nil
}

// runExec runs cmd in the container to completion and returns its exit
// code and up to limit bytes of its combined output (health checks).
func (cs *containers) runExec(ctx context.Context, c *ctr, cmd []string, limit int) (int, string, error) {
	c.mu.Lock()
	cl := c.shim
	if cl == nil || c.rec.State.Status != StateRunning {
		c.mu.Unlock()
		return 0, "", errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	proc, err := cs.execProcess(c, container.ExecCreateRequest{Cmd: cmd})
	c.mu.Unlock()
	if err != nil {
		return 0, "", err
	}
	out := &limitedBuffer{max: limit}
	p, err := cl.Exec(ctx, newID(), proc, shim.Stdio{Stdout: out, Stderr: out}, false)
	if err != nil {
		return 0, "", err
	}
	defer p.Close()
	es, err := p.Wait(ctx)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			_ = p.Kill(context.Background(), 9)
		}
		return 0, out.String(), err
	}
	return es.Code, out.String(), nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
