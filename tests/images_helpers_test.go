package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
)

// imageInspect is the part of GET /images/{name}/json the tests check, in
// the Docker Engine API's shape.
type imageInspect struct {
	ID           string `json:"Id"`
	RepoTags     []string
	RepoDigests  []string
	Architecture string
	Variant      string
	Os           string
	Size         int64
	Author       string
	Comment      string
	Created      string
	Config       struct {
		Cmd          []string
		Entrypoint   []string
		Env          []string
		WorkingDir   string
		User         string
		StopSignal   string
		Labels       map[string]string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Healthcheck  *struct {
			Test     []string
			Interval int64
			Timeout  int64
			Retries  int
		}
	}
	RootFS struct {
		Type   string
		Layers []string
	}
	GraphDriver struct {
		Name string
		Data map[string]string
	}
}

// inspect runs `image inspect ref` with c and decodes the one result.
func inspect(t testing.TB, c *CLI, ref string) imageInspect {
	t.Helper()
	out := c.Must(t, "image", "inspect", ref)
	var res []imageInspect
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("%s image inspect %s: %v (%d results):\n%s", c.Name, ref, err, len(res), out)
	}
	return res[0]
}

// fixtureSet is the registry of pushed fixtures every images test shares.
type fixtureSet struct {
	Reg string // host:port of the plain docker-registry

	Busybox, Multi, Zstd, Plain, OCIIndex, DockerList string // manifest digests

	BusyboxImg, MultiImg, ZstdImg v1.Image
}

func (f *fixtureSet) ref(repo string) string { return f.Reg + "/" + repo }

// pushFixtures starts a registry and pushes the image fixtures:
// e2e/busybox:1, e2e/multi:1, e2e/zstd:1, e2e/plain:1, e2e/multiarch:oci and
// e2e/multiarch:docker.
func pushFixtures(t *testing.T) *fixtureSet {
	t.Helper()
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd") // no daemon, nothing to push for
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing (make deps installs docker-registry)", testutil.RegistryBinary)
	}
	f := &fixtureSet{Reg: testutil.StartRegistry(t)}
	var err error
	if f.BusyboxImg, err = testutil.BusyboxImage(); err != nil {
		t.Fatal(err)
	}
	if f.MultiImg, err = testutil.MultiLayerImage(); err != nil {
		t.Fatal(err)
	}
	if f.ZstdImg, err = testutil.ZstdImage(); err != nil {
		t.Fatal(err)
	}
	plain, err := testutil.UncompressedImage()
	if err != nil {
		t.Fatal(err)
	}
	f.Busybox = testutil.PushFixture(t, f.Reg, "e2e/busybox:1", f.BusyboxImg)
	f.Multi = testutil.PushFixture(t, f.Reg, "e2e/multi:1", f.MultiImg)
	f.Zstd = testutil.PushFixture(t, f.Reg, "e2e/zstd:1", f.ZstdImg)
	f.Plain = testutil.PushFixture(t, f.Reg, "e2e/plain:1", plain)
	f.OCIIndex = testutil.PushMultiPlatform(t, f.Reg, "e2e/multiarch:oci", false)
	f.DockerList = testutil.PushMultiPlatform(t, f.Reg, "e2e/multiarch:docker", true)
	return f
}

// forEachClient runs fn once with the berth CLI and once with the docker
// CLI, each against its own fresh berthd.
func forEachClient(t *testing.T, fn func(t *testing.T, d *Daemon, c *CLI)) {
	t.Helper()
	forEachClientEnv(t, nil, fn)
}

// forEachClientEnv is forEachClient with extra environment for berthd.
func forEachClientEnv(t *testing.T, env []string, fn func(t *testing.T, d *Daemon, c *CLI)) {
	t.Helper()
	forEachClientWith(t, env, nil, fn)
}

// forEachClientArgs is forEachClient with extra berthd flags.
func forEachClientArgs(t *testing.T, args []string, fn func(t *testing.T, d *Daemon, c *CLI)) {
	t.Helper()
	forEachClientWith(t, nil, args, fn)
}

func forEachClientWith(t *testing.T, env, args []string, fn func(t *testing.T, d *Daemon, c *CLI)) {
	t.Helper()
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	for _, name := range []string{"berth", "docker"} {
		t.Run(name, func(t *testing.T) {
			d := StartDaemonEnv(t, env, args...)
			var c *CLI
			if name == "berth" {
				c = BerthCLI(t, d)
			} else {
				c = DockerCLIFor(t, d)
			}
			fn(t, d, c)
		})
	}
}

// firstClient returns the berth CLI when built, else the docker CLI.
func firstClient(t *testing.T, d *Daemon) *CLI {
	return Clients(t, d)[0]
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func diffIDs(t testing.TB, img v1.Image) []string {
	t.Helper()
	ids, err := testutil.DiffIDs(img)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func layerDigests(t testing.TB, img v1.Image) []string {
	t.Helper()
	ds, err := testutil.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// chainIDs computes the OCI chain IDs of a layer stack.
func chainIDs(diffIDs []string) []string {
	var out []string
	var c string
	for i, d := range diffIDs {
		if i == 0 {
			c = d
		} else {
			c = digest.FromString(c + " " + d).String()
		}
		out = append(out, c)
	}
	return out
}

// blobPath is where the content store keeps a blob (an OCI image layout
// under <data-root>/content).
func blobPath(d *Daemon, dg string) string {
	algo, hexPart, _ := strings.Cut(dg, ":")
	return filepath.Join(d.DataRoot, "content", "blobs", algo, hexPart)
}

// verifyStore hashes every committed blob of the content store and returns
// the ones whose content does not match their name.
func verifyStore(t testing.TB, d *Daemon) []string {
	t.Helper()
	dir := filepath.Join(d.DataRoot, "content", "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read content store: %v", err)
	}
	var bad []string
	for _, e := range entries {
		if e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			bad = append(bad, e.Name()+": "+err.Error())
			continue
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Name() {
			bad = append(bad, fmt.Sprintf("blob %s holds sha256:%s", e.Name(), got))
		}
	}
	return bad
}

// snapshotDirs returns the unpacked directory of each layer of the image
// (bottom first): from the GraphDriver data of image inspect when it names
// UpperDir/LowerDir as Docker's overlay2 does, else from the snapshotter's
// records under <data-root>/snapshots: a directory whose info.json has the
// layer's chain ID as its "key" (or, failing that, whose name is the chain
// ID), using its fs/ (or diff/) subdirectory when it has one.
func snapshotDirs(t testing.TB, d *Daemon, in imageInspect) []string {
	t.Helper()
	n := len(in.RootFS.Layers)
	if up := in.GraphDriver.Data["UpperDir"]; up != "" {
		dirs := []string{up}
		if low := in.GraphDriver.Data["LowerDir"]; low != "" {
			dirs = append(dirs, strings.Split(low, ":")...)
		}
		if len(dirs) == n {
			slices.Reverse(dirs)
			return dirs
		}
		t.Logf("GraphDriver data names %d dirs for %d layers; looking in the data root", len(dirs), n)
	}
	root := filepath.Join(d.DataRoot, "snapshots")
	byKey := map[string]string{}
	filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() && strings.Count(rel, string(filepath.Separator)) >= 3 {
			return filepath.SkipDir
		}
		if e.IsDir() {
			byKey[e.Name()] = p
			return nil
		}
		if e.Name() == "info.json" {
			var info struct {
				Key string `json:"key"`
			}
			if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &info) == nil && info.Key != "" {
				byKey[info.Key] = filepath.Dir(p)
			}
		}
		return nil
	})
	var out []string
	for _, c := range chainIDs(in.RootFS.Layers) {
		dir := byKey[c]
		if dir == "" {
			dir = byKey[strings.TrimPrefix(c, "sha256:")]
		}
		if dir == "" {
			t.Fatalf("no snapshot for chain ID %s under %s (inspect GraphDriver: %+v)", c, root, in.GraphDriver)
		}
		for _, sub := range []string{"fs", "diff"} {
			if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
				dir = filepath.Join(dir, sub)
				break
			}
		}
		out = append(out, dir)
	}
	return out
}

// mergedCopy mounts the layer directories (bottom first) as a read-only
// overlay in a private mount namespace (unshare -m), copies the merged tree
// into a new temporary directory and returns it. The host's mounts are not
// touched.
func mergedCopy(t testing.TB, layers []string) string {
	t.Helper()
	dest := t.TempDir()
	mnt := t.TempDir()
	lowers := slices.Clone(layers)
	slices.Reverse(lowers) // overlay wants the top first
	var script string
	if len(lowers) == 1 {
		script = fmt.Sprintf("cp -a %q/. %q/", lowers[0], dest)
	} else {
		script = fmt.Sprintf("mount -t overlay overlay -o ro,lowerdir=%s %q && cp -a %q/. %q/",
			strings.Join(lowers, ":"), mnt, mnt, dest)
	}
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("merge layers %v: %v: %s", layers, err, out)
	}
	return dest
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// execOut runs a host tool and returns its combined output.
func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
