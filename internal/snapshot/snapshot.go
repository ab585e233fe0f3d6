// Package snapshot owns unpacked layers and the writable snapshots built on
// them: each layer is extracted once into a directory keyed by its chain ID,
// and containers and build steps get overlay (or bind) mounts over the chain.
package snapshot

import (
	"context"
	"fmt"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	digest "github.com/opencontainers/go-digest"
)

// Snapshotter manages snapshots under one root directory.
type Snapshotter struct {
	root string
}

// New opens the snapshotter at root.
func New(root string) (*Snapshotter, error) { return &Snapshotter{root: root}, nil }

// ChainID computes the OCI chain ID of a layer stack.
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

// Unpack makes sure the layer snapshot for chainID exists.
func (s *Snapshotter) Unpack(ctx context.Context, chainID, parent digest.Digest, extract func(dir string) error) error {
	return errdefs.NotImplemented(fmt.Errorf("unpack %s", chainID))
}

// Exists reports whether the layer snapshot exists.
func (s *Snapshotter) Exists(chainID digest.Digest) bool { return false }

// Prepare makes a writable snapshot over parent.
func (s *Snapshotter) Prepare(ctx context.Context, key string, parent digest.Digest) ([]mount.Mount, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("prepare %s", key))
}

// View makes a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key string, parent digest.Digest) ([]mount.Mount, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("view %s", key))
}

// Remove removes a snapshot.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return errdefs.NotImplemented(fmt.Errorf("remove %s", key))
}

// Usage returns the disk usage of a snapshot's own directory.
func (s *Snapshotter) Usage(ctx context.Context, key string) (int64, error) {
	return 0, errdefs.NotImplemented(fmt.Errorf("usage %s", key))
}

// Walk calls fn for every snapshot.
func (s *Snapshotter) Walk(ctx context.Context, fn func(key string, parent string) error) error {
	return errdefs.NotImplemented(fmt.Errorf("walk"))
}
