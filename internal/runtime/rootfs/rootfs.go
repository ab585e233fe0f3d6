// Package rootfs builds a container's filesystem view for berth-runtime: it
// performs the spec's mounts inside the root filesystem, populates /dev,
// pivots into the root and then masks and write-protects paths. Every path it
// touches inside the root filesystem is resolved there safely (openat2
// RESOLVE_IN_ROOT through filepath-securejoin) to a file descriptor, and
// mounts are attached to that descriptor, so no symlink or swapped directory
// in a container image can redirect a mount to the host (CVE-2021-30465).
//
// The caller is the container's init process, already in the container's new
// mount namespace: Prepare, then Pivot, then BindConsole when the process has
// a terminal, then Finalize.
package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config describes the root filesystem to set up.
type Config struct {
	Spec        *specs.Spec
	Rootfs      string            // absolute host path of the root filesystem
	NoPivot     bool              // MS_MOVE + chroot instead of pivot_root
	CgroupPaths map[string]string // controller -> host cgroup dir of this container ("" = v2 unified)
	CgroupNS    bool              // the container has its own cgroup namespace
	Console     bool              // process.terminal: /dev/console is bound later by BindConsole
}

// rootPropagation returns the propagation to give "/" while the container
// is set up (always recursive, so nothing mounted here reaches the host) and
// the one to apply to the container's "/" at the end of Finalize, if any.
func rootPropagation(spec *specs.Spec) (setup, final uintptr, err error) {
	name := ""
	if spec != nil && spec.Linux != nil {
		name = spec.Linux.RootfsPropagation
	}
	switch name {
	case "":
		return unix.MS_REC | unix.MS_SLAVE, 0, nil
	case "private", "rprivate":
		return unix.MS_REC | unix.MS_PRIVATE, 0, nil
	case "slave", "rslave":
		return unix.MS_REC | unix.MS_SLAVE, 0, nil
	case "shared", "rshared", "unbindable", "runbindable":
		p, _ := mount.PropagationFlag(name)
		return unix.MS_REC | unix.MS_SLAVE, p, nil
	}
	return 0, 0, errdefs.InvalidArgument(fmt.Errorf("linux.rootfsPropagation %q is not one of shared, slave, private, unbindable", name))
}

// Prepare runs in the container's new mount namespace before Pivot. It sets
// the propagation of "/" (rslave, or private when linux.rootfsPropagation
// asks for it), bind-mounts the rootfs onto itself, performs spec.Mounts in
// order and, unless /dev is a bind mount, creates the default devices, the
// configured linux.devices and the standard /dev symlinks. Relative bind
// sources are resolved against the current directory, which the caller
// makes the bundle directory.
//
// A spec without a mount namespace shares the caller's: as with runc and
// crun, the mounts are then made there, under the rootfs, but the
// propagation of the caller's "/" is left alone.
func Prepare(c *Config) error {
	if c == nil || c.Spec == nil {
		return errdefs.InvalidArgument(errors.New("prepare rootfs: no spec"))
	}
	if !filepath.IsAbs(c.Rootfs) {
		return errdefs.InvalidArgument(fmt.Errorf("prepare rootfs: root %q is not an absolute path", c.Rootfs))
	}
	setup, _, err := rootPropagation(c.Spec)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	devices, err := deviceList(c.Spec)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	if hasMountNamespace(c.Spec) {
		if err := unix.Mount("", "/", "", setup, ""); err != nil {
			return fmt.Errorf("prepare rootfs: set propagation of / to %s: %w", mount.PropagationName(setup), err)
		}
	}
	if err := unix.Mount(c.Rootfs, c.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("prepare rootfs: bind %s onto itself: %w", c.Rootfs, err)
	}
	root, err := openRoot(c.Rootfs)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	defer root.Close()

	hostDev := false
	for i, m := range c.Spec.Mounts {
		if err := c.mountOne(root, m); err != nil {
			return fmt.Errorf("prepare rootfs: mounts[%d]: %w", i, err)
		}
		if cleanPath(m.Destination) == "/dev" && isBind(m) {
			hostDev = true
		}
	}
	if !hostDev {
		if err := createDevices(root, devices, runningInUserNS()); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
		if err := createDevSymlinks(root); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	if c.Console {
		f, err := consoleTarget(root)
		if err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
		f.Close()
	}
	return nil
}

// hasMountNamespace reports whether the spec gives the container a mount
// namespace (new or joined).
func hasMountNamespace(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.MountNamespace {
			return true
		}
	}
	return false
}

// isBind reports whether a spec mount is a bind mount.
func isBind(m specs.Mount) bool {
	o, err := mount.Parse(m.Options)
	if err != nil {
		return false
	}
	return mount.Mount{Type: m.Type}.IsBind(o)
}

// mountOne performs one spec mount inside root.
func (c *Config) mountOne(root *os.File, m specs.Mount) error {
	if !path.IsAbs(m.Destination) {
		return errdefs.InvalidArgument(fmt.Errorf("mount destination %q is not absolute", m.Destination))
	}
	dest := cleanPath(m.Destination)
	if dest == "/" {
		return errdefs.InvalidArgument(fmt.Errorf("mount %s: refusing to mount over the container's root", m.Source))
	}
	o, err := mount.Parse(m.Options)
	if err != nil {
		return err
	}
	mnt := mount.Mount{Type: m.Type, Source: m.Source, Target: dest, Options: m.Options}
	bind := mnt.IsBind(o)

	switch {
	case m.Type == "cgroup" && !bind:
		return c.mountCgroup(root, m, o)
	case bind:
		return mountBind(root, mnt)
	case m.Type == "proc" || m.Type == "sysfs":
		// Only on a real directory: a symlink or a file here could make the
		// runtime mount proc somewhere unexpected (CVE-2019-19921).
		t, err := mkDirNoFollow(root, dest)
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, dest, err)
		}
		defer t.Close()
		if err := checkProcTarget(t, dest); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, dest, err)
		}
		err = mnt.Mount(fdPath(t))
		if m.Type == "sysfs" && errors.Is(err, unix.EPERM) {
			// The kernel mounts sysfs only for the owner of the network
			// namespace: in a user namespace sharing the host's, runc
			// binds the host's /sys instead, with the same options.
			err = mountBind(root, mount.Mount{Type: "bind", Source: "/sys", Target: dest, Options: append([]string{"rbind"}, m.Options...)})
		}
		return err
	}
	t, err := mkTarget(root, dest, false)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, dest, err)
	}
	defer t.Close()
	if err := checkProcTarget(t, dest); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, dest, err)
	}
	if o.Flags&unix.MS_REMOUNT == 0 {
		if st, err := fstat(t); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return errdefs.InvalidArgument(fmt.Errorf("mount %s on %s: target is a %s, not a directory", m.Type, dest, typeName(st.Mode)))
		}
	}
	return mnt.Mount(fdPath(t))
}

// procMountable are the files inside a container's procfs a spec mount may
// cover (what lxcfs provides); anything else there, such as
// /proc/self/attr (CVE-2019-16884), is refused.
var procMountable = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/pressure/cpu": true, "/proc/pressure/io": true, "/proc/pressure/memory": true,
	"/proc/net/dev": true, "/proc/sys/kernel/ns_last_pid": true,
}

// checkProcTarget refuses a mount onto something inside a procfs mounted
// in the container, except /proc itself and the files of procMountable.
func checkProcTarget(t *os.File, dest string) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(t.Fd()), &fs); err != nil {
		return fmt.Errorf("statfs target: %w", err)
	}
	if fs.Type != unix.PROC_SUPER_MAGIC || dest == "/proc" || procMountable[dest] {
		return nil
	}
	return errdefs.InvalidArgument(fmt.Errorf("%s is inside procfs, where only files like /proc/cpuinfo, /proc/meminfo and /proc/uptime may be mounted over", dest))
}

// mountBind binds a host path onto a target inside root. The source is
// opened once (in the runtime's namespace) and that very inode is bound;
// a missing target is created as a file or a directory like the source.
func mountBind(root *os.File, m mount.Mount) error {
	src, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return errdefs.NotFound(fmt.Errorf("bind %s on %s: open source: %w", m.Source, m.Target, err))
	}
	defer src.Close()
	sst, err := fstat(src)
	if err != nil {
		return fmt.Errorf("bind %s on %s: stat source: %w", m.Source, m.Target, err)
	}
	srcDir := sst.Mode&unix.S_IFMT == unix.S_IFDIR
	t, err := mkTarget(root, m.Target, !srcDir)
	if err != nil {
		return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
	}
	defer t.Close()
	tst, err := fstat(t)
	if err != nil {
		return fmt.Errorf("bind %s on %s: stat target: %w", m.Source, m.Target, err)
	}
	if err := checkProcTarget(t, m.Target); err != nil {
		return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
	}
	if tgtDir := tst.Mode&unix.S_IFMT == unix.S_IFDIR; tgtDir != srcDir {
		// Worded without "is a directory": the docker CLI reads that as a
		// command that cannot run (exit 126) rather than a failed create.
		return errdefs.InvalidArgument(fmt.Errorf("bind %s on %s: cannot mount a %s on a %s",
			m.Source, m.Target, typeName(sst.Mode), typeName(tst.Mode)))
	}
	m.Source = fdPath(src)
	if err := m.Mount(fdPath(t)); err != nil {
		return fmt.Errorf("bind %s: %w", src.Name(), err)
	}
	return nil
}

// Pivot makes the prepared rootfs the root of the mount namespace and
// changes directory to the new "/". With pivot_root it pivots onto "." and
// lazily unmounts the old root after making it rslave, so the unmount never
// propagates to the host; with NoPivot it detaches every host mount outside
// the rootfs, moves the rootfs onto "/" and chroots into it.
func Pivot(c *Config) error {
	if c.NoPivot {
		return moveRoot(c.Rootfs)
	}
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pivot: open old root: %w", err)
	}
	defer unix.Close(oldRoot)
	newRoot, err := unix.Open(c.Rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pivot: open rootfs %s: %w", c.Rootfs, err)
	}
	defer unix.Close(newRoot)
	if err := unix.Fchdir(newRoot); err != nil {
		return fmt.Errorf("pivot: chdir to rootfs %s: %w", c.Rootfs, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot: pivot_root into %s: %w", c.Rootfs, err)
	}
	// The old root is now stacked under the new one at ".": reach it
	// through its descriptor, cut its propagation and detach it.
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("pivot: chdir to old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("pivot: make old root rslave: %w", err)
	}
	if err := mount.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("pivot: detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("pivot: chdir /: %w", err)
	}
	return nil
}

// BindConsole bind-mounts the pty slave at slavePath (a path inside the
// container, after Pivot) onto /dev/console. The slave must be a pty slave
// character device and /dev/console a regular file (created empty when
// missing) or a character device; neither may be a symlink.
func BindConsole(slavePath string) error {
	root, err := openRoot("/")
	if err != nil {
		return fmt.Errorf("bind console: %w", err)
	}
	defer root.Close()
	src, err := openNoFollow(root, slavePath)
	if err != nil {
		return fmt.Errorf("bind console: open %s: %w", slavePath, err)
	}
	defer src.Close()
	st, err := fstat(src)
	if err != nil {
		return fmt.Errorf("bind console: stat %s: %w", slavePath, err)
	}
	// UNIX98 pty slaves have majors 136 to 143.
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) < 136 || unix.Major(st.Rdev) > 143 {
		return errdefs.InvalidArgument(fmt.Errorf("bind console: %s is a %s %d:%d, not a pty slave",
			slavePath, typeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	}
	dst, err := consoleTarget(root)
	if err != nil {
		return fmt.Errorf("bind console: %w", err)
	}
	defer dst.Close()
	m := mount.Mount{Type: "bind", Source: fdPath(src), Target: "/dev/console", Options: []string{"bind"}}
	if err := m.Mount(fdPath(dst)); err != nil {
		return fmt.Errorf("bind console %s: %w", slavePath, err)
	}
	return nil
}

// consoleTarget returns a handle to /dev/console inside root, creating it
// as an empty regular file when missing; anything but a regular file or a
// character device there (a symlink in particular) is refused.
func consoleTarget(root *os.File) (*os.File, error) {
	dev, err := mkTarget(root, "/dev", false)
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	fd, err := unix.Openat(int(dev.Fd()), "console", unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Close(fd)
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create /dev/console: %w", err)
	}
	fd, err = unix.Openat(int(dev.Fd()), "console", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/console: %w", err)
	}
	f := os.NewFile(uintptr(fd), "/dev/console")
	st, err := fstat(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat /dev/console: %w", err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFCHR {
		f.Close()
		return nil, errdefs.InvalidArgument(fmt.Errorf("/dev/console is a %s, not a regular file or character device", typeName(st.Mode)))
	}
	return f, nil
}

// Finalize runs after Pivot (and BindConsole): it masks linux.maskedPaths
// (a verified /dev/null bound over files, an empty read-only tmpfs over
// directories), makes linux.readonlyPaths read-only (recursively), remounts
// "/" read-only when root.readonly is set, and finally gives "/" the shared
// or unbindable propagation linux.rootfsPropagation asks for. Missing
// masked or read-only paths are skipped; symlinks there are refused.
func Finalize(c *Config) error {
	if c == nil || c.Spec == nil {
		return errdefs.InvalidArgument(errors.New("finalize rootfs: no spec"))
	}
	_, final, err := rootPropagation(c.Spec)
	if err != nil {
		return fmt.Errorf("finalize rootfs: %w", err)
	}
	root, err := openRoot("/")
	if err != nil {
		return fmt.Errorf("finalize rootfs: %w", err)
	}
	defer root.Close()
	if l := c.Spec.Linux; l != nil {
		for _, p := range l.MaskedPaths {
			if err := maskPath(root, p); err != nil {
				return fmt.Errorf("finalize rootfs: mask %s: %w", p, err)
			}
		}
		for _, p := range l.ReadonlyPaths {
			if err := readonlyPath(root, p); err != nil {
				return fmt.Errorf("finalize rootfs: make %s read-only: %w", p, err)
			}
		}
	}
	if c.Spec.Root != nil && c.Spec.Root.Readonly {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(int(root.Fd()), "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("finalize rootfs: make / read-only: %w", err)
		}
	}
	if final != 0 {
		if err := mount.SetPropagation(int(root.Fd()), []uintptr{final}); err != nil {
			return fmt.Errorf("finalize rootfs: /: %w", err)
		}
	}
	return nil
}

// maskPath hides p: a file (of any type) gets /dev/null bound over it, a
// directory an empty read-only tmpfs.
func maskPath(root *os.File, p string) error {
	t, err := openNoFollow(root, p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := fstat(t)
	if err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return errdefs.InvalidArgument(fmt.Errorf("%s is a symlink", p))
	case unix.S_IFDIR:
		m := mount.Mount{Type: "tmpfs", Source: "tmpfs", Target: p, Options: []string{"ro", "nosuid", "nodev", "noexec", "size=0k"}}
		return m.Mount(fdPath(t))
	}
	null, err := openDevNull(root)
	if err != nil {
		return err
	}
	defer null.Close()
	m := mount.Mount{Type: "bind", Source: fdPath(null), Target: p, Options: []string{"bind"}}
	return m.Mount(fdPath(t))
}

// openDevNull opens the container's /dev/null without following symlinks
// and checks that it is the null character device 1:3, so a container
// cannot have its own file bound over a masked path (CVE-2025-31133).
func openDevNull(root *os.File) (*os.File, error) {
	f, err := openNoFollow(root, "/dev/null")
	if err != nil {
		return nil, fmt.Errorf("open /dev/null: %w", err)
	}
	st, err := fstat(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat /dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		f.Close()
		return nil, errdefs.InvalidArgument(fmt.Errorf("/dev/null is a %s %d:%d, not the null device 1:3",
			typeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	}
	return f, nil
}

// readonlyPath binds p onto itself (recursively) and makes every mount of
// the new tree read-only.
func readonlyPath(root *os.File, p string) error {
	t, err := openNoFollow(root, p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := fstat(t)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return errdefs.InvalidArgument(fmt.Errorf("%s is a symlink", p))
	}
	m := mount.Mount{Type: "bind", Source: fdPath(t), Target: p, Options: []string{"rbind", "rro"}}
	return m.Mount(fdPath(t))
}
