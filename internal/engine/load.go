package engine

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/metadata"
)

// LoadOptions are the options of Load.
type LoadOptions struct {
	// Platform chooses from multi-platform images; empty means the host's.
	Platform string
	// Progress receives "Loaded image: ..." stream messages.
	Progress ProgressFunc
}

// archiveDir is an unpacked image archive: regular files written under dir,
// symbolic links (legacy docker save shares layers with them) kept as a map
// and resolved inside the archive only.
type archiveDir struct {
	dir   string
	links map[string]string // cleaned archive path -> cleaned target path
}

// cleanArchivePath returns name as a clean relative path, or an error when
// it is absolute or climbs out.
func cleanArchivePath(name string) (string, error) {
	p := path.Clean("/" + strings.TrimPrefix(name, "./"))
	if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
		return "", errdefs.InvalidArgument(fmt.Errorf("archive entry %q: path outside the archive", name))
	}
	return strings.TrimPrefix(p, "/"), nil
}

func unpackArchive(ctx context.Context, r io.Reader, dir string) (*archiveDir, error) {
	ad := &archiveDir{dir: dir, links: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ad, nil
		}
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("read image archive: %w", err))
		}
		name, err := cleanArchivePath(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "" {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink {
				if strings.HasPrefix(target, "/") {
					return nil, errdefs.InvalidArgument(fmt.Errorf("archive entry %q: absolute link target %q", hdr.Name, target))
				}
				target = path.Join(path.Dir(name), target)
			}
			t, err := cleanArchivePath(target)
			if err != nil || strings.HasPrefix(path.Clean(target), "..") {
				return nil, errdefs.InvalidArgument(fmt.Errorf("archive entry %q: link target %q outside the archive", hdr.Name, hdr.Linkname))
			}
			ad.links[name] = t
		case tar.TypeReg:
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, fmt.Errorf("unpack archive entry %q: %w", hdr.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("unpack archive entry %q: %w", hdr.Name, err)
			}
		default:
			// Other entry types carry nothing an image archive needs.
		}
	}
}

// path returns the file system path of an archive entry, following links
// within the archive.
func (a *archiveDir) path(name string) (string, error) {
	n, err := cleanArchivePath(name)
	if err != nil {
		return "", err
	}
	for i := 0; i < 16; i++ {
		t, ok := a.links[n]
		if !ok {
			p := filepath.Join(a.dir, filepath.FromSlash(n))
			if _, err := os.Lstat(p); err != nil {
				return "", errdefs.InvalidArgument(fmt.Errorf("image archive: %s is missing", name))
			}
			return p, nil
		}
		n = t
	}
	return "", errdefs.InvalidArgument(fmt.Errorf("image archive: too many links resolving %s", name))
}

func (a *archiveDir) read(name string) ([]byte, error) {
	p, err := a.path(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func (a *archiveDir) exists(name string) bool {
	_, err := a.path(name)
	return err == nil
}

// Load imports a docker save archive (Docker 25+ OCI-compatible or the
// legacy layout) or an OCI image layout archive from r.
func (e *Engine) Load(ctx context.Context, r io.Reader, opts LoadOptions) error {
	want := image.HostPlatform()
	if opts.Platform != "" {
		var err error
		if want, err = image.ParsePlatform(opts.Platform); err != nil {
			return err
		}
	}
	tmp := filepath.Join(e.cfg.DataRoot, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(tmp, "load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ad, err := unpackArchive(ctx, r, dir)
	if err != nil {
		return err
	}
	defer e.hold()()

	// Names from manifest.json, by config path.
	var dm []dockerManifestEntry
	if ad.exists("manifest.json") {
		data, err := ad.read("manifest.json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &dm); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("decode manifest.json of image archive: %w", err))
		}
	}
	if ad.exists("index.json") && ad.exists("oci-layout") {
		if err := e.loadOCI(ctx, ad, dm, want, opts.Progress); err != nil {
			return err
		}
		return nil
	}
	if len(dm) == 0 {
		return errdefs.InvalidArgument(fmt.Errorf("image archive has neither index.json nor manifest.json"))
	}
	for _, entry := range dm {
		if err := e.loadDockerEntry(ctx, ad, entry, opts.Progress); err != nil {
			return err
		}
	}
	return nil
}

// importBlob copies an archive blob into the content store, verifying it
// against desc.
func (e *Engine) importBlob(ctx context.Context, ad *archiveDir, desc ocispec.Descriptor) error {
	if e.hasBlob(ctx, desc.Digest) {
		return nil
	}
	if err := desc.Digest.Validate(); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("image archive: descriptor digest %q: %w", desc.Digest, err))
	}
	p, err := ad.path(blobPath(desc.Digest))
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := e.content.WriteBlob(ctx, desc, f); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("import blob %s: %w", desc.Digest, err)
	}
	return nil
}

func (e *Engine) loadOCI(ctx context.Context, ad *archiveDir, dm []dockerManifestEntry, want ocispec.Platform, prog ProgressFunc) error {
	data, err := ad.read("index.json")
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("decode index.json of image archive: %w", err))
	}
	tagsByConfig := map[string][]string{}
	for _, entry := range dm {
		tagsByConfig[entry.Config] = append(tagsByConfig[entry.Config], entry.RepoTags...)
	}
	for _, top := range idx.Manifests {
		if err := e.importBlob(ctx, ad, top); err != nil {
			return err
		}
		mdata, err := e.content.ReadAll(ctx, top.Digest)
		if err != nil {
			return err
		}
		if top.MediaType == "" {
			top.MediaType = sniffMediaType(mdata)
		}
		manifestDesc := top
		if isIndex(top.MediaType) {
			var child ocispec.Index
			if err := json.Unmarshal(mdata, &child); err != nil {
				return errdefs.InvalidArgument(fmt.Errorf("decode index %s: %w", top.Digest, err))
			}
			// Prefer a platform whose blobs the archive carries.
			var avail ocispec.Index
			for _, m := range child.Manifests {
				if ad.exists(blobPath(m.Digest)) || e.hasBlob(ctx, m.Digest) {
					avail.Manifests = append(avail.Manifests, m)
				}
			}
			if manifestDesc, err = choosePlatform(avail, want); err != nil {
				return fmt.Errorf("load index %s: %w", top.Digest, err)
			}
			if err := e.importBlob(ctx, ad, manifestDesc); err != nil {
				return err
			}
			if mdata, err = e.content.ReadAll(ctx, manifestDesc.Digest); err != nil {
				return err
			}
		}
		var mf ocispec.Manifest
		if err := json.Unmarshal(mdata, &mf); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("decode manifest %s: %w", manifestDesc.Digest, err))
		}
		for _, d := range append([]ocispec.Descriptor{mf.Config}, mf.Layers...) {
			if err := e.importBlob(ctx, ad, d); err != nil {
				return err
			}
		}
		var names []string
		if n := top.Annotations[annotationImageName]; n != "" {
			names = append(names, n)
		} else if n := top.Annotations[annotationRefName]; n != "" && strings.ContainsAny(n, "/:") {
			names = append(names, n)
		}
		if len(names) == 0 {
			names = tagsByConfig[blobPath(mf.Config.Digest)]
		}
		manifestDesc.Annotations = nil
		top.Annotations = nil
		if err := e.finishLoad(ctx, top, manifestDesc, mf, names, prog); err != nil {
			return err
		}
	}
	return nil
}

// loadDockerEntry loads one manifest.json entry of a legacy docker save
// archive: it stores the config and layers and writes a Docker v2 manifest.
func (e *Engine) loadDockerEntry(ctx context.Context, ad *archiveDir, entry dockerManifestEntry, prog ProgressFunc) error {
	cfgData, err := ad.read(entry.Config)
	if err != nil {
		return err
	}
	cfgDesc := ocispec.Descriptor{MediaType: mediaTypeDockerConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	if err := e.content.WriteBlob(ctx, cfgDesc, strings.NewReader(string(cfgData))); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("store config %s: %w", cfgDesc.Digest, err)
	}
	mf := ocispec.Manifest{MediaType: mediaTypeDockerManifest, Config: cfgDesc}
	mf.SchemaVersion = 2
	for _, l := range entry.Layers {
		desc, err := e.importLayerFile(ctx, ad, l)
		if err != nil {
			return err
		}
		mf.Layers = append(mf.Layers, desc)
	}
	mdata, err := json.Marshal(mf)
	if err != nil {
		return err
	}
	mdesc := ocispec.Descriptor{MediaType: mediaTypeDockerManifest, Digest: digest.FromBytes(mdata), Size: int64(len(mdata))}
	if err := e.content.WriteBlob(ctx, mdesc, strings.NewReader(string(mdata))); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("store manifest %s: %w", mdesc.Digest, err)
	}
	return e.finishLoad(ctx, ocispec.Descriptor{}, mdesc, mf, entry.RepoTags, prog)
}

// importLayerFile stores a layer file of an archive, working out its
// digest and media type from its content.
func (e *Engine) importLayerFile(ctx context.Context, ad *archiveDir, name string) (ocispec.Descriptor, error) {
	p, err := ad.path(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer f.Close()
	comp, err := archive.DetectCompression(bufio.NewReader(f))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("hash layer %s: %w", name, err)
	}
	desc := ocispec.Descriptor{Digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), Size: n}
	switch comp {
	case archive.Gzip:
		desc.MediaType = mediaTypeDockerLayerGzip
	case archive.Zstd:
		desc.MediaType = ocispec.MediaTypeImageLayerZstd
	default:
		desc.MediaType = "application/vnd.docker.image.rootfs.diff.tar"
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := e.content.WriteBlob(ctx, desc, f); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("store layer %s: %w", name, err)
	}
	return desc, nil
}

// finishLoad unpacks a loaded image's layers, records and names it.
func (e *Engine) finishLoad(ctx context.Context, target, manifestDesc ocispec.Descriptor, mf ocispec.Manifest, names []string, prog ProgressFunc) error {
	cfgData, err := e.content.ReadAll(ctx, mf.Config.Digest)
	if err != nil {
		return err
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("decode config %s: %w", mf.Config.Digest, err))
	}
	if len(cfg.RootFS.DiffIDs) != len(mf.Layers) {
		return errdefs.InvalidArgument(fmt.Errorf("image %s: config lists %d layers, manifest has %d", mf.Config.Digest, len(cfg.RootFS.DiffIDs), len(mf.Layers)))
	}
	sizes, err := e.unpackAll(ctx, mf.Layers, cfg.RootFS.DiffIDs, func(d ocispec.Descriptor) {
		prog.send(jsonstream.Message{ID: shortID(d.Digest), Status: "Loading layer", Progress: &jsonstream.Progress{Current: d.Size, Total: d.Size}})
	})
	if err != nil {
		return err
	}
	if target.Digest == "" {
		target = manifestDesc
	}
	rec := metadata.Image{ID: mf.Config.Digest, Target: target, Manifest: manifestDesc, LayerSizes: sizes}
	if err := e.registerImage(rec, image.Reference{}); err != nil {
		return err
	}
	named := false
	for _, n := range names {
		ref, err := image.ParseReference(n)
		if err != nil {
			e.log.Warn("load: skip invalid name", "name", n, "err", err)
			continue
		}
		if ref.Digest != "" {
			continue
		}
		e.nameLock.Lock()
		prev, err := e.meta.SetName(ref.String(), rec.ID)
		e.nameLock.Unlock()
		if err != nil {
			return err
		}
		if prev != "" && prev != rec.ID {
			prog.send(jsonstream.Message{Stream: fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", ref.Familiar(), prev)})
		}
		named = true
		prog.send(jsonstream.Message{Stream: "Loaded image: " + ref.Familiar() + "\n"})
	}
	if !named {
		prog.send(jsonstream.Message{Stream: "Loaded image ID: " + rec.ID.String() + "\n"})
	}
	return nil
}

// unpackAll unpacks stored layers in chain order, returning their sizes.
func (e *Engine) unpackAll(ctx context.Context, layers []ocispec.Descriptor, diffIDs []digest.Digest, done func(ocispec.Descriptor)) ([]int64, error) {
	chains := chainIDs(diffIDs)
	sizes := make([]int64, len(layers))
	for i, l := range layers {
		var parent digest.Digest
		if i > 0 {
			parent = chains[i-1]
		}
		if err := e.unpackBlob(ctx, l, chains[i], parent, diffIDs[i], &sizes[i], nil); err != nil {
			return nil, err
		}
		sizes[i] = e.layerSize(ctx, diffIDs[i], chains[i], sizes[i])
		if done != nil {
			done(l)
		}
	}
	return sizes, nil
}
