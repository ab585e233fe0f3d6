package image

import (
	"encoding/json"
	"fmt"

	"github.com/berth-project/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Config is an image config: the OCI image config plus Docker's extensions
// (Healthcheck, OnBuild, Shell), so that nothing a Docker-built image says is
// lost on the way through Berth.
type Config = dockerspec.DockerOCIImage

// DecodeConfig decodes an image config and checks what a pull relies on: a
// layers rootfs whose diff IDs are valid digests.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return c, errdefs.InvalidArgument(fmt.Errorf("decode image config: %w", err))
	}
	if c.RootFS.Type != "layers" {
		return c, errdefs.InvalidArgument(fmt.Errorf("decode image config: rootfs type %q, want \"layers\"", c.RootFS.Type))
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return c, errdefs.InvalidArgument(fmt.Errorf("decode image config: diff ID %d %q: %w", i, d, err))
		}
	}
	return c, nil
}

// ConfigPlatform is the platform an image config says the image is for.
func ConfigPlatform(c Config) ocispec.Platform {
	return Normalize(ocispec.Platform{
		OS:           c.OS,
		Architecture: c.Architecture,
		Variant:      c.Variant,
		OSVersion:    c.OSVersion,
		OSFeatures:   c.OSFeatures,
	})
}

// CheckLayers checks that a manifest and its config agree on the number of
// layers (each layer blob unpacks to one diff ID), naming the manifest.
func CheckLayers(manifest digest.Digest, m ocispec.Manifest, c Config) error {
	if len(m.Layers) != len(c.RootFS.DiffIDs) {
		return errdefs.InvalidArgument(fmt.Errorf("manifest %s has %d layers but its config lists %d diff IDs", manifest, len(m.Layers), len(c.RootFS.DiffIDs)))
	}
	return nil
}
