// Package content owns Berth's content-addressed blob store: an OCI image
// layout on disk (oci-layout, index.json, blobs/<alg>/<hex>) plus an ingest
// area (ingest/<hash of ref>/{data,ref,expected}) for resumable partial
// writes. A blob becomes visible only after its size and digest have been
// verified, through an fsync and an atomic rename, so an interrupted pull
// never leaves a corrupt blob and the next pull reuses whatever was complete.
//
// berthd is the single writer of the store, so locking is in-process only: one
// Writer per ingest ref at a time.
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
)

const (
	layoutFile    = "oci-layout"
	layoutContent = `{"imageLayoutVersion":"1.0.0"}`
	indexFile     = "index.json"
	indexContent  = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
)

// Store is an OCI image layout directory used as a blob store.
type Store struct {
	root string

	mu    sync.Mutex
	locks map[string]chan struct{} // ingest ref -> held lock (closed on release)
}

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
}

// Open opens the OCI image layout at root, creating oci-layout, index.json,
// blobs/ and ingest/ where they are missing.
func Open(root string) (*Store, error) {
	for _, d := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "ingest")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create content store %s: %w", d, err)
		}
	}
	for name, data := range map[string]string{layoutFile: layoutContent, indexFile: indexContent} {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := writeFileAtomic(p, []byte(data), 0o644); err != nil {
			return nil, fmt.Errorf("create content store %s: %w", p, err)
		}
	}
	return &Store{root: root, locks: map[string]chan struct{}{}}, nil
}

// Root is the layout directory.
func (s *Store) Root() string { return s.root }

// BlobPath returns where the blob d lives (whether or not it exists).
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("blob digest %q: %w", d, err))
	}
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// Info returns the blob's size and creation time; errdefs.ErrNotFound if absent.
func (s *Store) Info(ctx context.Context, d digest.Digest) (Info, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, errdefs.NotFound(fmt.Errorf("blob %s: %w", d, err))
		}
		return Info{}, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return Info{Digest: d, Size: st.Size(), CreatedAt: st.ModTime()}, nil
}

// Open opens a committed blob read-only. Blobs are verified when they are
// committed, so what Open returns has the content its digest names.
func (s *Store) Open(ctx context.Context, d digest.Digest) (*os.File, error) {
	p, err := s.BlobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.NotFound(fmt.Errorf("blob %s: %w", d, err))
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// ReadAll returns the content of a committed blob.
func (s *Store) ReadAll(ctx context.Context, d digest.Digest) ([]byte, error) {
	f, err := s.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	return b, nil
}

// Delete removes a committed blob; errdefs.ErrNotFound if absent.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	p, err := s.BlobPath(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("delete blob %s: %w", d, err))
		}
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every committed blob, in digest order. Files in blobs/
// whose names are not valid digests are skipped.
func (s *Store) Walk(ctx context.Context, fn func(Info) error) error {
	blobs := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(blobs)
	if err != nil {
		return fmt.Errorf("walk blobs in %s: %w", blobs, err)
	}
	for _, alg := range algs {
		if !alg.IsDir() || !digest.Algorithm(alg.Name()).Available() {
			continue
		}
		dir := filepath.Join(blobs, alg.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("walk blobs in %s: %w", dir, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if !e.Type().IsRegular() || d.Validate() != nil {
				continue
			}
			st, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted while walking
				}
				return fmt.Errorf("stat blob %s: %w", d, err)
			}
			if err := fn(Info{Digest: d, Size: st.Size(), CreatedAt: st.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ingests lists the refs of the partial writes present in the store, sorted.
func (s *Store) Ingests(ctx context.Context) ([]string, error) {
	dir := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list ingests in %s: %w", dir, err)
	}
	var refs []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "ref"))
		if err != nil {
			continue
		}
		refs = append(refs, string(b))
	}
	sort.Strings(refs)
	return refs, nil
}

// Abort deletes the partial write for ref; errdefs.ErrNotFound if there is none.
// It waits for a Writer holding ref to be closed first.
func (s *Store) Abort(ctx context.Context, ref string) error {
	release, err := s.lock(ctx, ref)
	if err != nil {
		return err
	}
	defer release()
	dir := s.ingestDir(ref)
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("abort ingest %q: %w", ref, err))
		}
		return fmt.Errorf("abort ingest %q: %w", ref, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("abort ingest %q: %w", ref, err)
	}
	return nil
}

// CleanIngests deletes the partial writes last written before cutoff that
// no Writer holds, and returns their refs: what interrupted pulls left and
// nobody resumed.
func (s *Store) CleanIngests(ctx context.Context, cutoff time.Time) ([]string, error) {
	refs, err := s.Ingests(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, ref := range refs {
		s.mu.Lock()
		_, busy := s.locks[ref]
		s.mu.Unlock()
		if busy {
			continue
		}
		dir := s.ingestDir(ref)
		st, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			st, err = os.Stat(dir)
		}
		if err != nil || !st.ModTime().Before(cutoff) {
			continue
		}
		if err := s.Abort(ctx, ref); err != nil && !errdefs.IsNotFound(err) {
			return removed, err
		}
		removed = append(removed, ref)
	}
	return removed, nil
}

// lock takes the in-process lock of an ingest ref, waiting for a holder to
// release it or for ctx to end.
func (s *Store) lock(ctx context.Context, ref string) (release func(), err error) {
	for {
		s.mu.Lock()
		held, busy := s.locks[ref]
		if !busy {
			ch := make(chan struct{})
			s.locks[ref] = ch
			s.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					s.mu.Lock()
					delete(s.locks, ref)
					s.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, errdefs.Unavailable(fmt.Errorf("ingest %q is being written: %w", ref, ctx.Err()))
		}
	}
}

// writeFileAtomic writes data to a temporary file beside p, syncs it and
// renames it to p.
func writeFileAtomic(p string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
