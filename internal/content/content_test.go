package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func descOf(b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// noIngests fails t if a partial write is left in the store.
func noIngests(t *testing.T, s *Store) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("ingest not cleaned: %d entries", len(entries))
	}
}

func TestLayout(t *testing.T) {
	s := newStore(t)
	b, err := os.ReadFile(filepath.Join(s.root, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(b, &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout = %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(s.root, "index.json")); err != nil {
		t.Fatal(err)
	}
	// Reopening keeps what is there.
	data := []byte("hello")
	if err := s.WriteBlob(context.Background(), descOf(data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.ReadAll(context.Background(), digest.FromBytes(data))
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAll after reopen = %q, %v", got, err)
	}
}

func TestWriteVerified(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 3<<20+17)
	desc := descOf(data)
	if _, err := s.Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("Info before write: %v, want NotFound", err)
	}
	if err := s.WriteBlob(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, desc.Digest)
	if err != nil || info.Size != desc.Size || info.Digest != desc.Digest || info.CreatedAt.IsZero() {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	f, err := s.Open(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("blob content differs")
	}
	p, _ := s.BlobPath(desc.Digest)
	if p != filepath.Join(s.root, "blobs", "sha256", desc.Digest.Encoded()) {
		t.Fatalf("blob path %s", p)
	}
	if st, _ := os.Stat(p); st.Mode().Perm()&0o222 != 0 {
		t.Fatalf("blob is writable: %v", st.Mode())
	}
	// A second write of the same blob is a no-op; a Writer says it exists.
	if err := s.WriteBlob(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer(ctx, "again", desc); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Writer for existing blob: %v, want AlreadyExists", err)
	}
	noIngests(t, s)
}

func TestWrongDigest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := []byte("the real content")
	desc := descOf(data)
	bad := []byte("the fake content")
	err := s.WriteBlob(ctx, desc, bytes.NewReader(bad))
	if !errors.Is(err, errdefs.ErrDataLoss) {
		t.Fatalf("err = %v, want DataLoss", err)
	}
	if !strings.Contains(err.Error(), desc.Digest.String()) || !strings.Contains(err.Error(), digest.FromBytes(bad).String()) {
		t.Fatalf("error does not name expected and actual digest: %v", err)
	}
	if _, err := s.Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("bad blob visible: %v", err)
	}
	if _, err := s.Info(ctx, digest.FromBytes(bad)); !errdefs.IsNotFound(err) {
		t.Fatalf("bad blob stored under its own digest: %v", err)
	}
	noIngests(t, s)
}

func TestWrongSize(t *testing.T) {
	ctx := context.Background()
	data := []byte("0123456789")
	for name, tc := range map[string]struct {
		size int64
		body []byte
	}{
		"short": {size: 10, body: data[:5]},
		"long":  {size: 5, body: data},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: tc.size}
			err := s.WriteBlob(ctx, desc, bytes.NewReader(tc.body))
			if !errors.Is(err, errdefs.ErrDataLoss) {
				t.Fatalf("err = %v, want DataLoss", err)
			}
			if _, err := s.Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
				t.Fatalf("blob visible: %v", err)
			}
			noIngests(t, s)
		})
	}
}

func TestResume(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(t, 1<<20)
	desc := descOf(data)
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(ctx, "layer", desc)
			if err != nil {
				t.Fatal(err)
			}
			if w.Offset() != 0 {
				t.Fatalf("fresh offset %d", w.Offset())
			}
			if _, err := w.Write(data[:400000]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if crash {
				// As if berthd died before Close could save the hash state.
				os.Remove(filepath.Join(s.ingestDir("layer"), "hashstate"))
			}
			if _, err := s.Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
				t.Fatalf("partial blob visible: %v", err)
			}
			if refs, _ := s.Ingests(ctx); len(refs) != 1 || refs[0] != "layer" {
				t.Fatalf("ingests = %v", refs)
			}
			w, err = s.Writer(ctx, "layer", desc)
			if err != nil {
				t.Fatal(err)
			}
			if w.Offset() != 400000 {
				t.Fatalf("resumed offset %d, want 400000", w.Offset())
			}
			if _, err := w.Write(data[w.Offset():]); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			got, err := s.ReadAll(ctx, desc.Digest)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("resumed blob differs (%v)", err)
			}
			noIngests(t, s)
		})
	}
}

// A partial write whose data was damaged (a crash wrote zeros) fails its
// digest check when completed and leaves nothing behind.
func TestResumeDamaged(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 100000)
	desc := descOf(data)
	w, err := s.Writer(ctx, "layer", desc)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:50000])
	w.Close()
	os.Remove(filepath.Join(s.ingestDir("layer"), "hashstate"))
	f, err := os.OpenFile(filepath.Join(s.ingestDir("layer"), "data"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 1000), 20000)
	f.Close()
	w, err = s.Writer(ctx, "layer", desc)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[w.Offset():])
	if err := w.Commit(); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Fatalf("commit of damaged ingest: %v, want DataLoss", err)
	}
	noIngests(t, s)
	if err := s.WriteBlob(ctx, desc, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// An ingest ref reused for another blob starts afresh.
func TestResumeOtherBlob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := randomBytes(t, 1000), randomBytes(t, 2000)
	w, _ := s.Writer(ctx, "ref", descOf(a))
	w.Write(a[:500])
	w.Close()
	w, err := s.Writer(ctx, "ref", descOf(b))
	if err != nil {
		t.Fatal(err)
	}
	if w.Offset() != 0 {
		t.Fatalf("offset %d for another blob", w.Offset())
	}
	w.Write(b)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownDigest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 12345)
	w, err := s.Writer(ctx, "import", ocispec.Descriptor{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if w.Digest() != digest.FromBytes(data) {
		t.Fatalf("digest %s", w.Digest())
	}
	if info, err := s.Info(ctx, digest.FromBytes(data)); err != nil || info.Size != 12345 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 2<<20)
	desc := descOf(data)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				// Same ref: serialised by the ingest lock.
				errs <- s.WriteBlob(ctx, desc, bytes.NewReader(data))
				return
			}
			// Own ref, same digest: separate ingests, one rename wins.
			w, err := s.Writer(ctx, "writer-"+string(rune('a'+i)), desc)
			if errdefs.IsAlreadyExists(err) {
				errs <- nil
				return
			}
			if err != nil {
				errs <- err
				return
			}
			for off := 0; off < len(data); off += 4096 {
				if _, err := w.Write(data[off:min(off+4096, len(data))]); err != nil {
					errs <- err
					return
				}
			}
			if err := w.Commit(); err != nil && !errdefs.IsAlreadyExists(err) {
				errs <- err
				return
			}
			errs <- nil
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadAll(ctx, desc.Digest)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob corrupted by concurrent writers (%v)", err)
	}
	noIngests(t, s)
}

func TestWriterLockWaitsForContext(t *testing.T) {
	s := newStore(t)
	data := []byte("x")
	w, err := s.Writer(context.Background(), "ref", descOf(data))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Writer(ctx, "ref", descOf(data)); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("second writer on a held ref: %v, want Unavailable", err)
	}
}

func TestDeleteAndWalk(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	want := map[digest.Digest]int64{}
	for i := range 5 {
		b := randomBytes(t, 100+i)
		want[digest.FromBytes(b)] = int64(len(b))
		if err := s.WriteBlob(ctx, descOf(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(s.root, "blobs", "sha256", "not-a-digest"), nil, 0o644)
	got := map[digest.Digest]int64{}
	if err := s.Walk(ctx, func(i Info) error { got[i.Digest] = i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("walk found %v, want %v", got, want)
	}
	for d, n := range want {
		if got[d] != n {
			t.Fatalf("walk: %s size %d, want %d", d, got[d], n)
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, d); !errdefs.IsNotFound(err) {
			t.Fatalf("second delete: %v", err)
		}
	}
	if _, err := s.Info(ctx, "sha256:nope"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Info of a bad digest: %v", err)
	}
}

func putJSON(t *testing.T, s *Store, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := descOf(b)
	d.MediaType = mediaType
	if err := s.WriteBlob(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func putBlob(t *testing.T, s *Store, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := descOf(b)
	d.MediaType = mediaType
	if err := s.WriteBlob(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	shared := putBlob(t, s, ocispec.MediaTypeImageLayerGzip, []byte("shared layer"))
	// Image 1: OCI index -> OCI manifest + Docker manifest.
	cfg1 := putJSON(t, s, ocispec.MediaTypeImageConfig, map[string]string{"architecture": "amd64"})
	l1 := putBlob(t, s, ocispec.MediaTypeImageLayerGzip, []byte("layer one"))
	m1 := putJSON(t, s, ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg1, Layers: []ocispec.Descriptor{l1, shared}})
	cfg2 := putJSON(t, s, "application/vnd.docker.container.image.v1+json", map[string]string{"architecture": "arm64"})
	l2 := putBlob(t, s, "application/vnd.docker.image.rootfs.diff.tar.gzip", []byte("layer two"))
	m2 := putJSON(t, s, MediaTypeDockerManifest, ocispec.Manifest{MediaType: MediaTypeDockerManifest, Config: cfg2, Layers: []ocispec.Descriptor{l2}})
	idx := putJSON(t, s, ocispec.MediaTypeImageIndex, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{m1, m2}})
	// Image 2: a Docker manifest list, unreferenced after its removal.
	cfg3 := putJSON(t, s, ocispec.MediaTypeImageConfig, map[string]string{"os": "linux"})
	l3 := putBlob(t, s, ocispec.MediaTypeImageLayer, []byte("layer three"))
	m3 := putJSON(t, s, MediaTypeDockerManifest, ocispec.Manifest{MediaType: MediaTypeDockerManifest, Config: cfg3, Layers: []ocispec.Descriptor{l3, shared}})
	list := putJSON(t, s, MediaTypeDockerManifestList, ocispec.Index{MediaType: MediaTypeDockerManifestList, Manifests: []ocispec.Descriptor{m3}})
	// A layer whose bytes look like a manifest must not be parsed.
	trap := putBlob(t, s, ocispec.MediaTypeImageLayer, mustJSON(t, ocispec.Manifest{Config: cfg3}))
	m4 := putJSON(t, s, ocispec.MediaTypeImageManifest, ocispec.Manifest{Config: cfg1, Layers: []ocispec.Descriptor{trap}})
	orphan := putBlob(t, s, "application/octet-stream", []byte("orphan"))

	removed, err := s.GC(ctx, []digest.Digest{idx.Digest, m4.Digest, digest.Digest("sha256:" + strings.Repeat("0", 64))})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []ocispec.Descriptor{shared, cfg1, l1, m1, cfg2, l2, m2, idx, trap, m4} {
		if _, err := s.Info(ctx, d.Digest); err != nil {
			t.Errorf("reachable %s (%s) removed: %v", d.Digest, d.MediaType, err)
		}
	}
	gone := []ocispec.Descriptor{cfg3, l3, m3, list, orphan}
	for _, d := range gone {
		if _, err := s.Info(ctx, d.Digest); !errdefs.IsNotFound(err) {
			t.Errorf("unreachable %s (%s) kept: %v", d.Digest, d.MediaType, err)
		}
	}
	if len(removed) != len(gone) {
		t.Errorf("removed %v, want %d blobs", removed, len(gone))
	}
	// Everything goes when nothing is a root.
	if _, err := s.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	s.Walk(ctx, func(Info) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d blobs left after GC without roots", n)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCleanIngests(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 1000)
	for _, ref := range []string{"old", "held"} {
		w, err := s.Writer(ctx, ref, descOf(data))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data[:10])
		w.Close()
	}
	held, err := s.Writer(ctx, "held", descOf(data))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	past := time.Now().Add(-time.Hour)
	if removed, err := s.CleanIngests(ctx, past); err != nil || len(removed) != 0 {
		t.Fatalf("CleanIngests before anything is stale: %v %v", removed, err)
	}
	removed, err := s.CleanIngests(ctx, time.Now().Add(time.Hour))
	if err != nil || strings.Join(removed, ",") != "old" {
		t.Fatalf("CleanIngests = %v, %v; want [old]", removed, err)
	}
	if refs, _ := s.Ingests(ctx); strings.Join(refs, ",") != "held" {
		t.Fatalf("ingests left: %v", refs)
	}
	if err := s.Abort(ctx, "old"); !errdefs.IsNotFound(err) {
		t.Fatalf("Abort of a removed ingest: %v", err)
	}
}

func TestDiscard(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 1000)
	w, err := s.Writer(ctx, "bad", descOf(data))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:500])
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	w.Close() // after Discard, a no-op
	noIngests(t, s)
	w, err = s.Writer(ctx, "bad", descOf(data))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Offset() != 0 {
		t.Fatalf("offset %d after Discard", w.Offset())
	}
}
