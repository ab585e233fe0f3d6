// Package content owns Berth's content-addressed blob store: an OCI image
// layout on disk (oci-layout, index.json, blobs/<alg>/<hex>) plus an ingest
// area for resumable partial writes. A blob becomes visible only after its
// size and digest have been verified, through an fsync and an atomic rename,
// so an interrupted pull never leaves a corrupt blob and the next pull reuses
// whatever was complete. berthd is the single writer of the store.
package content

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is an OCI image layout directory used as a blob store.
type Store struct {
	root string
}

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
}

// Open opens (creating if needed) the OCI image layout at root.
func Open(root string) (*Store, error) {
	return &Store{root: root}, nil
}

// Info returns the blob's size and creation time; errdefs.ErrNotFound if absent.
func (s *Store) Info(ctx context.Context, d digest.Digest) (Info, error) {
	return Info{}, errdefs.NotImplemented(fmt.Errorf("info %s", d))
}

// Open opens a committed (verified) blob read-only.
func (s *Store) Open(ctx context.Context, d digest.Digest) (*os.File, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("open %s", d))
}

// ReadAll returns the content of a committed blob.
func (s *Store) ReadAll(ctx context.Context, d digest.Digest) ([]byte, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("read %s", d))
}

// Writer is an ingest in progress.
type Writer struct{}

// Writer opens (or resumes) the ingest for ref.
func (s *Store) Writer(ctx context.Context, ref string, expected ocispec.Descriptor) (*Writer, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("writer %s", ref))
}

// Offset says how many bytes the ingest already holds.
func (w *Writer) Offset() int64 { return 0 }

// Write appends p to the ingest.
func (w *Writer) Write(p []byte) (int, error) {
	return 0, errdefs.NotImplemented(fmt.Errorf("write"))
}

// Digest is the digest of what has been written so far.
func (w *Writer) Digest() digest.Digest { return "" }

// Commit verifies and publishes the blob.
func (w *Writer) Commit() error { return errdefs.NotImplemented(fmt.Errorf("commit")) }

// Close releases the writer, keeping the partial ingest for resume.
func (w *Writer) Close() error { return nil }

// WriteBlob writes r as the blob desc.
func (s *Store) WriteBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	return errdefs.NotImplemented(fmt.Errorf("write blob %s", desc.Digest))
}

// Delete removes a blob.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	return errdefs.NotImplemented(fmt.Errorf("delete %s", d))
}

// Walk calls fn for every committed blob.
func (s *Store) Walk(ctx context.Context, fn func(Info) error) error {
	return errdefs.NotImplemented(fmt.Errorf("walk"))
}

// GC deletes every blob not reachable from roots and returns what it removed.
func (s *Store) GC(ctx context.Context, roots []digest.Digest) ([]digest.Digest, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("gc"))
}
