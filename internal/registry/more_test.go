package registry

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/berth-project/berth/internal/image"
)

// TestResolveFallsBackToGET covers registries whose HEAD answers lack the
// digest or a manifest media type, and registries that refuse HEAD.
func TestResolveFallsBackToGET(t *testing.T) {
	inner := newRegistryHandler()
	var mode atomic.Int32 // 1: HEAD without digest, 2: HEAD 405
	var gets atomic.Int32
	var mu sync.Mutex
	var agents []string
	_, host := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.Header.Get("User-Agent")+" "+r.Method+" "+r.URL.String())
		mu.Unlock()
		if !strings.Contains(r.URL.Path, "/manifests/") {
			inner.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet {
			gets.Add(1)
		}
		if r.Method == http.MethodHead {
			switch mode.Load() {
			case 1:
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(http.StatusOK)
				return
			case 2:
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
		}
		inner.ServeHTTP(w, r)
	}))
	img := seedImage(t, host, "app", "v1", 100, 1)
	want, _ := img.Digest()
	raw, _ := img.RawManifest()
	mu.Lock()
	agents = nil // forget the seeding client's requests
	mu.Unlock()
	c := New(WithRetry(0, 0), WithUserAgent("berth-test/1"))
	for _, m := range []int32{0, 1, 2} {
		mode.Store(m)
		gets.Store(0)
		desc, err := c.Resolve(context.Background(), mustRef(t, host+"/app:v1"))
		if err != nil || desc.Digest.String() != want.String() || desc.Size != int64(len(raw)) || desc.MediaType != image.MediaTypeDockerManifest {
			t.Errorf("mode %d: Resolve = %+v, %v", m, desc, err)
		}
		if wantGets := min(m, 1); gets.Load() != wantGets {
			t.Errorf("mode %d: %d GETs, want %d", m, gets.Load(), wantGets)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) == 0 {
		t.Fatal("no requests recorded")
	}
	for _, a := range agents {
		if !strings.HasPrefix(a, "berth-test/1") {
			t.Errorf("User-Agent %q, want berth-test/1 first", a)
			break
		}
	}
}

func TestPushBlobTriesMountSourcesInOrder(t *testing.T) {
	h := newPerRepo()
	_, host := startRegistry(t, h)
	desc, data := randomBlob(t, 700)
	ctx := context.Background()
	c := New(fastRetry())
	a := mustRef(t, host+"/src/a:1")
	if _, err := c.PushBlob(ctx, a, desc, (&opener{data: data}).open, nil); err != nil {
		t.Fatal(err)
	}
	o := &opener{data: data}
	empty := mustRef(t, host+"/src/empty:1")
	mounted, err := c.PushBlob(ctx, mustRef(t, host+"/dst:1"), desc, o.open, []image.Reference{empty, a})
	if err != nil || !mounted || o.calls.Load() != 0 {
		t.Fatalf("push with mount sources [empty, a] = %v, %v, %d opens; want a mount from a", mounted, err, o.calls.Load())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mounts) != 1 || h.mounts[0] != "src/a" {
		t.Errorf("mounts %q, want [src/a]", h.mounts)
	}
}

func TestDownloadProgress(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	img := seedImage(t, host, "big", "v1", 1<<20, 1)
	desc, data := layerOf(t, img, 0)
	var rec recorder
	c := New(fastRetry())
	ref := mustRef(t, host+"/big:v1")
	rc, err := c.FetchBlob(ContextWithProgress(context.Background(), rec.add), ref, desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("FetchBlob: %d bytes, %v", len(got), err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var last int64
	n := 0
	for _, ev := range rec.evs {
		if ev.Action != ActionDownload {
			continue
		}
		n++
		if ev.Current <= last || ev.Total != desc.Size || ev.Digest != desc.Digest || ev.Ref != ref {
			t.Errorf("bad download event %+v after %d", ev, last)
		}
		last = ev.Current
	}
	if n < 2 || last != desc.Size {
		t.Errorf("%d download events ending at %d, want several ending at %d", n, last, desc.Size)
	}
	if !(image.Reference{}).IsZero() || ref.IsZero() {
		t.Error("IsZero")
	}
}
