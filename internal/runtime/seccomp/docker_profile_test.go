package seccomp

import (
	"path/filepath"
	"strings"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-project/berth/internal/testutil"
)

// dockerDefaultCaps is Docker's default capability set, which selects the
// conditional parts of its default profile.
var dockerDefaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

func dockerDefaultProfile(t testing.TB) *specs.LinuxSeccomp {
	t.Helper()
	caps := &specs.LinuxCapabilities{Bounding: dockerDefaultCaps, Effective: dockerDefaultCaps, Permitted: dockerDefaultCaps}
	p, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: caps}})
	if err != nil {
		t.Fatalf("Docker default profile: %v", err)
	}
	return p
}

func TestDockerDefaultProfileValidates(t *testing.T) {
	if err := Validate(dockerDefaultProfile(t)); err != nil {
		t.Fatal(err)
	}
}

func TestDockerDefaultProfileRunsBusybox(t *testing.T) {
	testutil.RequiresRoot(t)
	p := dockerDefaultProfile(t)
	r := runChild(t, *p, "", "sh", "-c", "echo ok")
	if r.code != 0 || r.sig != 0 || r.out != "ok\n" {
		t.Errorf("exit %d signal %v output %q, want ok", r.code, r.sig, r.out)
	}
	// As root, swapoff of a missing file fails with ENOENT; the profile
	// denies swapoff (CAP_SYS_ADMIN only) with EPERM before the kernel looks.
	r = runChild(t, *p, "", "swapoff", "/nonexistent-berth-swap")
	if r.code != 1 || !strings.Contains(r.out, "Operation not permitted") {
		t.Errorf("swapoff: exit %d output %q, want EPERM from the profile", r.code, r.out)
	}
}

// BenchmarkCompileDockerDefault measures what Load does before seccomp(2)
// for the Docker default profile: checks, libseccomp build, BPF export.
func BenchmarkCompileDockerDefault(b *testing.B) {
	p := dockerDefaultProfile(b)
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileCachedDockerDefault is the same with the program cached.
func BenchmarkCompileCachedDockerDefault(b *testing.B) {
	p := dockerDefaultProfile(b)
	dir := filepath.Join(b.TempDir(), "cache")
	for b.Loop() {
		if _, err := CompileCached(dir, p); err != nil {
			b.Fatal(err)
		}
	}
}
