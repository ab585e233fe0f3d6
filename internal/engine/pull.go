package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/content"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/metadata"
	"github.com/berth-project/berth/internal/registry"
)

// PullOptions are the options of Pull.
type PullOptions struct {
	// Platform is "os/arch[/variant]"; empty means the host's.
	Platform string
	Auth     *Auth
	Progress ProgressFunc
}

// Media types of manifests and indexes, OCI and Docker.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

// manifestDoc is the union of a manifest and an index, to tell them apart
// when the descriptor's media type is missing.
type manifestDoc struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

func sniffMediaType(data []byte) string {
	var d manifestDoc
	if json.Unmarshal(data, &d) != nil {
		return ""
	}
	switch {
	case d.MediaType != "":
		return d.MediaType
	case d.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case d.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// choosePlatform picks the best manifest for want from an index.
func choosePlatform(idx ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, error) {
	var best *ocispec.Descriptor
	bestRank := -1
	for i := range idx.Manifests {
		m := &idx.Manifests[i]
		if m.Platform == nil || !isManifest(m.MediaType) && m.MediaType != "" {
			continue
		}
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		if !image.Match(want, *m.Platform) {
			continue
		}
		rank := 0
		if image.Normalize(*m.Platform).Variant != image.Normalize(want).Variant {
			rank = 1
		}
		if best == nil || rank < bestRank {
			best, bestRank = m, rank
		}
	}
	if best == nil {
		var have []string
		for _, m := range idx.Manifests {
			if m.Platform != nil {
				have = append(have, image.FormatPlatform(*m.Platform))
			}
		}
		return ocispec.Descriptor{}, errdefs.NotFound(fmt.Errorf("no matching manifest for %s in the manifest list entries (available: %v)", image.FormatPlatform(want), have))
	}
	return *best, nil
}

func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// progress wraps a ProgressFunc, tolerating nil.
func (f ProgressFunc) send(m jsonstream.Message) {
	if f != nil {
		f(m)
	}
}

func (f ProgressFunc) status(id, status string) {
	f.send(jsonstream.Message{ID: id, Status: status, Progress: &jsonstream.Progress{}})
}

// Pull fetches ref (a tag or digest reference) from its registry, stores its
// blobs, unpacks its layers and names it. It returns the image ID.
//
// A registry refusing access makes the error Docker's "pull access denied"
// of class not found (HTTP 404), still of class unauthorized underneath: a
// 401 from the API would make the docker CLI prompt for a login.
func (e *Engine) Pull(ctx context.Context, refStr string, opts PullOptions) (digest.Digest, error) {
	ref, err := image.ParseReference(refStr)
	if err != nil {
		return "", err
	}
	prog := opts.Progress.serialized()
	opts.Progress = prog
	id, newer, err := e.pull(ctx, e.registryClient(opts.Auth, ref), ref, opts)
	if err != nil {
		return "", accessDenied(ref, err)
	}
	pullStatus(prog, ref.Familiar(), newer)
	return id, nil
}

// PullAllTags pulls every tag of repo's repository (docker pull --all-tags):
// it lists the tags with the registry, then pulls each in turn, each tag's
// progress under its own "Pulling from" line, and ends with one status line
// for the repository, in Docker's words. repo must name neither a tag nor a
// digest. It returns the IDs of the images pulled, in the registry's tag
// order. The first tag that fails ends the pull with its error.
func (e *Engine) PullAllTags(ctx context.Context, repo string, opts PullOptions) ([]digest.Digest, error) {
	ref, err := image.ParseName(repo)
	if err != nil {
		return nil, err
	}
	if ref.Tag != "" || ref.Digest != "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("pull all tags of %s: the name must not carry a tag or digest", repo))
	}
	prog := opts.Progress.serialized()
	opts.Progress = prog
	client := e.registryClient(opts.Auth, ref)
	tags, err := client.Tags(ctx, ref)
	if err != nil {
		return nil, accessDenied(ref, err)
	}
	if len(tags) == 0 {
		return nil, errdefs.NotFound(fmt.Errorf("pull all tags of %s: the repository has no tags", ref.FamiliarName()))
	}
	var ids []digest.Digest
	anyNewer := false
	for _, tag := range tags {
		tagRef := ref.WithTag(tag)
		id, newer, err := e.pull(ctx, client, tagRef, opts)
		if err != nil {
			return ids, accessDenied(tagRef, err)
		}
		anyNewer = anyNewer || newer
		ids = append(ids, id)
	}
	pullStatus(prog, ref.FamiliarName(), anyNewer)
	return ids, nil
}

// accessDenied turns a registry's refusal into Docker's "pull access denied".
func accessDenied(ref image.Reference, err error) error {
	if errors.Is(err, errdefs.ErrUnauthorized) || errors.Is(err, errdefs.ErrPermission) {
		return errdefs.NotFound(fmt.Errorf("pull access denied for %s, repository does not exist or may require 'docker login': %w", ref.FamiliarName(), err))
	}
	return err
}

// pullStatus sends a pull's last line, as Docker words it.
func pullStatus(prog ProgressFunc, name string, newer bool) {
	if newer {
		prog.send(jsonstream.Message{Status: "Status: Downloaded newer image for " + name})
	} else {
		prog.send(jsonstream.Message{Status: "Status: Image is up to date for " + name})
	}
}

// pull fetches one tag or digest of a repository with client and names it.
// It reports whether anything changed: layers fetched, or the name moved.
// opts.Progress must be serialized.
func (e *Engine) pull(ctx context.Context, client *registry.Client, ref image.Reference, opts PullOptions) (digest.Digest, bool, error) {
	var err error
	want := image.HostPlatform()
	if opts.Platform != "" {
		if want, err = image.ParsePlatform(opts.Platform); err != nil {
			return "", false, err
		}
	}
	prog := opts.Progress
	defer e.hold()()

	target, err := client.Resolve(ctx, ref)
	if err != nil {
		return "", false, err // names the reference and the registry
	}
	if ref.Digest != "" {
		prog.send(jsonstream.Message{ID: ref.Digest.String(), Status: "Pulling from " + ref.Path})
	} else {
		prog.send(jsonstream.Message{ID: ref.Tag, Status: "Pulling from " + ref.Path})
	}
	data, err := e.fetchManifest(ctx, client, ref, target)
	if err != nil {
		return "", false, err
	}
	if target.MediaType == "" {
		target.MediaType = sniffMediaType(data)
	}
	manifestDesc := target
	if isIndex(target.MediaType) {
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return "", false, fmt.Errorf("decode index %s of %s: %w", target.Digest, ref.Familiar(), err)
		}
		if manifestDesc, err = choosePlatform(idx, want); err != nil {
			return "", false, fmt.Errorf("pull %s: %w", ref.Familiar(), err)
		}
		if data, err = e.fetchManifest(ctx, client, ref, manifestDesc); err != nil {
			return "", false, err
		}
	} else if !isManifest(target.MediaType) {
		return "", false, errdefs.InvalidArgument(fmt.Errorf("pull %s: unsupported manifest media type %q", ref.Familiar(), target.MediaType))
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return "", false, fmt.Errorf("decode manifest %s of %s: %w", manifestDesc.Digest, ref.Familiar(), err)
	}
	if mt := mf.Config.MediaType; mt != "" && mt != ocispec.MediaTypeImageConfig && mt != mediaTypeDockerConfig {
		return "", false, errdefs.InvalidArgument(fmt.Errorf("pull %s: manifest %s is not a container image (config media type %q)", ref.Familiar(), manifestDesc.Digest, mt))
	}
	cfgData, err := e.fetchSmallBlob(ctx, client, ref, mf.Config)
	if err != nil {
		return "", false, err
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return "", false, fmt.Errorf("decode config %s of %s: %w", mf.Config.Digest, ref.Familiar(), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(mf.Layers) {
		return "", false, errdefs.InvalidArgument(fmt.Errorf("image %s: config %s lists %d layers, manifest %s has %d", ref.Familiar(), mf.Config.Digest, len(cfg.RootFS.DiffIDs), manifestDesc.Digest, len(mf.Layers)))
	}

	if opts.Platform != "" && !isIndex(target.MediaType) && !image.Match(want, cfg.Platform) {
		return "", false, errdefs.NotFound(fmt.Errorf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)", ref.Familiar(), image.FormatPlatform(cfg.Platform), image.FormatPlatform(want)))
	}
	// Up to date: nothing to fetch and the name already points here.
	nameKey := ref.String()
	if ref.Tag != "" {
		nameKey = ref.WithTag(ref.Tag).String()
	}
	prevID, _ := e.meta.Resolve(nameKey)
	sizes, fetched, err := e.fetchLayers(ctx, client, ref, mf.Layers, cfg.RootFS.DiffIDs, prog)
	if err != nil {
		return "", false, err
	}
	rec := metadata.Image{ID: mf.Config.Digest, Target: target, Manifest: manifestDesc, LayerSizes: sizes}
	if err := e.registerImage(rec, ref); err != nil {
		return "", false, err
	}
	prog.send(jsonstream.Message{Status: "Digest: " + target.Digest.String()})
	e.log.Info("pulled image", "ref", ref.String(), "id", rec.ID, "target", target.Digest)
	return rec.ID, prevID != rec.ID || fetched, nil
}

// registerImage stores rec (keeping names of an older record with the same
// ID) and points ref's tag and its repo digest at it. A tag that pointed at
// another image moves; that image stays, dangling, as in Docker.
func (e *Engine) registerImage(rec metadata.Image, ref image.Reference) error {
	e.nameLock.Lock()
	defer e.nameLock.Unlock()
	if old, err := e.meta.GetImage(rec.ID); err == nil {
		if rec.Target.Digest == "" {
			rec.Target = old.Target
		}
		if len(rec.LayerSizes) == 0 {
			rec.LayerSizes = old.LayerSizes
		}
	}
	if err := e.meta.PutImage(rec); err != nil {
		return err
	}
	if ref.IsZero() {
		return nil
	}
	if ref.Tag != "" {
		if _, err := e.meta.SetName(ref.WithTag(ref.Tag).String(), rec.ID); err != nil {
			return err
		}
	}
	if rec.Target.Digest != "" {
		if _, err := e.meta.SetName(ref.WithDigest(rec.Target.Digest).String(), rec.ID); err != nil {
			return err
		}
	}
	return nil
}

// fetchManifest returns a manifest's bytes from the content store, or
// fetches (the client verifies the digest) and stores them.
func (e *Engine) fetchManifest(ctx context.Context, client *registry.Client, ref image.Reference, desc ocispec.Descriptor) ([]byte, error) {
	if data, err := e.content.ReadAll(ctx, desc.Digest); err == nil {
		return data, nil
	}
	data, err := client.FetchManifest(ctx, ref, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s of %s: %w", desc.Digest, ref.Familiar(), err)
	}
	if err := e.content.WriteBlob(ctx, ocispec.Descriptor{Digest: desc.Digest, Size: int64(len(data)), MediaType: desc.MediaType}, bytesReader(data)); err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, fmt.Errorf("store manifest %s of %s: %w", desc.Digest, ref.Familiar(), err)
	}
	return data, nil
}

// fetchSmallBlob fetches a config blob into the store and returns it.
func (e *Engine) fetchSmallBlob(ctx context.Context, client *registry.Client, ref image.Reference, desc ocispec.Descriptor) ([]byte, error) {
	if data, err := e.content.ReadAll(ctx, desc.Digest); err == nil {
		return data, nil
	}
	if err := e.fetchBlob(ctx, client, ref, desc, nil); err != nil {
		return nil, err
	}
	return e.content.ReadAll(ctx, desc.Digest)
}

// fetchBlob downloads desc into the content store, resuming a partial
// ingest. onBytes (may be nil) sees the bytes as they arrive.
func (e *Engine) fetchBlob(ctx context.Context, client *registry.Client, ref image.Reference, desc ocispec.Descriptor, onBytes func(n int64, total int64)) error {
	w, err := e.content.Writer(ctx, desc.Digest.String(), desc)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("open ingest for blob %s: %w", desc.Digest, err)
	}
	defer w.Close()
	off := w.Offset()
	rc, err := client.FetchBlob(ctx, ref, desc, off)
	if err != nil {
		return fmt.Errorf("fetch blob %s of %s: %w", desc.Digest, ref.Familiar(), err)
	}
	defer rc.Close()
	var dst io.Writer = w
	if onBytes != nil {
		dst = &countingWriter{w: w, n: off, fn: func(n int64) { onBytes(n, desc.Size) }}
	}
	if _, err := io.Copy(dst, rc); err != nil {
		return fmt.Errorf("download blob %s of %s: %w", desc.Digest, ref.Familiar(), err)
	}
	if err := w.Commit(); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit blob %s of %s: %w", desc.Digest, ref.Familiar(), err)
	}
	return nil
}

type countingWriter struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// throttled returns a progress callback emitting at most every 100ms,
// plus the final value.
func throttled(prog ProgressFunc, id, status string) func(cur, total int64) {
	var last time.Time
	return func(cur, total int64) {
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || cur == total {
			last = now
			prog.send(jsonstream.Message{ID: id, Status: status, Progress: &jsonstream.Progress{Current: cur, Total: total}})
		}
	}
}

// flight is one in-progress layer fetch+unpack shared by concurrent pulls.
type flight struct {
	done chan struct{}
	err  error
}

// layerJob is the state of one layer within a pull.
type layerJob struct {
	desc    ocispec.Descriptor
	diffID  digest.Digest
	chainID digest.Digest
	parent  digest.Digest
	id      string
	// ready is closed once this layer's snapshot exists (or failed).
	ready chan struct{}
	err   error
	size  int64
}

// fetchLayers downloads and unpacks layers: downloads run in parallel
// (bounded); a layer whose parent snapshot is ready is extracted while it
// downloads, the others are stored first and extracted in chain order.
// It returns the uncompressed size of each layer and whether anything had
// to be fetched or unpacked.
func (e *Engine) fetchLayers(ctx context.Context, client *registry.Client, ref image.Reference, layers []ocispec.Descriptor, diffIDs []digest.Digest, prog ProgressFunc) ([]int64, bool, error) {
	chains := chainIDs(diffIDs)
	jobs := make([]*layerJob, len(layers))
	for i, l := range layers {
		j := &layerJob{desc: l, diffID: diffIDs[i], chainID: chains[i], id: shortID(l.Digest), ready: make(chan struct{})}
		if i > 0 {
			j.parent = chains[i-1]
		}
		jobs[i] = j
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetched := false
	var pending []*layerJob
	for _, j := range jobs {
		if e.snaps.Exists(j.chainID) && e.hasBlob(ctx, j.desc.Digest) {
			prog.status(j.id, "Already exists")
			close(j.ready)
			continue
		}
		fetched = true
		prog.status(j.id, "Pulling fs layer")
		pending = append(pending, j)
	}
	sem := make(chan struct{}, e.cfg.MaxConcurrentDownloads)
	var wg sync.WaitGroup
	for idx, j := range pending {
		if idx >= e.cfg.MaxConcurrentDownloads {
			prog.status(j.id, "Waiting")
		}
		var parent *layerJob
		for k, jj := range jobs {
			if jj == j && k > 0 {
				parent = jobs[k-1]
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(j.ready)
			j.err = e.pullLayer(ctx, client, ref, j, parent, sem, prog)
			if j.err != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	sizes := make([]int64, len(jobs))
	var errs []error
	for i, j := range jobs {
		if j.err != nil && !errors.Is(j.err, context.Canceled) {
			errs = append(errs, j.err)
		}
		sizes[i] = e.layerSize(ctx, j.diffID, j.chainID, j.size)
	}
	if len(errs) == 0 {
		for _, j := range jobs {
			if j.err != nil {
				errs = append(errs, j.err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fetched, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fetched, err
	}
	return sizes, fetched, nil
}

// pullLayer fetches and unpacks one layer, deduplicating with concurrent
// pulls of the same layer.
func (e *Engine) pullLayer(ctx context.Context, client *registry.Client, ref image.Reference, j, parent *layerJob, sem chan struct{}, prog ProgressFunc) error {
	e.flightMu.Lock()
	if f, ok := e.flights[j.chainID]; ok {
		e.flightMu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if f.err != nil {
			return f.err
		}
		prog.status(j.id, "Pull complete")
		return nil
	}
	f := &flight{done: make(chan struct{})}
	e.flights[j.chainID] = f
	e.flightMu.Unlock()
	defer func() {
		e.flightMu.Lock()
		delete(e.flights, j.chainID)
		e.flightMu.Unlock()
		close(f.done)
	}()
	f.err = e.doPullLayer(ctx, client, ref, j, parent, sem, prog)
	return f.err
}

func (e *Engine) doPullLayer(ctx context.Context, client *registry.Client, ref image.Reference, j, parent *layerJob, sem chan struct{}, prog ProgressFunc) error {
	if _, err := e.content.Info(ctx, j.desc.Digest); err == nil {
		// Blob already stored (an earlier pull was interrupted before
		// unpacking finished): only unpack.
		prog.status(j.id, "Download complete")
		return e.unpackStored(ctx, j, parent, prog)
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()

	parentReady := parent == nil
	if parent != nil {
		select {
		case <-parent.ready:
			parentReady = parent.err == nil
		default:
		}
	}
	w, err := e.content.Writer(ctx, j.desc.Digest.String(), j.desc)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			release()
			return e.unpackStored(ctx, j, parent, prog)
		}
		return fmt.Errorf("open ingest for layer %s: %w", j.desc.Digest, err)
	}
	defer w.Close()
	if e.snaps.Exists(j.chainID) {
		// Unpacked for another image whose blob differs: store the blob only.
		return e.downloadTo(ctx, client, ref, j, w, nil, prog)
	}
	if !parentReady || w.Offset() > 0 {
		// Download only; unpack from the stored blob in chain order.
		resumed := w.Offset() > 0
		err := e.downloadTo(ctx, client, ref, j, w, nil, prog)
		if resumed && errors.Is(err, errdefs.ErrDataLoss) {
			// What an earlier, interrupted pull stored did not belong
			// to this blob (the commit discarded it): fetch it whole.
			w2, werr := e.content.Writer(ctx, j.desc.Digest.String(), j.desc)
			if werr != nil && !errdefs.IsAlreadyExists(werr) {
				return fmt.Errorf("open ingest for layer %s: %w", j.desc.Digest, werr)
			}
			if werr == nil {
				defer w2.Close()
				err = e.downloadTo(ctx, client, ref, j, w2, nil, prog)
			} else {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		release()
		return e.unpackStored(ctx, j, parent, prog)
	}
	// Stream: download into the store and extract at the same time.
	return e.snaps.Unpack(ctx, j.chainID, j.parent, func(dir string) error {
		pr, pw := io.Pipe()
		toApply := &recordingWriter{w: pw}
		errc := make(chan error, 1)
		go func() {
			err := e.downloadTo(ctx, client, ref, j, w, toApply, prog)
			pw.CloseWithError(err)
			errc <- err
		}()
		diffID, size, err := archive.Apply(ctx, dir, pr)
		if err != nil {
			pr.CloseWithError(err)
			<-errc
			if toApply.err != nil {
				// Extraction, not the transfer, failed: the bytes are
				// suspect, so keep none for a resume (a later pull
				// fetches the layer whole). A transfer cut off keeps
				// what arrived.
				_ = w.Reset()
			}
			return fmt.Errorf("extract layer %s of %s: %w", j.desc.Digest, ref.Familiar(), err)
		}
		_, _ = io.Copy(io.Discard, pr) // the compressed stream's trailer
		if err := <-errc; err != nil {
			return err
		}
		if diffID != j.diffID {
			return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("layer %s of %s: uncompressed digest %s does not match %s in the image config", j.desc.Digest, ref.Familiar(), diffID, j.diffID))
		}
		j.size = size
		prog.status(j.id, "Pull complete")
		return nil
	})
}

// downloadTo copies the layer from the registry into w (resuming at its
// offset), teeing into also when non-nil, and commits it.
func (e *Engine) downloadTo(ctx context.Context, client *registry.Client, ref image.Reference, j *layerJob, w *content.Writer, also io.Writer, prog ProgressFunc) error {
	off := w.Offset()
	rc, err := client.FetchBlob(ctx, ref, j.desc, off)
	if err != nil {
		return fmt.Errorf("fetch layer %s of %s: %w", j.desc.Digest, ref.Familiar(), err)
	}
	defer rc.Close()
	report := throttled(prog, j.id, "Downloading")
	var dst io.Writer = w
	if also != nil {
		dst = io.MultiWriter(w, also)
	}
	if _, err := io.Copy(&countingWriter{w: dst, n: off, fn: func(n int64) { report(n, j.desc.Size) }}, rc); err != nil {
		return fmt.Errorf("download layer %s of %s: %w", j.desc.Digest, ref.Familiar(), err)
	}
	prog.status(j.id, "Verifying Checksum")
	if err := w.Commit(); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit layer %s of %s: %w", j.desc.Digest, ref.Familiar(), err)
	}
	prog.status(j.id, "Download complete")
	return nil
}

// unpackStored waits for the parent snapshot, then extracts the stored blob.
func (e *Engine) unpackStored(ctx context.Context, j, parent *layerJob, prog ProgressFunc) error {
	if parent != nil {
		select {
		case <-parent.ready:
			if parent.err != nil {
				return fmt.Errorf("layer %s: parent layer failed", j.desc.Digest)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := e.unpackBlob(ctx, j.desc, j.chainID, j.parent, j.diffID, &j.size, throttled(prog, j.id, "Extracting")); err != nil {
		return err
	}
	prog.status(j.id, "Pull complete")
	return nil
}

// unpackBlob extracts a stored layer blob into the snapshot chainID and
// checks its uncompressed digest against diffID.
func (e *Engine) unpackBlob(ctx context.Context, desc ocispec.Descriptor, chainID, parent, diffID digest.Digest, size *int64, report func(cur, total int64)) error {
	return e.snaps.Unpack(ctx, chainID, parent, func(dir string) error {
		f, err := e.content.Open(ctx, desc.Digest)
		if err != nil {
			return fmt.Errorf("open layer %s: %w", desc.Digest, err)
		}
		defer f.Close()
		var r io.Reader = f
		if report != nil {
			r = &countingReader{r: f, fn: func(n int64) { report(n, desc.Size) }}
		}
		got, n, err := archive.Apply(ctx, dir, r)
		if err != nil {
			return fmt.Errorf("extract layer %s: %w", desc.Digest, err)
		}
		if got != diffID {
			return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("layer %s: uncompressed digest %s does not match %s in the image config", desc.Digest, got, diffID))
		}
		if size != nil {
			*size = n
		}
		return nil
	})
}

// layerSize records a layer's uncompressed size when known (n > 0), else
// looks it up, falling back to the snapshot's disk usage.
func (e *Engine) layerSize(ctx context.Context, diffID, chainID digest.Digest, n int64) int64 {
	if n > 0 {
		if err := e.meta.SetLayerSize(diffID, n); err != nil {
			e.log.Warn("record layer size", "layer", diffID, "err", err)
		}
		return n
	}
	if n, ok := e.meta.LayerSize(diffID); ok {
		return n
	}
	if u, err := e.snaps.Usage(ctx, chainID.String()); err == nil {
		return u
	}
	return 0
}

func (e *Engine) hasBlob(ctx context.Context, d digest.Digest) bool {
	_, err := e.content.Info(ctx, d)
	return err == nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// recordingWriter remembers the first error writing to w.
type recordingWriter struct {
	w   io.Writer
	err error
}

func (r *recordingWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.fn(c.n)
	}
	return n, err
}
