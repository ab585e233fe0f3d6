package tests

import (
	"archive/tar"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// TestImagesPullInspect pulls the busybox fixture by tag and by digest and
// checks what image inspect and history report.
func TestImagesPullInspect(t *testing.T) {
	f := pushFixtures(t)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		ref := f.ref("e2e/busybox:1")
		out := c.Must(t, "pull", ref)
		if !strings.Contains(out, "Digest: "+f.Busybox) {
			t.Errorf("pull output lacks %q:\n%s", "Digest: "+f.Busybox, out)
		}
		if line := strings.TrimPrefix(layerDigests(t, f.BusyboxImg)[0], "sha256:")[:12] + ": Pull complete"; !strings.Contains(out, line) {
			t.Errorf("pull output (not a terminal) lacks the layer line %q:\n%s", line, out)
		}
		in := inspect(t, c, ref)
		if in.ID != configDigest(t, f.BusyboxImg) {
			t.Errorf("Id %s, want the config digest %s", in.ID, configDigest(t, f.BusyboxImg))
		}
		if !contains(in.RepoTags, ref) {
			t.Errorf("RepoTags %v lack %s", in.RepoTags, ref)
		}
		if want := f.ref("e2e/busybox@" + f.Busybox); !contains(in.RepoDigests, want) {
			t.Errorf("RepoDigests %v lack %s", in.RepoDigests, want)
		}
		if in.Os != "linux" || in.Architecture != runtime.GOARCH {
			t.Errorf("platform %s/%s", in.Os, in.Architecture)
		}
		if in.RootFS.Type != "layers" || strings.Join(in.RootFS.Layers, ",") != strings.Join(diffIDs(t, f.BusyboxImg), ",") {
			t.Errorf("RootFS %+v, want diff IDs %v", in.RootFS, diffIDs(t, f.BusyboxImg))
		}
		if in.Size <= 0 || in.Author != "Berth tests" {
			t.Errorf("Size %d Author %q", in.Size, in.Author)
		}
		cfg := in.Config
		if strings.Join(cfg.Cmd, " ") != "sh" || !contains(cfg.Env, testutil.BusyboxPathEnv) ||
			cfg.WorkingDir != testutil.BusyboxWorkingDir || cfg.StopSignal != testutil.BusyboxStopSignal ||
			cfg.User != testutil.BusyboxUser || cfg.Labels[testutil.BusyboxLabelKey] != testutil.BusyboxLabelValue {
			t.Errorf("Config %+v", cfg)
		}
		if _, ok := cfg.ExposedPorts[testutil.BusyboxExposedPort]; !ok {
			t.Errorf("ExposedPorts %v", cfg.ExposedPorts)
		}
		if _, ok := cfg.Volumes["/data"]; !ok {
			t.Errorf("Volumes %v", cfg.Volumes)
		}
		hc := testutil.BusyboxHealthcheck
		if cfg.Healthcheck == nil || strings.Join(cfg.Healthcheck.Test, " ") != strings.Join(hc.Test, " ") ||
			cfg.Healthcheck.Interval != int64(hc.Interval) || cfg.Healthcheck.Retries != hc.Retries {
			t.Errorf("Healthcheck %+v, want %+v", cfg.Healthcheck, hc)
		}
		if got := strings.TrimSpace(c.Must(t, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref)); got != "linux/"+runtime.GOARCH {
			t.Errorf("inspect --format: %q", got)
		}
		if hist, _, err := c.Run("history", "--no-trunc", "--format", "{{.CreatedBy}}", ref); err != nil {
			t.Error(err)
		} else if !strings.Contains(hist, "berth-testutil: busybox-static rootfs") {
			t.Errorf("history:\n%s", hist)
		}

		// Pulling again changes nothing; pulling by digest finds the same image.
		if out := c.Must(t, "pull", ref); !strings.Contains(out, "Image is up to date") {
			t.Errorf("second pull output:\n%s", out)
		}
		if out := strings.TrimSpace(c.Must(t, "pull", "-q", ref)); out != ref {
			t.Errorf("pull -q printed %q, want only %q", out, ref)
		}
		byDigest := f.ref("e2e/busybox@" + f.Busybox)
		c.Must(t, "pull", byDigest)
		if in2 := inspect(t, c, byDigest); in2.ID != in.ID {
			t.Errorf("by digest: Id %s, by tag %s", in2.ID, in.ID)
		}
		if in3 := inspect(t, c, in.ID[len("sha256:"):len("sha256:")+12]); in3.ID != in.ID {
			t.Errorf("by short ID: Id %s", in3.ID)
		}
		if stderr := c.Fails(t, "image", "inspect", f.ref("e2e/nothere:1")); !strings.Contains(stderr, "No such image") {
			t.Errorf("inspect of a missing image: %s", stderr)
		}
		if stderr := c.Fails(t, "pull", f.ref("e2e/nothere:1")); !strings.Contains(strings.ToLower(stderr), "not found") &&
			!strings.Contains(stderr, "manifest unknown") {
			t.Errorf("pull of a missing image: %s", stderr)
		}
		if bad := verifyStore(t, d); len(bad) > 0 {
			t.Errorf("content store: %v", bad)
		}
	})
}

// TestImagesListFilterTag covers images with -q, --digests, --format and
// the dangling/label/reference/before/since filters, tag and import.
func TestImagesListFilterTag(t *testing.T) {
	f := pushFixtures(t)
	rootfsTar := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootfsTar, mustBusyboxTar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		bb, multi := f.ref("e2e/busybox:1"), f.ref("e2e/multi:1")
		c.Must(t, "pull", bb)
		c.Must(t, "pull", multi)
		c.Must(t, "tag", bb, "local/bb:x")
		c.Must(t, "tag", "local/bb:x", "local/bb") // :latest
		bbID := inspect(t, c, bb).ID
		multiID := inspect(t, c, multi).ID
		if got := inspect(t, c, "local/bb").ID; got != bbID {
			t.Errorf("local/bb is %s, want %s", got, bbID)
		}

		// Import a rootfs tarball without a name: a dangling image.
		out := c.Must(t, "import", "--change", `CMD ["/bin/sh","-c","echo hi"]`, "--change", "ENV A=b", "--message", "imported rootfs", rootfsTar)
		impID := strings.TrimSpace(out)
		if !strings.HasPrefix(impID, "sha256:") {
			t.Fatalf("import printed %q, want the image ID", out)
		}
		imp := inspect(t, c, impID)
		if strings.Join(imp.Config.Cmd, " ") != "/bin/sh -c echo hi" || !contains(imp.Config.Env, "A=b") || imp.Comment != "imported rootfs" || len(imp.RootFS.Layers) != 1 {
			t.Errorf("imported image: Cmd %v Env %v Comment %q Layers %v", imp.Config.Cmd, imp.Config.Env, imp.Comment, imp.RootFS.Layers)
		}

		list := func(args ...string) []string {
			return Lines(c.Must(t, append([]string{"images"}, args...)...))
		}
		names := list("--format", "{{.Repository}}:{{.Tag}}")
		for _, want := range []string{bb, multi, "local/bb:x", "local/bb:latest"} {
			if !contains(names, want) {
				t.Errorf("images --format lacks %s: %v", want, names)
			}
		}
		short := func(id string) string { return strings.TrimPrefix(id, "sha256:")[:12] }
		ids := list("-q")
		if !contains(ids, short(bbID)) || !contains(ids, short(multiID)) || !contains(ids, short(impID)) {
			t.Errorf("images -q: %v", ids)
		}
		if got := list("-q", "--no-trunc", "--filter", "dangling=true"); len(got) != 1 || got[0] != impID {
			t.Errorf("dangling=true: %v, want [%s]", got, impID)
		}
		if got := list("-q", "--no-trunc", "--filter", "dangling=false"); contains(got, impID) || !contains(got, bbID) {
			t.Errorf("dangling=false: %v", got)
		}
		if got := list("--format", "{{.Repository}}:{{.Tag}}", "--filter", "label="+testutil.BusyboxLabelKey+"="+testutil.BusyboxLabelValue); len(got) != 3 || contains(got, multi) {
			t.Errorf("label filter: %v", got)
		}
		if got := list("--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=local/*"); len(got) != 2 || !contains(got, "local/bb:x") {
			t.Errorf("reference=local/*: %v", got)
		}
		if got := list("--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=local/bb:x"); len(got) != 1 {
			t.Errorf("reference=local/bb:x: %v", got)
		}
		// The fixtures share one creation time; the import is newer.
		if got := list("-q", "--no-trunc", "--filter", "since="+bb); !contains(got, impID) || contains(got, bbID) || contains(got, multiID) {
			t.Errorf("since=%s: %v", bb, got)
		}
		if got := list("-q", "--no-trunc", "--filter", "before="+impID); contains(got, impID) || !contains(got, bbID) || !contains(got, multiID) {
			t.Errorf("before=%s: %v", impID, got)
		}
		digests := c.Must(t, "images", "--digests", f.Reg+"/e2e/busybox")
		if !strings.Contains(digests, f.Busybox) {
			t.Errorf("images --digests:\n%s", digests)
		}
		js := list("--format", "{{json .}}", "--filter", "reference=local/bb:x")
		var row map[string]any
		if len(js) != 1 || json.Unmarshal([]byte(js[0]), &row) != nil || row["Repository"] != "local/bb" || row["Tag"] != "x" {
			t.Errorf("--format json: %v", js)
		}
		if stderr := c.Fails(t, "tag", "local/none:1", "local/x:1"); !strings.Contains(stderr, "No such image") {
			t.Errorf("tag of a missing image: %s", stderr)
		}
		if stderr := c.Fails(t, "tag", bb, "Bad/Upper:case"); stderr == "" {
			t.Error("tag with an invalid reference gave no error text")
		}
	})
}

func mustBusyboxTar(t testing.TB) []byte {
	b, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImagesTagPush tags pulled images into other repositories and
// registries, pushes them and pulls them back.
func TestImagesTagPush(t *testing.T) {
	f := pushFixtures(t)
	reg2 := testutil.StartRegistry(t)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		bb, multi := f.ref("e2e/busybox:1"), f.ref("e2e/multi:1")
		c.Must(t, "pull", bb)
		c.Must(t, "pull", multi)
		id := inspect(t, c, bb).ID
		targets := []string{f.ref("pushed/" + c.Name + ":v2"), reg2 + "/other/" + c.Name + ":v1"}
		for _, dst := range targets {
			c.Must(t, "tag", bb, dst)
			out := c.Must(t, "push", dst)
			if !strings.Contains(out, f.Busybox) {
				t.Errorf("push %s output lacks the digest %s:\n%s", dst, f.Busybox, out)
			}
			r, _ := name.ParseReference(dst, name.Insecure)
			desc, err := remote.Head(r)
			if err != nil {
				t.Fatalf("registry has no %s: %v", dst, err)
			}
			if desc.Digest.String() != f.Busybox {
				t.Errorf("%s in the registry is %s, want the unchanged manifest %s", dst, desc.Digest, f.Busybox)
			}
		}
		// The multi-layer image to two repositories of the new registry: the
		// second push may mount its layers from the first.
		for _, dst := range []string{reg2 + "/m1/" + c.Name + ":1", reg2 + "/m2/" + c.Name + ":1"} {
			c.Must(t, "tag", multi, dst)
			c.Must(t, "push", dst)
			r, _ := name.ParseReference(dst, name.Insecure)
			img, err := remote.Image(r)
			if err != nil {
				t.Fatalf("pull back %s: %v", dst, err)
			}
			if dg, _ := img.Digest(); dg.String() != f.Multi {
				t.Errorf("%s is %s, want %s", dst, dg, f.Multi)
			}
			ls, _ := img.Layers()
			for _, l := range ls {
				if _, err := l.Size(); err != nil {
					t.Errorf("layer of %s: %v", dst, err)
				}
			}
		}
		// Remove everything, then pull from the second registry.
		c.Must(t, "rmi", "-f", id)
		c.Fails(t, "image", "inspect", bb)
		c.Must(t, "pull", targets[1])
		if got := inspect(t, c, targets[1]).ID; got != id {
			t.Errorf("pulled back %s, pushed %s", got, id)
		}
		if stderr := c.Fails(t, "push", f.ref("never/pulled:1")); !strings.Contains(stderr, "No such image") &&
			!strings.Contains(stderr, "does not exist") {
			t.Errorf("push of a missing image: %s", stderr)
		}
	})
}

// TestImagesSaveLoad saves images and loads them back, in docker save
// format and as OCI layouts, including archives other tools wrote.
func TestImagesSaveLoad(t *testing.T) {
	f := pushFixtures(t)
	dir := t.TempDir()
	// A docker save archive written by go-containerregistry.
	foreignDocker := filepath.Join(dir, "foreign-docker.tar")
	tag, _ := name.NewTag("foreign/docker:1")
	if err := tarball.WriteToFile(foreignDocker, tag, f.MultiImg); err != nil {
		t.Fatal(err)
	}
	// An OCI layout archive of the zstd image, named as docker save names
	// its OCI entries.
	ociDir := filepath.Join(dir, "oci")
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(f.ZstdImg, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          "docker.io/foreign/oci:2",
		"org.opencontainers.image.ref.name": "2",
	})); err != nil {
		t.Fatal(err)
	}
	foreignOCI := filepath.Join(dir, "foreign-oci.tar")
	tarDir(t, ociDir, foreignOCI)

	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		bb, multi := f.ref("e2e/busybox:1"), f.ref("e2e/multi:1")
		c.Must(t, "pull", bb)
		c.Must(t, "pull", multi)
		saved := filepath.Join(t.TempDir(), "saved.tar")
		c.Must(t, "save", "-o", saved, bb, multi)

		// docker save format, read by go-containerregistry.
		for _, want := range []struct {
			ref string
			img v1.Image
		}{{bb, f.BusyboxImg}, {multi, f.MultiImg}} {
			tg, _ := name.NewTag(want.ref, name.Insecure)
			img, err := tarball.ImageFromPath(saved, &tg)
			if err != nil {
				t.Fatalf("saved archive has no %s in docker format: %v", want.ref, err)
			}
			if got, _ := img.ConfigName(); got.String() != configDigest(t, want.img) {
				t.Errorf("saved %s has config %s", want.ref, got)
			}
			got, _ := testutil.DiffIDs(img)
			if strings.Join(got, ",") != strings.Join(diffIDs(t, want.img), ",") {
				t.Errorf("saved %s diff IDs %v", want.ref, got)
			}
			ls, _ := img.Layers()
			for _, l := range ls {
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				tr := tar.NewReader(rc)
				for {
					if _, err := tr.Next(); err != nil {
						break
					}
				}
				rc.Close()
			}
		}
		// The same archive is an OCI layout too (docker 25+ save format).
		ex := t.TempDir()
		untar(t, saved, ex)
		idx, err := layout.ImageIndexFromPath(ex)
		if err != nil {
			t.Errorf("saved archive is not an OCI layout: %v", err)
		} else if im, err := idx.IndexManifest(); err != nil || len(im.Manifests) < 2 {
			t.Errorf("saved index.json: %v %+v", err, im)
		}

		// Round trip: remove, load, same IDs and names.
		bbID, multiID := inspect(t, c, bb).ID, inspect(t, c, multi).ID
		c.Must(t, "rmi", bb, multi)
		out := c.Must(t, "load", "-i", saved)
		if !strings.Contains(out, "Loaded image: "+bb) || !strings.Contains(out, "Loaded image: "+multi) {
			t.Errorf("load output:\n%s", out)
		}
		if inspect(t, c, bb).ID != bbID || inspect(t, c, multi).ID != multiID {
			t.Error("loaded images have other IDs than the saved ones")
		}
		// Load from stdin as well (docker load < file).
		c.Must(t, "rmi", multi)
		data, _ := os.ReadFile(saved)
		c.Stdin = string(data)
		c.Must(t, "load")
		if inspect(t, c, multi).ID != multiID {
			t.Error("load from stdin: other ID")
		}

		c.Must(t, "load", "-i", foreignDocker)
		if got := inspect(t, c, "foreign/docker:1"); got.ID != configDigest(t, f.MultiImg) {
			t.Errorf("foreign docker archive loaded as %s", got.ID)
		}
		c.Must(t, "load", "-i", foreignOCI)
		if got := inspect(t, c, "foreign/oci:2"); got.ID != configDigest(t, f.ZstdImg) {
			t.Errorf("foreign OCI archive loaded as %s", got.ID)
		}
		broken := filepath.Join(t.TempDir(), "broken.tar")
		os.WriteFile(broken, []byte("not a tar at all"), 0o644)
		c.Fails(t, "load", "-i", broken)
		if bad := verifyStore(t, d); len(bad) > 0 {
			t.Errorf("content store: %v", bad)
		}
	})
}

// TestImagesRemovePrune covers rmi (untag versus delete, conflicts, -f),
// image prune, and the garbage collection of blobs behind them.
func TestImagesRemovePrune(t *testing.T) {
	f := pushFixtures(t)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		bb, multi := f.ref("e2e/busybox:1"), f.ref("e2e/multi:1")
		c.Must(t, "pull", bb)
		id := inspect(t, c, bb).ID
		layer := layerDigests(t, f.BusyboxImg)[0]
		if _, err := os.Stat(blobPath(d, layer)); err != nil {
			t.Fatalf("layer blob not in the content store after pull: %v", err)
		}
		c.Must(t, "tag", bb, "local/a:1")
		if out := c.Must(t, "rmi", "local/a:1"); !strings.Contains(out, "Untagged: local/a:1") || strings.Contains(out, "Deleted:") {
			t.Errorf("rmi of one of two tags:\n%s", out)
		}
		inspect(t, c, bb)
		c.Must(t, "tag", bb, "local/a:1")
		c.Must(t, "tag", bb, "local/b:1")
		if stderr := c.Fails(t, "rmi", id); !strings.Contains(stderr, "conflict") && !strings.Contains(stderr, "referenced in multiple repositories") {
			t.Errorf("rmi by ID of an image with several tags: %s", stderr)
		}
		out := c.Must(t, "rmi", "-f", id)
		if !strings.Contains(out, "Deleted: "+id) {
			t.Errorf("rmi -f:\n%s", out)
		}
		if stderr := c.Fails(t, "image", "inspect", "local/b:1"); !strings.Contains(stderr, "No such image") {
			t.Errorf("inspect after rmi -f: %s", stderr)
		}
		if _, err := os.Stat(blobPath(d, layer)); err == nil {
			t.Errorf("layer blob %s still stored after its only image was removed", layer)
		}
		if _, err := os.Stat(blobPath(d, f.Busybox)); err == nil {
			t.Errorf("manifest blob %s still stored after its image was removed", f.Busybox)
		}
		if stderr := c.Fails(t, "rmi", "local/none:1"); !strings.Contains(stderr, "No such image") {
			t.Errorf("rmi of a missing image: %s", stderr)
		}

		// prune: dangling images by default, every unused one with -a.
		c.Must(t, "pull", bb)
		c.Must(t, "pull", multi)
		c.Must(t, "tag", multi, "local/m:1")
		c.Must(t, "rmi", multi) // still tagged local/m:1
		out = c.Must(t, "image", "prune", "-f")
		if strings.Contains(out, "Deleted") {
			t.Errorf("prune removed tagged images:\n%s", out)
		}
		out = c.Must(t, "image", "prune", "-a", "-f")
		if !strings.Contains(out, "Total reclaimed space") {
			t.Errorf("prune -a output:\n%s", out)
		}
		if ids := Lines(c.Must(t, "images", "-q")); len(ids) != 0 {
			t.Errorf("images after prune -a: %v", ids)
		}
		for _, l := range append(layerDigests(t, f.MultiImg), layer) {
			if _, err := os.Stat(blobPath(d, l)); err == nil {
				t.Errorf("blob %s still stored after prune -a", l)
			}
		}
	})
}

// TestImagesPlatform pulls the multi-platform fixture (OCI index and Docker
// manifest list) for the host and for linux/arm64.
func TestImagesPlatform(t *testing.T) {
	f := pushFixtures(t)
	amd, err := testutil.PlatformImage("amd64", "", false)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := testutil.PlatformImage("arm64", "v8", false)
	if err != nil {
		t.Fatal(err)
	}
	amdMarker, armMarker := diffIDs(t, amd)[1], diffIDs(t, arm)[1]
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		for _, kind := range []struct{ tag, digest string }{{"oci", f.OCIIndex}, {"docker", f.DockerList}} {
			ref := f.ref("e2e/multiarch:" + kind.tag)
			if runtime.GOARCH == "amd64" {
				c.Must(t, "pull", ref)
				in := inspect(t, c, ref)
				if in.Architecture != "amd64" || in.RootFS.Layers[1] != amdMarker {
					t.Errorf("%s: host pull got %s with marker layer %s", kind.tag, in.Architecture, in.RootFS.Layers[1])
				}
				if want := f.ref("e2e/multiarch@" + kind.digest); !contains(in.RepoDigests, want) {
					t.Errorf("%s: RepoDigests %v lack the index digest %s", kind.tag, in.RepoDigests, want)
				}
			}
			c.Must(t, "pull", "--platform", "linux/arm64", ref)
			in := inspect(t, c, ref)
			if in.Architecture != "arm64" || in.Variant != "v8" || in.Os != "linux" || in.RootFS.Layers[1] != armMarker {
				t.Errorf("%s: --platform linux/arm64 got %s/%s/%s with marker layer %s", kind.tag, in.Os, in.Architecture, in.Variant, in.RootFS.Layers[1])
				continue
			}
			dirs := snapshotDirs(t, d, in)
			b, err := os.ReadFile(filepath.Join(dirs[1], testutil.PlatformMarkerPath))
			if err != nil || string(b) != "arm64\n" {
				t.Errorf("%s: arm64 marker in the snapshot: %q %v", kind.tag, b, err)
			}
			if stderr := c.Fails(t, "pull", "--platform", "linux/s390x", ref); !strings.Contains(stderr, "s390x") {
				t.Errorf("%s: pull for a missing platform: %s", kind.tag, stderr)
			}
		}
	})
}

// TestImagesCompression pulls the zstd and uncompressed fixtures and checks
// they unpack to the busybox layer.
func TestImagesCompression(t *testing.T) {
	f := pushFixtures(t)
	host, err := os.Stat(testutil.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		for _, repo := range []string{"e2e/zstd:1", "e2e/plain:1"} {
			ref := f.ref(repo)
			c.Must(t, "pull", ref)
			in := inspect(t, c, ref)
			if strings.Join(in.RootFS.Layers, ",") != strings.Join(diffIDs(t, f.BusyboxImg), ",") {
				t.Errorf("%s: diff IDs %v", repo, in.RootFS.Layers)
				continue
			}
			dirs := snapshotDirs(t, d, in)
			fi, err := os.Lstat(filepath.Join(dirs[0], "bin/busybox"))
			if err != nil || !fi.Mode().IsRegular() || fi.Size() != host.Size() {
				t.Errorf("%s: bin/busybox in the snapshot: %v %v", repo, fi, err)
			}
			if l, err := os.Readlink(filepath.Join(dirs[0], "bin/sh")); err != nil || l != "busybox" {
				t.Errorf("%s: bin/sh: %q %v", repo, l, err)
			}
		}
	})
}

// TestImagesWhiteouts pulls the multi-layer fixture and checks the layer
// snapshots: overlay whiteouts and an opaque directory in the third layer,
// and the merged view the image spec defines.
func TestImagesWhiteouts(t *testing.T) {
	f := pushFixtures(t)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		ref := f.ref("e2e/multi:1")
		c.Must(t, "pull", ref)
		in := inspect(t, c, ref)
		if len(in.RootFS.Layers) != 4 {
			t.Fatalf("%d layers", len(in.RootFS.Layers))
		}
		dirs := snapshotDirs(t, d, in)
		for _, p := range []string{"data/a.txt", "data/gone"} {
			var st unix.Stat_t
			err := unix.Lstat(filepath.Join(dirs[2], p), &st)
			if err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("%s in layer 3: want an overlay whiteout (char 0/0): mode %o rdev %d %v", p, st.Mode, st.Rdev, err)
			}
		}
		for _, p := range []string{"data/.wh.a.txt", "opq/.wh..wh..opq"} {
			if _, err := os.Lstat(filepath.Join(dirs[2], p)); err == nil {
				t.Errorf("%s left as a file in layer 3", p)
			}
		}
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(dirs[2], "opq"), "trusted.overlay.opaque", buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("opq in layer 3: trusted.overlay.opaque = %q, %v; want y", buf[:max(n, 0)], err)
		}
		if _, err := os.Stat(filepath.Join(dirs[1], "opq/old1.txt")); err != nil {
			t.Errorf("layer 2 lost opq/old1.txt: %v", err)
		}
		merged := mergedCopy(t, dirs)
		for _, p := range testutil.CheckMultiLayerRootfs(merged) {
			t.Error("merged rootfs: " + p)
		}
	})
}

func tarDir(t testing.TB, dir, dst string) {
	t.Helper()
	out, err := execOut("tar", "-C", dir, "-cf", dst, ".")
	if err != nil {
		t.Fatalf("tar %s: %v: %s", dir, err, out)
	}
}

func untar(t testing.TB, src, dir string) {
	t.Helper()
	out, err := execOut("tar", "-C", dir, "-xf", src)
	if err != nil {
		t.Fatalf("untar %s: %v: %s", src, err, out)
	}
}

// TestImagesPushSkipsAndMounts pushes the multi-layer image through a
// recording proxy: to a second repository of the same registry every blob
// must be mounted from the first (cross-repo mount), and a second tag in the
// same repository must upload no blob at all.
func TestImagesPushSkipsAndMounts(t *testing.T) {
	f := pushFixtures(t)
	reg2 := testutil.StartRegistry(t)
	cfgDigest := configDigest(t, f.MultiImg)
	blobs := append(layerDigests(t, f.MultiImg), cfgDigest)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		p := testutil.StartRecordingProxy(t, reg2)
		multi := f.ref("e2e/multi:1")
		c.Must(t, "pull", multi)
		push := func(dst string) []testutil.ProxyRequest {
			n := len(p.Requests())
			c.Must(t, "tag", multi, dst)
			c.Must(t, "push", dst)
			return p.Requests()[n:]
		}
		uploads := func(reqs []testutil.ProxyRequest, blob string) []string {
			var out []string
			for _, r := range reqs {
				if (r.Method == "PUT" || r.Method == "POST" || r.Method == "PATCH") && strings.Contains(r.Path, "/blobs/uploads/") &&
					(strings.Contains(r.Query, "digest="+blob) || strings.Contains(r.Query, "digest="+strings.ReplaceAll(blob, ":", "%3A"))) {
					out = append(out, r.Method+" "+r.Path+"?"+r.Query)
				}
			}
			return out
		}
		push(p.Addr + "/m1/" + c.Name + ":1")
		second := push(p.Addr + "/m2/" + c.Name + ":1")
		for _, b := range blobs {
			if up := uploads(second, b); len(up) > 0 {
				t.Errorf("push to a second repository uploaded %s again: %v", b, up)
			}
			mounted := false
			for _, r := range second {
				q := strings.ReplaceAll(r.Query, "%3A", ":")
				if r.Method == "POST" && strings.Contains(q, "mount="+b) && strings.Contains(strings.ReplaceAll(q, "%2F", "/"), "from=m1/"+c.Name) {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("blob %s was not mounted from m1/%s", b, c.Name)
			}
		}
		third := push(p.Addr + "/m1/" + c.Name + ":2")
		for _, r := range third {
			if r.Method == "POST" || r.Method == "PATCH" || (r.Method == "PUT" && !strings.Contains(r.Path, "/manifests/")) {
				t.Errorf("push of a second tag to the same repository sent %s %s?%s", r.Method, r.Path, r.Query)
			}
		}
		r, _ := name.ParseReference(reg2+"/m2/"+c.Name+":1", name.Insecure)
		if desc, err := remote.Head(r); err != nil || desc.Digest.String() != f.Multi {
			t.Errorf("m2 manifest: %v %v", desc, err)
		}
	})
}

// TestImagesConcurrentPulls pulls the multi-layer and busybox images (which
// share their first layer) from several clients at once: every pull must
// succeed and each layer must be unpacked into exactly one snapshot.
func TestImagesConcurrentPulls(t *testing.T) {
	f := pushFixtures(t)
	d := StartDaemon(t)
	c := firstClient(t, d)
	refs := []string{f.ref("e2e/multi:1"), f.ref("e2e/busybox:1"), f.ref("e2e/multi:1"), f.ref("e2e/busybox@" + f.Busybox)}
	errs := make(chan error, len(refs))
	for _, ref := range refs {
		go func() {
			_, _, err := c.Run("pull", ref)
			errs <- err
		}()
	}
	for range refs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	keys := map[string]int{}
	filepath.WalkDir(filepath.Join(d.DataRoot, "snapshots"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == "info.json" {
			var info struct {
				Key string `json:"key"`
			}
			if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &info) == nil {
				keys[info.Key]++
			}
		}
		return nil
	})
	for _, ch := range chainIDs(diffIDs(t, f.MultiImg)) {
		if keys[ch] > 1 {
			t.Errorf("chain %s unpacked into %d snapshots", ch, keys[ch])
		}
	}
	in := inspect(t, c, f.ref("e2e/multi:1"))
	for _, p := range testutil.CheckMultiLayerRootfs(mergedCopy(t, snapshotDirs(t, d, in))) {
		t.Error("merged rootfs: " + p)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store: %v", bad)
	}
}

// TestImagesPullProgressStream reads POST /images/create directly: the
// JSON progress stream the docker CLI draws its bars from.
func TestImagesPullProgressStream(t *testing.T) {
	f := pushFixtures(t)
	d := StartDaemon(t)
	req, _ := http.NewRequest(http.MethodPost, "http://berthd/v1.47/images/create?fromImage="+url.QueryEscape(f.ref("e2e/multi"))+"&tag=1", nil)
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /images/create: %s: %s", resp.Status, b)
	}
	type message struct {
		Status         string
		ID             string `json:"id"`
		ProgressDetail struct{ Current, Total int64 }
		Error          string `json:"error"`
		ErrorDetail    *struct{ Message string }
	}
	byID := map[string][]string{}
	var statuses []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("progress stream: %v", err)
		}
		if m.Error != "" || m.ErrorDetail != nil {
			t.Fatalf("pull reported an error: %+v", m)
		}
		if m.ProgressDetail.Total < 0 || m.ProgressDetail.Current < 0 || m.ProgressDetail.Total > 0 && m.ProgressDetail.Current > m.ProgressDetail.Total {
			t.Errorf("progress detail out of range: %+v", m)
		}
		if m.ID != "" {
			byID[m.ID] = append(byID[m.ID], m.Status)
		} else {
			statuses = append(statuses, m.Status)
		}
	}
	for _, l := range layerDigests(t, f.MultiImg) {
		short := strings.TrimPrefix(l, "sha256:")[:12]
		got := byID[short]
		if !contains(got, "Pulling fs layer") && !contains(got, "Already exists") {
			t.Errorf("layer %s: statuses %v lack %q", short, got, "Pulling fs layer")
		}
		if !contains(got, "Pull complete") {
			t.Errorf("layer %s: statuses %v lack %q", short, got, "Pull complete")
		}
	}
	if !contains(statuses, "Digest: "+f.Multi) || !contains(statuses, "Status: Downloaded newer image for "+f.ref("e2e/multi:1")) {
		t.Errorf("final statuses %v", statuses)
	}
}

// TestImagesSpecialFiles pulls a layer of device, FIFO, setuid, sticky,
// xattr, hardlink and symlink entries and checks its snapshot reproduces
// them (owners, modes, device numbers, mtime, links).
func TestImagesSpecialFiles(t *testing.T) {
	f := pushFixtures(t)
	img, err := testutil.SpecialFilesImage()
	if err != nil {
		t.Fatal(err)
	}
	testutil.PushFixture(t, f.Reg, "e2e/special:1", img)
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		ref := f.ref("e2e/special:1")
		c.Must(t, "pull", ref)
		in := inspect(t, c, ref)
		dirs := snapshotDirs(t, d, in)
		for _, p := range testutil.CheckSpecialFiles(dirs[1]) {
			t.Error("snapshot: " + p)
		}
	})
}
