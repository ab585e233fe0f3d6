// Package cgroups owns a container's control groups for berth-runtime: it
// finds the host's cgroup hierarchies (cgroup v1, v2, or the hybrid of both)
// from /proc/self/mountinfo, creates the container's cgroup in each of them,
// moves the container's process in, writes its resource limits, freezes and
// thaws it, lists its processes and removes the cgroup again.
//
// It writes the cgroup files itself over golang.org/x/sys/unix, and loads the
// cgroup v2 device filter with the bpf(2) system call directly, because it
// runs on every container's start path and must stay small and fast.
//
// On a hybrid host every v1 hierarchy holds the container's cgroup, and so
// does the unified (v2) hierarchy; a controller mounted in v1 is driven
// through v1, one that only the unified hierarchy has (hugetlb on some
// hosts) through v2.
package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Manager owns one container's cgroup in every hierarchy of the host.
type Manager struct {
	// paths maps a v1 controller (or named hierarchy such as
	// "name=systemd") to the container's directory in it, and "" to the
	// container's directory in the unified hierarchy.
	paths map[string]string
	// mounts maps the same keys to their hierarchy's mount point; nil
	// after Load until Apply needs it.
	mounts map[string]string
}

// New resolves the cgroup for container id. path is linux.cgroupsPath of the
// runtime spec: absolute (relative to each hierarchy's mount point), relative
// (relative to the calling process's own cgroup in each v1 hierarchy, and to
// the parent of its own cgroup in the unified hierarchy, as runc does), or
// empty (then the relative path "<id>"). systemd selects the systemd driver:
// path is "slice:prefix:name" and maps onto the cgroup systemd gives that
// unit (slice/prefix-name.scope); it needs a running systemd.
func New(path, id string, systemd bool) (*Manager, error) {
	h, err := discoverHost()
	if err != nil {
		return nil, fmt.Errorf("cgroups for %s: %w", id, err)
	}
	return newManager(h, path, id, systemd)
}

func newManager(h *host, path, id string, systemd bool) (*Manager, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, errdefs.InvalidArgument(fmt.Errorf("cgroups: invalid container id %q", id))
	}
	if systemd {
		if _, err := os.Stat(h.systemdDir); err != nil {
			return nil, errdefs.Unavailable(fmt.Errorf("cgroups for %s: the systemd cgroup driver needs systemd as init, but it is not running (%s: %w); use the cgroupfs driver", id, h.systemdDir, err))
		}
		p, err := systemdPath(path, id)
		if err != nil {
			return nil, err
		}
		path = p
	} else if path == "" {
		path = id
	}
	paths, err := h.resolve(path)
	if err != nil {
		return nil, err
	}
	mounts := make(map[string]string, len(paths))
	for i := range h.v1 {
		for _, c := range h.v1[i].controllers {
			mounts[c] = h.v1[i].mountpoint
		}
	}
	if h.v2 != nil {
		mounts[""] = h.v2.mountpoint
	}
	return &Manager{paths: paths, mounts: mounts}, nil
}

// Load reattaches to a cgroup from the paths a previous Paths() returned.
func Load(paths map[string]string) *Manager {
	m := &Manager{paths: make(map[string]string, len(paths))}
	for k, v := range paths {
		m.paths[k] = v
	}
	return m
}

// Paths returns controller name -> absolute cgroup directory ("" key for the
// v2 unified hierarchy). Co-mounted controllers share a directory.
func (m *Manager) Paths() map[string]string {
	out := make(map[string]string, len(m.paths))
	for k, v := range m.paths {
		out[k] = v
	}
	return out
}

// cgDir is one directory of the container's cgroup: one per hierarchy.
type cgDir struct {
	dir, mount string
	v2, cpuset bool
}

// dirs returns the container's directory in each hierarchy, v1 ones first in
// a stable order, the unified one last.
func (m *Manager) dirs() []cgDir {
	byDir := map[string]*cgDir{}
	var out []*cgDir
	keys := make([]string, 0, len(m.paths))
	for k := range m.paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		d := m.paths[k]
		if d == "" {
			continue
		}
		cd := byDir[d]
		if cd == nil {
			cd = &cgDir{dir: d, mount: m.mounts[k]}
			byDir[d] = cd
			out = append(out, cd)
		}
		cd.v2 = cd.v2 || k == ""
		cd.cpuset = cd.cpuset || k == "cpuset"
	}
	res := make([]cgDir, 0, len(out))
	for _, cd := range out {
		if !cd.v2 {
			res = append(res, *cd)
		}
	}
	for _, cd := range out {
		if cd.v2 {
			res = append(res, *cd)
		}
	}
	return res
}

// ensureMounts fills m.mounts for a Manager made by Load.
func (m *Manager) ensureMounts() error {
	if m.mounts != nil {
		return nil
	}
	h, err := discoverHost()
	if err != nil {
		return err
	}
	m.mounts = map[string]string{}
	for k, d := range m.paths {
		if k == "" {
			if h.v2 != nil && within(d, h.v2.mountpoint) {
				m.mounts[k] = h.v2.mountpoint
			}
			continue
		}
		for i := range h.v1 {
			if slices.Contains(h.v1[i].controllers, k) && within(d, h.v1[i].mountpoint) {
				m.mounts[k] = h.v1[i].mountpoint
			}
		}
	}
	return nil
}

func within(dir, mount string) bool {
	return dir == mount || strings.HasPrefix(dir, strings.TrimSuffix(mount, "/")+"/")
}

// Apply creates the cgroup in every hierarchy (mkdir -p; on v1 the cpuset of
// each new directory is copied from its parent, on v2 the available
// controllers are enabled in every ancestor's cgroup.subtree_control) and
// moves pid into it. A pid <= 0 only creates the directories.
func (m *Manager) Apply(pid int) error {
	if err := m.ensureMounts(); err != nil {
		return fmt.Errorf("apply cgroup: %w", err)
	}
	for _, d := range m.dirs() {
		if d.mount == "" || !within(d.dir, d.mount) {
			return fmt.Errorf("apply cgroup %s: no cgroup hierarchy is mounted above it", d.dir)
		}
		if err := makeDirs(d); err != nil {
			return err
		}
		if pid > 0 {
			if err := writeFile(d.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("move process %d into cgroup: %w", pid, err)
			}
		}
	}
	return nil
}

// JoinFiles opens what a new process needs to enter the cgroup by itself,
// for a caller that creates the directories first (Apply(0)): the "tasks"
// file of every v1 directory and the unified directory. A single-threaded
// process that writes "0" to a v1 tasks file moves itself, and the kernel
// does that without taking the global threadgroup lock for writing; a PID
// written to cgroup.procs takes it, and the first such write on an idle
// host waits for an RCU grace period (10-20 ms). The unified directory is
// for clone3's CLONE_INTO_CGROUP, which places a child at fork without that
// lock. Both are best effort: whatever cannot be opened is left out, and Join
// moves the process the usual way. The caller closes the files.
func (m *Manager) JoinFiles() (tasks []*os.File, unified *os.File) {
	if m.ensureMounts() != nil {
		return nil, nil
	}
	for _, d := range m.dirs() {
		if d.mount == "" || !within(d.dir, d.mount) {
			continue
		}
		if d.v2 {
			fd, err := unix.Open(d.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				unified = os.NewFile(uintptr(fd), d.dir)
			}
			continue
		}
		p := filepath.Join(d.dir, "tasks")
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == nil {
			tasks = append(tasks, os.NewFile(uintptr(fd), p))
		}
	}
	return tasks, unified
}

// Join makes sure process pid is in the cgroup in every hierarchy: it
// looks for pid in each directory's cgroup.procs and moves it in where it
// is missing (a process that joined by itself through JoinFiles costs only
// the reads).
func (m *Manager) Join(pid int) error {
	if err := m.ensureMounts(); err != nil {
		return fmt.Errorf("join cgroup: %w", err)
	}
	for _, d := range m.dirs() {
		if d.mount == "" || !within(d.dir, d.mount) {
			return fmt.Errorf("join cgroup %s: no cgroup hierarchy is mounted above it", d.dir)
		}
		procs, err := readFile(d.dir, "cgroup.procs")
		if err != nil {
			return fmt.Errorf("move process %d into cgroup: %w", pid, err)
		}
		if slices.Contains(strings.Fields(procs), strconv.Itoa(pid)) {
			continue
		}
		if err := writeFile(d.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move process %d into cgroup: %w", pid, err)
		}
	}
	return nil
}

// makeDirs creates d.dir and its missing parents below d.mount.
func makeDirs(d cgDir) error {
	rel := strings.TrimPrefix(strings.TrimPrefix(d.dir, d.mount), "/")
	cur := d.mount
	for c := range strings.SplitSeq(rel, "/") {
		if c == "" {
			continue
		}
		if d.v2 {
			enableControllers(cur)
		}
		parent := cur
		cur = filepath.Join(cur, c)
		err := os.Mkdir(cur, 0o755)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", cur, err)
		}
		if d.cpuset {
			if err := inheritCpuset(parent, cur); err != nil {
				return err
			}
		}
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from parent into an
// empty child: a v1 cpuset accepts no process while they are empty.
func inheritCpuset(parent, child string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := readFile(child, f)
		if err != nil {
			return fmt.Errorf("initialise cpuset: %w", err)
		}
		if cur != "" {
			continue
		}
		v, err := readFile(parent, f)
		if err != nil {
			return fmt.Errorf("initialise cpuset: %w", err)
		}
		if err := writeFile(child, f, v); err != nil {
			return fmt.Errorf("initialise cpuset: %w", err)
		}
	}
	return nil
}

// enableControllers enables in dir's cgroup.subtree_control every controller
// dir has. A controller the kernel refuses (an ancestor with processes, a
// realtime process for cpu) stays disabled; writing one of its files later
// then fails naming the file.
func enableControllers(dir string) {
	avail, err := readFile(dir, "cgroup.controllers")
	if err != nil || avail == "" {
		return
	}
	enabled, _ := readFile(dir, "cgroup.subtree_control")
	have := strings.Fields(enabled)
	var want []string
	for _, c := range strings.Fields(avail) {
		if !slices.Contains(have, c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return
	}
	if writeFile(dir, "cgroup.subtree_control", strings.Join(want, " ")) == nil {
		return
	}
	for _, w := range want {
		_ = writeFile(dir, "cgroup.subtree_control", w)
	}
}

// pidsDir is the directory whose processes are the container's: the unified
// one on a pure v2 host, otherwise a v1 hierarchy every runtime joins.
func (m *Manager) pidsDir() (string, error) {
	for _, k := range []string{"pids", "devices", "freezer", "memory", "cpu"} {
		if d := m.paths[k]; d != "" {
			return d, nil
		}
	}
	if d := m.paths[""]; d != "" {
		return d, nil
	}
	for _, d := range m.paths {
		if d != "" {
			return d, nil
		}
	}
	return "", errdefs.NotFound(fmt.Errorf("no cgroup directory known"))
}

// Pids lists every process in the cgroup (and below).
func (m *Manager) Pids() ([]int, error) {
	dir, err := m.pidsDir()
	if err != nil {
		return nil, fmt.Errorf("list cgroup processes: %w", err)
	}
	var pids []int
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			if p != dir && isNotExist(err) {
				return nil // a child cgroup removed while walking
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		s, err := readFile(p, "cgroup.procs")
		if err != nil {
			if p != dir && isNotExist(err) {
				return nil
			}
			return err
		}
		for f := range strings.FieldsSeq(s) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("parse %s/cgroup.procs: %w", p, err)
			}
			pids = append(pids, pid)
		}
		return nil
	})
	if err != nil {
		if isNotExist(err) {
			err = errdefs.NotFound(err)
		}
		return nil, fmt.Errorf("list processes of cgroup %s: %w", dir, err)
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// Destroy removes the cgroup directories in every hierarchy (children
// first), retrying briefly on EBUSY while exiting processes leave. Removing
// a cgroup that does not exist is not an error.
func (m *Manager) Destroy() error {
	var errs []error
	for _, d := range m.dirs() {
		if err := checkRemovable(d.dir); err != nil {
			if isNotExist(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		if err := removeTree(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkRemovable refuses to remove anything but a cgroup below a
// hierarchy's root: paths come from stored state, and a wrong one must not
// make Destroy walk another file system or empty a whole hierarchy.
func checkRemovable(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if fs.Type != unix.CGROUP_SUPER_MAGIC && fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return errdefs.InvalidArgument(fmt.Errorf("remove cgroup %s: not on a cgroup file system", dir))
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return &os.PathError{Op: "stat", Path: filepath.Dir(dir), Err: err}
	}
	if st.Dev != parent.Dev || dir == filepath.Dir(dir) {
		return errdefs.InvalidArgument(fmt.Errorf("remove cgroup %s: it is the root of its hierarchy", dir))
	}
	return nil
}

// removeTree removes the cgroup dir and every cgroup below it. Cgroup
// directories hold only kernel files, which rmdir removes with them.
// A container's cgroup usually has no child, so rmdir is tried first and
// the directory is read only when the kernel refuses (EBUSY: children or
// processes; ENOTEMPTY is taken alike).
func removeTree(dir string) error {
	if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
		return nil
	} else if err != unix.EBUSY && err != unix.ENOTEMPTY {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	delay := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY || attempt == 8 {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// devRule is an allow rule; a wildcard major or minor is left nil, which
// the runtime spec defines as "any".
func devRule(t string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	r := specs.LinuxDeviceCgroup{Allow: true, Type: t, Access: access}
	if major != wildcard {
		r.Major = &major
	}
	if minor != wildcard {
		r.Minor = &minor
	}
	return r
}

// wildcard marks "any" for a device major or minor number; a negative
// number in a rule means the same.
const wildcard = -1

// DefaultDevices is the device-cgroup allow list runtimes add after the
// spec's rules, the same set runc and crun allow: mknod of any character or
// block device (creating a node grants no access to it), /dev/null (1:3),
// /dev/zero (1:5), /dev/full (1:7), /dev/random (1:8), /dev/urandom (1:9),
// /dev/tty (5:0), /dev/console (5:1), /dev/ptmx (5:2), the container's
// devpts ptys (136:*) and /dev/net/tun (10:200).
var DefaultDevices = []specs.LinuxDeviceCgroup{
	devRule("c", wildcard, wildcard, "m"),
	devRule("b", wildcard, wildcard, "m"),
	devRule("c", 1, 3, "rwm"),
	devRule("c", 1, 8, "rwm"),
	devRule("c", 1, 7, "rwm"),
	devRule("c", 5, 0, "rwm"),
	devRule("c", 1, 5, "rwm"),
	devRule("c", 1, 9, "rwm"),
	devRule("c", 5, 1, "rwm"),
	devRule("c", 136, wildcard, "rwm"),
	devRule("c", 5, 2, "rwm"),
	devRule("c", 10, 200, "rwm"),
}
