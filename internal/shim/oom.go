package shim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
)

// The shim tells whether the kernel's OOM killer struck the container from
// the OOM kill counter of the container's memory cgroup: it reads it when the
// container is created and again the moment the init exits, before anything
// deletes the container (and with it the cgroup). Any rise means an OOM
// kill in this run, as Docker's State.OOMKilled; a count left from an
// earlier use of the same cgroup does not leak in.
//
// The cgroup is the one the kernel reports for the init in
// /proc/<pid>/cgroup right after `runtime create`: whatever linux.cgroupsPath
// said (absolute, relative to the runtime's own cgroup, or a systemd
// slice:prefix:name) and however the runtime resolved it, that is where the
// container's processes are. The directory is found through the cgroup
// mounts in /proc/self/mountinfo: on cgroup v1 and on a hybrid host the
// memory controller's v1 hierarchy (memory.oom_control), on cgroup v2 the
// unified one (memory.events); both count in "oom_kill".

// oomCounter reads one container's OOM kill counter.
type oomCounter struct {
	mu   sync.Mutex
	f    *os.File // memory.oom_control or memory.events, held open from creation; nil once closed
	base uint64   // the count at creation
	last uint64   // the latest count read
}

// openOOMCounter finds the memory cgroup of pid and records its current OOM
// kill count.
func openOOMCounter(pid int) (*oomCounter, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	pc, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read cgroups of pid %d: %w", pid, err)
	}
	path, err := memoryCounterPath(mi, pc)
	if err != nil {
		return nil, fmt.Errorf("memory cgroup of pid %d: %w", pid, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open OOM kill counter: %w", err)
	}
	n, err := readOOMKills(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &oomCounter{f: f, base: n, last: n}, nil
}

// sample reads the counter and keeps the count.
func (c *oomCounter) sample() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return os.ErrClosed
	}
	n, err := readOOMKills(c.f)
	if err != nil {
		return err
	}
	c.last = n
	return nil
}

// killed reports whether the count rose since the counter was opened: by a
// fresh reading, or when that fails (the cgroup is gone) by the last one.
func (c *oomCounter) killed() (bool, error) {
	err := c.sample()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last > c.base, err
}

func (c *oomCounter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// readOOMKills reads the oom_kill count of an open memory.oom_control or
// memory.events file from its start.
func readOOMKills(f *os.File) (uint64, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	n, ok := parseOOMKills(b)
	if !ok {
		return 0, fmt.Errorf("%s has no oom_kill count", f.Name())
	}
	return n, nil
}

// parseOOMKills finds the "oom_kill N" line of a memory.oom_control (v1) or
// memory.events (v2) file.
func parseOOMKills(b []byte) (uint64, bool) {
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) == 2 && f[0] == "oom_kill" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// cgroupMount is a mounted cgroup hierarchy: where it is mounted, and which
// of the hierarchy's cgroups is its root there.
type cgroupMount struct {
	point, root string
}

// memoryCounterPath returns the OOM kill counter file of the memory cgroup a
// process is in, from the mount table (/proc/self/mountinfo) and the
// process's /proc/<pid>/cgroup.
func memoryCounterPath(mountTable, procCgroup []byte) (string, error) {
	mounts, err := mountinfo.GetMountsFromReader(bytes.NewReader(mountTable), func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return "", err
	}
	var v1, v2 []cgroupMount
	for _, m := range mounts {
		cm := cgroupMount{point: m.Mountpoint, root: m.Root}
		switch {
		case m.FSType == "cgroup2":
			v2 = append(v2, cm)
		case slices.Contains(strings.Split(m.VFSOptions, ","), "memory"):
			v1 = append(v1, cm)
		}
	}
	var v1Path, v2Path string
	var hasV1, hasV2 bool
	for line := range bytes.Lines(procCgroup) {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(strings.TrimSuffix(string(line), "\n"), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, hasV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1Path, hasV1 = parts[2], true
			}
		}
	}
	switch {
	case hasV1 && len(v1) > 0:
		// cgroup v1, or the memory controller's v1 hierarchy on a hybrid host.
		dir, err := cgroupDir(v1, v1Path)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, "memory.oom_control"), nil
	case hasV2 && len(v2) > 0:
		dir, err := cgroupDir(v2, v2Path)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, "memory.events"), nil
	}
	return "", errors.New("no mounted memory cgroup hierarchy holds it")
}

// cgroupDir is the directory of cgroup path (as /proc/<pid>/cgroup names
// it) through the first of mounts whose root holds it.
func cgroupDir(mounts []cgroupMount, path string) (string, error) {
	path = filepath.Clean("/" + path)
	for _, m := range mounts {
		root := filepath.Clean(m.root)
		rel, ok := strings.CutPrefix(path, root)
		if ok && (root == "/" || rel == "" || rel[0] == '/') {
			return filepath.Join(m.point, rel), nil
		}
	}
	return "", fmt.Errorf("cgroup %s is under no mount of its hierarchy", path)
}
