package tests

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// faultSetup starts a berthd and returns it with one client (berth when
// built, else docker) and the fixtures.
func faultSetup(t *testing.T) (*fixtureSet, *Daemon, *CLI) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	f := pushFixtures(t)
	d := StartDaemon(t)
	return f, d, firstClient(t, d)
}

// TestImagesFaultWrongDigest serves the busybox layer with one byte changed:
// the pull must fail naming the blob, and nothing may be stored.
func TestImagesFaultWrongDigest(t *testing.T) {
	f, d, c := faultSetup(t)
	layer := layerDigests(t, f.BusyboxImg)[0]
	p := testutil.StartCorruptingProxy(t, f.Reg, layer)
	ref := p.Addr + "/e2e/busybox:1"
	stderr := c.Fails(t, "pull", ref)
	hexPart := strings.TrimPrefix(layer, "sha256:")
	if !strings.Contains(stderr, hexPart[:12]) {
		t.Errorf("error does not name the corrupt blob %s:\n%s", layer, stderr)
	}
	if len(p.BlobRequests()) == 0 {
		t.Fatal("berthd never fetched the layer")
	}
	if _, err := os.Stat(blobPath(d, layer)); err == nil {
		t.Errorf("corrupt layer %s was stored", layer)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store: %v", bad)
	}
	if ids := Lines(c.Must(t, "images", "-q")); len(ids) != 0 {
		t.Errorf("images after a failed pull: %v", ids)
	}
	c.Fails(t, "image", "inspect", ref)
	// The same image from the real registry pulls fine afterwards.
	c.Must(t, "pull", f.ref("e2e/busybox:1"))
}

// TestImagesFaultCutResume drops the connection halfway through the busybox
// layer once: the pull (or a second one) must succeed and fetch only the
// missing bytes (a Range request from a non-zero offset).
func TestImagesFaultCutResume(t *testing.T) {
	f, d, c := faultSetup(t)
	layer := layerDigests(t, f.BusyboxImg)[0]
	ls, _ := f.BusyboxImg.Layers()
	size, _ := ls[0].Size()
	p := testutil.StartCutProxy(t, f.Reg, layer, size/2)
	ref := p.Addr + "/e2e/busybox:1"
	if _, stderr, err := c.Run("pull", ref); err != nil {
		t.Logf("first pull failed (%v); pulling again:\n%s", err, stderr)
		c.Must(t, "pull", ref)
	}
	in := inspect(t, c, ref)
	if in.ID != configDigest(t, f.BusyboxImg) {
		t.Errorf("Id %s", in.ID)
	}
	reqs := p.BlobRequests()
	if len(reqs) < 2 || !reqs[0].Faulted || reqs[0].Bytes != size/2 {
		t.Fatalf("blob requests %+v: want a cut one then a retry", reqs)
	}
	resumed := false
	for _, r := range reqs[1:] {
		if off, ok := rangeStart(r.Range); ok && off > 0 && off <= size/2 {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("the retry fetched the layer again from byte 0 (requests %+v); want a Range from the %d bytes already received", reqs, size/2)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store: %v", bad)
	}
	if _, err := os.Stat(blobPath(d, layer)); err != nil {
		t.Errorf("layer not stored after the resumed pull: %v", err)
	}
}

// rangeStart parses "bytes=N-" or "bytes=N-M".
func rangeStart(h string) (int64, bool) {
	s, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, false
	}
	start, _, _ := strings.Cut(s, "-")
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

// TestImagesFaultPathEscape pulls layers that try to write outside the
// snapshot. ../ and hardlinks out of the layer must be rejected; absolute
// names and writes through absolute symlinks must stay inside.
func TestImagesFaultPathEscape(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing", testutil.RegistryBinary)
	}
	reg := testutil.StartRegistry(t)
	d := StartDaemon(t)
	c := firstClient(t, d)
	var shadow syscall.Stat_t
	if err := syscall.Stat("/etc/shadow", &shadow); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{testutil.EscapeDotDot, testutil.EscapeAbsolute, testutil.EscapeSymlink, testutil.EscapeHardlink} {
		t.Run(kind, func(t *testing.T) {
			hostDir := t.TempDir()
			target := hostDir + "/escaped-" + kind
			if kind == testutil.EscapeHardlink {
				if err := os.WriteFile(target, []byte("host file\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			testutil.PushEvil(t, reg, "evil/"+kind+":1", kind, target)
			ref := reg + "/evil/" + kind + ":1"
			_, stderr, err := c.Run("pull", ref)
			mustFail := kind == testutil.EscapeDotDot || kind == testutil.EscapeHardlink
			switch {
			case err == nil && mustFail:
				t.Errorf("pull of a layer with a %s escape succeeded", kind)
			case err != nil && !strings.Contains(stderr, "escaped-"+kind) && !strings.Contains(stderr, "shadow") && !strings.Contains(stderr, "..") && !strings.Contains(stderr, "escape"):
				t.Errorf("the error does not name the offending entry:\n%s", stderr)
			}
			if err != nil {
				if ids := Lines(c.Must(t, "images", "-q", "--filter", "reference=*/evil/"+kind)); len(ids) != 0 {
					t.Errorf("image stored after a rejected pull: %v", ids)
				}
			}
			switch kind {
			case testutil.EscapeHardlink:
				var st syscall.Stat_t
				syscall.Stat(target, &st)
				if st.Nlink != 1 {
					t.Errorf("%s has %d links after the pull", target, st.Nlink)
				}
			default:
				if _, err := os.Lstat(target); err == nil {
					t.Errorf("the layer wrote %s on the host", target)
				}
			}
			var now syscall.Stat_t
			syscall.Stat("/etc/shadow", &now)
			if now.Nlink != shadow.Nlink || now.Ino != shadow.Ino {
				t.Errorf("/etc/shadow links %d -> %d", shadow.Nlink, now.Nlink)
			}
			if bad := verifyStore(t, d); len(bad) > 0 {
				t.Errorf("content store: %v", bad)
			}
		})
	}
}

// TestImagesFaultKillDuringPull kills berthd with SIGKILL while a layer of
// the multi-layer image is half downloaded (the proxy holds the connection),
// restarts it on the same data root, and checks the store is consistent and
// the pull then succeeds and unpacks correctly.
func TestImagesFaultKillDuringPull(t *testing.T) {
	f, d, c := faultSetup(t)
	layer := layerDigests(t, f.MultiImg)[0]
	ls, _ := f.MultiImg.Layers()
	size, _ := ls[0].Size()
	p := testutil.StartStallProxy(t, f.Reg, layer, size/2)
	ref := p.Addr + "/e2e/multi:1"
	cmd, out, err := c.Start("pull", ref)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-p.Stalled:
	case err := <-exited:
		t.Fatalf("pull ended (%v) before the stalled layer was half fetched:\n%s", err, out)
	}
	pid := d.PID()
	d.Kill()
	if err := <-exited; err == nil {
		t.Errorf("%s pull succeeded although berthd was killed:\n%s", c.Name, out)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("berthd pid %d alive after SIGKILL", pid)
	}
	p.Release()
	if err := d.Start(); err != nil {
		t.Fatalf("restart after SIGKILL: %v", err)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store after the kill: %v", bad)
	}
	if ids := Lines(c.Must(t, "images", "-q")); len(ids) != 0 {
		t.Errorf("images after an interrupted pull: %v", ids)
	}
	c.Fails(t, "image", "inspect", ref)
	c.Must(t, "pull", ref)
	in := inspect(t, c, ref)
	if in.ID != configDigest(t, f.MultiImg) {
		t.Errorf("Id %s", in.ID)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store after the second pull: %v", bad)
	}
	for _, problem := range testutil.CheckMultiLayerRootfs(mergedCopy(t, snapshotDirs(t, d, in))) {
		t.Error("merged rootfs after the restart: " + problem)
	}
	// A clean stop works after all this.
	if err := d.Stop(); err != nil {
		t.Errorf("SIGTERM stop: %v", err)
	}
}

// TestImagesFaultTransientRetry answers the first two GETs of the busybox
// layer with 503: one pull must still succeed, retrying the blob.
func TestImagesFaultTransientRetry(t *testing.T) {
	f, d, c := faultSetup(t)
	layer := layerDigests(t, f.BusyboxImg)[0]
	p := testutil.StartBusyProxy(t, f.Reg, layer, 2)
	ref := p.Addr + "/e2e/busybox:1"
	c.Must(t, "pull", ref)
	if in := inspect(t, c, ref); in.ID != configDigest(t, f.BusyboxImg) {
		t.Errorf("Id %s", in.ID)
	}
	reqs := p.BlobRequests()
	if len(reqs) < 3 || reqs[len(reqs)-1].Status != 200 {
		t.Errorf("blob requests %+v: want two 503s then a 200", reqs)
	}
	if bad := verifyStore(t, d); len(bad) > 0 {
		t.Errorf("content store: %v", bad)
	}
}
