package cgroups

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
)

// hierarchy is one mounted cgroup hierarchy as the calling process sees it.
type hierarchy struct {
	mountpoint  string   // where it is mounted, e.g. /sys/fs/cgroup/memory
	root        string   // the cgroup mounted there (mountinfo's root field)
	controllers []string // v1 only: e.g. [cpu cpuacct] or [name=systemd]
	own         string   // the calling process's cgroup in it (/proc/self/cgroup)
	v2          bool
}

// dir maps a cgroup path of this hierarchy (as /proc/self/cgroup writes it)
// to its directory under the mount point.
func (h *hierarchy) dir(cgroup string) string {
	rel := cgroup
	if h.root != "/" {
		if r, ok := strings.CutPrefix(cgroup, h.root); ok && (r == "" || r[0] == '/') {
			rel = r
		}
	}
	return filepath.Join(h.mountpoint, filepath.Clean("/"+rel))
}

// host is the set of cgroup hierarchies of the machine, as the calling
// process sees them.
type host struct {
	v1         []hierarchy
	v2         *hierarchy // the unified hierarchy, if mounted
	systemdDir string     // exists when systemd is the init system
}

// mode names the host's layout for messages and tests.
func (h *host) mode() string {
	switch {
	case h.v2 != nil && len(h.v1) > 0:
		return "hybrid"
	case h.v2 != nil:
		return "unified"
	default:
		return "legacy"
	}
}

// discoverHost reads the host's hierarchies from /proc/self/mountinfo and
// /proc/self/cgroup.
func discoverHost() (*host, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroup: %w", err)
	}
	h, err := parseHost(mi, cg)
	if err != nil {
		return nil, err
	}
	h.systemdDir = "/run/systemd/system"
	return h, nil
}

// mountEntry is the part of a mountinfo line a cgroup mount needs.
type mountEntry struct {
	root, mountpoint, fstype string
	superOpts                []string
}

// parseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo text.
func parseMountinfo(mountinfo []byte) ([]mountEntry, error) {
	var out []mountEntry
	for line := range bytes.SplitSeq(mountinfo, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		pre, post, ok := strings.Cut(string(line), " - ")
		if !ok {
			return nil, fmt.Errorf("parse mountinfo line %q: no separator", line)
		}
		pf := strings.Fields(pre)
		qf := strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			return nil, fmt.Errorf("parse mountinfo line %q: too few fields", line)
		}
		if qf[0] != "cgroup" && qf[0] != "cgroup2" {
			continue
		}
		out = append(out, mountEntry{
			root:       unescapeMountinfo(pf[3]),
			mountpoint: unescapeMountinfo(pf[4]),
			fstype:     qf[0],
			superOpts:  strings.Split(qf[2], ","),
		})
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseHost matches each hierarchy of /proc/self/cgroup with its mount. A
// hierarchy the process belongs to but that is not mounted is skipped.
func parseHost(mountinfo, selfCgroup []byte) (*host, error) {
	mounts, err := parseMountinfo(mountinfo)
	if err != nil {
		return nil, err
	}
	h := &host{}
	for line := range bytes.SplitSeq(selfCgroup, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		parts := strings.SplitN(string(line), ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("parse own cgroup line %q: want id:controllers:path", line)
		}
		own := parts[2]
		if parts[0] == "0" && parts[1] == "" {
			if m := pickMount(mounts, "cgroup2", nil, own); m != nil {
				h.v2 = &hierarchy{mountpoint: m.mountpoint, root: m.root, own: own, v2: true}
			}
			continue
		}
		ctrls := strings.Split(parts[1], ",")
		if m := pickMount(mounts, "cgroup", ctrls, own); m != nil {
			h.v1 = append(h.v1, hierarchy{mountpoint: m.mountpoint, root: m.root, controllers: ctrls, own: own})
		}
	}
	if h.v2 == nil && len(h.v1) == 0 {
		return nil, errdefs.Unavailable(fmt.Errorf("no cgroup hierarchy is mounted (checked /proc/self/mountinfo against /proc/self/cgroup)"))
	}
	return h, nil
}

// pickMount returns the mount of type fstype carrying every controller of
// ctrls, preferring one whose root holds own (a bind mount of a subtree may
// come first).
func pickMount(mounts []mountEntry, fstype string, ctrls []string, own string) *mountEntry {
	var first *mountEntry
	for i := range mounts {
		m := &mounts[i]
		if m.fstype != fstype || !hasAll(m.superOpts, ctrls) {
			continue
		}
		if m.root == "/" || own == m.root || strings.HasPrefix(own, m.root+"/") {
			return m
		}
		if first == nil {
			first = m
		}
	}
	return first
}

func hasAll(set, want []string) bool {
	for _, w := range want {
		found := false
		for _, s := range set {
			if s == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// resolve maps a cgroupfs cgroupsPath onto a directory in every hierarchy and
// returns the Paths() map. An absolute path is taken relative to each
// hierarchy's mount point; a relative one relative to the calling process's
// own cgroup in each v1 hierarchy and to the parent of its own cgroup in the
// unified one (as runc does: the own cgroup holds processes, so cgroup v2's
// no-internal-processes rule would forbid enabling controllers below it).
func (h *host) resolve(path string) (map[string]string, error) {
	if err := validCgroupPath(path); err != nil {
		return nil, err
	}
	abs := strings.HasPrefix(path, "/")
	clean := filepath.Clean("/" + path)
	under := func(hy *hierarchy, base string) string {
		if abs {
			return filepath.Join(hy.mountpoint, clean)
		}
		return filepath.Join(hy.dir(base), clean)
	}
	paths := make(map[string]string, len(h.v1)+1)
	for i := range h.v1 {
		hy := &h.v1[i]
		d := under(hy, hy.own)
		for _, c := range hy.controllers {
			paths[c] = d
		}
	}
	if h.v2 != nil {
		paths[""] = under(h.v2, filepath.Dir(h.v2.own))
	}
	return paths, nil
}

// validCgroupPath refuses paths that would climb out of the hierarchy or that
// no cgroup directory can have.
func validCgroupPath(p string) error {
	if p == "" {
		return errdefs.InvalidArgument(fmt.Errorf("cgroups path is empty"))
	}
	for c := range strings.SplitSeq(p, "/") {
		if c == ".." {
			return errdefs.InvalidArgument(fmt.Errorf("cgroups path %q: \"..\" is not allowed", p))
		}
	}
	if strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\n') {
		return errdefs.InvalidArgument(fmt.Errorf("cgroups path %q: invalid character", p))
	}
	return nil
}

// systemdPath maps a systemd cgroupsPath "slice:prefix:name" onto the
// absolute cgroup path systemd gives that unit: the slice expanded into its
// parents (a-b.slice lives in a.slice/a-b.slice) and the unit
// "prefix-name.scope", or "name" itself when name is a slice.
func systemdPath(p, id string) (string, error) {
	if p == "" {
		p = "system.slice:berth:" + id
	}
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return "", errdefs.InvalidArgument(fmt.Errorf("systemd cgroups path %q: want \"slice:prefix:name\"", p))
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if name == "" {
		return "", errdefs.InvalidArgument(fmt.Errorf("systemd cgroups path %q: empty unit name", p))
	}
	for _, s := range parts {
		if strings.ContainsAny(s, "/\x00\n") {
			return "", errdefs.InvalidArgument(fmt.Errorf("systemd cgroups path %q: %q must not contain '/'", p, s))
		}
	}
	if slice == "" {
		slice = "system.slice"
	}
	sliceDir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	return filepath.Join("/", sliceDir, unit), nil
}

// expandSlice turns "a-b-c.slice" into "a.slice/a-b.slice/a-b-c.slice"; the
// root slice "-.slice" is "".
func expandSlice(slice string) (string, error) {
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok {
		return "", errdefs.InvalidArgument(fmt.Errorf("systemd slice %q: must end in .slice", slice))
	}
	if base == "-" {
		return "", nil
	}
	if base == "" || strings.HasPrefix(base, "-") || strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", errdefs.InvalidArgument(fmt.Errorf("systemd slice %q: invalid name", slice))
	}
	var dirs []string
	for i := range base {
		if base[i] == '-' {
			dirs = append(dirs, base[:i]+".slice")
		}
	}
	dirs = append(dirs, slice)
	return filepath.Join(dirs...), nil
}
