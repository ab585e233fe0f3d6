package content

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types whose blobs GC parses for references. Docker's are listed here
// because a pulled image keeps the media types its registry served.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxManifestSize bounds how much of a manifest or index GC reads.
const maxManifestSize = 8 << 20

// IsIndex reports whether mediaType is an OCI index or a Docker manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifest reports whether mediaType is an OCI or Docker v2 schema 2 manifest.
func IsManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

// refsDoc is the part of an index or manifest that references other blobs.
type refsDoc struct {
	MediaType string               `json:"mediaType"`
	Manifests []ocispec.Descriptor `json:"manifests"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Blobs     []ocispec.Descriptor `json:"blobs"` // OCI artifact manifests
	Subject   *ocispec.Descriptor  `json:"subject"`
}

// Children returns the descriptors an index or manifest blob references.
// Roots carry no media type, so a root blob is parsed whenever it is a JSON
// document with references; other blobs only when their descriptor names an
// index or manifest media type.
func (s *Store) Children(ctx context.Context, d digest.Digest) ([]ocispec.Descriptor, error) {
	f, err := s.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if t := bytes.TrimSpace(b); len(b) > maxManifestSize || len(t) == 0 || t[0] != '{' {
		return nil, nil // not a manifest: a layer or something opaque
	}
	var doc refsDoc
	if json.Unmarshal(b, &doc) != nil {
		return nil, nil // a JSON-less blob (a config of some other kind)
	}
	var out []ocispec.Descriptor
	out = append(out, doc.Manifests...)
	if doc.Config != nil {
		out = append(out, *doc.Config)
	}
	out = append(out, doc.Layers...)
	out = append(out, doc.Blobs...)
	if doc.Subject != nil {
		out = append(out, *doc.Subject)
	}
	return out, nil
}

// GC deletes every committed blob not reachable from roots and returns the
// digests it removed. Reachability follows indexes (and Docker manifest
// lists) to manifests, and manifests to their config, layers and subject;
// a root that is absent from the store is skipped. Blobs referenced but not
// parsed (configs, layers) are kept without being read.
//
// GC must not run while a pull is between committing its blobs and recording
// the image that references them: the caller serialises the two.
func (s *Store) GC(ctx context.Context, roots []digest.Digest) ([]digest.Digest, error) {
	keep := map[digest.Digest]bool{}
	type item struct {
		d     digest.Digest
		parse bool
	}
	var queue []item
	for _, r := range roots {
		queue = append(queue, item{r, true})
	}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it := queue[0]
		queue = queue[1:]
		if keep[it.d] || it.d.Validate() != nil {
			continue
		}
		keep[it.d] = true
		if !it.parse {
			continue
		}
		children, err := s.Children(ctx, it.d)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("garbage collect: walk %s: %w", it.d, err)
		}
		for _, c := range children {
			queue = append(queue, item{c.Digest, IsIndex(c.MediaType) || IsManifest(c.MediaType)})
		}
	}
	var removed []digest.Digest
	err := s.Walk(ctx, func(info Info) error {
		if keep[info.Digest] {
			return nil
		}
		if err := s.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		removed = append(removed, info.Digest)
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("garbage collect: %w", err)
	}
	return removed, nil
}
