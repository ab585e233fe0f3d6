package tests

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeTar writes entries (name -> content; a "->" prefix in the content
// makes a symlink) in the given order into path.
func writeTar(t testing.TB, path string, names []string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		body := files[n]
		h := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: testutil.FixtureTime}
		if target, ok := strings.CutPrefix(body, "->"); ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, target, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImagesLoadRejects loads hostile archives: entries escaping the
// archive, manifests naming host files as layers, and blobs that do not
// match their digests. Each must fail without writing or reading outside
// the archive and without storing anything.
func TestImagesLoadRejects(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	dir := t.TempDir()
	hostDir := t.TempDir()
	escaped := filepath.Join(hostDir, "escaped-load")

	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	dotdot := filepath.Join(dir, "dotdot.tar")
	writeTar(t, dotdot, []string{"manifest.json", "config.json", strings.Repeat("../", 16) + strings.TrimPrefix(escaped, "/")}, map[string]string{
		"manifest.json": `[{"Config":"config.json","RepoTags":["hostile/dotdot:1"],"Layers":[]}]`,
		"config.json":   string(cfg),
		strings.Repeat("../", 16) + strings.TrimPrefix(escaped, "/"): "escaped\n",
	})
	hostLayer := filepath.Join(dir, "hostlayer.tar")
	writeTar(t, hostLayer, []string{"manifest.json", "config.json"}, map[string]string{
		"manifest.json": `[{"Config":"config.json","RepoTags":["hostile/hostlayer:1"],"Layers":["../../../../../../../../etc/passwd"]}]`,
		"config.json":   `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"config":{}}`,
	})
	symlinked := filepath.Join(dir, "symlink.tar")
	writeTar(t, symlinked, []string{"manifest.json", "config.json", "layer.tar"}, map[string]string{
		"manifest.json": `[{"Config":"config.json","RepoTags":["hostile/symlink:1"],"Layers":["layer.tar"]}]`,
		"config.json":   `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"config":{}}`,
		"layer.tar":     "->/etc/passwd",
	})

	// An OCI layout whose layer blob was changed after it was named.
	ociDir := filepath.Join(dir, "oci")
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": "docker.io/hostile/tampered:1"})); err != nil {
		t.Fatal(err)
	}
	layer := layerDigests(t, img)[0]
	blob := filepath.Join(ociDir, "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.tar")
	tarDir(t, ociDir, tampered)

	d := StartDaemon(t)
	c := firstClient(t, d)
	for _, tc := range []struct{ name, archive, mention string }{
		{"dotdot", dotdot, ""},
		{"host-layer", hostLayer, "passwd"},
		{"symlink-layer", symlinked, "layer.tar"},
		{"tampered-blob", tampered, strings.TrimPrefix(layer, "sha256:")[:12]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := c.Fails(t, "load", "-i", tc.archive)
			if tc.mention != "" && !strings.Contains(stderr, tc.mention) {
				t.Errorf("the error does not name %q:\n%s", tc.mention, stderr)
			}
			if _, err := os.Lstat(escaped); err == nil {
				t.Errorf("load wrote %s on the host", escaped)
			}
			if ids := Lines(c.Must(t, "images", "-q", "--filter", "reference=hostile/*")); len(ids) != 0 {
				t.Errorf("images stored from a rejected archive: %v", ids)
			}
			if bad := verifyStore(t, d); len(bad) > 0 {
				t.Errorf("content store: %v", bad)
			}
		})
	}
	if _, err := os.Stat(blobPath(d, layer)); err == nil {
		t.Errorf("the tampered layer %s was stored", layer)
	}
	// The store still works: the untampered image loads.
	good := filepath.Join(dir, "good.tar")
	tag, _ := name.NewTag("good/busybox:1")
	if err := tarball.WriteToFile(good, tag, img); err != nil {
		t.Fatal(err)
	}
	c.Must(t, "load", "-i", good)
	if in := inspect(t, c, "good/busybox:1"); in.ID != configDigest(t, img) {
		t.Errorf("good image loaded as %s", in.ID)
	}
}
