// Package shim owns berth-shim, the per-container monitor, and the client
// berthd talks to it with. One shim runs per container, detached from berthd,
// so containers outlive a stop or crash of the daemon: the shim runs the OCI
// runtime CLI (berth-runtime, runc, crun), holds the container's stdio or pty,
// writes its output to a Docker json-file log with rotation, reaps the
// container's processes as a child subreaper, records the exit status in its
// state directory (with whether the kernel's OOM killer struck, read from the
// container's memory cgroup as the init exits, see oom.go), and serves
// attach, resize, exec and resource updates to clients.
//
// The protocol is deliberately small so the shim stays lean: over a unix
// socket in the state directory a client sends one JSON request line and
// reads one JSON response line; attach and exec then turn the connection
// into a stream of length-prefixed frames (see writeFrame).
package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
)

// Files in a shim's state directory.
const (
	socketName = "shim.sock"
	// tmpSocketName is where the shim listens until the container is
	// created; the longest socket name in the state dir.
	tmpSocketName = "shim.sock.tmp"
	configName    = "shim.json"
	exitName      = "exit.json"
	shimLogName   = "shim.log"
	rtLogName     = "runtime.log"
	initPidName   = "init.pid"
)

// Operations of the protocol.
const (
	opInfo     = "info"
	opStart    = "start"
	opKill     = "kill"
	opWait     = "wait"
	opState    = "state"
	opPause    = "pause"
	opResume   = "resume"
	opAttach   = "attach"
	opResize   = "resize"
	opExec     = "exec"
	opDelete   = "delete"
	opShutdown = "shutdown"
	opCloseIn  = "close-stdin"
	opUpdate   = "update"
)

// request is one client call. Fields unused by an operation stay zero.
type request struct {
	Op      string          `json:"op"`
	ExecID  string          `json:"execID,omitempty"`
	Signal  int             `json:"signal,omitempty"`
	All     bool            `json:"all,omitempty"`
	Force   bool            `json:"force,omitempty"`
	Height  uint16          `json:"height,omitempty"`
	Width   uint16          `json:"width,omitempty"`
	Process json.RawMessage `json:"process,omitempty"` // an exec's specs.Process, passed on as is
	// Resources is an update's specs.LinuxResources, passed on as is.
	Resources json.RawMessage `json:"resources,omitempty"`
	Stdin     bool            `json:"stdin,omitempty"`
	Stdout    bool            `json:"stdout,omitempty"`
	Stderr    bool            `json:"stderr,omitempty"`
	CloseIn   bool            `json:"closeStdin,omitempty"`
	WantExit  bool            `json:"wantExit,omitempty"`
}

// response answers a request. Err is empty on success; Class names the
// errdefs class of the error so the client can restore it.
type response struct {
	Err    string       `json:"err,omitempty"`
	Class  string       `json:"class,omitempty"`
	Pid    int          `json:"pid,omitempty"`
	Status string       `json:"status,omitempty"`
	Exit   *ExitStatus  `json:"exit,omitempty"`
	Info   *InfoSummary `json:"info,omitempty"`
}

// InfoSummary describes a shim and its container.
type InfoSummary struct {
	ID       string `json:"id"`
	Pid      int    `json:"pid"`
	ShimPid  int    `json:"shimPid"`
	Terminal bool   `json:"terminal"`
	Stdin    bool   `json:"stdin"`
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code     int       `json:"code"`
	ExitedAt time.Time `json:"exitedAt"`
	// OOMKilled says the kernel's OOM killer killed a process of the
	// container while its init ran (set for the init only): the OOM kill
	// count of the container's memory cgroup rose between its creation and
	// the init's exit.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

var classes = []struct {
	name  string
	class error
}{
	{"not-found", errdefs.ErrNotFound},
	{"already-exists", errdefs.ErrAlreadyExists},
	{"invalid-argument", errdefs.ErrInvalidArgument},
	{"conflict", errdefs.ErrConflict},
	{"failed-precondition", errdefs.ErrFailedPrecond},
	{"not-implemented", errdefs.ErrNotImplemented},
	{"unavailable", errdefs.ErrUnavailable},
}

func errResponse(err error) response {
	r := response{Err: err.Error()}
	for _, c := range classes {
		if errors.Is(err, c.class) {
			r.Class = c.name
			break
		}
	}
	return r
}

func (r *response) error() error {
	if r.Err == "" {
		return nil
	}
	err := errors.New(r.Err)
	for _, c := range classes {
		if c.name == r.Class {
			return errdefs.With(c.class, err)
		}
	}
	return err
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// maxLine bounds a request or response line (an exec process spec is the
// largest).
const maxLine = 1 << 20

func readJSONLine(r *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return fmt.Errorf("protocol line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			break
		}
	}
	return json.Unmarshal(line, v)
}

// Frame kinds of the attach stream. From the shim: frameStdout and
// frameStderr carry output, frameEnd says the process's output ended.
// From the client: frameStdin carries input; an empty frameStdin says the
// client's stdin reached EOF.
const (
	frameStdin  byte = 0
	frameStdout byte = 1
	frameStderr byte = 2
	frameEnd    byte = 3
)

// maxFrame bounds one frame's payload.
const maxFrame = 1 << 20

// writeFrame writes a frame: one kind byte, a big-endian uint32 length and
// the payload.
func writeFrame(w io.Writer, kind byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if len(p) == 0 {
		_, err := w.Write(hdr[:])
		return err
	}
	buf := make([]byte, 0, 5+len(p))
	buf = append(append(buf, hdr[:]...), p...)
	_, err := w.Write(buf)
	return err
}

// readFrame reads one frame into buf (grown as needed) and returns its kind
// and payload.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes exceeds %d", n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("read attach frame: %w", io.ErrUnexpectedEOF)
	}
	return hdr[0], buf, nil
}
