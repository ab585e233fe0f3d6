package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// TestImagesInsecureRegistry serves a plain-HTTP registry on a
// non-loopback address: berthd must refuse it until it is named insecure,
// by --insecure-registry or by insecure-registries in --config-file.
func TestImagesInsecureRegistry(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing", testutil.RegistryBinary)
	}
	ip := testutil.NonLoopbackIPv4()
	if ip == "" {
		t.Skip("this machine has no non-loopback IPv4 address")
	}
	reg := testutil.StartRegistryOn(t, ip)
	testutil.PushBusybox(t, reg, "ins/busybox:1")
	ref := reg + "/ins/busybox:1"

	t.Run("default", func(t *testing.T) {
		d := StartDaemon(t)
		c := firstClient(t, d)
		stderr := strings.ToLower(c.Fails(t, "pull", ref))
		if !strings.Contains(stderr, "https") && !strings.Contains(stderr, "tls") && !strings.Contains(stderr, "insecure") {
			t.Errorf("pull from a plain-HTTP registry at %s: the error does not say it is not HTTPS:\n%s", reg, stderr)
		}
	})
	t.Run("flag", func(t *testing.T) {
		d := StartDaemon(t, "--insecure-registry", reg)
		c := firstClient(t, d)
		c.Must(t, "pull", ref)
		if in := inspect(t, c, ref); !contains(in.RepoTags, ref) {
			t.Errorf("RepoTags %v", in.RepoTags)
		}
	})
	t.Run("config-file", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "daemon.json")
		b, _ := json.Marshal(map[string]any{"insecure-registries": []string{reg}})
		if err := os.WriteFile(cfg, b, 0o644); err != nil {
			t.Fatal(err)
		}
		d := StartDaemon(t, "--config-file", cfg)
		c := firstClient(t, d)
		c.Must(t, "pull", ref)
	})
}

// TestImagesRegistryMirror pulls a Docker Hub name through
// --registry-mirror pointing at a local registry (no internet needed).
func TestImagesRegistryMirror(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing", testutil.RegistryBinary)
	}
	reg := testutil.StartRegistry(t)
	dg := testutil.PushBusybox(t, reg, "library/busybox:latest")
	forEachClientArgs(t, []string{"--registry-mirror", "http://" + reg}, func(t *testing.T, d *Daemon, c *CLI) {
		c.Must(t, "pull", "busybox")
		in := inspect(t, c, "busybox")
		if !contains(in.RepoTags, "busybox:latest") {
			t.Errorf("RepoTags %v, want busybox:latest", in.RepoTags)
		}
		if !contains(in.RepoDigests, "busybox@"+dg) {
			t.Errorf("RepoDigests %v, want busybox@%s", in.RepoDigests, dg)
		}
		if got := inspect(t, c, "docker.io/library/busybox:latest"); got.ID != in.ID {
			t.Errorf("docker.io/library/busybox:latest is %s, busybox is %s", got.ID, in.ID)
		}
	})
}
