package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/metadata"
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

// resolveInRoot resolves p inside root: every component but the last
// through securejoin (symlinks stay inside root); the last is kept as it
// is unless followLast, so a symlink is reported and copied as a link.
func resolveInRoot(root, p string, followLast bool) (string, error) {
	clean := path.Clean("/" + p)
	if followLast || clean == "/" {
		return securejoin.SecureJoin(root, clean)
	}
	dir, err := securejoin.SecureJoin(root, path.Dir(clean))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, path.Base(clean)), nil
}

// ContainerStatPath stats a path in the container's filesystem.
func (e *Engine) ContainerStatPath(ctx context.Context, ref, p string) (container.PathStat, error) {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return container.PathStat{}, err
	}
	var st container.PathStat
	err = cs.withRootfs(ctx, c, func(root string) error {
		st, err = statPath(root, p)
		return err
	})
	return st, err
}

func statPath(root, p string) (container.PathStat, error) {
	full, err := resolveInRoot(root, p, strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/."))
	if err != nil {
		return container.PathStat{}, err
	}
	fi, err := os.Lstat(full)
	if errors.Is(err, os.ErrNotExist) {
		return container.PathStat{}, errdefs.NotFound(fmt.Errorf("Could not find the file %s in container", p))
	}
	if err != nil {
		return container.PathStat{}, fmt.Errorf("stat %s: %w", p, err)
	}
	st := container.PathStat{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&os.ModeSymlink != 0 {
		if t, err := os.Readlink(full); err == nil {
			st.LinkTarget = t
		}
	}
	return st, nil
}

// ContainerArchive writes a tar of path in the container to w (its base
// name as the tar's top entry) after calling stat with the path's stat.
func (e *Engine) ContainerArchive(ctx context.Context, ref, p string, stat func(container.PathStat), w io.Writer) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	return cs.withRootfs(ctx, c, func(root string) error {
		st, err := statPath(root, p)
		if err != nil {
			return err
		}
		stat(st)
		full, err := resolveInRoot(root, p, strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/."))
		if err != nil {
			return err
		}
		name := filepath.Base(full)
		if strings.HasSuffix(p, "/.") {
			name = "."
		}
		tw := tar.NewWriter(w)
		if err := tarTree(ctx, tw, full, name); err != nil {
			return err
		}
		return tw.Close()
	})
}

// tarTree writes src (not following symlinks) into tw under name.
func tarTree(ctx context.Context, tw *tar.Writer, src, name string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		n := filepath.ToSlash(filepath.Join(name, rel))
		if n == "." {
			n = "./"
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil // sockets and the like are skipped
		}
		hdr.Name = n
		if fi.IsDir() && !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("archive %s: %w", n, err)
			}
		}
		return nil
	})
}

// ContainerExtract extracts the tar r into the directory p inside the
// container (resolved inside its root filesystem).
func (e *Engine) ContainerExtract(ctx context.Context, ref, p string, r io.Reader) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ro := c.rec.HostConfig.ReadonlyRootfs && c.running()
	c.mu.Unlock()
	if ro {
		return errdefs.FailedPrecondition(fmt.Errorf("container rootfs is marked read-only"))
	}
	return cs.withRootfs(ctx, c, func(root string) error {
		dir, err := resolveInRoot(root, p, true)
		if err != nil {
			return err
		}
		fi, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("Could not find the file %s in container", p))
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return errdefs.InvalidArgument(fmt.Errorf("extraction point is not a directory: %s", p))
		}
		if _, _, err := archive.Apply(ctx, dir, r); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("extract archive into %s: %w", p, err))
		}
		return nil
	})
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
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, p)
		if rel == "." {
			return nil
		}
		name := "/" + filepath.ToSlash(rel)
		switch name {
		case "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv":
			// Mount points the engine binds its own files on, as Docker
			// leaves them out.
			if !d.IsDir() {
				if fi, err := d.Info(); err == nil && fi.Size() == 0 {
					return nil
				}
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 {
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
	if err := e.snaps.Diff(ctx, cw, c.snapKey()); err != nil {
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
	cfgData, err := json.Marshal(newCfg)
	if err != nil {
		return "", err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	mf := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: append(append([]ocispec.Descriptor{}, li.manifest.Layers...), layer)}
	mf.SchemaVersion = 2
	mfData, err := json.Marshal(mf)
	if err != nil {
		return "", err
	}
	mfDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mfData), Size: int64(len(mfData))}
	for _, b := range []struct {
		d    ocispec.Descriptor
		data []byte
	}{{cfgDesc, cfgData}, {mfDesc, mfData}} {
		if err := e.content.WriteBlob(ctx, b.d, bytes.NewReader(b.data)); err != nil && !errdefs.IsAlreadyExists(err) {
			return "", fmt.Errorf("store %s: %w", b.d.Digest, err)
		}
	}
	sizes, err := e.unpackAll(ctx, mf.Layers, newCfg.RootFS.DiffIDs, nil)
	if err != nil {
		return "", fmt.Errorf("commit container %s: %w", id, err)
	}
	rec := metadata.Image{ID: cfgDesc.Digest, Target: mfDesc, Manifest: mfDesc, LayerSizes: sizes}
	if err := e.registerImage(rec, image.Reference{}); err != nil {
		return "", err
	}
	if !name.IsZero() {
		if name.Tag == "" {
			name = name.WithTag("latest")
		}
		e.nameLock.Lock()
		_, err := e.meta.SetName(name.String(), rec.ID)
		e.nameLock.Unlock()
		if err != nil {
			return "", err
		}
	}
	e.emit("container", "commit", id, c.attributes("comment", opts.Comment, "imageID", rec.ID.String()))
	return rec.ID, nil
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
