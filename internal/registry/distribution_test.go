package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/testutil"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestAgainstDistributionRegistry runs the push and pull protocol against
// the registry most deployments run (Debian's docker-registry, the
// distribution project's), which is stricter than the in-memory one.
func TestAgainstDistributionRegistry(t *testing.T) {
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s not installed", testutil.RegistryBinary)
	}
	host := testutil.StartRegistry(t)
	ctx := context.Background()
	var rec recorder
	mono := New(fastRetry(), WithProgress(rec.add))
	chunked := New(fastRetry(), WithChunkSize(64<<10))
	src := mustRef(t, host+"/dist/src:v1")
	dst := mustRef(t, host+"/dist/dst:v1")

	ldesc, ldata := randomBlob(t, 300<<10)
	l2desc, l2data := randomBlob(t, 10)
	cfg := image.Config{}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{ldesc.Digest, l2desc.Digest}}
	cfgData, _ := json.Marshal(cfg)
	cdesc := image.Descriptor(ocispec.MediaTypeImageConfig, cfgData)

	// Monolithic and chunked uploads.
	if m, err := mono.PushBlob(ctx, src, ldesc, (&opener{data: ldata}).open, nil); err != nil || m {
		t.Fatalf("monolithic push = %v, %v", m, err)
	}
	if m, err := chunked.PushBlob(ctx, src, l2desc, (&opener{data: l2data}).open, nil); err != nil || m {
		t.Fatalf("small chunked push = %v, %v", m, err)
	}
	if m, err := chunked.PushBlob(ctx, src, cdesc, (&opener{data: cfgData}).open, nil); err != nil || m {
		t.Fatalf("config push = %v, %v", m, err)
	}
	big, bigData := randomBlob(t, 200<<10)
	if m, err := chunked.PushBlob(ctx, src, big, (&opener{data: bigData}).open, nil); err != nil || m {
		t.Fatalf("chunked push of 200 KiB in 64 KiB chunks = %v, %v", m, err)
	}
	rc, err := mono.FetchBlob(ctx, src, big, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, bigData) {
		t.Fatalf("chunked blob reads back as %d bytes, %v", len(got), err)
	}

	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cdesc, Layers: []ocispec.Descriptor{ldesc, l2desc}}
	m.SchemaVersion = 2
	mdata, _ := json.Marshal(m)
	mdesc := image.Descriptor(ocispec.MediaTypeImageManifest, mdata)
	if err := mono.PushManifest(ctx, src, mdesc, mdata); err != nil {
		t.Fatalf("PushManifest: %v", err)
	}

	// Skip what exists; mount into another repository.
	o := &opener{data: ldata}
	if m, err := mono.PushBlob(ctx, src, ldesc, o.open, nil); err != nil || !m || o.calls.Load() != 0 {
		t.Errorf("push of an existing blob = %v, %v, %d opens", m, err, o.calls.Load())
	}
	for _, d := range []ocispec.Descriptor{ldesc, l2desc, cdesc} {
		if m, err := mono.PushBlob(ctx, dst, d, o.open, []image.Reference{src}); err != nil || !m {
			t.Errorf("mount of %s = %v, %v", d.Digest, m, err)
		}
	}
	if o.calls.Load() != 0 || rec.count(ActionMounted) != 3 {
		t.Errorf("%d opens and %d mounted events after mounting, want 0 and 3", o.calls.Load(), rec.count(ActionMounted))
	}
	if err := mono.PushManifest(ctx, dst, mdesc, mdata); err != nil {
		t.Fatalf("PushManifest to the mounted repository: %v", err)
	}

	// Pull it back: resolve, manifest, a blob from an offset.
	desc, err := mono.Resolve(ctx, dst)
	if err != nil || desc.Digest != mdesc.Digest || desc.Size != mdesc.Size || desc.MediaType != mdesc.MediaType {
		t.Fatalf("Resolve = %+v, %v; want %+v", desc, err, mdesc)
	}
	if got, err := mono.FetchManifest(ctx, dst, desc); err != nil || !bytes.Equal(got, mdata) {
		t.Fatalf("FetchManifest: %v", err)
	}
	rc, err = mono.FetchBlob(ctx, dst, ldesc, 12345)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, rc); err != nil || !bytes.Equal(got, ldata[12345:]) {
		t.Fatalf("FetchBlob from 12345: %d bytes, %v", len(got), err)
	}
	if tok, err := mono.Login(ctx, host, "u", "p"); err != nil || tok != "" {
		t.Errorf("Login to a registry without auth = %q, %v", tok, err)
	}
}

// BenchmarkFetchBlob reads a 64 MiB blob from a local docker-registry
// through FetchBlob (with its digest check), against a plain GET of the same
// URL, to show what the client adds.
func BenchmarkFetchBlob(b *testing.B) {
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		b.Skipf("%s not installed", testutil.RegistryBinary)
	}
	host := testutil.StartRegistry(b)
	ctx := context.Background()
	c := New()
	ref, err := image.ParseReference(host + "/bench/blob:1")
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	if _, err := c.PushBlob(ctx, ref, desc, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("FetchBlob", func(b *testing.B) {
		b.SetBytes(desc.Size)
		for b.Loop() {
			rc, err := c.FetchBlob(ctx, ref, desc, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("FetchBlob-from-1", func(b *testing.B) {
		b.SetBytes(desc.Size - 1)
		for b.Loop() {
			rc, err := c.FetchBlob(ctx, ref, desc, 1)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("plain-GET", func(b *testing.B) {
		b.SetBytes(desc.Size)
		for b.Loop() {
			resp, err := http.Get("http://" + host + "/v2/bench/blob/blobs/" + desc.Digest.String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
}
