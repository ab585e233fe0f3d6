package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// perRepo gives the in-memory registry (whose blobs are global) per-repository
// blob visibility and cross-repository mounts, and counts upload requests.
type perRepo struct {
	next http.Handler

	mu        sync.Mutex
	has       map[string]bool // repo + "@" + digest
	mounts    []string        // the repositories mounted from
	patches   int
	failPuts  int // answer 503 to this many upload PUTs
	putsTried int
}

func newPerRepo() *perRepo { return &perRepo{next: newRegistryHandler(), has: map[string]bool{}} }

func splitBlobPath(p string) (repo, rest string, ok bool) {
	p, ok = strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.Index(p, "/blobs/")
	if i < 0 {
		return "", "", false
	}
	return p[:i], p[i+len("/blobs/"):], true
}

func (h *perRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo, rest, ok := splitBlobPath(r.URL.Path)
	if !ok {
		h.next.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	switch {
	case (r.Method == http.MethodHead || r.Method == http.MethodGet) && !strings.HasPrefix(rest, "uploads"):
		if !h.has[repo+"@"+rest] {
			h.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to repository"}]}`)
			return
		}
	case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
		d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from")
		if h.has[from+"@"+d] {
			h.has[repo+"@"+d] = true
			h.mounts = append(h.mounts, from)
			h.mu.Unlock()
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
			w.WriteHeader(http.StatusCreated)
			return
		}
		r.URL.RawQuery = ""
	case r.Method == http.MethodPatch:
		h.patches++
	case r.Method == http.MethodPut:
		h.putsTried++
		if h.putsTried <= h.failPuts {
			h.mu.Unlock()
			io.Copy(io.Discard, r.Body)
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		h.mu.Unlock()
		rec := &bufferedWriter{header: http.Header{}}
		h.next.ServeHTTP(rec, r)
		h.mu.Lock()
		if rec.code == http.StatusCreated {
			h.has[repo+"@"+r.URL.Query().Get("digest")] = true
		}
		h.mu.Unlock()
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		w.Write(rec.body.Bytes())
		return
	}
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func randomBlob(t *testing.T, n int) (ocispec.Descriptor, []byte) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(n)}, b
}

// opener counts how often the blob's content was opened.
type opener struct {
	data  []byte
	calls atomic.Int32
}

func (o *opener) open() (io.ReadCloser, error) {
	o.calls.Add(1)
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

func TestPushBlobSkipsMountsAndUploads(t *testing.T) {
	h := newPerRepo()
	_, host := startRegistry(t, h)
	desc, data := randomBlob(t, 3500)
	ctx := context.Background()
	var rec recorder
	c := New(fastRetry(), WithProgress(rec.add))
	a, b := mustRef(t, host+"/team/a:1"), mustRef(t, host+"/team/b:1")

	o := &opener{data: data}
	mounted, err := c.PushBlob(ctx, a, desc, o.open, nil)
	if err != nil || mounted || o.calls.Load() != 1 {
		t.Fatalf("first push = %v, %v with %d opens; want an upload", mounted, err, o.calls.Load())
	}
	if ok, err := c.BlobExists(ctx, a, desc); !ok || err != nil {
		t.Fatalf("BlobExists after push = %v, %v", ok, err)
	}
	rc, err := c.FetchBlob(ctx, a, desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pushed blob reads back as %d bytes, %v", len(got), err)
	}
	if rec.count(ActionUpload) == 0 {
		t.Error("no upload progress events")
	}

	// Present already: no upload.
	mounted, err = c.PushBlob(ctx, a, desc, o.open, nil)
	if err != nil || !mounted || o.calls.Load() != 1 || rec.count(ActionExists) != 1 {
		t.Fatalf("second push = %v, %v with %d opens, %d exists events; want a skip", mounted, err, o.calls.Load(), rec.count(ActionExists))
	}

	// Mounted from another repository on the same registry; a source on
	// another registry is not asked.
	other := mustRef(t, "other.example/team/a:1")
	mounted, err = c.PushBlob(ctx, b, desc, o.open, []image.Reference{other, a})
	if err != nil || !mounted || o.calls.Load() != 1 {
		t.Fatalf("push with mount = %v, %v with %d opens; want a mount", mounted, err, o.calls.Load())
	}
	h.mu.Lock()
	mounts := append([]string(nil), h.mounts...)
	h.mu.Unlock()
	if len(mounts) != 1 || mounts[0] != "team/a" {
		t.Errorf("mounted from %q, want [team/a]", mounts)
	}
	if rec.count(ActionMounted) != 1 {
		t.Errorf("%d mounted events, want 1", rec.count(ActionMounted))
	}

	// A mount source without the blob: upload instead.
	cref := mustRef(t, host+"/team/c:1")
	mounted, err = c.PushBlob(ctx, cref, desc, o.open, []image.Reference{mustRef(t, host+"/team/empty:1")})
	if err != nil || mounted || o.calls.Load() != 2 {
		t.Fatalf("push with a failing mount = %v, %v with %d opens; want an upload", mounted, err, o.calls.Load())
	}
	if ok, _ := c.BlobExists(ctx, cref, desc); !ok {
		t.Error("blob missing after upload following a failed mount")
	}
}

func TestPushBlobChunked(t *testing.T) {
	h := newPerRepo()
	_, host := startRegistry(t, h)
	desc, data := randomBlob(t, 3500)
	ctx := context.Background()
	c := New(fastRetry(), WithChunkSize(1000))
	ref := mustRef(t, host+"/chunked:1")
	o := &opener{data: data}
	if mounted, err := c.PushBlob(ctx, ref, desc, o.open, nil); err != nil || mounted {
		t.Fatalf("chunked push = %v, %v", mounted, err)
	}
	h.mu.Lock()
	patches := h.patches
	h.mu.Unlock()
	if patches != 4 {
		t.Errorf("%d PATCH requests for 3500 bytes in chunks of 1000, want 4", patches)
	}
	rc, err := c.FetchBlob(ctx, ref, desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("chunked blob reads back as %d bytes, %v", len(got), err)
	}
}

func TestPushBlobRetriesAndVerifies(t *testing.T) {
	h := newPerRepo()
	h.failPuts = 1
	_, host := startRegistry(t, h)
	desc, data := randomBlob(t, 2000)
	ctx := context.Background()
	ref := mustRef(t, host+"/retry:1")
	o := &opener{data: data}
	if _, err := New(WithRetry(2, 0)).PushBlob(ctx, ref, desc, o.open, nil); err != nil {
		t.Fatalf("push after a 503: %v", err)
	}
	if o.calls.Load() != 2 {
		t.Errorf("content opened %d times, want 2 (the upload restarted)", o.calls.Load())
	}

	// Content that does not match the digest: the registry refuses it, and
	// the error names the blob.
	wrongDesc, _ := randomBlob(t, 2000)
	_, err := New(WithRetry(2, 0)).PushBlob(ctx, ref, wrongDesc, o.open, nil)
	if err == nil || !strings.Contains(err.Error(), wrongDesc.Digest.String()) {
		t.Fatalf("push of wrong content: %v, want an error naming %s", err, wrongDesc.Digest)
	}
	if ok, _ := New().BlobExists(ctx, ref, wrongDesc); ok {
		t.Error("the registry has a blob under the wrong digest")
	}
}

func TestPushManifest(t *testing.T) {
	_, host := startRegistry(t, newPerRepo())
	ctx := context.Background()
	c := New(fastRetry())
	ref := mustRef(t, host+"/pushed:v1")

	ldesc, ldata := randomBlob(t, 1500)
	cfg := image.Config{}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{ldesc.Digest}}
	cfgData, _ := json.Marshal(cfg)
	cdesc := image.Descriptor(ocispec.MediaTypeImageConfig, cfgData)
	for _, b := range []struct {
		d    ocispec.Descriptor
		data []byte
	}{{ldesc, ldata}, {cdesc, cfgData}} {
		o := &opener{data: b.data}
		if _, err := c.PushBlob(ctx, ref, b.d, o.open, nil); err != nil {
			t.Fatal(err)
		}
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cdesc, Layers: []ocispec.Descriptor{ldesc}}
	m.SchemaVersion = 2
	mdata, _ := json.Marshal(m)
	mdesc := image.Descriptor(ocispec.MediaTypeImageManifest, mdata)
	if err := c.PushManifest(ctx, ref, mdesc, mdata); err != nil {
		t.Fatalf("PushManifest: %v", err)
	}

	// Another client reads it back by tag.
	nref, _ := name.ParseReference(host+"/pushed:v1", name.Insecure)
	got, err := remote.Get(nref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest.String() != mdesc.Digest.String() || !bytes.Equal(got.Manifest, mdata) {
		t.Errorf("registry has %s, pushed %s", got.Digest, mdesc.Digest)
	}
	if desc, err := c.Resolve(ctx, ref); err != nil || desc.Digest != mdesc.Digest || desc.MediaType != mdesc.MediaType {
		t.Errorf("Resolve after push = %+v, %v", desc, err)
	}

	// By digest only.
	if err := c.PushManifest(ctx, ref.WithDigest(mdesc.Digest), mdesc, mdata); err != nil {
		t.Errorf("PushManifest by digest: %v", err)
	}

	// Data not matching its descriptor is never sent.
	bad := mdesc
	bad.Digest = digest.FromString("other")
	if err := c.PushManifest(ctx, mustRef(t, host+"/pushed:bad"), bad, mdata); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("PushManifest with a wrong digest: %v, want DataLoss", err)
	}
	if _, err := c.Resolve(ctx, mustRef(t, host+"/pushed:bad")); !errdefs.IsNotFound(err) {
		t.Errorf("tag of the refused manifest: %v, want NotFound", err)
	}
}
