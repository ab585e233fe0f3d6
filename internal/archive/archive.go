// Package archive owns layer tarballs: safe extraction of gzip, zstd or plain
// tar layers into a directory ready for overlayfs (whiteouts become overlay
// whiteouts), never writing outside it, and the reverse, turning an overlay
// upper directory back into a layer tar.
package archive

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// Compression is a layer's compression.
type Compression int

// The compressions Apply understands.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

// ApplyOpt changes how Apply extracts.
type ApplyOpt func(*applyOptions)

type applyOptions struct {
	maxSize    int64
	maxEntries int
	devices    bool
}

// WithMaxSize bounds the uncompressed size of the layer.
func WithMaxSize(n int64) ApplyOpt { return func(o *applyOptions) { o.maxSize = n } }

// WithMaxEntries bounds the number of tar entries.
func WithMaxEntries(n int) ApplyOpt { return func(o *applyOptions) { o.maxEntries = n } }

// WithDevices says whether device nodes are created.
func WithDevices(allow bool) ApplyOpt { return func(o *applyOptions) { o.devices = allow } }

// Apply extracts the layer read from r into dir.
func Apply(ctx context.Context, dir string, r io.Reader, opts ...ApplyOpt) (digest.Digest, int64, error) {
	return "", 0, errdefs.NotImplemented(fmt.Errorf("apply layer to %s", dir))
}

// Diff writes a tar of the changes of upper over lowers.
func Diff(ctx context.Context, w io.Writer, upper string, lowers []string) error {
	return errdefs.NotImplemented(fmt.Errorf("diff %s", upper))
}

// DetectCompression peeks at r to tell the compression.
func DetectCompression(r *bufio.Reader) (Compression, error) {
	return Uncompressed, errdefs.NotImplemented(fmt.Errorf("detect compression"))
}
