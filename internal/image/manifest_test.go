package image

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func desc(mt, content string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(content), Size: int64(len(content))}
}

func TestMediaTypes(t *testing.T) {
	for _, mt := range []string{ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList} {
		if !IsIndex(mt) || IsManifest(mt) {
			t.Errorf("%s: IsIndex %v IsManifest %v", mt, IsIndex(mt), IsManifest(mt))
		}
	}
	for _, mt := range []string{ocispec.MediaTypeImageManifest, MediaTypeDockerManifest} {
		if IsIndex(mt) || !IsManifest(mt) {
			t.Errorf("%s: IsIndex %v IsManifest %v", mt, IsIndex(mt), IsManifest(mt))
		}
	}
	for mt, want := range map[string]string{
		MediaTypeDockerLayer:              "gzip",
		MediaTypeDockerForeignLayer:       "gzip",
		ocispec.MediaTypeImageLayerGzip:   "gzip",
		ocispec.MediaTypeImageLayerZstd:   "zstd",
		ocispec.MediaTypeImageLayer:       "",
		MediaTypeDockerLayerUncompressed:  "",
		"application/vnd.example.unknown": "unknown",
	} {
		if got := Compression(mt); got != want {
			t.Errorf("Compression(%s) = %q, want %q", mt, got, want)
		}
		if want != "unknown" && !IsLayer(mt) {
			t.Errorf("IsLayer(%s) = false", mt)
		}
	}
	if !IsConfig(MediaTypeDockerConfig) || !IsConfig(ocispec.MediaTypeImageConfig) || IsConfig(MediaTypeDockerLayer) {
		t.Error("IsConfig")
	}
}

func TestDecodeManifest(t *testing.T) {
	cfg, layer := desc(MediaTypeDockerConfig, "config"), desc(MediaTypeDockerLayer, "layer")
	m := ocispec.Manifest{MediaType: MediaTypeDockerManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	data, _ := json.Marshal(m)

	got, err := DecodeManifest(MediaTypeDockerManifest, data)
	if err != nil || got.Config.Digest != cfg.Digest || len(got.Layers) != 1 || got.MediaType != MediaTypeDockerManifest {
		t.Fatalf("DecodeManifest = %+v, %v", got, err)
	}
	if mt, err := DetectMediaType(data); err != nil || mt != MediaTypeDockerManifest {
		t.Errorf("DetectMediaType = %q, %v", mt, err)
	}
	if _, err := DecodeManifest(ocispec.MediaTypeImageManifest, data); !errdefs.IsInvalidArgument(err) {
		t.Errorf("manifest served under another media type: %v, want InvalidArgument", err)
	}
	if children, err := Children(MediaTypeDockerManifest, data); err != nil || len(children) != 2 || children[0].Digest != cfg.Digest || children[1].Digest != layer.Digest {
		t.Errorf("Children = %+v, %v", children, err)
	}

	// Without mediaType in the document, the declared one (or OCI) is used.
	m.MediaType = ""
	data, _ = json.Marshal(m)
	if got, err := DecodeManifest("", data); err != nil || got.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("DecodeManifest without media type = %q, %v", got.MediaType, err)
	}
	if mt, err := DetectMediaType(data); err != nil || mt != ocispec.MediaTypeImageManifest {
		t.Errorf("DetectMediaType without media type = %q, %v", mt, err)
	}

	bad := m
	bad.Layers = []ocispec.Descriptor{{MediaType: MediaTypeDockerLayer, Digest: "sha256:nothex", Size: 1}}
	data, _ = json.Marshal(bad)
	if _, err := DecodeManifest("", data); !errdefs.IsInvalidArgument(err) {
		t.Errorf("manifest with an invalid layer digest: %v, want InvalidArgument", err)
	}
	for _, doc := range []string{
		`{"schemaVersion":1,"fsLayers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}`,
	} {
		if _, err := DecodeManifest("", []byte(doc)); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "schema 1") {
			t.Errorf("schema 1 manifest: %v, want NotImplemented naming schema 1", err)
		}
	}
	if _, err := DecodeManifest("", []byte("{")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("truncated manifest: %v", err)
	}
}

func TestDecodeIndexAndSelect(t *testing.T) {
	entry := func(content string, p *ocispec.Platform) ocispec.Descriptor {
		d := desc(ocispec.MediaTypeImageManifest, content)
		d.Platform = p
		return d
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{
		entry("amd64", &ocispec.Platform{OS: "linux", Architecture: "amd64"}),
		entry("arm64", &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}),
		entry("armv6", &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}),
		entry("armv7", &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}),
		entry("win", &ocispec.Platform{OS: "windows", Architecture: "amd64"}),
	}}
	att := entry("attestation", &ocispec.Platform{OS: "unknown", Architecture: "unknown"})
	att.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest"}
	idx.Manifests = append(idx.Manifests, att)
	idx.SchemaVersion = 2
	data, _ := json.Marshal(idx)
	got, err := DecodeIndex(ocispec.MediaTypeImageIndex, data)
	if err != nil || len(got.Manifests) != 6 {
		t.Fatalf("DecodeIndex = %+v, %v", got, err)
	}
	if _, err := DecodeIndex(MediaTypeDockerManifestList, data); !errdefs.IsInvalidArgument(err) {
		t.Errorf("index under the manifest-list media type: %v", err)
	}
	if _, err := DecodeManifest("", data); err == nil {
		t.Error("an index decodes as a manifest")
	}

	for want, content := range map[string]string{
		"linux/amd64":   "amd64",
		"linux/arm64":   "arm64",
		"linux/arm64/8": "arm64",
		"linux/arm":     "armv7",
		"linux/arm/v6":  "armv6",
		"linux/arm/v8":  "armv7", // the newest variant an arm/v8 host runs
		"windows/amd64": "win",
	} {
		p, err := ParsePlatform(want)
		if err != nil {
			t.Fatal(err)
		}
		d, err := SelectManifest(got, p)
		if err != nil || d.Digest != digest.FromString(content) {
			t.Errorf("SelectManifest(%s) = %s, %v; want the %s entry", want, d.Digest, err, content)
		}
	}
	// Nothing for arm/v5: the error names what was wanted and what there is,
	// never the attestation.
	_, err = SelectManifest(got, ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v5"})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("SelectManifest(linux/arm/v5): %v, want NotFound", err)
	}
	for _, s := range []string{"linux/arm/v5", "linux/amd64", "linux/arm64", "linux/arm/v6", "linux/arm/v7", "windows/amd64"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if strings.Contains(err.Error(), "unknown") {
		t.Errorf("error %q names the attestation", err)
	}

	// A single entry without a platform is taken (its config decides).
	single := ocispec.Index{Manifests: []ocispec.Descriptor{entry("only", nil)}}
	if d, err := SelectManifest(single, HostPlatform()); err != nil || d.Digest != digest.FromString("only") {
		t.Errorf("SelectManifest of one unplatformed entry = %s, %v", d.Digest, err)
	}
	if _, err := SelectManifest(ocispec.Index{}, HostPlatform()); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "available: none") {
		t.Errorf("SelectManifest of an empty index: %v", err)
	}
}

func TestVerify(t *testing.T) {
	data := []byte("hello")
	d := Descriptor("application/octet-stream", data)
	if err := Verify(d, data); err != nil {
		t.Errorf("Verify of matching data: %v", err)
	}
	for name, tc := range map[string]struct {
		d    ocispec.Descriptor
		data []byte
	}{
		"other content": {d, []byte("jello")},
		"longer":        {d, []byte("hello!")},
		"wrong digest":  {ocispec.Descriptor{Digest: digest.FromString("x"), Size: 5}, data},
	} {
		err := Verify(tc.d, tc.data)
		if !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), tc.d.Digest.String()) {
			t.Errorf("%s: %v, want DataLoss naming %s", name, err, tc.d.Digest)
		}
	}
}

func TestDecodeConfigKeepsDockerFields(t *testing.T) {
	var c Config
	c.OS, c.Architecture = "linux", "arm"
	c.Variant = "v7"
	c.Config.Env = []string{"PATH=/bin"}
	c.Config.Entrypoint = []string{"/bin/sh"}
	c.Config.StopSignal = "SIGQUIT"
	c.Config.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "true"}, Interval: 5 * time.Second, Retries: 3}
	c.Config.OnBuild = []string{"RUN true"}
	c.Config.Shell = []string{"/bin/bash", "-c"}
	c.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("l")}}
	c.History = []ocispec.History{{CreatedBy: "test", EmptyLayer: true}}
	data, _ := json.Marshal(c)

	got, err := DecodeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Config.Healthcheck == nil || got.Config.Healthcheck.Interval != 5*time.Second || got.Config.Healthcheck.Retries != 3 {
		t.Errorf("Healthcheck lost: %+v", got.Config.Healthcheck)
	}
	if len(got.Config.OnBuild) != 1 || len(got.Config.Shell) != 2 || got.Config.StopSignal != "SIGQUIT" || len(got.History) != 1 {
		t.Errorf("config fields lost: %+v", got)
	}
	if p := ConfigPlatform(got); FormatPlatform(p) != "linux/arm/v7" {
		t.Errorf("ConfigPlatform = %s", FormatPlatform(p))
	}
	// Docker's own JSON for the health check round-trips.
	if !strings.Contains(string(data), `"Healthcheck":{"Test":["CMD","true"],"Interval":5000000000,"Retries":3}`) {
		t.Errorf("unexpected Healthcheck encoding in %s", data)
	}

	m := ocispec.Manifest{Layers: []ocispec.Descriptor{desc(MediaTypeDockerLayer, "a"), desc(MediaTypeDockerLayer, "b")}}
	if err := CheckLayers("sha256:abc", m, got); err == nil || !strings.Contains(err.Error(), "sha256:abc") {
		t.Errorf("CheckLayers with 2 layers and 1 diff ID: %v", err)
	}
	m.Layers = m.Layers[:1]
	if err := CheckLayers("sha256:abc", m, got); err != nil {
		t.Errorf("CheckLayers: %v", err)
	}

	for _, doc := range []string{`{"rootfs":{"type":"zfs"}}`, `{"rootfs":{"type":"layers","diff_ids":["nope"]}}`, `[`} {
		if _, err := DecodeConfig([]byte(doc)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("DecodeConfig(%s): %v, want InvalidArgument", doc, err)
		}
	}
}
