package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// device is one device node to create inside the container.
type device struct {
	path         string
	typ          uint32 // S_IFCHR, S_IFBLK or S_IFIFO
	major, minor uint32
	perm         uint32
	uid, gid     uint32
}

func (d device) rdev() uint64 { return unix.Mkdev(d.major, d.minor) }

func (d device) String() string {
	if d.typ == unix.S_IFIFO {
		return fmt.Sprintf("%s (fifo)", d.path)
	}
	return fmt.Sprintf("%s (%s %d:%d)", d.path, typeName(d.typ), d.major, d.minor)
}

// defaultDevices are the devices every container gets (runtime-spec
// config-linux.md "Default Devices").
var defaultDevices = []device{
	{path: "/dev/null", typ: unix.S_IFCHR, major: 1, minor: 3, perm: 0o666},
	{path: "/dev/zero", typ: unix.S_IFCHR, major: 1, minor: 5, perm: 0o666},
	{path: "/dev/full", typ: unix.S_IFCHR, major: 1, minor: 7, perm: 0o666},
	{path: "/dev/random", typ: unix.S_IFCHR, major: 1, minor: 8, perm: 0o666},
	{path: "/dev/urandom", typ: unix.S_IFCHR, major: 1, minor: 9, perm: 0o666},
	{path: "/dev/tty", typ: unix.S_IFCHR, major: 5, minor: 0, perm: 0o666},
}

// deviceList validates linux.devices and merges them with the defaults (a
// configured device replaces the default at the same path). Two configured
// entries for one path must agree.
func deviceList(spec *specs.Spec) ([]device, error) {
	var configured []device
	byPath := map[string]device{}
	if spec.Linux != nil {
		for i, d := range spec.Linux.Devices {
			dev, err := specDevice(d)
			if err != nil {
				return nil, fmt.Errorf("linux.devices[%d]: %w", i, err)
			}
			if prev, ok := byPath[dev.path]; ok {
				if prev != dev {
					return nil, errdefs.InvalidArgument(fmt.Errorf("linux.devices[%d]: %s conflicts with %s", i, dev, prev))
				}
				continue
			}
			byPath[dev.path] = dev
			configured = append(configured, dev)
		}
	}
	var out []device
	for _, d := range defaultDevices {
		if _, ok := byPath[d.path]; !ok {
			out = append(out, d)
		}
	}
	return append(out, configured...), nil
}

// specDevice checks one linux.devices entry and converts it.
func specDevice(d specs.LinuxDevice) (device, error) {
	if !path.IsAbs(d.Path) {
		return device{}, errdefs.InvalidArgument(fmt.Errorf("device path %q is not absolute", d.Path))
	}
	dev := device{path: cleanPath(d.Path), perm: 0o666}
	if dev.path == "/" || dev.path == "/dev" {
		return device{}, errdefs.InvalidArgument(fmt.Errorf("device path %q is not a file path", d.Path))
	}
	switch d.Type {
	case "c", "u":
		dev.typ = unix.S_IFCHR
	case "b":
		dev.typ = unix.S_IFBLK
	case "p":
		dev.typ = unix.S_IFIFO
	default:
		return device{}, errdefs.InvalidArgument(fmt.Errorf("device %s: type %q is not one of c, b, u, p", d.Path, d.Type))
	}
	if dev.typ != unix.S_IFIFO {
		if d.Major < 0 || d.Major > 0xfff || d.Minor < 0 || d.Minor > 0xfffff {
			return device{}, errdefs.InvalidArgument(fmt.Errorf("device %s: invalid number %d:%d", d.Path, d.Major, d.Minor))
		}
		dev.major, dev.minor = uint32(d.Major), uint32(d.Minor)
	}
	if d.FileMode != nil {
		// fileMode is a Unix mode number. Engines such as Podman include
		// the file type bits (020600 for a character device): accepted when
		// they agree with the type, and masked off.
		raw := uint32(*d.FileMode)
		if t := raw & unix.S_IFMT; t != 0 && t != dev.typ {
			return device{}, errdefs.InvalidArgument(fmt.Errorf("device %s: fileMode %#o has file type bits %#o that disagree with type %q", d.Path, raw, t, d.Type))
		}
		raw &^= unix.S_IFMT
		if raw&^0o7777 != 0 {
			return device{}, errdefs.InvalidArgument(fmt.Errorf("device %s: fileMode %#o has bits beyond the permissions", d.Path, uint32(*d.FileMode)))
		}
		dev.perm = raw
	}
	if d.UID != nil {
		dev.uid = *d.UID
	}
	if d.GID != nil {
		dev.gid = *d.GID
	}
	return dev, nil
}

// createDevices creates each device inside root: with mknod, or, in a user
// namespace where mknod is not allowed, by binding the host's node of the
// same path over an empty file (after checking the host node is the
// requested device).
func createDevices(root *os.File, devices []device, userns bool) error {
	for _, d := range devices {
		var err error
		if userns && d.typ != unix.S_IFIFO {
			err = bindDevice(root, d)
		} else {
			err = mknodDevice(root, d)
		}
		if err != nil {
			return fmt.Errorf("device %s: %w", d, err)
		}
	}
	return nil
}

// matches reports whether st is the device d.
func (d device) matches(st unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT != d.typ {
		return false
	}
	return d.typ == unix.S_IFIFO || st.Rdev == d.rdev()
}

func mknodDevice(root *os.File, d device) error {
	parent, err := mkTarget(root, path.Dir(d.path), false)
	if err != nil {
		return err
	}
	defer parent.Close()
	base := path.Base(d.path)
	err = unix.Mknodat(int(parent.Fd()), base, d.typ|d.perm, int(d.rdev()))
	created := err == nil
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mknod: %w", err)
	}
	fd, err := unix.Openat(int(parent.Fd()), base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	st, err := fstat(f)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if !d.matches(st) {
		return errdefs.AlreadyExists(fmt.Errorf("%s already exists and is a %s %d:%d, not the requested device",
			d.path, typeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	}
	if !created {
		return nil // an identical node is already there: leave it as it is
	}
	// mknod applied the umask; set the exact mode and owner on this inode.
	if err := unix.Fchownat(fd, "", int(d.uid), int(d.gid), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", d.uid, d.gid, err)
	}
	if err := unix.Chmod(fdPath(f), d.perm); err != nil {
		return fmt.Errorf("chmod %#o: %w", d.perm, err)
	}
	return nil
}

func bindDevice(root *os.File, d device) error {
	host, err := os.OpenFile(d.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open host device: %w", err)
	}
	defer host.Close()
	hst, err := fstat(host)
	if err != nil {
		return fmt.Errorf("stat host device: %w", err)
	}
	if !d.matches(hst) {
		return errdefs.InvalidArgument(fmt.Errorf("host %s is a %s %d:%d, not the requested device",
			d.path, typeName(hst.Mode), unix.Major(hst.Rdev), unix.Minor(hst.Rdev)))
	}
	t, err := mkTarget(root, d.path, true)
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := fstat(t)
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG && !d.matches(st) {
		return errdefs.AlreadyExists(fmt.Errorf("%s already exists and is a %s, not the requested device", d.path, typeName(st.Mode)))
	}
	m := mount.Mount{Type: "bind", Source: fdPath(host), Target: d.path, Options: []string{"bind"}}
	return m.Mount(fdPath(t))
}

// devSymlinks are the links runtime-spec config-linux.md requires in /dev.
var devSymlinks = [][2]string{
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// createDevSymlinks creates the /dev symlinks: fd, stdin, stdout, stderr,
// ptmx -> pts/ptmx (replacing a ptmx device from the image, so the devpts
// instance of the container is used), and core -> /proc/kcore when the
// host has /proc/kcore. Existing entries other than ptmx are kept.
func createDevSymlinks(root *os.File) error {
	dev, err := mkTarget(root, "/dev", false)
	if err != nil {
		return err
	}
	defer dev.Close()
	dfd := int(dev.Fd())
	links := devSymlinks
	if _, err := os.Lstat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"core", "/proc/kcore"})
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[1], dfd, l[0]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s -> %s: %w", l[0], l[1], err)
		}
	}
	if target, err := readlinkat(dfd, "ptmx"); err == nil && target == "pts/ptmx" {
		return nil
	}
	if err := unix.Unlinkat(dfd, "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove /dev/ptmx: %w", err)
	}
	if err := unix.Symlinkat("pts/ptmx", dfd, "ptmx"); err != nil {
		return fmt.Errorf("symlink /dev/ptmx -> pts/ptmx: %w", err)
	}
	return nil
}

// runningInUserNS reports whether this process is in a user namespace
// other than the initial one (whose uid_map is the full identity map).
func runningInUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := bytes.Fields(b)
	return !(len(f) == 3 && string(f[0]) == "0" && string(f[1]) == "0" && string(f[2]) == "4294967295")
}
