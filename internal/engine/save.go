package engine

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/image"
)

// Annotations naming an image in an OCI layout, as containerd and Docker
// write them.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = ocispec.AnnotationRefName
)

// SavePlan is the resolved content of a save: which images, under which
// names. Planning first lets the API answer 404 before streaming a tar.
type SavePlan struct {
	images []saveImage
}

type saveImage struct {
	view imageView
	refs []image.Reference // tags to record (may be empty)
}

// PlanSave resolves names for Save: a tag saves that tag, a repository name
// saves all its tags, an ID saves the image untagged.
func (e *Engine) PlanSave(ctx context.Context, names []string) (*SavePlan, error) {
	plan := &SavePlan{}
	index := map[digest.Digest]int{}
	all, err := e.meta.Names()
	if err != nil {
		return nil, err
	}
	add := func(v imageView, refs ...image.Reference) {
		if i, ok := index[v.rec.ID]; ok {
			for _, r := range refs {
				if !slices.Contains(plan.images[i].refs, r) {
					plan.images[i].refs = append(plan.images[i].refs, r)
				}
			}
			return
		}
		index[v.rec.ID] = len(plan.images)
		plan.images = append(plan.images, saveImage{view: v, refs: refs})
	}
	for _, n := range names {
		if r, err := image.ParseName(n); err == nil && r.Tag == "" && r.Digest == "" {
			// A repository: every tag in it.
			var found bool
			for full := range all {
				fr, err := image.ParseName(full)
				if err != nil || fr.Name() != r.Name() || fr.Tag == "" {
					continue
				}
				v, err := e.view(ctx, full)
				if err != nil {
					return nil, err
				}
				add(v, fr)
				found = true
			}
			if found {
				continue
			}
		}
		v, err := e.view(ctx, n)
		if err != nil {
			return nil, err
		}
		if r, err := image.ParseReference(n); err == nil && r.Digest == "" {
			if _, err := e.meta.Resolve(r.String()); err == nil {
				add(v, r)
				continue
			}
		}
		add(v)
	}
	return plan, nil
}

type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// Save writes the planned images as a docker save archive that is also an
// OCI image layout: oci-layout, index.json, blobs/sha256/..., plus Docker's
// manifest.json and repositories.
func (e *Engine) Save(ctx context.Context, w io.Writer, plan *SavePlan) error {
	defer e.hold()()
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/", Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	written := map[digest.Digest]bool{}
	writeBlob := func(d digest.Digest) error {
		if written[d] {
			return nil
		}
		written[d] = true
		f, err := e.content.Open(ctx, d)
		if err != nil {
			return fmt.Errorf("save blob %s: %w", d, err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(d), Mode: 0o444, Size: st.Size(), ModTime: mtime}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	}
	writeFile := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	var dm []dockerManifestEntry
	repos := map[string]map[string]string{}
	for _, si := range plan.images {
		v := si.view
		for _, d := range append([]digest.Digest{v.rec.ID, v.rec.Manifest.Digest}, layerDigests(v.manifest)...) {
			if err := writeBlob(d); err != nil {
				return err
			}
		}
		entry := dockerManifestEntry{Config: blobPath(v.rec.ID), RepoTags: []string{}}
		for _, l := range v.manifest.Layers {
			entry.Layers = append(entry.Layers, blobPath(l.Digest))
		}
		desc := v.rec.Manifest
		desc.Annotations = nil
		desc.Platform = nil
		if len(si.refs) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		sort.Slice(si.refs, func(i, j int) bool { return si.refs[i].String() < si.refs[j].String() })
		for _, r := range si.refs {
			d := desc
			d.Annotations = map[string]string{annotationImageName: r.String(), annotationRefName: r.Tag}
			idx.Manifests = append(idx.Manifests, d)
			entry.RepoTags = append(entry.RepoTags, r.Familiar())
			if repos[r.FamiliarName()] == nil {
				repos[r.FamiliarName()] = map[string]string{}
			}
			repos[r.FamiliarName()][r.Tag] = v.rec.ID.Encoded()
		}
		dm = append(dm, entry)
	}
	idxData, _ := json.Marshal(idx)
	dmData, _ := json.Marshal(dm)
	repoData, _ := json.Marshal(repos)
	for _, f := range []struct {
		name string
		data []byte
	}{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"index.json", idxData}, {"manifest.json", dmData}, {"repositories", repoData}} {
		if err := writeFile(f.name, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

func layerDigests(m ocispec.Manifest) []digest.Digest {
	out := make([]digest.Digest, len(m.Layers))
	for i, l := range m.Layers {
		out[i] = l.Digest
	}
	return out
}
