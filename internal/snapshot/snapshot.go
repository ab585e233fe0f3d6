// Package snapshot owns unpacked layers and the writable snapshots built on
// them. Each layer is extracted once, into a directory keyed by its chain ID
// (OCI image spec: chainID(L0) = diffID(L0), chainID(Ln) =
// sha256(chainID(Ln-1) + " " + diffID(Ln))), so images sharing a base share
// its files. Containers and build steps get an overlay mount over the chain
// (the layers as lowerdirs, newest first, plus their own upperdir and
// workdir), or a bind mount where there is nothing to stack.
//
// On disk, under root:
//
//	snapshots/<n>/info.json   key, parent, kind, creation time
//	snapshots/<n>/fs          the layer's files, or a container's upperdir
//	snapshots/<n>/work        overlay's workdir (writable snapshots only)
//	tmp/                      extractions and removals in progress
//
// A snapshot appears by renaming a complete directory from tmp/ into
// snapshots/ and disappears by renaming it back before deleting it, so a
// crash leaves at most debris in tmp/, which New deletes. Short numeric
// directory names keep overlay's lowerdir option within a page for deep
// images. berthd is the single user of root; locking is in-process.
package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Kind tells what a snapshot is.
type Kind string

// The kinds of snapshots.
const (
	// KindLayer is an unpacked, immutable layer keyed by its chain ID.
	KindLayer Kind = "layer"
	// KindActive is a writable snapshot (upperdir and workdir) over a layer.
	KindActive Kind = "active"
	// KindView is a read-only view of a layer.
	KindView Kind = "view"
)

// Info describes a snapshot.
type Info struct {
	Key     string    `json:"key"`
	Parent  string    `json:"parent,omitempty"`
	Kind    Kind      `json:"kind"`
	Created time.Time `json:"created"`

	id string // directory name under snapshots/
}

// Snapshotter manages snapshots under one root directory.
type Snapshotter struct {
	root string

	mu         sync.Mutex
	byKey      map[string]*Info
	nextID     int
	inflight   map[digest.Digest]*unpackCall
	overlayOff []string // overlay features to turn off at every mount
}

type unpackCall struct {
	done chan struct{}
	err  error
}

// New opens the snapshotter at root, creating it if needed, and deletes
// whatever an interrupted extraction or removal left in root/tmp.
func New(root string) (*Snapshotter, error) {
	s := &Snapshotter{root: root, byKey: map[string]*Info{}, nextID: 1, inflight: map[digest.Digest]*unpackCall{}}
	for _, d := range []string{root, s.snapshotsDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create snapshotter %s: %w", d, err)
		}
	}
	debris, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("open snapshotter %s: %w", root, err)
	}
	for _, d := range debris {
		// Debris that cannot go now (something still holds it) is only
		// garbage: the next start tries again.
		_ = os.RemoveAll(filepath.Join(s.tmpDir(), d.Name()))
	}
	entries, err := os.ReadDir(s.snapshotsDir())
	if err != nil {
		return nil, fmt.Errorf("open snapshotter %s: %w", root, err)
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.snapshotsDir(), e.Name(), "info.json"))
		if err != nil {
			return nil, fmt.Errorf("load snapshot %s: %w", e.Name(), err)
		}
		var info Info
		if err := json.Unmarshal(b, &info); err != nil {
			return nil, fmt.Errorf("load snapshot %s: %w", e.Name(), err)
		}
		info.id = e.Name()
		s.byKey[info.Key] = &info
		s.nextID = max(s.nextID, n+1)
	}
	// Features that would put overlay's own metadata into an upper
	// directory, which Diff could not turn into a layer, are turned off
	// where the kernel enables them by default.
	for _, feature := range []string{"index", "redirect_dir", "metacopy"} {
		if b, err := os.ReadFile("/sys/module/overlay/parameters/" + feature); err == nil && strings.TrimSpace(string(b)) == "Y" {
			s.overlayOff = append(s.overlayOff, feature+"=off")
		}
	}
	return s, nil
}

func (s *Snapshotter) snapshotsDir() string { return filepath.Join(s.root, "snapshots") }
func (s *Snapshotter) tmpDir() string       { return filepath.Join(s.root, "tmp") }
func (s *Snapshotter) dir(info *Info) string {
	return filepath.Join(s.snapshotsDir(), info.id)
}
func (s *Snapshotter) fsDir(info *Info) string { return filepath.Join(s.dir(info), "fs") }

// ChainID computes the OCI chain ID of a stack of layers given their
// diffIDs, bottom first. It is "" for no layers.
func ChainID(diffIDs []digest.Digest) digest.Digest {
	if len(diffIDs) == 0 {
		return ""
	}
	c := diffIDs[0]
	for _, d := range diffIDs[1:] {
		c = digest.FromString(c.String() + " " + d.String())
	}
	return c
}

// ChainIDs returns the chain ID of every prefix of diffIDs: the keys of the
// layer snapshots of an image, bottom first.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i := range diffIDs {
		if i == 0 {
			out[i] = diffIDs[0]
		} else {
			out[i] = digest.FromString(out[i-1].String() + " " + diffIDs[i].String())
		}
	}
	return out
}

// Exists reports whether the layer snapshot chainID exists.
func (s *Snapshotter) Exists(chainID digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.byKey[chainID.String()]
	return ok && info.Kind == KindLayer
}

// Stat returns a snapshot's Info; errdefs.ErrNotFound if there is none.
func (s *Snapshotter) Stat(ctx context.Context, key string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.byKey[key]
	if !ok {
		return Info{}, errdefs.NotFound(fmt.Errorf("snapshot %s", key))
	}
	return *info, nil
}

// Unpack makes sure the layer snapshot chainID exists, on top of the layer
// snapshot parent ("" for a base layer), which must exist. If it is absent,
// extract is called with an empty directory to fill (archive.Apply); the
// directory becomes the snapshot by one rename once extract has succeeded
// and its data is synced. Concurrent calls for one chain ID extract once:
// the others wait for that extraction and share its outcome (a caller whose
// own ctx is still live retries when the extraction was cancelled).
func (s *Snapshotter) Unpack(ctx context.Context, chainID, parent digest.Digest, extract func(dir string) error) error {
	if err := chainID.Validate(); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("unpack layer %q: %w", chainID, err))
	}
	for {
		s.mu.Lock()
		if info, ok := s.byKey[chainID.String()]; ok {
			s.mu.Unlock()
			if info.Kind != KindLayer {
				return errdefs.Conflict(fmt.Errorf("unpack layer %s: key in use by a %s snapshot", chainID, info.Kind))
			}
			return nil
		}
		if parent != "" {
			if p, ok := s.byKey[parent.String()]; !ok || p.Kind != KindLayer {
				s.mu.Unlock()
				return errdefs.FailedPrecondition(fmt.Errorf("unpack layer %s: parent layer %s is not unpacked", chainID, parent))
			}
		}
		if c, ok := s.inflight[chainID]; ok {
			s.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return fmt.Errorf("unpack layer %s: %w", chainID, ctx.Err())
			}
			if c.err != nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue
			}
			return c.err
		}
		c := &unpackCall{done: make(chan struct{})}
		s.inflight[chainID] = c
		s.mu.Unlock()

		c.err = s.unpack(ctx, chainID, parent, extract)
		s.mu.Lock()
		delete(s.inflight, chainID)
		s.mu.Unlock()
		close(c.done)
		return c.err
	}
}

func (s *Snapshotter) unpack(ctx context.Context, chainID, parent digest.Digest, extract func(dir string) error) error {
	tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-")
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	fsDir := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := extract(fsDir); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := syncfs(tmp); err != nil {
		return fmt.Errorf("unpack layer %s: sync: %w", chainID, err)
	}
	info := &Info{Key: chainID.String(), Parent: parent.String(), Kind: KindLayer, Created: time.Now().UTC()}
	if err := s.publish(tmp, info); err != nil {
		return fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	done = true
	return nil
}

// publish writes info into the staged snapshot directory tmp and renames it
// into snapshots/ under a new number, registering it.
func (s *Snapshotter) publish(tmp string, info *Info) error {
	if err := writeInfo(tmp, info); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byKey[info.Key]; ok {
		return errdefs.AlreadyExists(fmt.Errorf("snapshot %s", info.Key))
	}
	if info.Parent != "" {
		if p, ok := s.byKey[info.Parent]; !ok || p.Kind != KindLayer {
			return errdefs.NotFound(fmt.Errorf("parent layer %s", info.Parent))
		}
	}
	info.id = strconv.Itoa(s.nextID)
	if err := os.Rename(tmp, s.dir(info)); err != nil {
		return fmt.Errorf("publish snapshot %s: %w", info.Key, err)
	}
	s.nextID++
	s.byKey[info.Key] = info
	if err := syncDir(s.snapshotsDir()); err != nil {
		return fmt.Errorf("publish snapshot %s: sync: %w", info.Key, err)
	}
	return nil
}

func writeInfo(dir string, info *Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".info.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "info.json"))
}

// Prepare makes a writable snapshot key over the layer parent ("" for an
// empty root filesystem) and returns how to mount it: an overlay of the
// layer chain with the snapshot's own upperdir and workdir, or a read-write
// bind mount of an empty directory without a parent. The mounts have no
// Target: the caller mounts them where it needs them.
func (s *Snapshotter) Prepare(ctx context.Context, key string, parent digest.Digest) ([]mount.Mount, error) {
	return s.create(ctx, key, parent, KindActive)
}

// View makes a read-only snapshot key of the layer parent: a read-only bind
// mount of the layer when the chain has one layer (or of an empty directory
// for no parent), else an overlay of the chain without an upperdir.
func (s *Snapshotter) View(ctx context.Context, key string, parent digest.Digest) ([]mount.Mount, error) {
	return s.create(ctx, key, parent, KindView)
}

func (s *Snapshotter) create(ctx context.Context, key string, parent digest.Digest, kind Kind) ([]mount.Mount, error) {
	if key == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("create %s snapshot: empty key", kind))
	}
	if parent != "" {
		if err := parent.Validate(); err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("create %s snapshot %s: parent %q: %w", kind, key, parent, err))
		}
	}
	s.mu.Lock()
	if _, ok := s.byKey[key]; ok {
		s.mu.Unlock()
		return nil, errdefs.AlreadyExists(fmt.Errorf("create %s snapshot %s", kind, key))
	}
	if parent != "" {
		if p, ok := s.byKey[parent.String()]; !ok || p.Kind != KindLayer {
			s.mu.Unlock()
			return nil, errdefs.NotFound(fmt.Errorf("create %s snapshot %s: parent layer %s", kind, key, parent))
		}
	}
	s.mu.Unlock()

	tmp, err := os.MkdirTemp(s.tmpDir(), "create-")
	if err != nil {
		return nil, fmt.Errorf("create %s snapshot %s: %w", kind, key, err)
	}
	dirs := []string{"fs"}
	if kind == KindActive {
		dirs = append(dirs, "work")
	}
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("create %s snapshot %s: %w", kind, key, err)
		}
	}
	info := &Info{Key: key, Parent: parent.String(), Kind: kind, Created: time.Now().UTC()}
	if err := s.publish(tmp, info); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create %s snapshot %s: %w", kind, key, err)
	}
	return s.Mounts(ctx, key)
}

// Mounts returns how to mount the active or view snapshot key again (after
// a restart, say). For a layer it returns a read-only view of the chain.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.byKey[key]
	if !ok {
		return nil, errdefs.NotFound(fmt.Errorf("mounts of snapshot %s", key))
	}
	var lowers []string
	if info.Kind == KindLayer {
		lowers = append(lowers, s.fsDir(info))
	}
	for p := info.Parent; p != ""; {
		pi, ok := s.byKey[p]
		if !ok {
			return nil, errdefs.NotFound(fmt.Errorf("mounts of snapshot %s: layer %s of its chain is missing", key, p))
		}
		lowers = append(lowers, s.fsDir(pi))
		p = pi.Parent
	}
	var m mount.Mount
	switch {
	case info.Kind == KindActive && len(lowers) == 0:
		m = mount.Mount{Type: "bind", Source: s.fsDir(info), Options: []string{"bind", "rw"}}
	case info.Kind == KindActive:
		m = mount.Mount{Type: "overlay", Source: "overlay", Options: append([]string{
			"workdir=" + filepath.Join(s.dir(info), "work"),
			"upperdir=" + s.fsDir(info),
		}, lowerdirOptions(lowers)...)}
	case len(lowers) == 0:
		m = mount.Mount{Type: "bind", Source: s.fsDir(info), Options: []string{"bind", "ro"}}
	case len(lowers) == 1:
		m = mount.Mount{Type: "bind", Source: lowers[0], Options: []string{"bind", "ro"}}
	default:
		m = mount.Mount{Type: "overlay", Source: "overlay", Options: append([]string{"ro"}, lowerdirOptions(lowers)...)}
	}
	if m.Type == "overlay" {
		if len(lowers) > maxOverlayLayers {
			return nil, errdefs.InvalidArgument(fmt.Errorf("mounts of snapshot %s: %d layers, more than overlayfs stacks (%d)", key, len(lowers), maxOverlayLayers))
		}
		m.Options = append(m.Options, s.overlayOff...)
		if n := len(strings.Join(m.Options, ",")); n >= unix.Getpagesize() && !appendLowerdir() {
			return nil, errdefs.InvalidArgument(fmt.Errorf("mounts of snapshot %s: %d layers make overlay options of %d bytes, more than a page", key, len(lowers), n))
		}
	}
	return []mount.Mount{m}, nil
}

// Paths returns the directory holding the snapshot key's own files (a
// layer's content, or the upperdir of an active snapshot) followed by those
// of the layers below it, newest first: what Docker reports as UpperDir and
// LowerDir. The directories belong to the snapshotter; callers only read.
func (s *Snapshotter) Paths(ctx context.Context, key string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.byKey[key]
	if !ok {
		return nil, errdefs.NotFound(fmt.Errorf("paths of snapshot %s", key))
	}
	paths := []string{s.fsDir(info)}
	for p := info.Parent; p != ""; {
		pi, ok := s.byKey[p]
		if !ok {
			return nil, errdefs.NotFound(fmt.Errorf("paths of snapshot %s: layer %s of its chain is missing", key, p))
		}
		paths = append(paths, s.fsDir(pi))
		p = pi.Parent
	}
	return paths, nil
}

// Commit turns the active snapshot key into the layer snapshot chainID
// (whose layer is Diff of key over its parent), without copying: its upper
// directory becomes the layer. For builds, which then run the next step on
// top of it.
func (s *Snapshotter) Commit(ctx context.Context, key string, chainID digest.Digest) error {
	if err := chainID.Validate(); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("commit snapshot %s: chain ID %q: %w", key, chainID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.byKey[key]
	if !ok {
		return errdefs.NotFound(fmt.Errorf("commit snapshot %s", key))
	}
	if info.Kind != KindActive {
		return errdefs.FailedPrecondition(fmt.Errorf("commit snapshot %s: it is a %s snapshot, not an active one", key, info.Kind))
	}
	if _, ok := s.byKey[chainID.String()]; ok {
		return errdefs.AlreadyExists(fmt.Errorf("commit snapshot %s: layer %s", key, chainID))
	}
	for _, o := range s.byKey {
		if o.Parent == key {
			return errdefs.FailedPrecondition(fmt.Errorf("commit snapshot %s: it has children", key))
		}
	}
	if err := os.RemoveAll(filepath.Join(s.dir(info), "work")); err != nil {
		return fmt.Errorf("commit snapshot %s: remove workdir: %w", key, err)
	}
	if err := syncfs(s.dir(info)); err != nil {
		return fmt.Errorf("commit snapshot %s: sync: %w", key, err)
	}
	committed := &Info{Key: chainID.String(), Parent: info.Parent, Kind: KindLayer, Created: time.Now().UTC(), id: info.id}
	if err := writeInfo(s.dir(info), committed); err != nil {
		return fmt.Errorf("commit snapshot %s: %w", key, err)
	}
	delete(s.byKey, key)
	s.byKey[committed.Key] = committed
	return nil
}

// Remove deletes the snapshot key: a container's or view's, or a layer's
// (by chain ID). A snapshot that others are built on is refused with
// errdefs.ErrFailedPrecond. The caller unmounts it first.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	info, ok := s.byKey[key]
	if !ok {
		s.mu.Unlock()
		return errdefs.NotFound(fmt.Errorf("remove snapshot %s", key))
	}
	var children []string
	for _, o := range s.byKey {
		if o.Parent == key {
			children = append(children, o.Key)
		}
	}
	if len(children) > 0 {
		s.mu.Unlock()
		sort.Strings(children)
		return errdefs.FailedPrecondition(fmt.Errorf("remove snapshot %s: it has children %s", key, strings.Join(children, ", ")))
	}
	trash := filepath.Join(s.tmpDir(), "remove-"+info.id)
	if err := os.Rename(s.dir(info), trash); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	delete(s.byKey, key)
	s.mu.Unlock()
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove snapshot %s: delete files (left in %s): %w", key, trash, err)
	}
	return nil
}

// Usage returns the disk space a snapshot's own files take, in bytes: a
// layer's files, or the changes of an active snapshot. Hardlinked files are
// counted once.
func (s *Snapshotter) Usage(ctx context.Context, key string) (int64, error) {
	s.mu.Lock()
	info, ok := s.byKey[key]
	s.mu.Unlock()
	if !ok {
		return 0, errdefs.NotFound(fmt.Errorf("usage of snapshot %s", key))
	}
	fd, err := unix.Open(s.fsDir(info), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("usage of snapshot %s: %w", key, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("usage of snapshot %s: %w", key, err)
	}
	seen := map[inode]bool{}
	total, err := du(ctx, fd, seen)
	if err != nil {
		return 0, fmt.Errorf("usage of snapshot %s: %w", key, err)
	}
	return total + st.Blocks*512, nil
}

type inode struct{ dev, ino uint64 }

// du sums the blocks of everything below the directory open as fd, each
// inode once. It descends by descriptor with O_NOFOLLOW, so a running
// container that swaps a directory for a symlink cannot send it elsewhere.
func du(ctx context.Context, fd int, seen map[inode]bool) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(dup), "")
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // deleted meanwhile
			}
			return 0, err
		}
		id := inode{uint64(st.Dev), st.Ino}
		if seen[id] {
			continue
		}
		seen[id] = true
		total += st.Blocks * 512
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue // replaced meanwhile
			}
			return 0, err
		}
		n, err := du(ctx, sub, seen)
		unix.Close(sub)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// Walk calls fn for every snapshot, parents before their children.
func (s *Snapshotter) Walk(ctx context.Context, fn func(key string, parent string) error) error {
	s.mu.Lock()
	all := make([]Info, 0, len(s.byKey))
	for _, info := range s.byKey {
		all = append(all, *info)
	}
	s.mu.Unlock()
	// Numbers are given in creation order, and a parent exists before its
	// children.
	sort.Slice(all, func(i, j int) bool {
		a, _ := strconv.Atoi(all[i].id)
		b, _ := strconv.Atoi(all[j].id)
		return a < b
	})
	for _, info := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info.Key, info.Parent); err != nil {
			return err
		}
	}
	return nil
}

// Diff writes the layer tar of the changes in the active snapshot key over
// its parent chain (archive.Diff of its upper directory).
func (s *Snapshotter) Diff(ctx context.Context, w io.Writer, key string, opts ...archive.DiffOpt) error {
	s.mu.Lock()
	info, ok := s.byKey[key]
	if !ok {
		s.mu.Unlock()
		return errdefs.NotFound(fmt.Errorf("diff snapshot %s", key))
	}
	upper := s.fsDir(info)
	var lowers []string
	for p := info.Parent; p != ""; {
		pi, ok := s.byKey[p]
		if !ok {
			break
		}
		lowers = append(lowers, s.fsDir(pi))
		p = pi.Parent
	}
	s.mu.Unlock()
	if err := archive.Diff(ctx, w, upper, lowers, opts...); err != nil {
		return fmt.Errorf("diff snapshot %s: %w", key, err)
	}
	return nil
}

// maxOverlayLayers is overlayfs's limit on lower layers.
const maxOverlayLayers = 500

// maxFsconfigString is the longest string value fsconfig(2) takes.
const maxFsconfigString = 255

// lowerdirOptions lists the layer directories (newest first) as overlay
// options: one "lowerdir=a:b:c", the form every mount path understands,
// unless that is longer than fsconfig(2) accepts and the kernel (6.8 or
// later) takes one "lowerdir+=" option per layer instead.
func lowerdirOptions(lowers []string) []string {
	joined := strings.Join(lowers, ":")
	if len(joined) <= maxFsconfigString || !appendLowerdir() {
		return []string{"lowerdir=" + joined}
	}
	opts := make([]string, len(lowers))
	for i, l := range lowers {
		opts[i] = "lowerdir+=" + l
	}
	return opts
}

var (
	appendLowerdirOnce sync.Once
	appendLowerdirOK   bool
)

// appendLowerdir reports whether overlayfs takes "lowerdir+" (Linux 6.8).
func appendLowerdir() bool {
	appendLowerdirOnce.Do(func() {
		var u unix.Utsname
		if unix.Uname(&u) != nil {
			return
		}
		var major, minor int
		fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
		appendLowerdirOK = major > 6 || major == 6 && minor >= 8
	})
	return appendLowerdirOK
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// GC removes every layer snapshot that is neither in the chains of keep (the
// top chain IDs of the images to keep; their ancestors are kept too) nor
// under an active or view snapshot, children before parents, and returns
// the keys it removed.
func (s *Snapshotter) GC(ctx context.Context, keep []digest.Digest) ([]string, error) {
	s.mu.Lock()
	needed := map[string]bool{}
	mark := func(key string) {
		for key != "" && !needed[key] {
			needed[key] = true
			info, ok := s.byKey[key]
			if !ok {
				return
			}
			key = info.Parent
		}
	}
	for _, k := range keep {
		mark(k.String())
	}
	var victims []Info
	for _, info := range s.byKey {
		if info.Kind != KindLayer {
			mark(info.Key)
		}
	}
	for _, info := range s.byKey {
		if info.Kind == KindLayer && !needed[info.Key] {
			victims = append(victims, *info)
		}
	}
	s.mu.Unlock()
	sort.Slice(victims, func(i, j int) bool {
		a, _ := strconv.Atoi(victims[i].id)
		b, _ := strconv.Atoi(victims[j].id)
		return a > b
	})
	var removed []string
	for _, v := range victims {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if err := s.Remove(ctx, v.Key); err != nil {
			if errdefs.IsNotFound(err) || errors.Is(err, errdefs.ErrFailedPrecond) {
				continue // removed or built upon meanwhile
			}
			return removed, fmt.Errorf("garbage collect snapshots: %w", err)
		}
		removed = append(removed, v.Key)
	}
	return removed, nil
}
