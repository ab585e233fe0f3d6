package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Opts describes the container a shim is spawned for.
type Opts struct {
	ID       string // container ID, as the runtime knows it
	Bundle   string // OCI bundle directory (config.json decides Terminal)
	StateDir string // the shim's directory: socket, exit status, shim log; kept short (unix socket paths are limited to 107 bytes)
	// ShimBinary is the berth-shim executable.
	ShimBinary string
	// Runtime is the OCI runtime: a path, or a name looked up in PATH
	// (berth-runtime, runc, crun).
	Runtime     string
	RuntimeRoot string   // the runtime's --root
	RuntimeArgs []string // extra global runtime flags, such as --systemd-cgroup
	// LogPath is the json-file log of the container's output; empty for
	// none. LogMaxSize (bytes, 0 for unlimited) and LogMaxFiles rotate it.
	LogPath     string
	LogMaxSize  int64
	LogMaxFiles int
	// OpenStdin keeps a pipe to the container's stdin for attach clients;
	// StdinOnce closes it when the first attached client's stdin ends.
	OpenStdin bool
	StdinOnce bool
	// ConsoleHeight and ConsoleWidth are the initial terminal size.
	ConsoleHeight, ConsoleWidth uint16
}

// maxSocketPath is the room in sockaddr_un.sun_path.
const maxSocketPath = 107

// Client talks to one shim. It holds no connection between calls, so it is
// safe for concurrent use and survives nothing it needs to: Connect makes
// an equal one from the state directory alone.
type Client struct {
	dir  string
	info InfoSummary
	done <-chan struct{} // closed when the shim process was reaped (Spawn only)
}

// Spawn starts a shim for o.ID, fully detached from the caller (its own
// session and process group, stdio to /dev/null and its shim.log), and
// returns when the shim has created the container (`runtime create`) and
// answers on its socket. The container is created, not started.
func Spawn(ctx context.Context, o Opts) (*Client, error) {
	switch {
	case o.ID == "" || strings.ContainsAny(o.ID, "/\x00"):
		return nil, errdefs.InvalidArgument(fmt.Errorf("spawn shim: invalid container id %q", o.ID))
	case o.Bundle == "" || o.StateDir == "" || o.ShimBinary == "" || o.Runtime == "" || o.RuntimeRoot == "":
		return nil, errdefs.InvalidArgument(fmt.Errorf("spawn shim for %s: bundle, state dir, shim binary, runtime and runtime root are required", o.ID))
	}
	dir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("spawn shim for %s: %w", o.ID, err)
	}
	if n := len(filepath.Join(dir, tmpSocketName)); n > maxSocketPath {
		return nil, errdefs.InvalidArgument(fmt.Errorf("spawn shim for %s: socket path in %s is %d bytes, over the %d a unix socket allows", o.ID, dir, n, maxSocketPath))
	}
	rt := o.Runtime
	if !strings.Contains(rt, "/") {
		if rt, err = exec.LookPath(rt); err != nil {
			return nil, errdefs.NotFound(fmt.Errorf("spawn shim for %s: runtime %s: %w", o.ID, o.Runtime, err))
		}
	}
	if rt, err = filepath.Abs(rt); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, err
	}
	logPath := o.LogPath
	if logPath != "" {
		if logPath, err = filepath.Abs(logPath); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spawn shim for %s: create state dir: %w", o.ID, err)
	}
	if sock := filepath.Join(dir, socketName); fileExists(sock) {
		conn, err := dialUnix(ctx, sock)
		if err == nil {
			conn.Close()
			return nil, errdefs.AlreadyExists(fmt.Errorf("spawn shim for %s: a shim already serves %s", o.ID, dir))
		}
		os.Remove(sock) // left by a shim that died (a host crash, a kill -9)
	}
	os.Remove(filepath.Join(dir, exitName))
	cfg := config{
		ID: o.ID, Bundle: bundle, Runtime: rt, RuntimeRoot: o.RuntimeRoot, RuntimeArgs: o.RuntimeArgs,
		LogPath: logPath, LogMaxSize: o.LogMaxSize, LogMaxFiles: o.LogMaxFiles,
		OpenStdin: o.OpenStdin, StdinOnce: o.StdinOnce,
		ConsoleHeight: o.ConsoleHeight, ConsoleWidth: o.ConsoleWidth,
		ReadyFD: 3,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, configName), b, 0o600); err != nil {
		return nil, fmt.Errorf("spawn shim for %s: write config: %w", o.ID, err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	shimLog, err := os.OpenFile(filepath.Join(dir, shimLogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spawn shim for %s: open shim log: %w", o.ID, err)
	}
	defer shimLog.Close()
	logStart, _ := shimLog.Seek(0, io.SeekEnd)
	// The shim says on fd 3 when its socket is there: no polling, and no
	// wait longer than the shim's own start-up.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn shim for %s: %w", o.ID, err)
	}
	defer readyR.Close()
	proc, err := os.StartProcess(o.ShimBinary, []string{o.ShimBinary, "--state-dir", dir}, &os.ProcAttr{
		Dir:   "/",
		Env:   os.Environ(),
		Files: []*os.File{devnull, devnull, shimLog, readyW},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("spawn shim for %s: start %s: %w", o.ID, o.ShimBinary, err)
	}
	ready := make(chan struct{})
	go func() {
		var b [1]byte
		readyR.Read(b[:]) // a byte: published; EOF: the shim ended
		close(ready)
	}()
	done := make(chan struct{})
	go func() {
		proc.Wait() // reap the shim if it ends while the caller lives
		close(done)
	}()
	c := &Client{dir: dir, done: done}
	delay := 50 * time.Millisecond
	for {
		if _, err := os.Stat(filepath.Join(dir, socketName)); err == nil {
			info, err := c.infoCall(ctx)
			if err == nil {
				c.info = info
				return c, nil
			}
		}
		select {
		case <-ready:
			ready = nil // checked once; then the slow poll below
			continue
		case <-done:
			msg := shimFailure(filepath.Join(dir, shimLogName), logStart)
			if strings.HasPrefix(msg, "OCI runtime ") {
				return nil, errors.New(msg) // the runtime's refusal, as Docker words it
			}
			return nil, fmt.Errorf("spawn shim for %s: %s", o.ID, msg)
		case <-ctx.Done():
			proc.Signal(syscall.SIGKILL)
			<-done
			// The shim may have got as far as creating the container.
			args := append(append([]string{}, o.RuntimeArgs...), "--root", o.RuntimeRoot, "delete", "--force", o.ID)
			exec.Command(rt, args...).Run()
			os.Remove(filepath.Join(dir, socketName))
			return nil, fmt.Errorf("spawn shim for %s: %w", o.ID, ctx.Err())
		case <-time.After(delay):
			// Only a safety net: the ready pipe or the shim's exit wakes
			// this loop.
		}
	}
}

// shimFailure returns what a shim that ended at start-up wrote to its log.
func shimFailure(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "shim exited"
	}
	defer f.Close()
	f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(io.LimitReader(f, 64*1024))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		return "shim exited"
	}
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	return strings.TrimPrefix(msg, "berth-shim: ")
}

// Connect returns a client for the shim serving stateDir, such as one
// berthd spawned before it restarted. It fails with errdefs.ErrUnavailable
// when no shim answers there (ReadExit then tells how the container ended
// if it did).
func Connect(ctx context.Context, stateDir string) (*Client, error) {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	c := &Client{dir: dir}
	info, err := c.infoCall(ctx)
	if err != nil {
		return nil, err
	}
	c.info = info
	return c, nil
}

// Cleanup deletes, with the runtime (`runtime delete --force`), the
// container of a shim that is gone (killed, or lost with its host), so its
// runtime state and cgroups do not outlive it: it kills what still runs of
// it. The runtime, its root and flags are the ones the shim was spawned
// with, from its state directory. A container the runtime no longer knows
// is no error, nor is a state directory without a shim's config; one whose
// shim still answers is not touched (a conflict).
func Cleanup(ctx context.Context, stateDir string) error {
	if c, err := Connect(ctx, stateDir); err == nil {
		return errdefs.Conflict(fmt.Errorf("shim %d still serves container %s", c.ShimPid(), c.ID()))
	}
	b, err := os.ReadFile(filepath.Join(stateDir, configName))
	if errors.Is(err, os.ErrNotExist) {
		return nil // no shim was spawned here (or the host rebooted, emptying the runtime's state too)
	}
	if err != nil {
		return fmt.Errorf("read shim config in %s: %w", stateDir, err)
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("parse shim config in %s: %w", stateDir, err)
	}
	if cfg.ID == "" || cfg.Runtime == "" || cfg.RuntimeRoot == "" {
		return errdefs.InvalidArgument(fmt.Errorf("shim config in %s names no container, runtime or runtime root", stateDir))
	}
	args := append(append([]string{}, cfg.RuntimeArgs...), "--root", cfg.RuntimeRoot, "delete", "--force", cfg.ID)
	out, err := exec.CommandContext(ctx, cfg.Runtime, args...).CombinedOutput()
	if err != nil {
		msg := strings.ToLower(string(out))
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") {
			return nil
		}
		return fmt.Errorf("delete container %s with %s: %w: %s", cfg.ID, filepath.Base(cfg.Runtime), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close releases the client. The shim and its container are unaffected.
func (c *Client) Close() error { return nil }

// ID returns the container ID.
func (c *Client) ID() string { return c.info.ID }

// Pid returns the container's init pid.
func (c *Client) Pid() int { return c.info.Pid }

// ShimPid returns the shim's pid.
func (c *Client) ShimPid() int { return c.info.ShimPid }

// Terminal reports whether the container's init has a terminal.
func (c *Client) Terminal() bool { return c.info.Terminal }

// StateDir returns the shim's state directory.
func (c *Client) StateDir() string { return c.dir }

func (c *Client) dial(ctx context.Context) (*os.File, error) {
	conn, err := dialUnix(ctx, filepath.Join(c.dir, socketName))
	if err != nil {
		return nil, errdefs.Unavailable(fmt.Errorf("connect to shim in %s: %w", c.dir, err))
	}
	return conn, nil
}

// roundTrip sends req on a new connection and reads the response; the
// connection is returned open for streaming operations.
func (c *Client) roundTrip(ctx context.Context, req request) (*os.File, *bufio.Reader, response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, response{}, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeJSONLine(conn, req); err != nil {
		conn.Close()
		return nil, nil, response{}, c.connErr(ctx, req.Op, err)
	}
	rd := bufio.NewReader(conn)
	var resp response
	if err := readJSONLine(rd, &resp); err != nil {
		conn.Close()
		return nil, nil, response{}, c.connErr(ctx, req.Op, err)
	}
	if err := resp.error(); err != nil {
		conn.Close()
		return nil, nil, resp, err
	}
	return conn, rd, resp, nil
}

func (c *Client) connErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("shim %s in %s: %w", op, c.dir, ctx.Err())
	}
	return errdefs.Unavailable(fmt.Errorf("shim %s in %s: %w", op, c.dir, err))
}

func (c *Client) call(ctx context.Context, req request) (response, error) {
	conn, _, resp, err := c.roundTrip(ctx, req)
	if err != nil {
		return resp, err
	}
	conn.Close()
	return resp, nil
}

func (c *Client) infoCall(ctx context.Context) (InfoSummary, error) {
	resp, err := c.call(ctx, request{Op: opInfo})
	if err != nil {
		return InfoSummary{}, err
	}
	if resp.Info == nil {
		return InfoSummary{}, fmt.Errorf("shim in %s answered info without it", c.dir)
	}
	return *resp.Info, nil
}

// Start starts the created container (`runtime start`).
func (c *Client) Start(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: opStart})
	return err
}

// Kill sends sig to the container's init, or with all to all its
// processes (`runtime kill [--all]`).
func (c *Client) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	_, err := c.call(ctx, request{Op: opKill, Signal: int(sig), All: all})
	return err
}

// Wait returns the init's exit status once it exited. It outlives shim
// reconnects: when the shim is gone, the status it recorded is returned.
func (c *Client) Wait(ctx context.Context) (ExitStatus, error) {
	return c.wait(ctx, "")
}

func (c *Client) wait(ctx context.Context, execID string) (ExitStatus, error) {
	resp, err := c.call(ctx, request{Op: opWait, ExecID: execID})
	if err != nil {
		if execID == "" && errors.Is(err, errdefs.ErrUnavailable) && ctx.Err() == nil {
			if e, rerr := ReadExit(c.dir); rerr == nil {
				return e, nil
			}
		}
		return ExitStatus{}, err
	}
	if resp.Exit == nil {
		return ExitStatus{}, fmt.Errorf("shim in %s answered wait without a status", c.dir)
	}
	return *resp.Exit, nil
}

// State is a container's (or exec's) state as the shim sees it.
type State struct {
	Pid    int
	Status string      // the runtime's: created, running, paused, stopped
	Exit   *ExitStatus // set once stopped
}

// State asks the runtime for the container's state (`runtime state`).
func (c *Client) State(ctx context.Context) (State, error) {
	return c.state(ctx, "")
}

func (c *Client) state(ctx context.Context, execID string) (State, error) {
	resp, err := c.call(ctx, request{Op: opState, ExecID: execID})
	if err != nil {
		return State{}, err
	}
	return State{Pid: resp.Pid, Status: resp.Status, Exit: resp.Exit}, nil
}

// Pause freezes the container (`runtime pause`).
func (c *Client) Pause(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: opPause})
	return err
}

// Resume thaws the container (`runtime resume`).
func (c *Client) Resume(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: opResume})
	return err
}

// Update changes the resources of the running (or paused) container to r
// (`runtime update --resources -`, r as JSON on its standard input). As in
// runc, fields left nil keep their current values.
func (c *Client) Update(ctx context.Context, r *specs.LinuxResources) error {
	if r == nil {
		return errdefs.InvalidArgument(fmt.Errorf("update container %s: no resources", c.info.ID))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update container %s: encode resources: %w", c.info.ID, err)
	}
	_, err = c.call(ctx, request{Op: opUpdate, Resources: b})
	return err
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, height, width uint16) error {
	_, err := c.call(ctx, request{Op: opResize, Height: height, Width: width})
	return err
}

// CloseStdin closes the container's stdin.
func (c *Client) CloseStdin(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: opCloseIn})
	return err
}

// AttachOpts adjusts an attach.
type AttachOpts struct {
	// CloseStdin closes the process's stdin when this client's stdin
	// reaches EOF (Docker's StdinOnce for this client); the container's
	// own StdinOnce does so for any client.
	CloseStdin bool
	// OnAttached, when set, is called once the shim has added this client:
	// all output from then on reaches it (start the container after it to
	// miss nothing).
	OnAttached func()
}

// Attach streams the container's output to stdout and stderr (nil to skip
// one; a terminal's output all goes to stdout) and stdin (nil for none) to
// the container, until the output ends or ctx is done. Any number of
// clients may attach at once; each gets all output from the time it
// attached.
func (c *Client) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, opts AttachOpts) error {
	return c.attach(ctx, "", stdin, stdout, stderr, opts)
}

func (c *Client) attach(ctx context.Context, execID string, stdin io.Reader, stdout, stderr io.Writer, opts AttachOpts) error {
	conn, rd, _, err := c.roundTrip(ctx, request{Op: opAttach, ExecID: execID, Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil, CloseIn: opts.CloseStdin})
	if err != nil {
		return err
	}
	if opts.OnAttached != nil {
		opts.OnAttached()
	}
	return stream(ctx, conn, rd, stdin, stdout, stderr)
}

// stream runs an attach stream: stdin to frames, frames to stdout and
// stderr, until the end frame, a broken connection or ctx.
func stream(ctx context.Context, conn *os.File, rd *bufio.Reader, stdin io.Reader, stdout, stderr io.Writer) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if stdin != nil {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if werr := writeFrame(conn, frameStdin, buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					writeFrame(conn, frameStdin, nil)
					return
				}
			}
		}()
	}
	var buf []byte
	for {
		kind, b, err := readFrame(rd, buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return errdefs.Unavailable(fmt.Errorf("attach stream: %w", err))
		}
		buf = b[:0]
		var w io.Writer
		switch kind {
		case frameEnd:
			return nil
		case frameStdout:
			w = stdout
		case frameStderr:
			w = stderr
		}
		if w != nil && len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("attach stream: write output: %w", err)
			}
		}
	}
}

// Stdio is an exec's stdio on the caller's side. Nil readers and writers
// are not attached; output without a writer is dropped.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Height and Width are the initial terminal size of a tty exec.
	Height, Width uint16
}

// Exec is a process started in the container with Client.Exec.
type Exec struct {
	c      *Client
	id     string
	pid    int
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// Exec starts proc in the running container (`runtime exec -d`) with a
// terminal when tty, streaming its stdio to and from stdio until its
// output ends. The stream is set up before the process starts, so no
// output is lost.
func (c *Client) Exec(ctx context.Context, execID string, proc specs.Process, stdio Stdio, tty bool) (*Exec, error) {
	proc.Terminal = tty
	if tty && stdio.Height > 0 && stdio.Width > 0 && proc.ConsoleSize == nil {
		// The runtime sizes the terminal before the process runs.
		proc.ConsoleSize = &specs.Box{Height: uint(stdio.Height), Width: uint(stdio.Width)}
	}
	procJSON, err := json.Marshal(&proc)
	if err != nil {
		return nil, fmt.Errorf("exec %s: encode process: %w", execID, err)
	}
	conn, rd, resp, err := c.roundTrip(ctx, request{Op: opExec, ExecID: execID, Process: procJSON, Stdin: stdio.Stdin != nil, Height: stdio.Height, Width: stdio.Width})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	e := &Exec{c: c, id: execID, pid: resp.Pid, done: make(chan struct{}), cancel: cancel}
	go func() {
		e.err = stream(sctx, conn, rd, stdio.Stdin, stdio.Stdout, stdio.Stderr)
		close(e.done)
	}()
	return e, nil
}

// ID returns the exec's ID.
func (e *Exec) ID() string { return e.id }

// Pid returns the exec's pid on the host.
func (e *Exec) Pid() int { return e.pid }

// Wait returns the exec's exit status once it exited and its output has
// been written to the Stdio writers.
func (e *Exec) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-e.done:
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
	st, err := e.c.wait(ctx, e.id)
	if err != nil {
		return st, err
	}
	if e.err != nil {
		return st, e.err
	}
	return st, nil
}

// Resize sets the size of the exec's terminal.
func (e *Exec) Resize(ctx context.Context, height, width uint16) error {
	_, err := e.c.call(ctx, request{Op: opResize, ExecID: e.id, Height: height, Width: width})
	return err
}

// Kill signals the exec's process.
func (e *Exec) Kill(ctx context.Context, sig syscall.Signal) error {
	_, err := e.c.call(ctx, request{Op: opKill, ExecID: e.id, Signal: int(sig)})
	return err
}

// State returns the exec's state.
func (e *Exec) State(ctx context.Context) (State, error) { return e.c.state(ctx, e.id) }

// Attach adds another client to the exec's stdio, as Client.Attach.
func (e *Exec) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, opts AttachOpts) error {
	return e.c.attach(ctx, e.id, stdin, stdout, stderr, opts)
}

// Close stops streaming the exec's stdio; the process is unaffected.
func (e *Exec) Close() error {
	e.cancel()
	<-e.done
	return nil
}

// Delete deletes the container (`runtime delete`, with force also a
// running one) and returns once the shim has exited, with the container's
// exit status.
func (c *Client) Delete(ctx context.Context, force bool) (ExitStatus, error) {
	resp, err := c.call(ctx, request{Op: opDelete, Force: force})
	if err != nil {
		return ExitStatus{}, err
	}
	if err := c.waitShimGone(ctx); err != nil {
		return ExitStatus{}, err
	}
	if resp.Exit == nil {
		return ExitStatus{}, nil
	}
	return *resp.Exit, nil
}

// Shutdown ends a shim whose container is no longer running (for example
// one whose container berthd deleted through the runtime itself).
func (c *Client) Shutdown(ctx context.Context) error {
	if _, err := c.call(ctx, request{Op: opShutdown}); err != nil {
		return err
	}
	return c.waitShimGone(ctx)
}

// waitShimGone returns when the shim process has exited.
func (c *Client) waitShimGone(ctx context.Context) error {
	if c.done != nil {
		// Our own child: its reaper says when it is gone.
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for shim %d to exit: %w", c.info.ShimPid, ctx.Err())
		}
	}
	delay := time.Millisecond
	for {
		if c.done != nil {
			select {
			case <-c.done:
				return nil
			default:
			}
		} else if processGone(c.info.ShimPid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for shim %d to exit: %w", c.info.ShimPid, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// processGone reports whether pid no longer runs (absent, or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
