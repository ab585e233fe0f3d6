package image

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types (image manifest v2 schema 2). The OCI ones are
// ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
// ocispec.MediaTypeImageConfig and ocispec.MediaTypeImageLayer*.
const (
	MediaTypeDockerManifest           = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig             = dockerspec.DockerOCIImageMediaType // "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer              = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerUncompressed  = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerForeignLayer       = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerSchema1Manifest    = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1SignedManif = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	// OCI zstd layers; image-spec 1.1 has the constant, spelled here for
	// symmetry with the Docker names above.
	MediaTypeOCILayerZstd = ocispec.MediaTypeImageLayerZstd
)

// MaxManifestSize bounds how much of a manifest or index Berth reads (as
// Docker does: 4 MiB).
const MaxManifestSize = 4 << 20

// ManifestMediaTypes are the manifest and index media types Berth can pull,
// in order of preference, for a registry's Accept header.
var ManifestMediaTypes = []string{
	ocispec.MediaTypeImageIndex,
	MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifest,
}

// IsIndex reports whether mt is an OCI index or a Docker manifest list.
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// IsManifest reports whether mt is an OCI image manifest or a Docker v2s2 manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// IsConfig reports whether mt is an image config media type.
func IsConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}

// IsLayer reports whether mt is a layer media type Berth can unpack (OCI or
// Docker; uncompressed, gzip or zstd; including non-distributable layers).
func IsLayer(mt string) bool {
	switch mt {
	case MediaTypeDockerLayer, MediaTypeDockerLayerUncompressed, MediaTypeDockerForeignLayer,
		ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributable,     //nolint:staticcheck // still found in the wild
		ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
		return true
	}
	return false
}

// Compression names a layer's compression from its media type: "gzip",
// "zstd", "" for uncompressed, "unknown" for media types it does not know.
// (The archive package detects compression from the bytes; this is for
// display and for choosing media types when pushing.)
func Compression(mt string) string {
	switch {
	case mt == MediaTypeDockerLayer, mt == MediaTypeDockerForeignLayer, strings.HasSuffix(mt, "+gzip"):
		return "gzip"
	case strings.HasSuffix(mt, "+zstd"):
		return "zstd"
	case mt == MediaTypeDockerLayerUncompressed, mt == ocispec.MediaTypeImageLayer,
		mt == ocispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck
		return ""
	}
	return "unknown"
}

// versioned is the part of every manifest and index that says what it is.
type versioned struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType,omitempty"`
	Config        json.RawMessage `json:"config,omitempty"`
	Layers        json.RawMessage `json:"layers,omitempty"`
	Manifests     json.RawMessage `json:"manifests,omitempty"`
	FSLayers      json.RawMessage `json:"fsLayers,omitempty"`
}

// DetectMediaType tells a manifest from an index by its content, for
// registries and archives that do not say (or say "application/json").
// The mediaType field wins when it is set.
func DetectMediaType(data []byte) (string, error) {
	var v versioned
	if err := json.Unmarshal(data, &v); err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("decode manifest: %w", err))
	}
	if v.MediaType != "" {
		return v.MediaType, nil
	}
	switch {
	case v.SchemaVersion == 1 || v.FSLayers != nil:
		return MediaTypeDockerSchema1Manifest, nil
	case v.Manifests != nil && v.Config == nil:
		return ocispec.MediaTypeImageIndex, nil
	case v.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", errdefs.InvalidArgument(fmt.Errorf("decode manifest: neither a manifest nor an index"))
}

// checkMediaType refuses a document whose own mediaType field disagrees with
// the media type it was served or stored as.
func checkMediaType(what, declared, inDoc string, allowed func(string) bool) error {
	if inDoc != "" && declared != "" && inDoc != declared {
		return errdefs.InvalidArgument(fmt.Errorf("decode %s: media type %q does not match the document's %q", what, declared, inDoc))
	}
	mt := inDoc
	if mt == "" {
		mt = declared
	}
	if mt != "" && !allowed(mt) {
		if mt == MediaTypeDockerSchema1Manifest || mt == MediaTypeDockerSchema1SignedManif {
			return errdefs.NotImplemented(fmt.Errorf("decode %s: Docker image manifest schema 1 is deprecated and not supported; push the image again with a current client", what))
		}
		return errdefs.InvalidArgument(fmt.Errorf("decode %s: unsupported media type %q", what, mt))
	}
	return nil
}

func checkDescriptor(what string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("%s: digest %q: %w", what, d.Digest, err))
	}
	if d.Size < 0 {
		return errdefs.InvalidArgument(fmt.Errorf("%s %s: negative size %d", what, d.Digest, d.Size))
	}
	return nil
}

// DecodeManifest decodes an OCI or Docker v2s2 image manifest. mediaType is
// what the registry or store said it is ("" when unknown); it must agree with
// the document. Every descriptor must carry a valid digest.
func DecodeManifest(mediaType string, data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, errdefs.InvalidArgument(fmt.Errorf("decode manifest: %w", err))
	}
	if m.SchemaVersion != 2 {
		if m.SchemaVersion == 1 {
			return m, checkMediaType("manifest", "", MediaTypeDockerSchema1Manifest, IsManifest)
		}
		return m, errdefs.InvalidArgument(fmt.Errorf("decode manifest: unsupported schemaVersion %d", m.SchemaVersion))
	}
	if err := checkMediaType("manifest", mediaType, m.MediaType, IsManifest); err != nil {
		return m, err
	}
	if m.MediaType == "" {
		m.MediaType = mediaType
	}
	if m.MediaType == "" {
		m.MediaType = ocispec.MediaTypeImageManifest
	}
	if err := checkDescriptor("manifest config", m.Config); err != nil {
		return m, err
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(fmt.Sprintf("manifest layer %d", i), l); err != nil {
			return m, err
		}
	}
	return m, nil
}

// DecodeIndex decodes an OCI index or a Docker manifest list; mediaType as
// for DecodeManifest.
func DecodeIndex(mediaType string, data []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, errdefs.InvalidArgument(fmt.Errorf("decode index: %w", err))
	}
	if idx.SchemaVersion != 2 {
		return idx, errdefs.InvalidArgument(fmt.Errorf("decode index: unsupported schemaVersion %d", idx.SchemaVersion))
	}
	if err := checkMediaType("index", mediaType, idx.MediaType, IsIndex); err != nil {
		return idx, err
	}
	if idx.MediaType == "" {
		idx.MediaType = mediaType
	}
	if idx.MediaType == "" {
		idx.MediaType = ocispec.MediaTypeImageIndex
	}
	for i, d := range idx.Manifests {
		if err := checkDescriptor(fmt.Sprintf("index entry %d", i), d); err != nil {
			return idx, err
		}
	}
	return idx, nil
}

// SelectManifest picks the entry of idx for platform want: the best match by
// Match (exact variant first, then the newest compatible one). Entries
// without a platform are taken only when nothing matches by platform, and
// only if there is exactly one such entry (the caller checks its config).
// The error names the wanted platform and the ones available.
func SelectManifest(idx ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, error) {
	best, bestRank := -1, 0
	var unplatformed []int
	var available []string
	for i, d := range idx.Manifests {
		if !IsManifest(d.MediaType) && !IsIndex(d.MediaType) {
			continue
		}
		if d.Platform == nil {
			unplatformed = append(unplatformed, i)
			continue
		}
		if isAttestation(d) {
			continue
		}
		available = append(available, FormatPlatform(Normalize(*d.Platform)))
		if !Match(want, *d.Platform) {
			continue
		}
		if r := matchRank(want, *d.Platform); best < 0 || r < bestRank {
			best, bestRank = i, r
		}
	}
	if best >= 0 {
		return idx.Manifests[best], nil
	}
	if len(unplatformed) == 1 {
		return idx.Manifests[unplatformed[0]], nil
	}
	slices.Sort(available)
	available = slices.Compact(available)
	list := strings.Join(available, ", ")
	if list == "" {
		list = "none"
	}
	return ocispec.Descriptor{}, errdefs.NotFound(fmt.Errorf("no matching manifest for %s in the manifest list entries (available: %s)", FormatPlatform(Normalize(want)), list))
}

// isAttestation reports whether d is a BuildKit attestation manifest
// (platform unknown/unknown), which is never an image to run.
func isAttestation(d ocispec.Descriptor) bool {
	return d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
		(d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown")
}

// Children returns the descriptors a manifest or index refers to: an index's
// manifests; a manifest's config and layers. Other media types have none.
func Children(mediaType string, data []byte) ([]ocispec.Descriptor, error) {
	switch {
	case IsIndex(mediaType):
		idx, err := DecodeIndex(mediaType, data)
		if err != nil {
			return nil, err
		}
		return idx.Manifests, nil
	case IsManifest(mediaType):
		m, err := DecodeManifest(mediaType, data)
		if err != nil {
			return nil, err
		}
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
	}
	return nil, nil
}

// Descriptor describes data as a blob of media type mt.
func Descriptor(mt string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// Verify checks that data is exactly the blob desc describes (size and
// digest); the error names the digest and is of class errdefs.ErrDataLoss.
func Verify(desc ocispec.Descriptor, data []byte) error {
	if desc.Size >= 0 && int64(len(data)) != desc.Size && desc.Size != 0 {
		return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("verify %s: size %d, want %d", desc.Digest, len(data), desc.Size))
	}
	if desc.Digest != "" {
		if err := desc.Digest.Validate(); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("verify %s: %w", desc.Digest, err))
		}
		if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
			return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("verify %s: content has digest %s", desc.Digest, got))
		}
	}
	return nil
}
