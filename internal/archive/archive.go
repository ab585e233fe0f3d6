// Package archive owns layer tarballs, in both directions:
//
//   - Apply extracts a gzip, zstd or plain tar layer into a directory ready
//     for overlayfs: whiteout files become overlay whiteouts (character
//     devices 0/0) and opaque markers become the trusted.overlay.opaque
//     xattr. Entries climbing out with ".." are refused, absolute names are
//     taken relative to the directory, and every path is resolved inside it
//     (openat2 with RESOLVE_IN_ROOT, so symlinks planted by earlier entries
//     do not lead outside either); decompression is bounded, and the
//     uncompressed stream is hashed on the way through for the layer's diffID.
//   - Diff turns an overlay upper directory back into a layer tar, converting
//     overlay whiteouts and opaque directories into .wh. entries.
//
// The snapshotter and the image builder depend on it; it depends on nothing
// in Berth but errdefs.
package archive

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is a layer's compression.
type Compression int

// The compressions of layer tarballs.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", int(c))
}

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte{'B', 'Z', 'h'}
)

// DetectCompression peeks at the start of r (without consuming it) and tells
// the compression. Streams compressed with formats layers do not use (xz,
// bzip2) are refused with errdefs.ErrInvalidArgument; anything else is taken
// for an uncompressed tar.
func DetectCompression(r *bufio.Reader) (Compression, error) {
	head, err := r.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return Uncompressed, fmt.Errorf("detect compression: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return Gzip, nil
	case bytes.HasPrefix(head, magicZstd):
		return Zstd, nil
	case bytes.HasPrefix(head, magicXz):
		return Uncompressed, errdefs.InvalidArgument(errors.New("detect compression: xz-compressed layers are not supported"))
	case bytes.HasPrefix(head, magicBzip2) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return Uncompressed, errdefs.InvalidArgument(errors.New("detect compression: bzip2-compressed layers are not supported"))
	}
	return Uncompressed, nil
}

// maxZstdWindow bounds the memory a zstd frame may ask for (zstd --long=27).
const maxZstdWindow = 128 << 20

// Decompress returns a reader of the decompressed content of r, which is
// compressed with c. Close releases the decoder (not r).
func Decompress(r io.Reader, c Compression) (io.ReadCloser, error) {
	switch c {
	case Uncompressed:
		return io.NopCloser(r), nil
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("open gzip stream: %w", err)
		}
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("open zstd stream: %w", err)
		}
		return zstdReadCloser{zr}, nil
	}
	return nil, errdefs.InvalidArgument(fmt.Errorf("decompress: unknown %s", c))
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }

// Compress returns a writer that compresses into w with c. Close flushes the
// compressor (and does not close w).
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Uncompressed:
		return nopWriteCloser{w}, nil
	case Gzip:
		return gzip.NewWriter(w), nil
	case Zstd:
		zw, err := zstd.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("open zstd writer: %w", err)
		}
		return zw, nil
	}
	return nil, errdefs.InvalidArgument(fmt.Errorf("compress: unknown %s", c))
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
