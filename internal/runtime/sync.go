package runtime

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/runtime/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The runtime and the init talk over a stream socket pair. First the nsenter
// constructor's line protocol (see package nsenter), then JSON messages, one
// per line: the runtime sends the initConfig, the init answers with messages.

// Message types the init sends.
const (
	msgHooks   = "hooks"   // namespaces and mounts are ready: run prestart and createRuntime hooks, then ack
	msgCreated = "created" // the init waits on the exec FIFO
	msgError   = "error"   // setup failed; Error says why
	msgSeccomp = "seccomp" // the seccomp notify descriptor is FD in the init: pass it to the listener, then ack
	msgAck     = "ack"     // the runtime's answer to msgHooks and msgSeccomp
)

type message struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
	FD    int    `json:"fd,omitempty"`
}

// initConfig is everything the init needs to set the container up.
type initConfig struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"` // the init's host PID, for hook state
	Spec        *specs.Spec       `json:"spec"`
	NoPivot     bool              `json:"no_pivot,omitempty"`
	NoNewKeyrng bool              `json:"no_new_keyring,omitempty"`
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
	CgroupNS    bool              `json:"cgroup_ns,omitempty"`
	PreserveFDs int               `json:"preserve_fds,omitempty"`
	FifoFD      int               `json:"fifo_fd"`
	ConsoleFD   int               `json:"console_fd,omitempty"` // -1 without a terminal
	RunHooks    bool              `json:"run_hooks,omitempty"`  // stop for the runtime's hooks
	Exec        bool              `json:"exec,omitempty"`       // an exec into a running container
	Seccomp     []byte            `json:"seccomp,omitempty"`    // compiled seccomp program
}

// initSpec is the spec as the init gets it: without the seccomp profile,
// which the init loads compiled (initConfig.Seccomp) and never reads, so
// that the init does not decode it on the container's start path (Docker's
// default profile is 8.5 KB of JSON, 0.2-0.3 ms to decode).
func initSpec(s *specs.Spec) *specs.Spec {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return s
	}
	c, l := *s, *s.Linux
	l.Seccomp = nil
	c.Linux = &l
	return &c
}

// channel wraps one end of the socket pair.
type channel struct {
	f   *os.File
	r   *bufio.Reader
	enc *json.Encoder
}

func newChannel(f *os.File) *channel {
	return &channel{f: f, r: bufio.NewReader(f), enc: json.NewEncoder(f)}
}

func socketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "init-parent"), os.NewFile(uintptr(fds[1]), "init-child"), nil
}

func (c *channel) send(v any) error { return c.enc.Encode(v) }

func (c *channel) recv(v any) error {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return io.EOF
		}
		return err
	}
	return json.Unmarshal(line, v)
}

// nsPlan is the namespace plan for the nsenter constructor.
type nsPlan struct {
	joins   []nsJoin
	unshare int
	timens  *[4]int64
}

type nsJoin struct {
	flag int
	path string
}

func (p *nsPlan) encode() string {
	var b strings.Builder
	for _, j := range p.joins {
		fmt.Fprintf(&b, "join %d %s\n", j.flag, j.path)
	}
	if p.unshare != 0 {
		fmt.Fprintf(&b, "unshare %d\n", p.unshare)
	}
	if t := p.timens; t != nil {
		fmt.Fprintf(&b, "timens %d %d %d %d\n", t[0], t[1], t[2], t[3])
	}
	b.WriteString("end\n")
	return b.String()
}

// sendPlan sends the namespace plan to the nsenter constructor.
func (c *channel) sendPlan(plan *nsPlan) error {
	if _, err := io.WriteString(c.f, plan.encode()); err != nil {
		return fmt.Errorf("send namespace plan: %w", err)
	}
	return nil
}

// enterNamespaces follows the constructor through the plan until it reports
// the host PID of the process that goes on as the init. userns writes the ID
// maps of a user namespace the plan creates; its argument is the PID of the
// process asking. inCgroup reports whether the process has been placed in
// its cgroup; the constructor waits for that before it forks.
func (c *channel) enterNamespaces(asker int, userns func(pid int) error, inCgroup func() error) (int, error) {
	ack := func() error {
		if _, err := io.WriteString(c.f, "ok\n"); err != nil {
			return fmt.Errorf("enter namespaces: %w", err)
		}
		return nil
	}
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("enter namespaces: init exited before reporting its pid")
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "userns":
			if userns == nil {
				return 0, fmt.Errorf("enter namespaces: unexpected user namespace")
			}
			if err := userns(asker); err != nil {
				return 0, err
			}
			if err := ack(); err != nil {
				return 0, err
			}
		case line == "cgroup":
			if err := inCgroup(); err != nil {
				return 0, err
			}
			if err := ack(); err != nil {
				return 0, err
			}
		case strings.HasPrefix(line, "pid "):
			pid, err := strconv.Atoi(line[4:])
			if err != nil {
				return 0, fmt.Errorf("enter namespaces: bad reply %q", line)
			}
			return pid, nil
		case strings.HasPrefix(line, "error "):
			return 0, fmt.Errorf("enter namespaces: %s", line[6:])
		default:
			return 0, fmt.Errorf("enter namespaces: bad reply %q", line)
		}
	}
}

// initPipeEnv is the environment entry that wakes the nsenter constructor.
func initPipeEnv(fd int) string { return nsenter.EnvInitPipe + "=" + strconv.Itoa(fd) }
