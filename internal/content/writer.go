package content

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Writer is an ingest in progress: bytes appended to ingest/<hash of ref>/data
// while being hashed. Only Commit makes them a blob.
type Writer struct {
	s        *Store
	ref      string
	dir      string
	expected ocispec.Descriptor
	alg      digest.Algorithm

	f       *os.File
	h       hash.Hash
	offset  int64
	err     error // set once the ingest is known bad; Commit and Close then delete it
	release func()
	done    bool
	digest  digest.Digest
}

// ingestDir is the directory of ref's partial write.
func (s *Store) ingestDir(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.root, "ingest", hex.EncodeToString(sum[:]))
}

// Writer opens the ingest for ref, resuming a partial write left by an
// earlier Writer for the same ref and expected descriptor: Offset() says how
// much is already there, and the caller continues from it (or calls Reset).
//
// expected.Digest may be empty and expected.Size negative when they are not
// known in advance (an import); Commit then stores the blob under the digest
// of what was written. When they are known, Commit verifies them.
//
// Only one Writer per ref exists at a time: a second call waits until the
// first is committed or closed, or until ctx ends (errdefs.ErrUnavailable).
// If the expected blob is already committed Writer returns an error of class
// errdefs.ErrAlreadyExists.
func (s *Store) Writer(ctx context.Context, ref string, expected ocispec.Descriptor) (*Writer, error) {
	if ref == "" {
		return nil, errdefs.InvalidArgument(errors.New("open content writer: empty ingest ref"))
	}
	alg := digest.Canonical
	if expected.Digest != "" {
		if err := expected.Digest.Validate(); err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("open content writer %q: expected digest %q: %w", ref, expected.Digest, err))
		}
		alg = expected.Digest.Algorithm()
	}
	release, err := s.lock(ctx, ref)
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, ref: ref, dir: s.ingestDir(ref), expected: expected, alg: alg, release: release}
	if err := w.open(); err != nil {
		release()
		return nil, err
	}
	return w, nil
}

// ingestExpectation is what ingest/<ref>/expected records.
type ingestExpectation struct {
	Digest digest.Digest `json:"digest,omitempty"`
	Size   int64         `json:"size"`
}

func (w *Writer) open() error {
	if w.expected.Digest != "" {
		if _, err := w.s.Info(context.Background(), w.expected.Digest); err == nil {
			os.RemoveAll(w.dir)
			return errdefs.AlreadyExists(fmt.Errorf("blob %s", w.expected.Digest))
		}
	}
	want := ingestExpectation{Digest: w.expected.Digest, Size: w.expected.Size}
	if w.expected.Digest == "" && w.expected.Size <= 0 {
		want.Size = -1
	}
	// A partial write for another blob under the same ref is discarded.
	if b, err := os.ReadFile(filepath.Join(w.dir, "expected")); err == nil {
		var had ingestExpectation
		if json.Unmarshal(b, &had) != nil || had != want {
			if err := os.RemoveAll(w.dir); err != nil {
				return fmt.Errorf("discard stale ingest %q: %w", w.ref, err)
			}
		}
	}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return fmt.Errorf("create ingest %q: %w", w.ref, err)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "expected")); err != nil {
		exp, _ := json.Marshal(want)
		if err := os.WriteFile(filepath.Join(w.dir, "ref"), []byte(w.ref), 0o600); err != nil {
			return fmt.Errorf("create ingest %q: %w", w.ref, err)
		}
		if err := writeFileAtomic(filepath.Join(w.dir, "expected"), exp, 0o600); err != nil {
			return fmt.Errorf("create ingest %q: %w", w.ref, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(w.dir, "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open ingest %q: %w", w.ref, err)
	}
	w.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat ingest %q: %w", w.ref, err)
	}
	size := st.Size()
	if w.expected.Size > 0 && size > w.expected.Size {
		size = 0 // longer than the blob can be: start again
	}
	if err := w.restoreHash(size); err != nil {
		f.Close()
		return err
	}
	return nil
}

// restoreHash brings the running hash up to size bytes of data: from the
// state saved by Close when it matches, else by re-reading the data.
func (w *Writer) restoreHash(size int64) error {
	w.h = w.alg.Hash()
	statePath := filepath.Join(w.dir, "hashstate")
	defer os.Remove(statePath) // stale as soon as anything is written
	if size == 0 {
		return w.truncate()
	}
	if b, err := os.ReadFile(statePath); err == nil && len(b) > 8 && int64(binary.BigEndian.Uint64(b)) == size {
		if u, ok := w.h.(encoding.BinaryUnmarshaler); ok && u.UnmarshalBinary(b[8:]) == nil {
			w.offset = size
			_, err := w.f.Seek(size, io.SeekStart)
			return err
		}
		w.h = w.alg.Hash()
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rehash ingest %q: %w", w.ref, err)
	}
	n, err := io.Copy(w.h, io.LimitReader(w.f, size))
	if err != nil || n != size {
		w.h = w.alg.Hash()
		return w.truncate()
	}
	w.offset = size
	return nil
}

func (w *Writer) truncate() error {
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("reset ingest %q: %w", w.ref, err)
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reset ingest %q: %w", w.ref, err)
	}
	w.h = w.alg.Hash()
	w.offset = 0
	return nil
}

// Ref is the ingest ref the Writer was opened with.
func (w *Writer) Ref() string { return w.ref }

// Offset says how many bytes the ingest holds; a resumed Writer continues
// from there.
func (w *Writer) Offset() int64 { return w.offset }

// Reset discards the partial data, for a source that cannot resume.
func (w *Writer) Reset() error {
	if w.done {
		return fmt.Errorf("reset ingest %q: writer closed", w.ref)
	}
	w.err = nil
	return w.truncate()
}

// Write appends p to the ingest. Writing past the expected size fails with
// errdefs.ErrDataLoss, and the ingest is then discarded by Commit or Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write ingest %q: writer closed", w.ref)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.expected.Size >= 0 && (w.expected.Digest != "" || w.expected.Size > 0) && w.offset+int64(len(p)) > w.expected.Size {
		w.err = errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("write blob %s: more than the expected %d bytes received", w.expected.Digest, w.expected.Size))
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.offset += int64(n)
	if err != nil {
		return n, fmt.Errorf("write ingest %q: %w", w.ref, err)
	}
	return n, nil
}

// Digest is the digest of the bytes written so far (after Commit, of the blob).
func (w *Writer) Digest() digest.Digest {
	if w.digest != "" {
		return w.digest
	}
	return digest.NewDigest(w.alg, w.h)
}

// Commit verifies the written bytes against the expected size and digest,
// syncs them and renames them into blobs/ in one step. On a mismatch the
// partial data is deleted and the error, of class errdefs.ErrDataLoss, names
// the expected and actual digest or size. If the blob already exists the
// ingest is dropped and the error is of class errdefs.ErrAlreadyExists, which
// callers treat as success. Commit releases the Writer.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("commit ingest %q: writer closed", w.ref)
	}
	defer w.finish()
	if w.err != nil {
		w.discard()
		return w.err
	}
	actual := digest.NewDigest(w.alg, w.h)
	name := w.expected.Digest
	if name == "" {
		name = actual
	}
	if w.expected.Size >= 0 && (w.expected.Digest != "" || w.expected.Size > 0) && w.offset != w.expected.Size {
		w.discard()
		return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("commit blob %s: size mismatch: expected %d bytes, got %d", name, w.expected.Size, w.offset))
	}
	if w.expected.Digest != "" && actual != w.expected.Digest {
		w.discard()
		return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("commit blob: digest mismatch: expected %s, got %s", w.expected.Digest, actual))
	}
	w.digest = actual
	target, err := w.s.BlobPath(actual)
	if err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit blob %s: sync: %w", actual, err)
	}
	if err := w.f.Chmod(0o444); err != nil {
		return fmt.Errorf("commit blob %s: %w", actual, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("commit blob %s: %w", actual, err)
	}
	w.f = nil
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return fmt.Errorf("commit blob %s: %w", actual, err)
	}
	if _, err := os.Lstat(target); err == nil {
		w.discard()
		return errdefs.AlreadyExists(fmt.Errorf("commit blob %s", actual))
	}
	if err := os.Rename(filepath.Join(w.dir, "data"), target); err != nil {
		return fmt.Errorf("commit blob %s: %w", actual, err)
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		return fmt.Errorf("commit blob %s: sync directory: %w", actual, err)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("commit blob %s: remove ingest: %w", actual, err)
	}
	return nil
}

// Close releases the Writer. An uncommitted ingest is kept (synced, with the
// hash state saved) so that the next Writer for the ref resumes it, unless
// it was found bad, in which case it is deleted.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	defer w.finish()
	if w.err != nil {
		w.discard()
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("close ingest %q: sync: %w", w.ref, err)
	}
	if m, ok := w.h.(encoding.BinaryMarshaler); ok && w.offset > 0 {
		if state, err := m.MarshalBinary(); err == nil {
			b := binary.BigEndian.AppendUint64(nil, uint64(w.offset))
			// Losing the state only costs a re-read on resume.
			_ = writeFileAtomic(filepath.Join(w.dir, "hashstate"), append(b, state...), 0o600)
		}
	}
	return nil
}

// Discard releases the Writer and deletes the partial write: for a source
// found bad (a layer that failed to extract, say), which must not be resumed.
func (w *Writer) Discard() error {
	if w.done {
		return nil
	}
	w.discard()
	w.finish()
	return nil
}

func (w *Writer) discard() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	os.RemoveAll(w.dir)
}

func (w *Writer) finish() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.done = true
	w.release()
}

// WriteBlob writes r as the blob desc, verified like any Writer. A partial
// ingest is resumed when r is an io.Seeker, else restarted. A blob that
// already exists is success.
func (s *Store) WriteBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	ref := "blob-" + desc.Digest.String()
	if desc.Digest == "" {
		ref = fmt.Sprintf("blob-unknown-%p", &desc)
	}
	w, err := s.Writer(ctx, ref, desc)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	defer w.Close()
	if off := w.Offset(); off > 0 {
		seeker, ok := r.(io.Seeker)
		if ok {
			_, err = seeker.Seek(off, io.SeekStart)
		}
		if !ok || err != nil {
			if err := w.Reset(); err != nil {
				return err
			}
		}
	}
	if _, err := io.Copy(w, &ctxReader{ctx: ctx, r: r}); err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	if err := w.Commit(); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
