package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Status values as the runtime spec names them, plus paused.
const (
	StatusCreating = specs.StateCreating
	StatusCreated  = specs.StateCreated
	StatusRunning  = specs.StateRunning
	StatusStopped  = specs.StateStopped
	StatusPaused   = specs.ContainerState("paused")
)

const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
)

// DefaultRoot is the state directory when --root is not given.
const DefaultRoot = "/run/berth-runtime"

// saved is what the runtime records about a container in its state directory.
type saved struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	StartTime   uint64            `json:"start_time"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
	Systemd     bool              `json:"systemd_cgroup,omitempty"`
	OwnPidNS    bool              `json:"own_pid_ns"`
	Spec        *specs.Spec       `json:"config"`
}

// Container is a container known to the runtime, as loaded from its state.
type Container struct {
	root string // the runtime's state root
	dir  string // this container's state directory
	s    saved
}

var validID = regexp.MustCompile(`^[\w][\w+.-]*$`)

// checkID refuses IDs that could name a path outside the state root.
func checkID(id string) error {
	if len(id) > 1024 || !validID.MatchString(id) {
		return errdefs.InvalidArgument(fmt.Errorf("invalid container id %q: use letters, digits, and _ + . -", id))
	}
	return nil
}

// Load reads the state of container id under root.
func Load(root, id string) (*Container, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, id)
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound(fmt.Errorf("container %s does not exist", id))
		}
		return nil, fmt.Errorf("container %s: read state: %w", id, err)
	}
	c := &Container{root: root, dir: dir}
	if err := json.Unmarshal(data, &c.s); err != nil {
		return nil, fmt.Errorf("container %s: parse state: %w", id, err)
	}
	return c, nil
}

// List loads every container under root, in directory order.
func List(root string) ([]*Container, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list containers in %s: %w", root, err)
	}
	var out []*Container
	for _, e := range ents {
		// The runtime keeps caches beside the containers (".seccomp-cache");
		// anything that cannot be a container ID is not one.
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		c, err := Load(root, e.Name())
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue // being created or deleted right now
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// save writes the state file atomically.
func (c *Container) save() error {
	data, err := json.Marshal(&c.s)
	if err != nil {
		return fmt.Errorf("container %s: encode state: %w", c.s.ID, err)
	}
	return writeFileAtomic(filepath.Join(c.dir, stateFile), data, 0o600)
}

// writeFileAtomic writes data to path through a temporary file and rename,
// so readers see the old content or the new, never a part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.s.ID }

// Pid returns the host PID of the container's init process.
func (c *Container) Pid() int { return c.s.Pid }

// Bundle returns the bundle directory the container was created from.
func (c *Container) Bundle() string { return c.s.Bundle }

// Created returns when the container was created.
func (c *Container) Created() time.Time { return c.s.Created }

// Owner returns the name of the user that created the container.
func (c *Container) Owner() string { return c.s.Owner }

// Spec returns the configuration the container was created with.
func (c *Container) Spec() *specs.Spec { return c.s.Spec }

// Status derives the container's status from its init process: stopped when
// the process is gone or a zombie (or its PID now belongs to another
// process), created while it waits on the exec FIFO, paused when its cgroup is
// frozen, running otherwise.
func (c *Container) Status() specs.ContainerState {
	if !c.alive() {
		return StatusStopped
	}
	if _, err := os.Lstat(filepath.Join(c.dir, fifoName)); err == nil {
		return StatusCreated
	}
	if c.paused() {
		return StatusPaused
	}
	return StatusRunning
}

// alive reports whether the recorded init process still runs.
func (c *Container) alive() bool {
	if c.s.Pid <= 0 {
		return false
	}
	st, state, err := procStat(c.s.Pid)
	if err != nil || st != c.s.StartTime {
		return false
	}
	return state != 'Z' && state != 'X'
}

// State returns the container's state as the runtime spec defines it.
func (c *Container) State() specs.State {
	st := specs.State{
		Version:     specs.Version,
		ID:          c.s.ID,
		Status:      c.Status(),
		Bundle:      c.s.Bundle,
		Annotations: c.s.Spec.Annotations,
	}
	if st.Status != StatusStopped {
		st.Pid = c.s.Pid
	}
	return st
}

// procStat returns a process's start time (clock ticks after boot) and state
// letter from /proc/PID/stat.
func procStat(pid int) (uint64, byte, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold spaces: parse after it.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+2:])
	// Field 3 (state) is f[0]; field 22 (starttime) is f[19].
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return start, f[0][0], nil
}

// lock takes an exclusive lock on the container's state directory for the
// duration of one operation; concurrent operations on the same container
// queue behind it.
func lockDir(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func() { unix.Close(fd) }, nil
}
