package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLoadErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(dir); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("missing config: %v", err)
	}
	cases := map[string]string{
		`{`: "parse config.json",
		`{"ociVersion":"2.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`:                                                 `unsupported ociVersion "2.0.0"`,
		`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"linux":{}}`:                                                                          "no root.path",
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{}}`:                                                                                     "no process",
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/"},"linux":{}}`:                                                               "process.args is empty",
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"tmp"},"linux":{}}`:                                               `cwd "tmp" is not an absolute path`,
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`:                                                            "no linux section",
		`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"},"linux":{},"mounts":[{"destination":"proc","type":"proc"}]}`: `mount destination "proc"`,
	}
	for config, want := range cases {
		if err := os.WriteFile(filepath.Join(dir, ConfigName), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want it to mention %q", config, err, want)
		}
	}
}

func TestDefaultRoundTrip(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		dir := t.TempDir()
		if err := Write(dir, Default(rootless)); err != nil {
			t.Fatal(err)
		}
		s, abs, err := Load(dir)
		if err != nil {
			t.Fatalf("rootless=%v: %v", rootless, err)
		}
		if abs != dir || RootfsPath(abs, s) != filepath.Join(dir, "rootfs") || s.Version != specs.Version {
			t.Fatalf("rootless=%v: loaded %s %s", rootless, abs, s.Version)
		}
		var userns, netns bool
		for _, ns := range s.Linux.Namespaces {
			userns = userns || ns.Type == specs.UserNamespace
			netns = netns || ns.Type == specs.NetworkNamespace
		}
		if userns != rootless || netns == rootless {
			t.Fatalf("rootless=%v: user namespace %v, network namespace %v", rootless, userns, netns)
		}
		if rootless && (len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != uint32(os.Geteuid()) || s.Linux.Resources != nil) {
			t.Fatalf("rootless mappings %+v resources %+v", s.Linux.UIDMappings, s.Linux.Resources)
		}
	}
	if got := RootfsPath("/b", &specs.Spec{Root: &specs.Root{Path: "/abs/root/"}}); got != "/abs/root" {
		t.Fatalf("absolute root path: %s", got)
	}
}
