package engine

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/sys/mountinfo"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	bmount "github.com/berth-project/berth/internal/mount"
	"github.com/berth-project/berth/internal/specgen"
)

// withRootfs calls fn with the container's root filesystem mounted: the
// running container's own mount, or for a stopped one a private mount of
// its snapshot held (with the container locked) for fn's duration.
func (cs *containers) withRootfs(ctx context.Context, c *ctr, fn func(root string) error) error {
	c.mu.Lock()
	if c.running() {
		root := c.rootfs()
		c.mu.Unlock()
		return fn(root)
	}
	defer c.mu.Unlock()
	if c.removing {
		return errdefs.Conflict(fmt.Errorf("container %s is being removed", c.rec.ID))
	}
	mounts, err := cs.e.snaps.Mounts(ctx, c.snapKey())
	if err != nil {
		return fmt.Errorf("root filesystem of container %s: %w", c.rec.ID, err)
	}
	dir, err := os.MkdirTemp(c.dir, "mnt-")
	if err != nil {
		return fmt.Errorf("create mount point for container %s: %w", c.rec.ID, err)
	}
	defer os.Remove(dir)
	mounted := 0
	defer func() {
		for ; mounted > 0; mounted-- {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				cs.log.Warn("unmount container root filesystem", "id", c.rec.ID, "dir", dir, "err", err)
			}
		}
	}()
	for _, m := range mounts {
		if err := m.Mount(dir); err != nil {
			return fmt.Errorf("mount root filesystem of container %s on %s: %w", c.rec.ID, dir, err)
		}
		mounted++
	}
	return fn(dir)
}

// The archive endpoints (HEAD, GET and PUT /containers/{id}/archive, behind
// `cp`) work on the container's filesystem as its processes see it: the
// root filesystem with the container's binds, volumes, tmpfs mounts and
// network files (/etc/hostname, /etc/hosts, /etc/resolv.conf) on it. A path
// is never looked up in the root filesystem alone, or a copy would read the
// image's content under a volume and write where the container cannot see.
//
// That view is a directory descriptor ("the view's root") in a mount
// namespace holding those mounts, and every lookup is openat2 with
// RESOLVE_IN_ROOT from it: the kernel walks the path as it would for the
// container, crossing into mounts where the container has them, and treats
// symlinks (absolute or relative, in the root filesystem or in a volume or
// bind) and ".." as if the view's root were "/". A symlink in a volume
// therefore names a file in the container (as it does for the container's
// own processes, and as Docker resolves it), never one on the host.
// Magic links (/proc/<pid>/root and the like) are refused.
//
//   - A running (or paused) container: its init process's /proc/<pid>/root,
//     with the process's mount namespace held open for the operation. This is
//     the container's real mount tree, so it is right for every mount kind,
//     tmpfs included (whose content exists only in that namespace), and for
//     mounts nested in other mounts, without the engine rebuilding anything.
//     The descriptor is checked to be the container's root filesystem (same
//     device and inode as the engine's mount of it), so a PID reused after the
//     container died can never hand out another process's root.
//   - A stopped (or created, or restarting) container: a private mount
//     namespace made for the operation on a dedicated thread, holding the
//     snapshot's overlay with each bind and volume bind-mounted (read-only
//     where the container has it so) at its destination, resolved in the view
//     as the runtime resolves it. Nothing is mounted in the host's namespace;
//     the namespace goes away with the last descriptor. A volume the container
//     has not used yet first receives the image's content, as at its first
//     start, so the copy sees what the container will. A tmpfs mount has no
//     content while the container is stopped: the view shows an empty
//     read-only tmpfs there, and copying into it is refused.
//
// The mount a resolved path lies on (statx's mount ID matched with the
// namespace's mountinfo) decides what a copy may do: into a read-only bind
// or volume Docker's "mounted volume is marked read-only", into the root
// filesystem of a --read-only container "container rootfs is marked
// read-only". The runtime's own mounts of a running container (/proc, /sys,
// /dev and the masked paths) are not part of what cp reaches, as in Docker:
// a path on one of them is refused, and a copy of a directory holding one
// shows the mount point as an empty directory (Docker's view of a container
// never holds them either).

// viewMount is one of the container's mounts as the archive endpoints see it.
type viewMount struct {
	Dest   string // absolute and clean, in the container
	Source string // host path of a bind, volume or network file; "" for tmpfs
	Tmpfs  bool
	RW     bool
	Data   string // tmpfs options
	// Volume names the volume to populate with the image's content at Dest
	// before first use (a stopped container's view only), unless NoCopy.
	Volume    string
	Anonymous bool
	NoCopy    bool
	// Network: the engine's bind of a network file, which belongs with the
	// root filesystem (read-only with it).
	Network bool
}

// viewMountPoint is a mount of the view's namespace: where it is in the
// container and its filesystem type.
type viewMountPoint struct {
	Point  string
	FSType string
	Parent uint64 // the mount ID of the mount it is on
}

// fsView is a container's filesystem as its processes see it.
type fsView struct {
	root *os.File // O_PATH descriptor of the container's "/"
	hold []*os.File
	// running: the view is the container's own namespace.
	running        bool
	readonlyRootfs bool
	mounts         []viewMount // by destination
	table          map[uint64]viewMountPoint
	// rootMount and byID: the mount IDs of the root and of the container's
	// mounts (see index).
	rootMount uint64
	byID      map[uint64]*viewMount
	// reread refreshes table (a running container may have mounted since).
	reread func() (map[uint64]viewMountPoint, error)
}

func (v *fsView) Close() {
	v.root.Close()
	for _, f := range v.hold {
		f.Close()
	}
}

// networkFiles are the files the engine binds into every container.
var networkFiles = []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}

// viewMounts lists a container's mounts for its view: the recorded binds,
// volumes and tmpfs mounts and the network files. The caller holds c.mu.
func (c *ctr) viewMounts() []viewMount {
	var out []viewMount
	seen := map[string]bool{}
	for _, m := range c.rec.Mounts {
		vm := viewMount{Dest: path.Clean(m.Destination), Source: m.Source, RW: m.RW}
		switch m.Type {
		case mount.TypeTmpfs:
			vm.Tmpfs, vm.Source = true, ""
			vm.Data = c.rec.HostConfig.Tmpfs[m.Destination]
			if vm.Data == "" {
				vm.Data = c.rec.HostConfig.Tmpfs[vm.Dest]
			}
		case mount.TypeVolume:
			vm.Volume, vm.Anonymous, vm.NoCopy = m.Name, m.Anonymous, m.NoCopy
		}
		seen[vm.Dest] = true
		out = append(out, vm)
	}
	for _, d := range networkFiles {
		src := filepath.Join(c.dir, filepath.Base(d))
		if seen[d] {
			continue
		}
		if _, err := os.Lstat(src); err != nil {
			continue
		}
		out = append(out, viewMount{Dest: d, Source: src, RW: !c.rec.HostConfig.ReadonlyRootfs, Network: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dest < out[j].Dest })
	return out
}

// withView calls fn with the container's filesystem view (see above). A
// stopped container stays locked for fn's duration.
func (cs *containers) withView(ctx context.Context, c *ctr, fn func(v *fsView) error) error {
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("container %s is being removed", c.rec.ID))
	}
	mounts := c.viewMounts()
	ro := c.rec.HostConfig.ReadonlyRootfs
	if c.running() {
		pid := c.rec.State.Pid
		c.mu.Unlock()
		v, err := openRunningView(pid, c.rootfs(), mounts, ro)
		if err != nil {
			return fmt.Errorf("filesystem of container %s: %w", c.rec.ID, err)
		}
		defer v.Close()
		return fn(v)
	}
	defer c.mu.Unlock()
	snapMounts, err := cs.e.snaps.Mounts(ctx, c.snapKey())
	if err != nil {
		return fmt.Errorf("root filesystem of container %s: %w", c.rec.ID, err)
	}
	dir, err := os.MkdirTemp(c.dir, "mnt-")
	if err != nil {
		return fmt.Errorf("create mount point for container %s: %w", c.rec.ID, err)
	}
	defer os.Remove(dir)
	mountRootfs := func(target string) error {
		for _, m := range snapMounts {
			if err := m.Mount(target); err != nil {
				return fmt.Errorf("mount root filesystem on %s: %w", target, err)
			}
		}
		return nil
	}
	v, err := openPrivateView(dir, mountRootfs, mounts, ro, cs.e.populateVolume)
	if err != nil {
		return fmt.Errorf("filesystem of container %s: %w", c.rec.ID, err)
	}
	defer v.Close()
	return fn(v)
}

// populateVolume gives a volume its first container's image content (at
// dest under rootfs), as the container's first start would.
func (e *Engine) populateVolume(rootfs string, m viewMount) error {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	meta, err := e.readVolume(m.Volume)
	if errdefs.IsNotFound(err) {
		if meta, err = e.createVolume(m.Volume, nil, nil, m.Anonymous); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if meta.Populated {
		return nil
	}
	if !m.NoCopy {
		if err := copyImageContent(rootfs, m.Dest, m.Source); err != nil {
			return fmt.Errorf("copy image content at %s into volume %s: %w", m.Dest, m.Volume, err)
		}
	}
	meta.Populated = true
	return writeJSONFile(filepath.Join(e.volumeDir(m.Volume), "opts.json"), meta)
}

// openRunningView opens the view of a running container whose init process
// is pid and whose root filesystem the engine mounted at rootfs.
func openRunningView(pid int, rootfs string, mounts []viewMount, readonlyRootfs bool) (*fsView, error) {
	if pid <= 0 {
		return nil, errdefs.FailedPrecondition(fmt.Errorf("no process ID recorded for the running container"))
	}
	proc, err := os.OpenFile("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/%d: %w", pid, err)
	}
	v := &fsView{running: true, readonlyRootfs: readonlyRootfs, mounts: mounts, hold: []*os.File{proc}}
	ok := false
	defer func() {
		if !ok {
			for _, f := range v.hold {
				f.Close()
			}
		}
	}()
	// The namespace first: held, it keeps the container's mounts in place
	// even if the container exits while the copy runs.
	nsfd, err := unix.Openat(int(proc.Fd()), "ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open mount namespace of process %d: %w", pid, err)
	}
	v.hold = append(v.hold, os.NewFile(uintptr(nsfd), "ns/mnt"))
	rfd, err := unix.Openat(int(proc.Fd()), "root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root of process %d: %w", pid, err)
	}
	v.root = os.NewFile(uintptr(rfd), "/")
	var got, want unix.Stat_t
	if err := unix.Fstat(rfd, &got); err != nil {
		v.root.Close()
		return nil, fmt.Errorf("stat root of process %d: %w", pid, err)
	}
	if err := unix.Stat(rootfs, &want); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
		v.root.Close()
		return nil, errdefs.Conflict(fmt.Errorf("process %d is not running in the container's root filesystem %s (the container may have exited)", pid, rootfs))
	}
	v.reread = func() (map[uint64]viewMountPoint, error) {
		fd, err := unix.Openat(int(proc.Fd()), "mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("read mounts of process %d: %w", pid, err)
		}
		f := os.NewFile(uintptr(fd), "mountinfo")
		defer f.Close()
		return parseMountinfo(f, "/")
	}
	if v.table, err = v.reread(); err != nil {
		v.root.Close()
		return nil, err
	}
	ok = true
	return v, nil
}

// openPrivateView builds the view of a stopped container in a new mount
// namespace: mountRootfs mounts its root filesystem on dir (an empty
// directory), then each mount is attached in the view. populate fills a
// volume not used yet with the image's content. The namespace is made by a
// thread of its own that ends when the view is built (a locked goroutine
// that returns takes its thread with it), so no other goroutine ever runs
// in it; the view's descriptors keep it, and its mounts, alive.
func openPrivateView(dir string, mountRootfs func(string) error, mounts []viewMount, readonlyRootfs bool, populate func(string, viewMount) error) (*fsView, error) {
	type result struct {
		v   *fsView
		err error
		tid int
	}
	ch := make(chan result, 1)
	var build func()
	build = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never ended by the runtime (and /proc/self
			// shows its namespace): build on another, holding this one so
			// the other cannot land here, then give it back.
			done := make(chan struct{})
			go func() { defer close(done); build() }()
			<-done
			runtime.UnlockOSThread()
			return
		}
		// Never unlocked: the thread, and its namespace with it, ends with
		// this goroutine.
		v, err := buildPrivateView(dir, mountRootfs, mounts, readonlyRootfs, populate)
		ch <- result{v, err, unix.Gettid()}
	}
	go build()
	r := <-ch
	// Once the thread is gone, the view's descriptors are all that keep the
	// namespace: closing them tears it down at once (the root filesystem is
	// then free to be mounted for a start).
	task := "/proc/self/task/" + strconv.Itoa(r.tid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Microsecond) {
		if _, err := os.Lstat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	return r.v, r.err
}

func buildPrivateView(dir string, mountRootfs func(string) error, mounts []viewMount, readonlyRootfs bool, populate func(string, viewMount) error) (*fsView, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("new mount namespace: %w", err)
	}
	// Nothing mounted here may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return nil, fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := mountRootfs(dir); err != nil {
		return nil, err
	}
	ns, err := os.Open("/proc/thread-self/ns/mnt")
	if err != nil {
		return nil, fmt.Errorf("open the view's mount namespace: %w", err)
	}
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("open root filesystem at %s: %w", dir, err)
	}
	v := &fsView{root: root, hold: []*os.File{ns}, readonlyRootfs: readonlyRootfs, mounts: mounts}
	ok := false
	defer func() {
		if !ok {
			v.Close()
		}
	}()
	ordered := append([]viewMount(nil), mounts...)
	sort.SliceStable(ordered, func(i, j int) bool { return depth(ordered[i].Dest) < depth(ordered[j].Dest) })
	// Volumes receive the image's content from the root filesystem alone,
	// before any mount is attached, as at a start (and as Docker copies from
	// the image): the copy walks paths, and through another mount (a volume
	// a running container shares, a bind) it would take that mount's
	// content, and a process there could swap a directory for a symlink
	// under the walk and have host files copied into the volume.
	for _, m := range ordered {
		if m.Volume != "" && populate != nil {
			if err := populate(dir, m); err != nil {
				return nil, err
			}
		}
	}
	for _, m := range ordered {
		if err := attachViewMount(root, m); err != nil {
			return nil, err
		}
	}
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read the view's mounts: %w", err)
	}
	defer f.Close()
	if v.table, err = parseMountinfo(f, dir); err != nil {
		return nil, err
	}
	ok = true
	return v, nil
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

// attachViewMount mounts m in the view at root: its destination resolved
// (and created when missing, as the runtime does) inside the view.
func attachViewMount(root *os.File, m viewMount) error {
	rel := strings.TrimPrefix(m.Dest, "/")
	isDir := true
	if !m.Tmpfs {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("source of the mount on %s: %w", m.Dest, err)
		}
		isDir = fi.IsDir()
	}
	var target *os.File
	var err error
	if isDir {
		if target, err = pathrs.MkdirAllHandle(root, rel, 0o755); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Dest, err)
		}
	} else if target, err = fileMountPoint(root, rel); err != nil {
		return fmt.Errorf("mount point %s: %w", m.Dest, err)
	}
	defer target.Close()
	var mnt bmount.Mount
	if m.Tmpfs {
		// The container's tmpfs exists only while it runs: an empty,
		// read-only stand-in with the mount's permissions.
		mnt = bmount.Mount{Type: "tmpfs", Source: "tmpfs", Options: tmpfsStandIn(m.Data)}
	} else {
		opts := []string{"rbind", "rprivate"}
		if !m.RW {
			opts = append(opts, "rro")
		}
		mnt = bmount.Mount{Type: "bind", Source: m.Source, Options: opts}
	}
	if err := mnt.Mount("/proc/self/fd/" + strconv.Itoa(int(target.Fd()))); err != nil {
		return fmt.Errorf("mount %s in the view: %w", m.Dest, err)
	}
	return nil
}

// fileMountPoint resolves (following symlinks inside root, as the runtime
// does) or creates the regular file rel to mount a file on. Anything else
// there (a FIFO or device the container made, say) is refused, never
// opened.
func fileMountPoint(root *os.File, rel string) (*os.File, error) {
	f, err := openInRoot(root, rel)
	if errors.Is(err, unix.ENOENT) {
		if err := createFileInRoot(root, rel); err != nil {
			return nil, err
		}
		f, err = openInRoot(root, rel)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// createFileInRoot creates the empty file rel (and its missing parents)
// inside root.
func createFileInRoot(root *os.File, rel string) error {
	parent, err := pathrs.MkdirAllHandle(root, path.Dir(rel), 0o755)
	if err != nil {
		return err
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), path.Base(rel), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// tmpfsStandIn are the options of the empty tmpfs shown for a stopped
// container's tmpfs mount: read-only, with the mount's mode and owner.
func tmpfsStandIn(data string) []string {
	opts := []string{"ro", "size=4k"}
	for _, o := range strings.Split(data, ",") {
		if strings.HasPrefix(o, "mode=") || strings.HasPrefix(o, "uid=") || strings.HasPrefix(o, "gid=") {
			opts = append(opts, o)
		}
	}
	return opts
}

// parseMountinfo reads /proc/<pid>/mountinfo: mount ID -> the mount's point
// relative to prefix ("/" for prefix itself), type and parent. Mounts
// outside prefix are left out.
func parseMountinfo(r io.Reader, prefix string) (map[uint64]viewMountPoint, error) {
	prefix = path.Clean(prefix)
	infos, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	out := map[uint64]viewMountPoint{}
	for _, m := range infos {
		var rel string
		switch point := m.Mountpoint; {
		case point == prefix:
			rel = "/"
		case prefix == "/" && strings.HasPrefix(point, "/"):
			rel = point
		case strings.HasPrefix(point, prefix+"/"):
			rel = point[len(prefix):]
		default:
			continue
		}
		out[uint64(m.ID)] = viewMountPoint{Point: rel, FSType: m.FSType, Parent: uint64(m.Parent)}
	}
	return out, nil
}

// Where a resolved path lies.
type place int

const (
	onRootfs place = iota // the root filesystem (or a network file)
	onMount               // one of the container's binds, volumes or tmpfs mounts
	onSystem              // a mount of the runtime's (/proc, /sys, /dev ...)
)

// classify says where the mount id lies: on the root filesystem's mount
// (rootMount), on one of the container's mounts (byID: the mount found at
// each destination) or a submount of one (a recursive bind's), or else on
// one of the runtime's. Mounts are matched by ID, not by path: a
// destination reached through a symlink is mounted where the link leads.
func classify(id, rootMount uint64, table map[uint64]viewMountPoint, byID map[uint64]*viewMount) (place, *viewMount) {
	if id == rootMount {
		return onRootfs, nil
	}
	for p, n := id, 0; p != 0 && p != rootMount && n < 4096; n++ {
		if m := byID[p]; m != nil {
			if m.Network {
				return onRootfs, m
			}
			return onMount, m
		}
		mp, ok := table[p]
		if !ok {
			break
		}
		p = mp.Parent
	}
	return onSystem, nil
}

func mountID(f *os.File) (uint64, bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, false, fmt.Errorf("statx: %w", err)
	}
	root := stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	return stx.Mnt_id, root, nil
}

// index finds the mount IDs of the root and of the container's mounts: each
// destination resolved in the view, where it must be a mount's root. Of two
// mounts found at one place the read-only one counts.
func (v *fsView) index() error {
	if v.byID != nil {
		return nil
	}
	id, _, err := mountID(v.root)
	if err != nil {
		return fmt.Errorf("mount of the root: %w", err)
	}
	v.rootMount = id
	v.byID = map[uint64]*viewMount{}
	for i := range v.mounts {
		m := &v.mounts[i]
		f, err := v.lookup(m.Dest, true)
		if err != nil {
			continue // gone (moved away by the container): nothing there counts as it
		}
		id, isRoot, err := mountID(f)
		f.Close()
		if err != nil || !isRoot || id == v.rootMount {
			continue
		}
		if prev := v.byID[id]; prev == nil || (prev.RW && !m.RW) {
			v.byID[id] = m
		}
	}
	return nil
}

// mountOf returns where f (a descriptor from the view) lies, and the mount
// point and type of its mount.
func (v *fsView) mountOf(f *os.File) (place, *viewMount, viewMountPoint, error) {
	if err := v.index(); err != nil {
		return 0, nil, viewMountPoint{}, err
	}
	id, _, err := mountID(f)
	if err != nil {
		return 0, nil, viewMountPoint{}, err
	}
	if id == v.rootMount {
		// The root's own mount, whatever mountinfo says of it (a root that
		// is not itself a mount point has no line there).
		return onRootfs, nil, viewMountPoint{Point: "/"}, nil
	}
	mp, ok := v.table[id]
	if !ok && v.reread != nil {
		t, err := v.reread()
		if err != nil {
			return 0, nil, viewMountPoint{}, err
		}
		v.table = t
		mp, ok = t[id]
	}
	if !ok {
		mp = viewMountPoint{Point: "?", FSType: "unknown"}
	}
	pl, m := classify(id, v.rootMount, v.table, v.byID)
	return pl, m, mp, nil
}

// reachable refuses p when it lies on one of the runtime's mounts.
func (v *fsView) reachable(f *os.File, p string) error {
	pl, _, mp, err := v.mountOf(f)
	if err != nil {
		return fmt.Errorf("mount of %s: %w", p, err)
	}
	if pl == onSystem {
		return errdefs.InvalidArgument(fmt.Errorf("%s is on the container's %s mount at %s, which copies do not reach", p, mp.FSType, mp.Point))
	}
	return nil
}

const viewResolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// openInRoot resolves rel (relative, clean; "." for the root) in the view,
// following every symlink inside it, to an O_PATH descriptor.
func (v *fsView) openInRoot(rel string) (*os.File, error) { return openInRoot(v.root, rel) }

func openInRoot(root *os.File, rel string) (*os.File, error) {
	for {
		fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: viewResolve,
		})
		if err == nil {
			return os.NewFile(uintptr(fd), "/"+rel), nil
		}
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ENOSYS) {
			return pathrs.OpenatInRoot(root, rel)
		}
		return nil, err
	}
}

// lookup resolves the container path p in the view to an O_PATH descriptor;
// the last component is followed only when follow (a symlink is otherwise
// the link itself).
func (v *fsView) lookup(p string, follow bool) (*os.File, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return v.openInRoot(".")
	}
	if follow {
		return v.openInRoot(clean[1:])
	}
	dirRel := strings.TrimPrefix(path.Dir(clean), "/")
	if dirRel == "" {
		dirRel = "."
	}
	dir, err := v.openInRoot(dirRel)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), path.Base(clean), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), clean), nil
}

// realPath follows p's symlinks in the view as the container would and
// returns the container path they lead to; a missing component ends the
// walk with the rest of p appended (as Docker's stat reports a link).
func (v *fsView) realPath(p string) string {
	rest := splitPath(p)
	cur := "/"
	for links := 0; len(rest) > 0; {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		f, err := v.lookup(next, false)
		if err != nil {
			return path.Join(append([]string{next}, rest...)...)
		}
		fi, err := f.Stat()
		var target string
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, err = readlinkFd(f)
		}
		f.Close()
		if err != nil || target == "" {
			cur = next
			continue
		}
		if links++; links > 40 {
			return path.Join(append([]string{next}, rest...)...)
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		rest = append(splitPath(target), rest...)
	}
	return cur
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func readlinkFd(f *os.File) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// followLast: a path ending in "/" or "/." names what a final symlink
// points to, as in Docker.
func followLast(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
}

// pathNotFound is Docker's answer for a path missing in a container; the
// exported entry points name the container as the client did.
type pathNotFound struct{ path, ctr string }

func (e *pathNotFound) Error() string {
	msg := "Could not find the file " + e.path + " in container"
	if e.ctr != "" {
		msg += " " + e.ctr
	}
	return msg
}

func notFound(p string) error {
	return errdefs.NotFound(&pathNotFound{path: p})
}

// nameContainer puts ref into a pathNotFound within err.
func nameContainer(err error, ref string) error {
	var nf *pathNotFound
	if errors.As(err, &nf) {
		nf.ctr = ref
	}
	return err
}

// stat is the PathStat of p in the view.
func (v *fsView) stat(p string) (container.PathStat, error) {
	f, err := v.lookup(p, followLast(p))
	if errors.Is(err, unix.ENOENT) {
		return container.PathStat{}, notFound(p)
	}
	if err != nil {
		return container.PathStat{}, fmt.Errorf("stat %s: %w", p, err)
	}
	defer f.Close()
	if err := v.reachable(f, p); err != nil {
		return container.PathStat{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return container.PathStat{}, fmt.Errorf("stat %s: %w", p, err)
	}
	if followLast(p) && !fi.IsDir() {
		// "f/" names a directory, as lstat says for Docker: the client
		// then refuses to copy into it ("no such directory").
		return container.PathStat{}, errdefs.InvalidArgument(fmt.Errorf("stat %s: %w", p, unix.ENOTDIR))
	}
	clean := path.Clean("/" + p)
	st := container.PathStat{Name: path.Base(clean), Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&os.ModeSymlink != 0 {
		st.LinkTarget = v.realPath(clean)
	}
	return st, nil
}

// ContainerStatPath stats a path in the container's filesystem.
func (e *Engine) ContainerStatPath(ctx context.Context, ref, p string) (container.PathStat, error) {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return container.PathStat{}, err
	}
	var st container.PathStat
	err = cs.withView(ctx, c, func(v *fsView) error {
		st, err = v.stat(p)
		return err
	})
	return st, nameContainer(err, ref)
}

// ContainerArchive writes a tar of path in the container to w (its base
// name as the tar's top entry) after calling stat with the path's stat.
func (e *Engine) ContainerArchive(ctx context.Context, ref, p string, stat func(container.PathStat), w io.Writer) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	err = cs.withView(ctx, c, func(v *fsView) error {
		return nameContainer(v.archive(ctx, p, stat, w), ref)
	})
	if err == nil {
		e.emit("container", "archive-path", c.rec.ID, c.attributes())
	}
	return err
}

func (v *fsView) archive(ctx context.Context, p string, stat func(container.PathStat), w io.Writer) error {
	st, err := v.stat(p)
	if err != nil {
		return err
	}
	f, err := v.lookup(p, followLast(p))
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	stat(st)
	name := st.Name
	if strings.HasSuffix(p, "/.") {
		name = "."
	}
	tw := tar.NewWriter(w)
	if err := v.tarTree(ctx, tw, f, name); err != nil {
		return err
	}
	return tw.Close()
}

// tarTree writes f (an O_PATH descriptor from the view, symlinks not
// followed) and what is below it into tw under name, descending into the
// container's mounts but not into the runtime's (see above).
func (v *fsView) tarTree(ctx context.Context, tw *tar.Writer, f *os.File, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(name) > unix.PathMax {
		// A tree nested deeper than any path can name, made by the
		// container: every level holds its name and a descriptor, so the
		// walk's memory would grow with the square of the depth.
		return errdefs.InvalidArgument(fmt.Errorf("path %.64s... in the container is longer than %d bytes", name, unix.PathMax))
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	link := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		if link, err = readlinkFd(f); err != nil {
			return fmt.Errorf("read link %s: %w", name, err)
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil // sockets and the like are skipped
	}
	hdr.Name = name
	if name == "." {
		hdr.Name = "./"
	}
	if fi.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	switch {
	case fi.Mode().IsRegular():
		// Reopened for reading through the descriptor: the very file stat
		// saw, whatever happened to its name since.
		rf, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		defer rf.Close()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, rf, hdr.Size); err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
		return nil
	case !fi.IsDir():
		return tw.WriteHeader(hdr)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	pl, _, _, err := v.mountOf(f)
	if err != nil {
		return fmt.Errorf("mount of %s: %w", name, err)
	}
	if pl == onSystem {
		return nil // a runtime mount point: shown, not entered
	}
	dfd, err := unix.Openat(int(f.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", name, err)
	}
	d := os.NewFile(uintptr(dfd), name)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read directory %s: %w", name, err)
	}
	sort.Strings(names)
	for _, n := range names {
		cfd, err := unix.Openat(int(f.Fd()), n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", path.Join(name, n), err)
		}
		child := os.NewFile(uintptr(cfd), n)
		err = v.tarTree(ctx, tw, child, path.Join(name, n))
		child.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// ExtractOpt changes how ContainerExtract extracts (the query parameters of
// PUT /containers/{id}/archive).
type ExtractOpt func(*extractOptions)

type extractOptions struct {
	noOverwriteDirNonDir bool
	copyUIDGID           bool
}

// WithNoOverwriteDirNonDir refuses an archive that would replace a directory
// with a non-directory or the reverse (noOverwriteDirNonDir=true, which the
// docker CLI always sends).
func WithNoOverwriteDirNonDir() ExtractOpt {
	return func(o *extractOptions) { o.noOverwriteDirNonDir = true }
}

// WithCopyUIDGID gives every extracted entry the container's user and group
// (copyUIDGID=true, `cp -a`), as Docker does for a container with a user.
func WithCopyUIDGID() ExtractOpt { return func(o *extractOptions) { o.copyUIDGID = true } }

// ContainerExtract extracts the tar r into the directory p inside the
// container (resolved in the container's filesystem, its mounts included).
func (e *Engine) ContainerExtract(ctx context.Context, ref, p string, r io.Reader, opts ...ExtractOpt) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	var o extractOptions
	for _, opt := range opts {
		opt(&o)
	}
	c.mu.Lock()
	user := c.rec.Config.User
	c.mu.Unlock()
	err = cs.withView(ctx, c, func(v *fsView) error {
		if !o.copyUIDGID {
			user = ""
		}
		return v.extract(ctx, p, r, o.noOverwriteDirNonDir, user)
	})
	if err == nil {
		e.emit("container", "extract-to-dir", c.rec.ID, c.attributes())
	}
	return err
}

func (v *fsView) extract(ctx context.Context, p string, r io.Reader, noOverwriteDirNonDir bool, user string) error {
	dir, err := v.lookup(p, true)
	if errors.Is(err, unix.ENOENT) {
		return notFound(p)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return errdefs.InvalidArgument(fmt.Errorf("extraction point is not a directory: %s", p))
	}
	if err != nil {
		return fmt.Errorf("resolve %s: %w", p, err)
	}
	defer dir.Close()
	fi, err := dir.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if !fi.IsDir() {
		return errdefs.InvalidArgument(fmt.Errorf("extraction point is not a directory: %s", p))
	}
	pl, m, mp, err := v.mountOf(dir)
	if err != nil {
		return fmt.Errorf("mount of %s: %w", p, err)
	}
	switch {
	case pl == onSystem:
		return errdefs.InvalidArgument(fmt.Errorf("%s is on the container's %s mount at %s, which copies do not reach", p, mp.FSType, mp.Point))
	case pl == onMount && m.Tmpfs && !v.running:
		return errdefs.InvalidArgument(fmt.Errorf("cannot copy into %s: it is on the tmpfs mount at %s, which has content only while the container runs", p, m.Dest))
	case pl == onMount && !m.RW:
		return errdefs.InvalidArgument(fmt.Errorf("mounted volume is marked read-only"))
	case pl == onRootfs && v.readonlyRootfs:
		return errdefs.InvalidArgument(fmt.Errorf("container rootfs is marked read-only"))
	}
	owner := -1
	var group int
	if user != "" {
		u, err := specgen.LookupUser("/proc/self/fd/"+strconv.Itoa(int(v.root.Fd())), user, nil)
		if err != nil {
			return fmt.Errorf("user %s of the container: %w", user, err)
		}
		owner, group = int(u.UID), int(u.GID)
	}
	var filtered chan error
	var pr *io.PipeReader
	if noOverwriteDirNonDir || owner >= 0 {
		var pw *io.PipeWriter
		pr, pw = io.Pipe()
		filtered = make(chan error, 1)
		src := r
		go func() {
			err := filterCopyTar(src, pw, dir, noOverwriteDirNonDir, owner, group)
			pw.CloseWithError(err)
			filtered <- err
		}()
		r = pr
	}
	// The extraction is confined to the directory's descriptor: archive.Apply
	// resolves every entry in it with RESOLVE_IN_ROOT.
	// Not a layer: ".wh." names are files like any other, as in Docker.
	_, _, err = archive.Apply(ctx, "/proc/self/fd/"+strconv.Itoa(int(dir.Fd())), r, archive.WithPlainNames())
	if filtered != nil {
		pr.Close() // a filter still writing stops
		var conflict *copyConflictError
		if ferr := <-filtered; errors.As(ferr, &conflict) {
			return errdefs.InvalidArgument(conflict)
		}
	}
	if err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("extract archive into %s: %w", p, err))
	}
	return nil
}

// copyConflictError is Docker's refusal to replace a directory with a
// non-directory or the reverse.
type copyConflictError struct{ existing, entry string }

func (e *copyConflictError) Error() string {
	if strings.HasSuffix(e.entry, "/") {
		return fmt.Sprintf("cannot overwrite non-directory %q with directory %q", e.existing, strings.TrimSuffix(e.entry, "/"))
	}
	return fmt.Sprintf("cannot overwrite directory %q with non-directory %q", e.existing, e.entry)
}

// filterCopyTar copies the (possibly compressed) tar r to w uncompressed,
// refusing an entry whose kind (directory or not) differs from what is at
// its place under dir when noOverwrite, and giving every entry owner:group
// when owner >= 0.
func filterCopyTar(r io.Reader, w io.Writer, dir *os.File, noOverwrite bool, owner, group int) error {
	br := bufio.NewReader(r)
	comp, err := archive.DetectCompression(br)
	if err != nil {
		return err
	}
	dr, err := archive.Decompress(br, comp)
	if err != nil {
		return err
	}
	defer dr.Close()
	tr := tar.NewReader(dr)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if noOverwrite {
			if err := checkOverwrite(dir, hdr); err != nil {
				return err
			}
		}
		if owner >= 0 {
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = owner, group, "", ""
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy archive entry %s: %w", hdr.Name, err)
		}
	}
}

// checkOverwrite returns a copyConflictError when hdr would replace a
// directory under dir with a non-directory or the reverse. What is there
// is looked up inside dir, without following a final symlink.
func checkOverwrite(dir *os.File, hdr *tar.Header) error {
	rel := path.Clean("/" + hdr.Name)
	if rel == "/" || hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel = rel[1:]
	parentRel := path.Dir(rel)
	parent, err := openInRoot(dir, parentRel)
	if err != nil {
		return nil // nothing there yet
	}
	defer parent.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(parent.Fd()), path.Base(rel), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil
	}
	existingDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	entryDir := hdr.Typeflag == tar.TypeDir
	if existingDir == entryDir {
		return nil
	}
	name := hdr.Name
	if entryDir && !strings.HasSuffix(name, "/") {
		name += "/"
	}
	return &copyConflictError{existing: "/" + rel, entry: name}
}

// ContainerExport writes a tar of the container's whole root filesystem.
func (e *Engine) ContainerExport(ctx context.Context, ref string, w io.Writer) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	err = cs.withRootfs(ctx, c, func(root string) error {
		return archive.Diff(ctx, w, root, nil)
	})
	if err == nil {
		e.emit("container", "export", c.rec.ID, c.attributes())
	}
	return err
}

// onlyMountPointsAt says whether directory name under parent holds only
// the empty mount points of the engine's hostname, hosts and resolv.conf.
// It is read through descriptors, never by path (see walkNoFollow).
func onlyMountPointsAt(parent int, name string) bool {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false
	}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || !engineStub(name+"/"+n, &st) {
			return false
		}
	}
	return true
}

// walkNoFollow walks the tree under root through directory descriptors:
// each directory is opened relative to its parent's descriptor with
// O_NOFOLLOW, so a directory a running container swaps for a symlink
// while the walk runs fails to open (and is skipped) instead of leading
// the walk out of the container's layer onto the host, as a walk by path
// would. fn gets each entry's path relative to root (slash-separated),
// its lstat and its parent's descriptor, in lexical order; names longer
// than PATH_MAX are refused, so a container's unbounded nesting cannot
// grow the walk without bound.
func walkNoFollow(root string, fn func(rel string, st *unix.Stat_t, parent int) error) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	return walkDirFD(fd, "", fn)
}

// walkDirFD walks the directory open at dirfd (named rel), closing it.
func walkDirFD(dirfd int, rel string, fn func(rel string, st *unix.Stat_t, parent int) error) error {
	f := os.NewFile(uintptr(dirfd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory /%s: %w", rel, err)
	}
	sort.Strings(names)
	for _, name := range names {
		child := path.Join(rel, name)
		if len(child) >= unix.PathMax {
			return fmt.Errorf("path /%s... is longer than PATH_MAX", child[:64])
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed while the walk ran
			}
			return fmt.Errorf("stat /%s: %w", child, err)
		}
		if err := fn(child, &st, dirfd); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				continue // replaced while the walk ran: not followed
			}
			return fmt.Errorf("open /%s: %w", child, err)
		}
		if err := walkDirFD(cfd, child, fn); err != nil {
			return err
		}
	}
	return nil
}

// engineStub says whether rel in a container's writable layer is one of
// the empty files the engine made there: /.dockerenv and the mount points
// of hostname, hosts and resolv.conf (writes to those go to the bound
// files, never to the layer). Docker keeps them in an init layer, so its
// commits leave them out; Berth's do too.
func engineStub(rel string, st *unix.Stat_t) bool {
	switch rel {
	case ".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf":
		return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0
	}
	return false
}

// ContainerChanges lists what the container changed over its image.
func (e *Engine) ContainerChanges(ctx context.Context, ref string) ([]container.FilesystemChange, error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	paths, err := e.snaps.Paths(ctx, c.snapKey())
	if err != nil {
		return nil, fmt.Errorf("layers of container %s: %w", c.rec.ID, err)
	}
	// The lower layers are the image's, which no container can write;
	// the upper one is the container's, walked by descriptor.
	upper, lowers := paths[0], paths[1:]
	inLower := func(rel string) bool {
		for _, l := range lowers {
			if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
				return true
			}
		}
		return false
	}
	out := []container.FilesystemChange{}
	err = walkNoFollow(upper, func(rel string, st *unix.Stat_t, parent int) error {
		name := "/" + rel
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if engineStub(rel, st) {
			return nil // Docker keeps these in its init layer
		}
		if name == "/etc" && isDir && inLower(rel) && onlyMountPointsAt(parent, "etc") {
			// Copied up only for the mount points above: Docker keeps
			// those in an init layer below the container's, so its diff
			// shows no change of /etc for them.
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			out = append(out, container.FilesystemChange{Kind: container.ChangeDelete, Path: name})
			return nil
		}
		kind := container.ChangeAdd
		if inLower(rel) {
			kind = container.ChangeModify
		}
		out = append(out, container.FilesystemChange{Kind: kind, Path: name})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", c.rec.ID, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// CommitOptions are the parameters of POST /commit.
type CommitOptions struct {
	Ref     string // repository[:tag], optional
	Comment string
	Author  string
	Changes []string // Dockerfile instructions
	Pause   bool
	// Config, when set, replaces the container's config in the image
	// (Docker's commit body), before Changes apply.
	Config *container.Config
}

// ContainerCommit makes an image of the container's image plus its
// writable layer, with the container's config, and returns its ID.
func (e *Engine) ContainerCommit(ctx context.Context, ref string, opts CommitOptions) (digest.Digest, error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return "", err
	}
	var name image.Reference
	if opts.Ref != "" {
		if name, err = image.ParseReference(opts.Ref); err != nil {
			return "", errdefs.InvalidArgument(err)
		}
		if name.Digest != "" {
			return "", errdefs.InvalidArgument(fmt.Errorf("cannot commit to a digest reference: %s", opts.Ref))
		}
	}
	c.mu.Lock()
	imgID, cfg, id := c.rec.Image, *c.rec.Config, c.rec.ID
	running := c.rec.State.Status == StateRunning
	cl := c.shim
	c.mu.Unlock()
	if opts.Pause && running && cl != nil {
		if err := cl.Pause(ctx); err == nil {
			defer func() { _ = cl.Resume(context.WithoutCancel(ctx)) }()
		}
	}
	defer e.hold()()
	irec, err := e.meta.GetImage(imgID)
	if err != nil {
		return "", fmt.Errorf("image of container %s: %w", id, err)
	}
	li, err := e.load(ctx, irec)
	if err != nil {
		return "", err
	}

	// The layer: the writable snapshot's diff, stored uncompressed.
	tmp := filepath.Join(e.cfg.DataRoot, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(tmp, "commit-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h), fn: func(int64) {}}
	if err := e.snaps.Diff(ctx, cw, c.snapKey(), archive.WithSkip(engineStub)); err != nil {
		return "", fmt.Errorf("diff container %s: %w", id, err)
	}
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: cw.n}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if err := e.content.WriteBlob(ctx, layer, f); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", fmt.Errorf("store layer %s: %w", diffID, err)
	}

	now := time.Now().UTC()
	newCfg := li.config
	newCfg.Created = &now
	newCfg.Author = opts.Author
	newCfg.Config = imageConfigFrom(cfg, li.config.Config)
	if opts.Config != nil {
		newCfg.Config = imageConfigFrom(*opts.Config, newCfg.Config)
	}
	for _, ch := range opts.Changes {
		if err := applyChange(&newCfg.Config, ch); err != nil {
			return "", err
		}
	}
	newCfg.RootFS.DiffIDs = append(append([]digest.Digest{}, li.config.RootFS.DiffIDs...), diffID)
	newCfg.History = append(append([]ocispec.History{}, li.config.History...), ocispec.History{
		Created: &now, Author: opts.Author, Comment: opts.Comment,
		CreatedBy: strings.TrimSpace(strings.Join(append([]string{c.rec.Path}, c.rec.Args...), " ")),
	})
	if !name.IsZero() && name.Tag == "" {
		name = name.WithTag("latest")
	}
	newID, err := e.storeImage(ctx, newCfg, append(append([]ocispec.Descriptor{}, li.manifest.Layers...), layer), name)
	if err != nil {
		return "", fmt.Errorf("commit container %s: %w", id, err)
	}
	e.emit("container", "commit", id, c.attributes("comment", opts.Comment, "imageID", newID.String()))
	return newID, nil
}

// imageConfigFrom is the image config a commit records for a container's
// config: what runs and how, without the per-container settings.
func imageConfigFrom(cfg container.Config, base dockerspec.DockerOCIImageConfig) dockerspec.DockerOCIImageConfig {
	out := base
	out.User = cfg.User
	out.Env = cfg.Env
	out.Entrypoint = cfg.Entrypoint
	out.Cmd = cfg.Cmd
	out.WorkingDir = cfg.WorkingDir
	out.Labels = cfg.Labels
	out.StopSignal = cfg.StopSignal
	if cfg.Healthcheck != nil {
		out.Healthcheck = cfg.Healthcheck
	}
	if len(cfg.Volumes) > 0 {
		out.Volumes = cfg.Volumes
	}
	if len(cfg.ExposedPorts) > 0 {
		out.ExposedPorts = map[string]struct{}{}
		for p := range cfg.ExposedPorts {
			out.ExposedPorts[p.String()] = struct{}{}
		}
	}
	return out
}
