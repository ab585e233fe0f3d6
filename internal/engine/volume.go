package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/volume"
	"golang.org/x/sys/unix"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/specgen"
)

// volMeta is a volume's record in <data-root>/volumes/<name>/opts.json.
type volMeta struct {
	Name      string
	CreatedAt time.Time
	Labels    map[string]string
	Options   map[string]string
	Anonymous bool
	// Populated: the volume received its first container's image content
	// (or was used once), so later mounts never copy into it again.
	Populated bool
}

// ctrMount is a mount of a container as recorded for inspect and for the
// volumes it uses.
type ctrMount struct {
	Type        mount.Type
	Name        string `json:",omitempty"` // volume name
	Source      string
	Destination string
	RW          bool
	Mode        string
	Propagation mount.Propagation `json:",omitempty"`
	Anonymous   bool              `json:",omitempty"`
	NoCopy      bool              `json:",omitempty"`
	// From is the container a --volumes-from mount was copied from.
	From string `json:",omitempty"`
}

var volumeLock sync.Mutex // serialises volume create/remove against use

var validVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (e *Engine) volumesRoot() string { return filepath.Join(e.cfg.DataRoot, "volumes") }

// privateVolumesRoot makes the volumes directory root's alone (0700), also
// when an earlier version left it open: a container's root can leave a
// setuid-root program in a volume, and a host user able to reach _data
// could run it (Docker's CVE-2021-41091). Only root ever needs to get in.
func privateVolumesRoot(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create volumes directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict volumes directory %s: %w", dir, err)
	}
	return nil
}

func (e *Engine) volumeDir(name string) string { return filepath.Join(e.volumesRoot(), name) }

func (e *Engine) readVolume(name string) (volMeta, error) {
	var m volMeta
	if !validVolumeName.MatchString(name) {
		return m, errdefs.NotFound(fmt.Errorf("get %s: no such volume", name))
	}
	data, err := os.ReadFile(filepath.Join(e.volumeDir(name), "opts.json"))
	if errors.Is(err, os.ErrNotExist) {
		return m, errdefs.NotFound(fmt.Errorf("get %s: no such volume", name))
	}
	if err != nil {
		return m, fmt.Errorf("read volume %s: %w", name, err)
	}
	if err := jsonUnmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode volume %s: %w", name, err)
	}
	return m, nil
}

func (e *Engine) volumeView(m volMeta) volume.Volume {
	// As Docker: a volume without labels or options shows them as null.
	labels, opts := m.Labels, m.Options
	if len(labels) == 0 {
		labels = nil
	}
	if len(opts) == 0 {
		opts = nil
	}
	return volume.Volume{
		Name: m.Name, Driver: "local", Scope: "local",
		CreatedAt:  m.CreatedAt.Format(time.RFC3339),
		Mountpoint: filepath.Join(e.volumeDir(m.Name), "_data"),
		Labels:     labels, Options: opts,
	}
}

// VolumeCreate creates a local volume (a random name when name is empty);
// creating an existing volume returns it, as Docker does.
func (e *Engine) VolumeCreate(ctx context.Context, name string, labels, opts map[string]string) (volume.Volume, error) {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	m, err := e.createVolume(name, labels, opts, false)
	if err != nil {
		return volume.Volume{}, err
	}
	return e.volumeView(m), nil
}

func (e *Engine) createVolume(name string, labels, opts map[string]string, anonymous bool) (volMeta, error) {
	if name == "" {
		name = newID()
		anonymous = true
	}
	if !validVolumeName.MatchString(name) {
		return volMeta{}, errdefs.InvalidArgument(fmt.Errorf("volume name %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed", name))
	}
	for k := range opts {
		return volMeta{}, errdefs.InvalidArgument(fmt.Errorf("invalid option %q for the local volume driver: mount options are not supported", k))
	}
	if m, err := e.readVolume(name); err == nil {
		return m, nil
	}
	dir := e.volumeDir(name)
	if err := privateVolumesRoot(e.volumesRoot()); err != nil {
		return volMeta{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "_data"), 0o755); err != nil {
		return volMeta{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	if anonymous {
		if labels == nil {
			labels = map[string]string{}
		}
		labels["com.docker.volume.anonymous"] = ""
	}
	m := volMeta{Name: name, CreatedAt: time.Now().UTC(), Labels: labels, Options: opts, Anonymous: anonymous}
	if err := writeJSONFile(filepath.Join(dir, "opts.json"), m); err != nil {
		os.RemoveAll(dir)
		return volMeta{}, err
	}
	e.emit("volume", "create", name, map[string]string{"driver": "local"})
	return m, nil
}

// VolumeInspect returns a volume.
func (e *Engine) VolumeInspect(ctx context.Context, name string) (volume.Volume, error) {
	m, err := e.readVolume(name)
	if err != nil {
		return volume.Volume{}, err
	}
	return e.volumeView(m), nil
}

// volumeUsers returns the IDs of the containers that use each volume. It
// takes no container's lock: it runs under volumeLock, which a start takes
// while holding its container's lock (taking them in the other order here
// deadlocked a start against a volume rm or prune). A container's ID and
// mounts are fixed when it is created, before it is listed.
func (e *Engine) volumeUsers() map[string][]string {
	out := map[string][]string{}
	cs, err := e.ctrs()
	if err != nil {
		return out
	}
	for _, c := range cs.list() {
		for _, m := range c.rec.Mounts {
			if m.Type == mount.TypeVolume {
				out[m.Name] = append(out[m.Name], c.rec.ID)
			}
		}
	}
	return out
}

// VolumeList lists volumes; filters: name, label, dangling.
func (e *Engine) VolumeList(ctx context.Context, filters map[string][]string) ([]volume.Volume, error) {
	for k := range filters {
		switch k {
		case "name", "label", "dangling", "driver":
		default:
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	ents, err := os.ReadDir(e.volumesRoot())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read volumes: %w", err)
	}
	users := e.volumeUsers()
	out := []volume.Volume{}
	for _, ent := range ents {
		m, err := e.readVolume(ent.Name())
		if err != nil {
			continue
		}
		if !anyOf(filters["name"], func(s string) bool { return strings.Contains(m.Name, s) }) {
			continue
		}
		if !anyOf(filters["driver"], func(s string) bool { return s == "local" }) {
			continue
		}
		if len(filters["label"]) > 0 && !matchLabels(m.Labels, filters["label"]) {
			continue
		}
		if !anyOf(filters["dangling"], func(s string) bool {
			d := s == "true" || s == "1"
			return d == (len(users[m.Name]) == 0)
		}) {
			continue
		}
		out = append(out, e.volumeView(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// VolumeRemove removes a volume no container uses (force: a missing
// volume is no error).
func (e *Engine) VolumeRemove(ctx context.Context, name string, force bool) error {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	if _, err := e.readVolume(name); err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if users := e.volumeUsers()[name]; len(users) > 0 {
		return errdefs.Conflict(fmt.Errorf("remove %s: volume is in use - [%s]", name, strings.Join(users, ", ")))
	}
	return e.deleteVolume(name)
}

func (e *Engine) deleteVolume(name string) error {
	dir := e.volumeDir(name)
	// Rename first so a crash never leaves half a volume under its name.
	tmp := filepath.Join(e.volumesRoot(), ".removing-"+name)
	if err := os.Rename(dir, tmp); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	e.emit("volume", "destroy", name, map[string]string{"driver": "local"})
	return nil
}

// VolumePrune removes unused volumes: anonymous ones, or with the filter
// all=true every unused one; label filters narrow the set.
func (e *Engine) VolumePrune(ctx context.Context, filters map[string][]string) (volume.PruneReport, error) {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	rep := volume.PruneReport{}
	all := anyOf(filters["all"], func(s string) bool { return s == "true" || s == "1" }) && len(filters["all"]) > 0
	ents, err := os.ReadDir(e.volumesRoot())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("read volumes: %w", err)
	}
	users := e.volumeUsers()
	for _, ent := range ents {
		m, err := e.readVolume(ent.Name())
		if err != nil || len(users[m.Name]) > 0 || (!all && !m.Anonymous) {
			continue
		}
		if len(filters["label"]) > 0 && !matchLabels(m.Labels, filters["label"]) {
			continue
		}
		size := dirSize(filepath.Join(e.volumeDir(m.Name), "_data"))
		if err := e.deleteVolume(m.Name); err != nil {
			return rep, err
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, m.Name)
		rep.SpaceReclaimed += uint64(size)
	}
	return rep, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// planMounts records a new container's mounts and creates the volumes it
// names, plus an anonymous volume for each image VOLUME no mount covers.
func (e *Engine) planMounts(hc *container.HostConfig, imageVolumes map[string]struct{}) ([]ctrMount, error) {
	mps, err := specgen.ParseMounts(hc)
	if err != nil {
		return nil, errdefs.InvalidArgument(err)
	}
	from, err := e.volumesFrom(hc.VolumesFrom)
	if err != nil {
		return nil, err
	}
	for _, m := range hc.Mounts {
		// --mount binds, unlike -v ones, need their source: Docker checks
		// it at create, so the error names the mount rather than failing
		// the start in the runtime.
		if m.Type != mount.TypeBind || (m.BindOptions != nil && m.BindOptions.CreateMountpoint) {
			continue
		}
		if _, err := os.Stat(m.Source); errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid mount config for type %q: bind source path does not exist: %s", m.Type, filepath.Clean(m.Source)))
		}
	}
	volumeLock.Lock()
	defer volumeLock.Unlock()
	var out []ctrMount
	ok := false
	defer func() {
		if !ok {
			e.dropAnonymousLocked(out)
		}
	}()
	covered := map[string]bool{}
	for _, mp := range mps {
		covered[filepath.Clean(mp.Destination)] = true
		cm := ctrMount{Type: mp.Type, Source: mp.Source, Destination: mp.Destination, RW: !mp.ReadOnly, Propagation: mp.Propagation, NoCopy: mp.NoCopy}
		if !mp.ReadOnly {
			cm.Mode = ""
		} else {
			cm.Mode = "ro"
		}
		if mp.Type == mount.TypeVolume {
			m, err := e.createVolume(mp.Source, nil, nil, false)
			if err != nil {
				return nil, err
			}
			cm.Name = m.Name
			cm.Anonymous = m.Anonymous
			cm.Source = filepath.Join(e.volumeDir(m.Name), "_data")
			if mp.Subpath != "" {
				return nil, errdefs.InvalidArgument(fmt.Errorf("volume subpath %q is not supported", mp.Subpath))
			}
		}
		out = append(out, cm)
	}
	// --volumes-from: the other containers' mounts, where the request's
	// own mounts leave room, as Docker does.
	for _, cm := range from {
		d := filepath.Clean(cm.Destination)
		if covered[d] {
			continue
		}
		if cm.Type == mount.TypeVolume {
			if _, err := e.readVolume(cm.Name); err != nil {
				return nil, fmt.Errorf("volume %s of container %s: %w", cm.Name, cm.From, err)
			}
		}
		covered[d] = true
		out = append(out, cm)
	}
	var dests []string
	for d := range imageVolumes {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		d = filepath.Clean(d)
		if covered[d] {
			continue
		}
		m, err := e.createVolume("", nil, nil, true)
		if err != nil {
			return nil, err
		}
		out = append(out, ctrMount{Type: mount.TypeVolume, Name: m.Name, Anonymous: true, Destination: d, RW: true, Source: filepath.Join(e.volumeDir(m.Name), "_data")})
	}
	ok = true
	return out, nil
}

// volumesFrom returns the mounts --volumes-from copies from each container
// named (container[:ro|rw]): its volumes and bind mounts, read-only where
// they were or where ro is asked. A later container's mount at the same
// destination replaces an earlier one's.
func (e *Engine) volumesFrom(refs []string) ([]ctrMount, error) {
	var out []ctrMount
	at := map[string]int{}
	for _, s := range refs {
		ref, rw, err := parseVolumesFrom(s)
		if err != nil {
			return nil, err
		}
		_, c, err := e.lookup(ref)
		if err != nil {
			return nil, fmt.Errorf("volumes-from %s: %w", ref, err)
		}
		c.mu.Lock()
		mounts := append([]ctrMount(nil), c.rec.Mounts...)
		id := c.rec.ID
		c.mu.Unlock()
		for _, m := range mounts {
			if m.Type != mount.TypeVolume && m.Type != mount.TypeBind {
				continue
			}
			m.RW = m.RW && rw
			m.Mode = ""
			if !m.RW {
				m.Mode = "ro"
			}
			// The volume belongs to the other container: removing this
			// one with -v never removes it.
			m.Anonymous = false
			m.From = id
			d := filepath.Clean(m.Destination)
			if i, ok := at[d]; ok {
				out[i] = m
				continue
			}
			at[d] = len(out)
			out = append(out, m)
		}
	}
	return out, nil
}

// dropAnonymous removes the anonymous volumes planMounts made for a
// container whose creation failed, as Docker does; named volumes stay.
func (e *Engine) dropAnonymous(mounts []ctrMount) {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	e.dropAnonymousLocked(mounts)
}

// dropAnonymousLocked is dropAnonymous with volumeLock held.
func (e *Engine) dropAnonymousLocked(mounts []ctrMount) {
	users := e.volumeUsers()
	for _, m := range mounts {
		if m.Type != mount.TypeVolume || !m.Anonymous || len(users[m.Name]) > 0 {
			continue
		}
		if err := e.deleteVolume(m.Name); err != nil {
			e.log.Warn("remove anonymous volume of a failed create", "volume", m.Name, "err", err)
		}
	}
}

// containerVolumes returns the volume mounts of a container about to start,
// copying the image's content at each destination into a volume used for
// the first time. The rootfs is mounted.
func (e *Engine) containerVolumes(ctx context.Context, c *ctr) ([]specgen.Mount, error) {
	var out []specgen.Mount
	volumeLock.Lock()
	defer volumeLock.Unlock()
	for _, m := range c.rec.Mounts {
		if m.Type == mount.TypeBind && m.From != "" {
			// A bind mount copied by --volumes-from: specgen knows only
			// the request's own binds.
			opts := []string{"rbind", "ro"}
			if m.RW {
				opts[1] = "rw"
			}
			if m.Propagation != "" {
				opts = append(opts, string(m.Propagation))
			}
			out = append(out, specgen.Mount{Source: m.Source, Destination: m.Destination, Type: "bind", Options: opts})
			continue
		}
		if m.Type != mount.TypeVolume {
			continue
		}
		meta, err := e.readVolume(m.Name)
		if errdefs.IsNotFound(err) {
			// Removed since the container was created: Docker recreates it.
			if meta, err = e.createVolume(m.Name, nil, nil, m.Anonymous); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		data := filepath.Join(e.volumeDir(m.Name), "_data")
		if !meta.Populated {
			if !m.NoCopy {
				if err := copyImageContent(c.rootfs(), m.Destination, data); err != nil {
					return nil, fmt.Errorf("copy image content at %s into volume %s: %w", m.Destination, m.Name, err)
				}
			}
			meta.Populated = true
			if err := writeJSONFile(filepath.Join(e.volumeDir(m.Name), "opts.json"), meta); err != nil {
				return nil, err
			}
		}
		opts := []string{"rbind"}
		if m.RW {
			opts = append(opts, "rw")
		} else {
			opts = append(opts, "ro")
		}
		out = append(out, specgen.Mount{Source: data, Destination: m.Destination, Type: "bind", Options: opts})
	}
	return out, nil
}

// copyImageContent copies the tree at dest inside rootfs into an empty
// volume directory, as Docker populates a new volume. Symlinks are copied
// as links, never followed; dest itself is resolved inside rootfs.
func copyImageContent(rootfs, dest, data string) error {
	ents, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return nil
	}
	src, err := securejoin.SecureJoin(rootfs, dest)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	if err := copyOwnership(fi, data); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(data, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			return unix.Lchown(target, int(st.Uid), int(st.Gid))
		case info.Mode().IsRegular():
			if err := copyRegular(p, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil // devices, fifos and sockets are not copied
		}
		return copyOwnership(info, target)
	})
}

func copyOwnership(fi os.FileInfo, target string) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(target, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

func copyRegular(src, dst string, perm os.FileMode) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeAnonymousVolumes removes the anonymous volumes of a removed
// container that no other container uses.
func (e *Engine) removeAnonymousVolumes(ctx context.Context, c *ctr) {
	volumeLock.Lock()
	defer volumeLock.Unlock()
	users := e.volumeUsers()
	for _, m := range c.rec.Mounts {
		if m.Type != mount.TypeVolume || !m.Anonymous || len(users[m.Name]) > 0 {
			continue
		}
		if err := e.deleteVolume(m.Name); err != nil {
			e.log.Warn("remove anonymous volume", "volume", m.Name, "err", err)
		}
	}
}

// mountPoints renders the container's mounts for inspect and ps. The
// caller holds c.mu.
func (c *ctr) mountPoints() []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range c.rec.Mounts {
		mp := container.MountPoint{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination, Mode: m.Mode, RW: m.RW, Propagation: m.Propagation}
		if m.Type == mount.TypeVolume {
			mp.Driver = "local"
		}
		out = append(out, mp)
	}
	return out
}
