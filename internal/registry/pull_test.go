package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestResolveFetchManifestAndBlob(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	img := seedImage(t, host, "test/app", "v1", 4096, 2)
	wantDigest, _ := img.Digest()
	raw, _ := img.RawManifest()

	var rec recorder
	c := New(fastRetry(), WithProgress(rec.add))
	ctx := context.Background()
	ref := mustRef(t, host+"/test/app:v1")

	desc, err := c.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if desc.Digest.String() != wantDigest.String() || desc.Size != int64(len(raw)) || desc.MediaType != image.MediaTypeDockerManifest {
		t.Fatalf("Resolve = %+v, want digest %s size %d", desc, wantDigest, len(raw))
	}
	// By digest too.
	byDigest, err := c.Resolve(ctx, ref.WithDigest(desc.Digest))
	if err != nil || byDigest.Digest != desc.Digest {
		t.Fatalf("Resolve by digest = %+v, %v", byDigest, err)
	}

	data, err := c.FetchManifest(ctx, ref, desc)
	if err != nil {
		t.Fatalf("FetchManifest: %v", err)
	}
	if !bytes.Equal(data, raw) {
		t.Fatal("FetchManifest returned other bytes than the registry has")
	}
	m, err := image.DecodeManifest(desc.MediaType, data)
	if err != nil || len(m.Layers) != 2 {
		t.Fatalf("DecodeManifest: %+v, %v", m, err)
	}

	ldesc, ldata := layerOf(t, img, 1)
	if m.Layers[1].Digest != ldesc.Digest {
		t.Fatalf("layer 1 digest %s, manifest says %s", ldesc.Digest, m.Layers[1].Digest)
	}
	rc, err := c.FetchBlob(ctx, ref, m.Layers[1], 0)
	if err != nil {
		t.Fatalf("FetchBlob: %v", err)
	}
	got, err := readAll(t, rc)
	if err != nil || !bytes.Equal(got, ldata) {
		t.Fatalf("FetchBlob from 0: %d bytes, %v; want %d bytes", len(got), err, len(ldata))
	}
	if rec.count(ActionComplete) != 1 {
		t.Errorf("got %d complete events, want 1", rec.count(ActionComplete))
	}

	// Resume from an offset with a Range request.
	for _, off := range []int64{1, int64(len(ldata)) / 2, int64(len(ldata)) - 1, int64(len(ldata))} {
		rc, err := c.FetchBlob(ctx, ref, m.Layers[1], off)
		if err != nil {
			t.Fatalf("FetchBlob at %d: %v", off, err)
		}
		got, err := readAll(t, rc)
		if err != nil || !bytes.Equal(got, ldata[off:]) {
			t.Fatalf("FetchBlob at %d: %d bytes, %v; want %d bytes", off, len(got), err, len(ldata)-int(off))
		}
	}
	if _, err := c.FetchBlob(ctx, ref, m.Layers[1], int64(len(ldata))+1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("FetchBlob past the end: %v, want InvalidArgument", err)
	}

	// Unknown things are NotFound.
	if _, err := c.Resolve(ctx, mustRef(t, host+"/test/app:nope")); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve unknown tag: %v, want NotFound", err)
	}
	missing := ocispec.Descriptor{Digest: digest.FromString("missing"), Size: 7}
	if _, err := c.FetchBlob(ctx, ref, missing, 0); !errdefs.IsNotFound(err) {
		t.Errorf("FetchBlob unknown blob: %v, want NotFound", err)
	}
	if ok, err := c.BlobExists(ctx, ref, missing); ok || err != nil {
		t.Errorf("BlobExists unknown blob = %v, %v", ok, err)
	}
	if ok, err := c.BlobExists(ctx, ref, ldesc); !ok || err != nil {
		t.Errorf("BlobExists layer = %v, %v", ok, err)
	}
}

// rangeStripper hides Range headers from the registry, as some proxies do.
func TestFetchBlobRegistryIgnoresRange(t *testing.T) {
	reg := newRegistryHandler()
	var ranged atomic.Int32
	_, host := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
			r.Header.Del("Range")
		}
		reg.ServeHTTP(w, r)
	}))
	img := seedImage(t, host, "x", "t", 10000, 1)
	desc, data := layerOf(t, img, 0)
	c := New(fastRetry())
	rc, err := c.FetchBlob(context.Background(), mustRef(t, host+"/x:t"), desc, 1234)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, rc)
	if err != nil || !bytes.Equal(got, data[1234:]) {
		t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(data)-1234)
	}
	if ranged.Load() != 1 {
		t.Errorf("%d ranged requests, want 1", ranged.Load())
	}
}

// cutBlob serves a blob's first cut bytes and then breaks the connection,
// the first time it is asked for; it records the Range headers it sees.
type cutBlob struct {
	next   http.Handler
	blob   string
	cut    int
	mu     sync.Mutex
	cuts   int
	ranges []string
}

func (h *cutBlob) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+h.blob) {
		h.mu.Lock()
		h.ranges = append(h.ranges, r.Header.Get("Range"))
		cut := h.cuts == 0
		h.cuts++
		h.mu.Unlock()
		if cut {
			rec := &bufferedWriter{header: http.Header{}}
			h.next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body.Bytes()[:h.cut])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}
	h.next.ServeHTTP(w, r)
}

type bufferedWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) { b.code = code }

func TestFetchBlobResumesAfterConnectionCut(t *testing.T) {
	reg := newRegistryHandler()
	h := &cutBlob{next: reg, cut: 3000}
	_, host := startRegistry(t, h)
	img := seedImage(t, host, "x", "t", 10000, 1)
	desc, data := layerOf(t, img, 0)
	h.blob = desc.Digest.String()

	var rec recorder
	c := New(fastRetry())
	ctx := ContextWithProgress(context.Background(), rec.add)
	rc, err := c.FetchBlob(ctx, mustRef(t, host+"/x:t"), desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(data))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ranges) != 2 || h.ranges[0] != "" || h.ranges[1] != fmt.Sprintf("bytes=3000-%d", len(data)-1) {
		t.Errorf("requests with Range %q, want [\"\" \"bytes=3000-%d\"]", h.ranges, len(data)-1)
	}
	if rec.count(ActionRetry) != 1 {
		t.Errorf("%d retry events, want 1", rec.count(ActionRetry))
	}

	// Without retries the cut is an error naming the blob.
	h.cuts = 0
	h.mu.Unlock()
	rc, err = New(WithRetry(0, 0)).FetchBlob(context.Background(), mustRef(t, host+"/x:t"), desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, rc)
	h.mu.Lock()
	if err == nil || !strings.Contains(err.Error(), desc.Digest.String()) {
		t.Errorf("cut without retries: %v, want an error naming %s", err, desc.Digest)
	}
}

// tamper rewrites response bodies of GETs whose path ends in suffix.
type tamper struct {
	next   http.Handler
	suffix string
	fn     func([]byte) []byte
}

func (h *tamper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || h.suffix == "" || !strings.HasSuffix(r.URL.Path, h.suffix) {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := &bufferedWriter{header: http.Header{}}
	h.next.ServeHTTP(rec, r)
	body := h.fn(rec.body.Bytes())
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.code)
	w.Write(body)
}

func TestWrongContentIsRejected(t *testing.T) {
	h := &tamper{next: newRegistryHandler()}
	_, host := startRegistry(t, h)
	img := seedImage(t, host, "x", "t", 2000, 1)
	desc, _ := layerOf(t, img, 0)
	ref := mustRef(t, host+"/x:t")
	c := New(WithRetry(0, 0))
	ctx := context.Background()

	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0xff
		return b
	}
	for _, tc := range []struct {
		name string
		fn   func([]byte) []byte
	}{
		{"flipped byte", flip},
		{"longer", func(b []byte) []byte { return append(bytes.Clone(b), 'x') }},
		{"shorter", func(b []byte) []byte { return b[:len(b)-1] }},
	} {
		h.suffix, h.fn = "/blobs/"+desc.Digest.String(), tc.fn
		rc, err := c.FetchBlob(ctx, ref, desc, 0)
		if err == nil {
			_, err = readAll(t, rc)
		}
		if err == nil || !strings.Contains(err.Error(), desc.Digest.String()) {
			t.Errorf("%s blob: %v, want an error naming %s", tc.name, err, desc.Digest)
		}
		if tc.name != "shorter" && !errors.Is(err, errdefs.ErrDataLoss) {
			t.Errorf("%s blob: %v is not DataLoss", tc.name, err)
		}
	}

	// Without digest verification a same-size corruption passes the client
	// (its consumer verifies), a longer blob still does not.
	noVerify := New(WithRetry(0, 0), WithBlobVerification(false))
	for name, fn := range map[string]func([]byte) []byte{"flipped byte": flip, "longer": func(b []byte) []byte { return append(bytes.Clone(b), 'x') }} {
		h.suffix, h.fn = "/blobs/"+desc.Digest.String(), fn
		rc, err := noVerify.FetchBlob(ctx, ref, desc, 0)
		if err == nil {
			_, err = readAll(t, rc)
		}
		if (err == nil) != (name == "flipped byte") {
			t.Errorf("%s blob without verification: %v", name, err)
		}
	}

	mdesc, err := New().Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	h.suffix, h.fn = "/manifests/"+mdesc.Digest.String(), func(b []byte) []byte {
		return append(bytes.Clone(b), '\n')
	}
	if _, err := c.FetchManifest(ctx, ref, mdesc); !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), mdesc.Digest.String()) {
		t.Errorf("tampered manifest: %v, want DataLoss naming %s", err, mdesc.Digest)
	}
	h.suffix = "/manifests/t"
	// By tag, only the size is known: a longer manifest is refused.
	if _, err := c.FetchManifest(ctx, ref, ocispec.Descriptor{Size: mdesc.Size}); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("tampered manifest by tag with its size known: %v, want DataLoss", err)
	}
}

// flaky answers 503 (or another status) to the first n requests matching.
type flaky struct {
	next   http.Handler
	match  string
	n      int32
	status int
	seen   atomic.Int32
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, f.match) && f.seen.Add(1) <= f.n {
		http.Error(w, "try again", f.status)
		return
	}
	f.next.ServeHTTP(w, r)
}

func TestRetriesTransientFailures(t *testing.T) {
	f := &flaky{next: newRegistryHandler(), match: "/manifests/", status: http.StatusServiceUnavailable}
	_, host := startRegistry(t, f)
	img := seedImage(t, host, "x", "t", 100, 1)
	want, _ := img.Digest()
	ctx := context.Background()
	ref := mustRef(t, host+"/x:t")

	f.n, f.seen = 2, atomic.Int32{}
	var rec recorder
	desc, err := New(WithRetry(3, 0), WithProgress(rec.add)).Resolve(ctx, ref)
	if err != nil || desc.Digest.String() != want.String() {
		t.Fatalf("Resolve after two 503s = %+v, %v", desc, err)
	}
	if got := f.seen.Load(); got != 3 {
		t.Errorf("%d manifest requests, want 3", got)
	}
	if rec.count(ActionRetry) != 2 {
		t.Errorf("%d retry events, want 2", rec.count(ActionRetry))
	}

	// The budget is bounded.
	f.n, f.seen = 100, atomic.Int32{}
	_, err = New(WithRetry(2, 0)).Resolve(ctx, ref)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Resolve with a registry always 503: %v, want Unavailable", err)
	}
	if got := f.seen.Load(); got != 3 {
		t.Errorf("%d manifest requests with 2 retries, want 3", got)
	}

	// 429 is retried, other 4xx are not.
	f.n, f.seen, f.status = 1, atomic.Int32{}, http.StatusTooManyRequests
	if _, err := New(WithRetry(3, 0)).Resolve(ctx, ref); err != nil {
		t.Errorf("Resolve after a 429: %v", err)
	}
	f.n, f.seen, f.status = 1, atomic.Int32{}, http.StatusBadRequest
	if _, err := New(WithRetry(3, 0)).Resolve(ctx, ref); err == nil {
		t.Error("Resolve after a 400: no error")
	}
	if got := f.seen.Load(); got != 1 {
		t.Errorf("%d requests for a 400, want 1 (no retry)", got)
	}

	// Blob GETs too.
	ldesc, ldata := layerOf(t, img, 0)
	f.match, f.n, f.seen, f.status = "/blobs/", 2, atomic.Int32{}, http.StatusBadGateway
	rc, err := New(WithRetry(3, 0)).FetchBlob(ctx, ref, ldesc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, ldata) {
		t.Errorf("FetchBlob after 502s: %d bytes, %v", len(got), err)
	}
}

func TestIndexPlatformSelection(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	var adds []mutate.IndexAddendum
	digests := map[string]v1.Hash{}
	for _, p := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "linux", Architecture: "arm", Variant: "v6"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
	} {
		img, err := random.Image(200, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		digests[p.Architecture+"/"+p.Variant] = d
		pp := p
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pp}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), types.OCIImageIndex)
	nref, _ := name.ParseReference(host+"/multi:latest", name.Insecure)
	if err := remote.WriteIndex(nref, idx); err != nil {
		t.Fatal(err)
	}

	c := New(fastRetry())
	ctx := context.Background()
	ref := mustRef(t, host+"/multi")
	desc, err := c.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("Resolve media type %q, want an OCI index", desc.MediaType)
	}
	data, err := c.FetchManifest(ctx, ref, desc)
	if err != nil {
		t.Fatal(err)
	}
	index, err := image.DecodeIndex(desc.MediaType, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ platform, want string }{
		{"linux/amd64", "amd64/"},
		{"linux/arm64", "arm64/v8"},
		{"linux/arm/v7", "arm/v7"},
		{"linux/arm/v6", "arm/v6"},
		{"linux/arm", "arm/v7"},
	} {
		p, err := image.ParsePlatform(tc.platform)
		if err != nil {
			t.Fatal(err)
		}
		m, err := image.SelectManifest(index, p)
		if err != nil {
			t.Errorf("SelectManifest(%s): %v", tc.platform, err)
			continue
		}
		if m.Digest.String() != digests[tc.want].String() {
			t.Errorf("SelectManifest(%s) = %s, want %s (%s)", tc.platform, m.Digest, digests[tc.want], tc.want)
		}
		// The chosen manifest is fetchable and verified.
		if _, err := c.FetchManifest(ctx, ref, m); err != nil {
			t.Errorf("FetchManifest(%s): %v", m.Digest, err)
		}
	}
	p, _ := image.ParsePlatform("linux/s390x")
	_, err = image.SelectManifest(index, p)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "linux/s390x") || !strings.Contains(err.Error(), "linux/arm/v7") {
		t.Errorf("SelectManifest(linux/s390x): %v, want NotFound naming wanted and available platforms", err)
	}
}
