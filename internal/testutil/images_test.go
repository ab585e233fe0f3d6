package testutil

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func requireRegistry(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("%s missing (install docker-registry: make deps): %v", RegistryBinary, err)
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("%s missing (install busybox-static: make deps): %v", BusyboxPath, err)
	}
}

// pullImage fetches ref from the registry and checks it matches want: the
// same manifest digest and the same layers, each downloaded and verified.
func pullImage(t *testing.T, ref string, want v1.Image, opts ...remote.Option) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	wd, _ := want.Digest()
	gd, err := got.Digest()
	if err != nil || gd != wd {
		t.Fatalf("pulled %s digest %v (%v), pushed %v", ref, gd, err, wd)
	}
	wl, _ := LayerDigests(want)
	gl, err := LayerDigests(got)
	if err != nil || strings.Join(gl, ",") != strings.Join(wl, ",") {
		t.Fatalf("pulled layers %v (%v), pushed %v", gl, err, wl)
	}
	ls, _ := got.Layers()
	for _, l := range ls {
		rc, err := l.Compressed() // verifies the digest at EOF
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("read layer: %v", err)
		}
		rc.Close()
	}
	return got
}

func TestBusyboxImageConfig(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	d := PushBusybox(t, reg, "fixtures/busybox:1")
	if !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("digest %q", d)
	}
	want, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	got := pullImage(t, reg+"/fixtures/busybox:1", want)
	mt, _ := got.MediaType()
	if mt != types.DockerManifestSchema2 {
		t.Errorf("media type %s", mt)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if strings.Join(c.Cmd, " ") != "sh" || c.WorkingDir != BusyboxWorkingDir || c.StopSignal != BusyboxStopSignal ||
		c.Labels[BusyboxLabelKey] != BusyboxLabelValue || c.Healthcheck == nil || c.Healthcheck.Retries != 3 ||
		c.Env[0] != BusyboxPathEnv {
		t.Errorf("config %+v", c)
	}
	if _, ok := c.ExposedPorts[BusyboxExposedPort]; !ok {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if len(cf.History) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("history %v diff ids %v", cf.History, cf.RootFS.DiffIDs)
	}
	// The same fixture built twice has the same digest: layers are reproducible.
	again, _ := BusyboxImage()
	if d2, _ := again.Digest(); d2.String() != d {
		t.Errorf("rebuilt digest %s, pushed %s", d2, d)
	}
	files := extractNames(t, got)
	if files["bin/busybox"] == "" || files["bin/sh"] != "" {
		t.Errorf("rootfs lacks busybox or sh symlink: %d entries", len(files))
	}
}

// extractNames flattens img (go-containerregistry applies whiteouts) and
// returns name -> content for regular files, "" for the rest.
func extractNames(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("extract: %v", err)
		}
		n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[n] = string(b)
			if n == "bin/busybox" {
				out[n] = "binary"
			}
		} else {
			out[n] = ""
		}
	}
}

func TestMultiLayerImage(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	PushMultiLayer(t, reg, "fixtures/multi")
	want, err := MultiLayerImage()
	if err != nil {
		t.Fatal(err)
	}
	got := pullImage(t, reg+"/fixtures/multi:latest", want)
	if mt, _ := got.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}
	if ls, _ := got.Layers(); len(ls) != 4 {
		t.Fatalf("%d layers", len(ls))
	}
	files := extractNames(t, got)
	for p, content := range MultiLayerExpect.Present {
		got, ok := files[p]
		if !ok {
			t.Errorf("%s missing", p)
		} else if content != "" && content != "/" && got != content {
			t.Errorf("%s = %q, want %q", p, got, content)
		}
	}
	for _, p := range MultiLayerExpect.Absent {
		if _, ok := files[p]; ok {
			t.Errorf("%s present after whiteout", p)
		}
	}
}

func TestCheckMultiLayerRootfs(t *testing.T) {
	dir := t.TempDir()
	for p, c := range MultiLayerExpect.Present {
		full := filepath.Join(dir, p)
		if c == "/" {
			os.MkdirAll(full, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p := CheckMultiLayerRootfs(dir); len(p) != 0 {
		t.Fatalf("complete tree reported %v", p)
	}
	os.WriteFile(filepath.Join(dir, "opq/old1.txt"), nil, 0o644)
	os.Remove(filepath.Join(dir, "data/keep.txt"))
	if p := CheckMultiLayerRootfs(dir); len(p) != 3 { // old1 present, opq not opaque, keep.txt missing
		t.Fatalf("broken tree reported %v", p)
	}
}

func TestMultiPlatformIndex(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	for _, docker := range []bool{false, true} {
		repo := "fixtures/multiarch-oci"
		wantMT := types.OCIImageIndex
		if docker {
			repo, wantMT = "fixtures/multiarch-docker", types.DockerManifestList
		}
		d := PushMultiPlatform(t, reg, repo, docker)
		r, _ := name.ParseReference(reg+"/"+repo, name.Insecure)
		idx, err := remote.Index(r)
		if err != nil {
			t.Fatal(err)
		}
		if gd, _ := idx.Digest(); gd.String() != d {
			t.Errorf("index digest %s, pushed %s", gd, d)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if im.MediaType != wantMT || len(im.Manifests) != 2 {
			t.Fatalf("index %s with %d manifests", im.MediaType, len(im.Manifests))
		}
		for _, arch := range []string{"amd64", "arm64"} {
			img, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
			if err != nil {
				t.Fatalf("pull %s: %v", arch, err)
			}
			cf, _ := img.ConfigFile()
			if cf.Architecture != arch {
				t.Errorf("%s: config architecture %s", arch, cf.Architecture)
			}
			if got := extractNames(t, img)[PlatformMarkerPath]; got != arch+"\n" {
				t.Errorf("%s: marker %q", arch, got)
			}
		}
	}
}

func TestCompressionImages(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	for _, c := range []struct {
		repo string
		mt   types.MediaType
		make func() (v1.Image, error)
	}{
		{"fixtures/zstd", types.OCILayerZStd, ZstdImage},
		{"fixtures/plain", types.OCIUncompressedLayer, UncompressedImage},
	} {
		img, err := c.make()
		if err != nil {
			t.Fatal(err)
		}
		PushFixture(t, reg, c.repo, img)
		got := pullImage(t, reg+"/"+c.repo, img)
		ls, _ := got.Layers()
		mt, _ := ls[0].MediaType()
		if mt != c.mt {
			t.Errorf("%s: layer media type %s", c.repo, mt)
		}
		// Same uncompressed content as the gzip busybox image.
		bb, _ := BusyboxImage()
		want, _ := DiffIDs(bb)
		have, _ := DiffIDs(got)
		if strings.Join(want, ",") != strings.Join(have, ",") {
			t.Errorf("%s: diff ids %v, busybox %v", c.repo, have, want)
		}
		if extractNames(t, got)["bin/busybox"] == "" {
			t.Errorf("%s: no busybox", c.repo)
		}
	}
}

func TestEvilImageLayers(t *testing.T) {
	target := "/tmp/berth-escape-target/x"
	want := map[string][]string{
		EscapeDotDot:   {"../../../../../../../../../../../../../../../../tmp/berth-escape-target/x"},
		EscapeAbsolute: {"/tmp/berth-escape-target/x"},
		EscapeSymlink:  {"escape -> /tmp/berth-escape-target", "escape/x"},
		EscapeHardlink: {"shadow => /etc/shadow", "linked => ../../../../../../../../../../../../../../../../tmp/berth-escape-target/x"},
	}
	for kind, names := range want {
		img, err := EvilImage(kind, target)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		if len(ls) != 2 {
			t.Fatalf("%s: %d layers", kind, len(ls))
		}
		rc, _ := ls[1].Uncompressed()
		tr := tar.NewReader(rc)
		var got []string
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			switch h.Typeflag {
			case tar.TypeSymlink:
				got = append(got, h.Name+" -> "+h.Linkname)
			case tar.TypeLink:
				got = append(got, h.Name+" => "+h.Linkname)
			default:
				got = append(got, h.Name)
			}
		}
		rc.Close()
		if strings.Join(got, "|") != strings.Join(names, "|") {
			t.Errorf("%s: entries %q, want %q", kind, got, names)
		}
	}
	if _, err := EvilImage("nope", target); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestDirImageKeepsLinksAndOwners(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "usr/bin/a"), []byte("a"), 0o755)
	if err := os.Link(filepath.Join(dir, "usr/bin/a"), filepath.Join(dir, "usr/bin/b")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("usr/bin", filepath.Join(dir, "bin"))
	img, err := DirImage(dir, "/usr/bin/a")
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = string(h.Typeflag) + h.Linkname
	}
	if got["bin"] != "2usr/bin" || got["usr/bin/a"] != "0" || got["usr/bin/b"] != "1usr/bin/a" || got["usr/bin/"] != "5" {
		t.Errorf("entries %q", got)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Cmd[0] != "/usr/bin/a" || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v", cf.Config)
	}
}

func TestSpecialFilesImage(t *testing.T) {
	RequiresRoot(t)
	img, err := SpecialFilesImage()
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	if len(ls) != 2 {
		t.Fatalf("%d layers", len(ls))
	}
	rc, err := ls[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dir := t.TempDir()
	if p := CheckSpecialFiles(dir); len(p) == 0 {
		t.Fatal("an empty directory passed the check")
	}
	// GNU tar, as root, is the reference extractor here.
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--same-owner", "-xpf", "-", "-C", dir)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	for _, p := range CheckSpecialFiles(dir) {
		t.Error(p)
	}
}
