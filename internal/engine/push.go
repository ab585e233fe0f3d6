package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/registry"
)

// PushOptions are the options of Push.
type PushOptions struct {
	Auth     *Auth
	Progress ProgressFunc
	// Platform, when set, pushes only that platform's manifest.
	Platform string
}

// pushAux is the aux message closing a push stream, as Docker sends it.
type pushAux struct {
	Tag    string `json:"Tag"`
	Digest string `json:"Digest"`
	Size   int    `json:"Size"`
}

// Push uploads the image named ref (which must be a local tag) to its
// registry: blobs the registry has are skipped, blobs of other repositories
// on the same registry are mounted, then the manifest (or the whole index,
// when every platform's content is local) is put under the tag.
//
// A repository name without tag or digest pushes every tag of it.
func (e *Engine) Push(ctx context.Context, refStr string, opts PushOptions) error {
	if name, err := image.ParseName(refStr); err == nil && name.Tag == "" && name.Digest == "" {
		all, err := e.meta.Names()
		if err != nil {
			return err
		}
		var tags []string
		for n := range all {
			if r, err := image.ParseName(n); err == nil && r.Name() == name.Name() && r.Tag != "" {
				tags = append(tags, r.String())
			}
		}
		if len(tags) == 0 {
			return errdefs.NotFound(fmt.Errorf("An image does not exist locally with the tag: %s", name.FamiliarName()))
		}
		sort.Strings(tags)
		for _, t := range tags {
			if err := e.pushOne(ctx, t, opts); err != nil {
				return err
			}
		}
		return nil
	}
	return e.pushOne(ctx, refStr, opts)
}

func (e *Engine) pushOne(ctx context.Context, refStr string, opts PushOptions) error {
	ref, err := image.ParseReference(refStr)
	if err != nil {
		return err
	}
	id, err := e.resolveID(refStr)
	if err != nil {
		return errdefs.NotFound(fmt.Errorf("An image does not exist locally with the tag: %s", ref.FamiliarName()))
	}
	rec, err := e.meta.GetImage(id)
	if err != nil {
		return err
	}
	defer e.hold()()
	prog := opts.Progress.serialized()
	if ref.Tag != "" {
		prog.send(jsonstream.Message{Status: fmt.Sprintf("The push refers to repository [%s]", ref.Name())})
	}
	client := e.registryClient(opts.Auth, ref)

	// What to push: the index if every manifest it lists is local.
	top := rec.Manifest
	if isIndex(rec.Target.MediaType) && opts.Platform == "" && e.complete(ctx, rec.Target.Digest) {
		top = rec.Target
	}
	manifests := []ocispec.Descriptor{top}
	if isIndex(top.MediaType) {
		data, err := e.content.ReadAll(ctx, top.Digest)
		if err != nil {
			return err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("decode index %s: %w", top.Digest, err)
		}
		manifests = idx.Manifests
	}
	mountFrom := e.sameRegistryRepos(id, ref)
	for _, md := range manifests {
		if err := e.pushManifestTree(ctx, client, ref, md, mountFrom, prog, md.Digest != top.Digest); err != nil {
			return err
		}
	}
	data, err := e.content.ReadAll(ctx, top.Digest)
	if err != nil {
		return err
	}
	tagRef := ref
	if ref.Tag == "" {
		tagRef = ref.WithDigest(top.Digest)
	}
	if err := client.PushManifest(ctx, tagRef, top, data); err != nil {
		return fmt.Errorf("push manifest %s to %s: %w", top.Digest, tagRef.Familiar(), err)
	}
	name := ref.Tag
	if name == "" {
		name = top.Digest.String()
	}
	prog.send(jsonstream.Message{Status: fmt.Sprintf("%s: digest: %s size: %d", name, top.Digest, len(data))})
	aux, _ := json.Marshal(pushAux{Tag: ref.Tag, Digest: top.Digest.String(), Size: len(data)})
	raw := json.RawMessage(aux)
	prog.send(jsonstream.Message{Aux: &raw})
	// The pushed digest is now a repo digest of the image.
	e.nameLock.Lock()
	_, _ = e.meta.SetName(ref.WithDigest(top.Digest).String(), id)
	e.nameLock.Unlock()
	return nil
}

// complete reports whether every blob under d is in the content store.
func (e *Engine) complete(ctx context.Context, d digest.Digest) bool {
	if !e.hasBlob(ctx, d) {
		return false
	}
	children, err := e.content.Children(ctx, d)
	if err != nil {
		return false
	}
	for _, c := range children {
		if !e.complete(ctx, c.Digest) {
			return false
		}
	}
	return true
}

// sameRegistryRepos lists the other repositories on ref's registry that
// hold the image, for cross-repository mounts.
func (e *Engine) sameRegistryRepos(id digest.Digest, ref image.Reference) []image.Reference {
	names, _ := e.meta.NamesOf(id)
	seen := map[string]bool{ref.Name(): true}
	var out []image.Reference
	for _, n := range names {
		r, err := image.ParseName(n)
		if err != nil || r.Domain != ref.Domain || seen[r.Name()] {
			continue
		}
		seen[r.Name()] = true
		out = append(out, r.Repository())
	}
	return out
}

// pushManifestTree uploads a manifest's layers and config, and with
// byDigest the manifest itself (the children of an index; the top object is
// put under the tag by Push).
func (e *Engine) pushManifestTree(ctx context.Context, client *registry.Client, ref image.Reference, md ocispec.Descriptor, mountFrom []image.Reference, prog ProgressFunc, byDigest bool) error {
	data, err := e.content.ReadAll(ctx, md.Digest)
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", md.Digest, err)
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return fmt.Errorf("decode manifest %s: %w", md.Digest, err)
	}
	// Progress per blob from the registry client's events.
	ids := map[digest.Digest]string{}
	for _, l := range mf.Layers {
		ids[l.Digest] = shortID(l.Digest)
		prog.status(shortID(l.Digest), "Preparing")
	}
	var mu sync.Mutex
	reporters := map[digest.Digest]func(int64, int64){}
	ctx = registry.ContextWithProgress(ctx, func(p registry.Progress) {
		if p.Action != registry.ActionUpload {
			return
		}
		mu.Lock()
		id, ok := ids[p.Digest]
		rep := reporters[p.Digest]
		if ok && rep == nil {
			rep = throttled(prog, id, "Pushing")
			reporters[p.Digest] = rep
		}
		mu.Unlock()
		if rep != nil {
			rep(p.Current, p.Total)
		}
	})
	sem := make(chan struct{}, e.cfg.MaxConcurrentUploads)
	errs := make([]error, len(mf.Layers))
	var wg sync.WaitGroup
	for i, l := range mf.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = e.pushBlob(ctx, client, ref, l, mountFrom, prog, true)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := e.pushBlob(ctx, client, ref, mf.Config, mountFrom, prog, false); err != nil {
		return err
	}
	if byDigest {
		if err := client.PushManifest(ctx, ref.WithDigest(md.Digest), md, data); err != nil {
			return fmt.Errorf("push manifest %s to %s: %w", md.Digest, ref.Name(), err)
		}
	}
	return nil
}

func (e *Engine) pushBlob(ctx context.Context, client *registry.Client, ref image.Reference, desc ocispec.Descriptor, mountFrom []image.Reference, prog ProgressFunc, layer bool) error {
	id := shortID(desc.Digest)
	exists, err := client.BlobExists(ctx, ref, desc)
	if err != nil {
		return fmt.Errorf("check blob %s in %s: %w", desc.Digest, ref.Name(), err)
	}
	if exists {
		if layer {
			prog.status(id, "Layer already exists")
		}
		return nil
	}
	if !e.hasBlob(ctx, desc.Digest) {
		return errdefs.NotFound(fmt.Errorf("push %s: blob %s is not in the local store", ref.Familiar(), desc.Digest))
	}
	open := func() (io.ReadCloser, error) { return e.content.Open(ctx, desc.Digest) }
	mounted, err := client.PushBlob(ctx, ref, desc, open, mountFrom)
	if err != nil {
		return fmt.Errorf("push blob %s to %s: %w", desc.Digest, ref.Name(), err)
	}
	if layer {
		if mounted {
			prog.status(id, "Mounted from "+mountFrom[0].Path)
		} else {
			prog.status(id, "Pushed")
		}
	}
	return nil
}
