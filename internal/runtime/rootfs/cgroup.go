package rootfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hierarchy is one cgroup hierarchy mounted on the host.
type hierarchy struct {
	mountpoint  string   // host mount point, e.g. /sys/fs/cgroup/cpu,cpuacct
	root        string   // the cgroup the mount shows as its root
	controllers []string // e.g. [cpu cpuacct] or [name=systemd]; empty for cgroup2
}

// cgroupLayout is how the host mounts its cgroups.
type cgroupLayout struct {
	v1      []hierarchy
	unified *hierarchy // the cgroup2 mount, if any
	v2Only  bool       // /sys/fs/cgroup itself is cgroup2
}

// hostCgroups reads the cgroup mounts visible in this mount namespace.
func hostCgroups() (cgroupLayout, error) {
	subsys, err := knownSubsystems()
	if err != nil {
		return cgroupLayout{}, err
	}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return cgroupLayout{}, fmt.Errorf("read mountinfo: %w", err)
	}
	return parseCgroupLayout(infos, subsys), nil
}

// parseCgroupLayout sorts cgroup mounts into v1 hierarchies (by their
// controllers, each once) and the cgroup2 mount.
func parseCgroupLayout(infos []*mountinfo.Info, subsys map[string]bool) cgroupLayout {
	var l cgroupLayout
	seen := map[string]bool{}
	for _, i := range infos {
		switch i.FSType {
		case "cgroup2":
			if l.unified == nil {
				l.unified = &hierarchy{mountpoint: i.Mountpoint, root: i.Root}
				l.v2Only = i.Mountpoint == "/sys/fs/cgroup"
			}
			continue
		case "cgroup":
		default:
			continue
		}
		var ctrls []string
		for _, o := range strings.Split(i.VFSOptions, ",") {
			if subsys[o] || strings.HasPrefix(o, "name=") {
				ctrls = append(ctrls, o)
			}
		}
		key := strings.Join(ctrls, ",")
		if len(ctrls) == 0 || seen[key] {
			continue // the same hierarchy mounted twice: once is enough
		}
		seen[key] = true
		l.v1 = append(l.v1, hierarchy{mountpoint: i.Mountpoint, root: i.Root, controllers: ctrls})
	}
	sort.Slice(l.v1, func(a, b int) bool { return l.v1[a].mountpoint < l.v1[b].mountpoint })
	return l
}

// knownSubsystems lists the v1 controllers the kernel has (/proc/cgroups).
func knownSubsystems() (map[string]bool, error) {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil, fmt.Errorf("read /proc/cgroups: %w", err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out[f[0]] = true
		}
	}
	return out, nil
}

// selfCgroups parses /proc/self/cgroup: controller list -> cgroup path
// ("" for the cgroup2 entry).
func selfCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	out := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out, nil
}

// hostDir returns the host directory of this container's cgroup in h: from
// CgroupPaths (by any of its controllers, by their joined name, or "" for
// cgroup2), else from the cgroup this process is in.
func (c *Config) hostDir(h hierarchy, self func() (map[string]string, error)) (string, error) {
	keys := append([]string{strings.Join(h.controllers, ","), path.Base(h.mountpoint)}, h.controllers...)
	if len(h.controllers) == 0 {
		keys = []string{""}
	}
	for _, k := range keys {
		if p, ok := c.CgroupPaths[k]; ok && p != "" {
			return p, nil
		}
		if n, ok := strings.CutPrefix(k, "name="); ok {
			if p, ok := c.CgroupPaths[n]; ok && p != "" {
				return p, nil
			}
		}
	}
	cgroups, err := self()
	if err != nil {
		return "", err
	}
	cg, ok := cgroups[strings.Join(h.controllers, ",")]
	if !ok {
		return "", errdefs.NotFound(fmt.Errorf("no cgroup of this process for hierarchy %s", h.mountpoint))
	}
	rel, ok := strings.CutPrefix(cg, h.root)
	if h.root == "/" {
		rel, ok = cg, true
	}
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
		return "", errdefs.NotFound(fmt.Errorf("cgroup %s is outside the mount %s (root %s)", cg, h.mountpoint, h.root))
	}
	return path.Join(h.mountpoint, rel), nil
}

// cgroupOptions keeps the per-mount flag options of a cgroup mount
// ("ro" optional) and drops filesystem data, which belongs to no single
// hierarchy.
func cgroupOptions(opts []string, keepRO bool) []string {
	var out []string
	for _, o := range opts {
		if o == "ro" && !keepRO {
			continue
		}
		if p, err := mount.Parse([]string{o}); err == nil && p.Data == "" {
			out = append(out, o)
		}
	}
	return out
}

// mountCgroup performs a "cgroup" mount. On a cgroup2-only host it mounts
// cgroup2 (with a cgroup namespace) or binds the container's cgroup. On a
// v1 or hybrid host it mounts a tmpfs at the destination with one
// directory per hierarchy, each a fresh cgroup mount of that hierarchy's
// controllers (with a cgroup namespace) or a bind of the container's cgroup
// directory, plus links for co-mounted controllers (cpu -> cpu,cpuacct) and
// the cgroup2 hierarchy where the host has one. With "ro" every one of
// these mounts and the tmpfs end read-only.
func (c *Config) mountCgroup(root *os.File, m specs.Mount, o mount.Options) error {
	dest := cleanPath(m.Destination)
	l, err := hostCgroups()
	if err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	return c.mountCgroupLayout(root, dest, m.Options, o, l)
}

// mountCgroupLayout performs a "cgroup" mount at dest for the layout l.
func (c *Config) mountCgroupLayout(root *os.File, dest string, opts []string, o mount.Options, l cgroupLayout) error {
	if l.v2Only {
		return c.mountHierarchy(root, dest, *l.unified, opts)
	}
	if len(l.v1) == 0 && l.unified == nil {
		return errdefs.NotFound(fmt.Errorf("cgroup mount on %s: the host has no cgroup mounts", dest))
	}
	t, err := mkDirNoFollow(root, dest)
	if err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	tmpfs := mount.Mount{Type: "tmpfs", Source: "tmpfs", Target: dest, Options: append(cgroupOptions(opts, false), "mode=755")}
	err = tmpfs.Mount(fdPath(t))
	t.Close()
	if err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	// The tmpfs is now the top mount at dest.
	top, err := mkDirNoFollow(root, dest)
	if err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	defer top.Close()
	for _, h := range l.v1 {
		name := path.Base(h.mountpoint)
		if err := c.mountHierarchy(root, path.Join(dest, name), h, opts); err != nil {
			return err
		}
		if len(h.controllers) > 1 {
			for _, ctrl := range h.controllers {
				if ctrl == name || strings.HasPrefix(ctrl, "name=") {
					continue
				}
				if err := unix.Symlinkat(name, int(top.Fd()), ctrl); err != nil && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("cgroup mount on %s: link %s -> %s: %w", dest, ctrl, name, err)
				}
			}
		}
	}
	if l.unified != nil {
		if err := c.mountHierarchy(root, path.Join(dest, path.Base(l.unified.mountpoint)), *l.unified, opts); err != nil {
			return err
		}
	}
	if o.Flags&unix.MS_RDONLY != 0 {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(int(top.Fd()), "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("cgroup mount on %s: make tmpfs read-only: %w", dest, err)
		}
	}
	return nil
}

// mountHierarchy mounts one hierarchy at dest inside root.
func (c *Config) mountHierarchy(root *os.File, dest string, h hierarchy, opts []string) error {
	t, err := mkDirNoFollow(root, dest)
	if err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	defer t.Close()
	flags := cgroupOptions(opts, true)
	var m mount.Mount
	switch {
	case c.CgroupNS && len(h.controllers) == 0:
		m = mount.Mount{Type: "cgroup2", Source: "cgroup2", Target: dest, Options: flags}
	case c.CgroupNS:
		m = mount.Mount{Type: "cgroup", Source: "cgroup", Target: dest, Options: append(flags, h.controllers...)}
	default:
		dir, err := c.hostDir(h, selfCgroups)
		if err != nil {
			return fmt.Errorf("cgroup mount on %s: %w", dest, err)
		}
		src, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cgroup mount on %s: open %s: %w", dest, dir, err)
		}
		defer src.Close()
		m = mount.Mount{Type: "bind", Source: fdPath(src), Target: dest, Options: append(flags, "bind")}
	}
	if err := m.Mount(fdPath(t)); err != nil {
		return fmt.Errorf("cgroup mount on %s: %w", dest, err)
	}
	return nil
}
