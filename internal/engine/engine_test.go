package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
)

// startRegistry runs an in-process registry and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

func newEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{DataRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

type recorder struct{ msgs []jsonstream.Message }

func (r *recorder) add(m jsonstream.Message) { r.msgs = append(r.msgs, m) }

func (r *recorder) statuses() []string {
	var out []string
	for _, m := range r.msgs {
		out = append(out, m.Status)
	}
	return out
}

func (r *recorder) has(status string) bool {
	for _, m := range r.msgs {
		if strings.HasPrefix(m.Status, status) {
			return true
		}
	}
	return false
}

func countBlobs(t *testing.T, e *Engine) int {
	n := 0
	if err := e.content.Walk(context.Background(), func(i contentInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPullInspectTagRemove(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	manifestDigest := testutil.PushMultiLayer(t, reg, "test/multi:v1")
	e := newEngine(t)

	var rec recorder
	id, err := e.Pull(ctx, reg+"/test/multi:v1", PullOptions{Progress: rec.add})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	for _, s := range []string{"Pulling from test/multi", "Pulling fs layer", "Download complete", "Pull complete", "Digest: " + manifestDigest, "Status: Downloaded newer image for " + reg + "/test/multi:v1"} {
		if !rec.has(s) {
			t.Errorf("progress lacks %q: %q", s, rec.statuses())
		}
	}
	// A second pull finds everything.
	rec = recorder{}
	if id2, err := e.Pull(ctx, reg+"/test/multi:v1", PullOptions{Progress: rec.add}); err != nil || id2 != id {
		t.Fatalf("second pull: %v %v", id2, err)
	}
	if !rec.has("Status: Image is up to date") || rec.has("Pulling fs layer") {
		t.Errorf("second pull progress: %q", rec.statuses())
	}

	insp, err := e.Inspect(ctx, reg+"/test/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if insp.ID != id.String() || len(insp.RepoTags) != 1 || insp.RepoTags[0] != reg+"/test/multi:v1" {
		t.Errorf("inspect tags: %+v", insp)
	}
	if len(insp.RepoDigests) != 1 || insp.RepoDigests[0] != reg+"/test/multi@"+manifestDigest {
		t.Errorf("inspect digests: %v", insp.RepoDigests)
	}
	if insp.RootFS.Type != "layers" || len(insp.RootFS.Layers) < 2 || insp.Size <= 0 || insp.Os != "linux" {
		t.Errorf("inspect rootfs/size/os: %+v", insp)
	}
	// Every layer is unpacked in its snapshot.
	for _, c := range chainIDs(digestsOf(insp.RootFS.Layers)) {
		if !e.snaps.Exists(c) {
			t.Errorf("snapshot %s missing", c)
		}
	}
	// By ID prefix and by digest too.
	for _, name := range []string{id.Encoded()[:12], reg + "/test/multi@" + manifestDigest} {
		if got, err := e.Inspect(ctx, name); err != nil || got.ID != id.String() {
			t.Errorf("inspect %s: %v", name, err)
		}
	}
	hist, err := e.History(ctx, id.String())
	if err != nil || len(hist) == 0 || hist[0].ID != id.String() {
		t.Errorf("history: %+v %v", hist, err)
	}

	if err := e.Tag(ctx, id.String(), "other/name:t"); err != nil {
		t.Fatal(err)
	}
	list, err := e.Images(ctx, ListOptions{Filters: map[string][]string{"reference": {"other/*"}}})
	if err != nil || len(list) != 1 || list[0].ID != id.String() {
		t.Fatalf("list by reference: %+v %v", list, err)
	}
	if list, _ := e.Images(ctx, ListOptions{Filters: map[string][]string{"dangling": {"true"}}}); len(list) != 0 {
		t.Errorf("dangling images: %+v", list)
	}
	// By ID with names in two repositories: needs force.
	if _, err := e.Remove(ctx, id.String(), RemoveOptions{}); !errdefs.IsConflict(err) {
		t.Fatalf("remove by ID with two repositories: %v", err)
	}
	// Untag one name: the image stays.
	resp, err := e.Remove(ctx, "other/name:t", RemoveOptions{})
	if err != nil || len(resp) != 1 || resp[0].Untagged != "other/name:t" {
		t.Fatalf("untag: %+v %v", resp, err)
	}
	blobs := countBlobs(t, e)
	if blobs == 0 {
		t.Fatal("no blobs after pull")
	}
	// Remove the last tag: the image, its blobs and snapshots go.
	resp, err = e.Remove(ctx, reg+"/test/multi:v1", RemoveOptions{})
	if err != nil || resp[len(resp)-1].Deleted != id.String() {
		t.Fatalf("remove last tag: %+v %v", resp, err)
	}
	if n := countBlobs(t, e); n != 0 {
		t.Errorf("%d blobs left after removing the only image", n)
	}
	snaps := 0
	_ = e.snaps.Walk(ctx, func(string, string) error { snaps++; return nil })
	if snaps != 0 {
		t.Errorf("%d snapshots left after removing the only image", snaps)
	}
	if _, err := e.Inspect(ctx, id.String()); !errdefs.IsNotFound(err) {
		t.Errorf("inspect removed image: %v", err)
	}
}

func digestsOf(ss []string) []digest.Digest {
	out := make([]digest.Digest, len(ss))
	for i, s := range ss {
		out[i] = digest.Digest(s)
	}
	return out
}

func TestPullMultiPlatformAndPush(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	indexDigest := testutil.PushMultiPlatform(t, reg, "test/multi-arch:latest", false)
	e := newEngine(t)
	id, err := e.Pull(ctx, reg+"/test/multi-arch", PullOptions{})
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	insp, err := e.Inspect(ctx, id.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(insp.RepoDigests) != 1 || !strings.HasSuffix(insp.RepoDigests[0], "@"+indexDigest) {
		t.Errorf("repo digest is not the index digest %s: %v", indexDigest, insp.RepoDigests)
	}
	// Push to another repository of the same registry: blobs are mounted
	// or found, the manifest put.
	if err := e.Tag(ctx, id.String(), reg+"/copy/img:v2"); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if err := e.Push(ctx, reg+"/copy/img:v2", PushOptions{Progress: rec.add}); err != nil {
		t.Fatalf("push: %v", err)
	}
	if !rec.has("v2: digest: sha256:") {
		t.Errorf("push progress: %q", rec.statuses())
	}
	// The pushed image pulls into a fresh engine.
	e2 := newEngine(t)
	if id2, err := e2.Pull(ctx, reg+"/copy/img:v2", PullOptions{}); err != nil || id2 != id {
		t.Fatalf("pull pushed image: %v %v (want %v)", id2, err, id)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	testutil.PushBusybox(t, reg, "library/busybox:1")
	e := newEngine(t)
	id, err := e.Pull(ctx, reg+"/library/busybox:1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := e.PlanSave(ctx, []string{reg + "/library/busybox:1"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Save(ctx, &buf, plan); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	if _, err := e.PlanSave(ctx, []string{"nope:none"}); !errdefs.IsNotFound(err) {
		t.Errorf("plan save of a missing image: %v", err)
	}

	e2 := newEngine(t)
	var rec recorder
	if err := e2.Load(ctx, bytes.NewReader(archive), LoadOptions{Progress: rec.add}); err != nil {
		t.Fatalf("load: %v", err)
	}
	var loaded bool
	for _, m := range rec.msgs {
		if m.Stream == "Loaded image: "+reg+"/library/busybox:1\n" {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("load messages: %+v", rec.msgs)
	}
	insp, err := e2.Inspect(ctx, reg+"/library/busybox:1")
	if err != nil || insp.ID != id.String() {
		t.Fatalf("inspect loaded: %v %v", insp.ID, err)
	}

	// The legacy layout (manifest.json only) loads too: strip index.json.
	legacy := rewriteTar(t, archive, func(name string) bool { return name != "index.json" && name != "oci-layout" })
	e3 := newEngine(t)
	if err := e3.Load(ctx, bytes.NewReader(legacy), LoadOptions{}); err != nil {
		t.Fatalf("load legacy: %v", err)
	}
	if insp, err := e3.Inspect(ctx, reg+"/library/busybox:1"); err != nil || insp.ID != id.String() {
		t.Fatalf("inspect legacy-loaded: %v %v", insp.ID, err)
	}
}

func TestLoadRejectsPathEscape(t *testing.T) {
	e := newEngine(t)
	evil := makeTar(t, map[string]string{"../escape": "x"})
	if err := e.Load(context.Background(), bytes.NewReader(evil), LoadOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("load with ../: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.DataRoot, "escape")); err == nil {
		t.Fatal("file written outside the load directory")
	}
}

func TestImport(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	e := newEngine(t)
	layer, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{
		Ref:     "imported:v1",
		Message: "hello",
		Changes: []string{`CMD ["/bin/sh"]`, "ENV A=1 B=2", "EXPOSE 80", "WORKDIR /w", "LABEL k=v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	insp, err := e.Inspect(ctx, "imported:v1")
	if err != nil || insp.ID != id.String() {
		t.Fatalf("inspect: %v", err)
	}
	c := insp.Config
	if strings.Join(c.Cmd, " ") != "/bin/sh" || c.WorkingDir != "/w" || c.Labels["k"] != "v" || len(c.Env) != 2 {
		b, _ := json.Marshal(c)
		t.Errorf("config: %s", b)
	}
	if _, ok := c.ExposedPorts["80/tcp"]; !ok {
		t.Errorf("exposed ports: %v", c.ExposedPorts)
	}
	if insp.Comment != "hello" {
		t.Errorf("comment %q", insp.Comment)
	}
	if _, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{Changes: []string{"RUN x"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("import with RUN change: %v", err)
	}
}

func TestPruneDangling(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	e := newEngine(t)
	layer, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	keep, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{Ref: "keep:1", Message: "a"})
	if err != nil {
		t.Fatal(err)
	}
	dangling, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{Message: "b"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.Prune(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ImagesDeleted) != 1 || rep.ImagesDeleted[0].Deleted != dangling.String() {
		t.Fatalf("prune: %+v", rep)
	}
	if _, err := e.Inspect(ctx, keep.String()); err != nil {
		t.Fatalf("tagged image pruned: %v", err)
	}
	// The shared layer survives for the kept image.
	if n := countBlobs(t, e); n != 3 {
		t.Errorf("blobs after prune: %d, want 3 (layer, config, manifest)", n)
	}
}

func TestPullRejectsCorruptBlob(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	testutil.PushBusybox(t, reg, "test/bb:1")
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := testutil.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartCorruptingProxy(t, reg, layers[0])
	e := newEngine(t)
	_, err = e.Pull(ctx, proxy.Addr+"/test/bb:1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), layers[0]) {
		t.Fatalf("pull of a corrupt blob: %v (want an error naming %s)", err, layers[0])
	}
	if e.hasBlob(ctx, digest.Digest(layers[0])) {
		t.Error("corrupt blob stored")
	}
	if imgs, _ := e.meta.Images(); len(imgs) != 0 {
		t.Errorf("image recorded after a failed pull: %+v", imgs)
	}
	snaps := 0
	_ = e.snaps.Walk(ctx, func(string, string) error { snaps++; return nil })
	if snaps != 0 {
		t.Errorf("%d snapshots after a failed pull", snaps)
	}
	// Nothing of the corrupt transfer lingers: the real registry's
	// image pulls at once, and twice more through the proxy still fails.
	if _, err := e.Pull(ctx, reg+"/test/bb:1", PullOptions{}); err != nil {
		t.Fatalf("pull from the registry after a corrupt pull: %v", err)
	}
}

func TestPullResumesAfterCut(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	testutil.PushBusybox(t, reg, "test/bb:1")
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := testutil.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartCutProxy(t, reg, layers[0], 4096)
	e := newEngine(t)
	if _, err := e.Pull(ctx, proxy.Addr+"/test/bb:1", PullOptions{}); err != nil {
		// The registry client may give up on the cut; a second pull
		// resumes from what was stored.
		if _, err := e.Pull(ctx, proxy.Addr+"/test/bb:1", PullOptions{}); err != nil {
			t.Fatalf("pull after cut: %v", err)
		}
	}
	reqs := proxy.BlobRequests()
	if len(reqs) < 2 {
		t.Fatalf("blob requests: %+v", reqs)
	}
	if reqs[1].Range == "" {
		t.Errorf("second blob request did not resume with Range: %+v", reqs)
	}
	if _, err := e.Inspect(ctx, proxy.Addr+"/test/bb:1"); err != nil {
		t.Fatal(err)
	}
}

func TestPullEscapingLayerStaysInside(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	for _, kind := range []string{testutil.EscapeDotDot, testutil.EscapeAbsolute, testutil.EscapeSymlink} {
		t.Run(kind, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "pwned")
			testutil.PushEvil(t, reg, "test/evil:"+kind, kind, target)
			e := newEngine(t)
			// The extractor may reject the layer or keep it inside the
			// snapshot; either way nothing lands on the host.
			_, err := e.Pull(ctx, reg+"/test/evil:"+kind, PullOptions{})
			if _, serr := os.Stat(target); serr == nil {
				t.Fatalf("pull (err=%v) wrote %s outside the snapshot", err, target)
			}
			if err != nil {
				if imgs, _ := e.meta.Images(); len(imgs) != 0 {
					t.Errorf("image recorded after a failed pull: %+v", imgs)
				}
			}
		})
	}
}

func TestAuthenticatedPullPushAndLogin(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := testutil.StartTokenRegistry(t, "alice", "s3cret")
	testutil.PushBusybox(t, reg.Addr, "private/bb:1", reg.RemoteOptions()...)
	e := newEngine(t)
	ref := reg.Addr + "/private/bb:1"
	if _, err := e.Pull(ctx, ref, PullOptions{}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("anonymous pull of a private image: %v (want unauthorized)", err)
	}
	good := &Auth{Username: "alice", Password: "s3cret", ServerAddress: reg.Addr}
	if _, err := e.Pull(ctx, ref, PullOptions{Auth: &Auth{Username: "alice", Password: "wrong"}}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v (want unauthorized)", err)
	}
	if _, err := e.Pull(ctx, ref, PullOptions{Auth: good}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if err := e.Tag(ctx, ref, reg.Addr+"/private/copy:2"); err != nil {
		t.Fatal(err)
	}
	if err := e.Push(ctx, reg.Addr+"/private/copy:2", PushOptions{Auth: good}); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if _, err := e.Login(ctx, *good); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := e.Login(ctx, Auth{Username: "alice", Password: "nope", ServerAddress: reg.Addr}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("login with a wrong password: %v (want unauthorized)", err)
	}
}

func TestGCWaitsForActiveOperations(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	e := newEngine(t)
	layer, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{Ref: "gc/test:1"}); err != nil {
		t.Fatal(err)
	}
	release := e.hold() // as a pull in progress would
	resp, err := e.Remove(ctx, "gc/test:1", RemoveOptions{})
	if err != nil || !hasDeleted(resp) {
		t.Fatalf("remove during an operation: %+v %v", resp, err)
	}
	if n := countBlobs(t, e); n == 0 {
		t.Fatal("blobs collected while an operation held the store")
	}
	release()
	e.gcRuns.Wait()
	if n := countBlobs(t, e); n != 0 {
		t.Fatalf("%d blobs left after the deferred collection", n)
	}
}

func TestPullRandomImage(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	img, err := random.Image(4096, 5)
	if err != nil {
		t.Fatal(err)
	}
	manifestDigest := testutil.PushFixture(t, reg, "random/img:1", img)
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t)
	id, err := e.Pull(ctx, reg+"/random/img:1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != cfgName.String() {
		t.Errorf("image ID %s, want the config digest %s", id, cfgName)
	}
	insp, err := e.Inspect(ctx, id.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(insp.RootFS.Layers) != 5 || insp.RepoDigests[0] != reg+"/random/img@"+manifestDigest {
		t.Errorf("inspect: %d layers, digests %v", len(insp.RootFS.Layers), insp.RepoDigests)
	}
}

func TestConcurrentPullsOfOneImage(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	testutil.PushMultiLayer(t, reg, "test/multi:1")
	e := newEngine(t)
	const n = 4
	ids := make([]digest.Digest, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = e.Pull(ctx, reg+"/test/multi:1", PullOptions{})
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("pull %d: %v %v", i, ids[i], errs[i])
		}
	}
	if _, err := e.Inspect(ctx, reg+"/test/multi:1"); err != nil {
		t.Fatal(err)
	}
}

func TestBasicAuthTLSRegistry(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := testutil.StartTLSRegistry(t, "bob", "pa55")
	testutil.PushBusybox(t, reg.Addr, "secure/bb:1", reg.RemoteOptions()...)
	e := newEngine(t)
	ref := reg.Addr + "/secure/bb:1"
	if _, err := e.Pull(ctx, ref, PullOptions{}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("anonymous pull: %v (want unauthorized)", err)
	}
	auth := &Auth{Username: "bob", Password: "pa55", ServerAddress: reg.Addr}
	if _, err := e.Login(ctx, *auth); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := e.Login(ctx, Auth{Username: "bob", Password: "x", ServerAddress: reg.Addr}); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if _, err := e.Pull(ctx, ref, PullOptions{Auth: auth}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	if err := e.Tag(ctx, ref, reg.Addr+"/secure/copy:1"); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if err := e.Push(ctx, reg.Addr+"/secure/copy:1", PushOptions{Auth: auth, Progress: rec.add}); err != nil {
		t.Fatalf("push: %v", err)
	}
	if !rec.has("Mounted from secure/bb") && !rec.has("Layer already exists") {
		t.Errorf("push did not reuse the blob in the registry: %q", rec.statuses())
	}
}

// TestMultiLayerRootfs mounts the pulled multi-layer image's snapshot chain
// (overlay, read-only) in a private mount namespace of a child process and
// checks the merged tree: whiteouts removed files, the opaque directory hid
// its old content, later layers added theirs.
func TestMultiLayerRootfs(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not available")
	}
	ctx := context.Background()
	reg := startRegistry(t)
	testutil.PushMultiLayer(t, reg, "test/multi:1")
	e := newEngine(t)
	id, err := e.Pull(ctx, reg+"/test/multi:1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	insp, err := e.Inspect(ctx, id.String())
	if err != nil {
		t.Fatal(err)
	}
	chains := chainIDs(digestsOf(insp.RootFS.Layers))
	mounts, err := e.snaps.Mounts(ctx, chains[len(chains)-1].String())
	if err != nil || len(mounts) != 1 || mounts[0].Type != "overlay" {
		t.Fatalf("mounts: %+v %v", mounts, err)
	}
	target := t.TempDir()
	script := `set -e
mount -t overlay overlay -o "$1" "$2"
cd "$2"
test -x bin/busybox
test "$(cat data/keep.txt)" = keep
test "$(cat data/dir/b.txt)" = b
test ! -e data/a.txt
test ! -e data/gone
test "$(ls -A opq)" = new.txt
test "$(cat layer3.txt)" = third
`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		strings.Join(mounts[0].Options, ","), target).CombinedOutput()
	if err != nil {
		t.Fatalf("merged rootfs check: %v\n%s", err, out)
	}
}
