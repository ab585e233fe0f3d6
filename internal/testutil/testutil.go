// Package testutil holds what Berth's tests share: the root requirement for
// privileged tests and the fixtures they run containers from (a busybox root
// filesystem made from Debian's busybox-static, and OCI bundles around it).
// Fixtures are made by the project itself; nothing is downloaded.
package testutil

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-project/berth/internal/runtime/bundle"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RequiresRoot skips t unless it runs as root. Privileged tests call it first.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root")
	}
}

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

var (
	appletsOnce sync.Once
	applets     []string
	appletsErr  error
)

// busyboxApplets lists the applets the host's busybox provides.
func busyboxApplets() ([]string, error) {
	appletsOnce.Do(func() {
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			appletsErr = fmt.Errorf("%s --list: %w (install busybox-static)", BusyboxPath, err)
			return
		}
		applets = strings.Fields(string(out))
	})
	return applets, appletsErr
}

// MakeBusyboxRootfs fills dir with a minimal root filesystem: a private copy
// of the static busybox binary in /bin with a symlink for each applet, the
// usual top-level directories, and /etc/passwd and /etc/group with root,
// daemon and nobody.
func MakeBusyboxRootfs(dir string) error {
	list, err := busyboxApplets()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr/bin", "usr/sbin", "sbin", "var", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(BusyboxPath, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range list {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\ndaemon:x:1:\ntty:x:5:\naudio:x:29:nobody\nnogroup:x:65534:\n",
		"etc/hostname": "busybox\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// BusyboxRootfs makes a busybox root filesystem in a new temporary directory
// that is removed when t ends.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := MakeBusyboxRootfs(dir); err != nil {
		t.Fatalf("make busybox rootfs: %v", err)
	}
	return dir
}

// MakeBusyboxBundle makes an OCI bundle in dir: rootfs/ from busybox and a
// config.json from bundle.Default, without a terminal and running args (sh
// when none are given). It returns the spec it wrote.
func MakeBusyboxBundle(dir string, args ...string) (*specs.Spec, error) {
	if err := MakeBusyboxRootfs(filepath.Join(dir, "rootfs")); err != nil {
		return nil, err
	}
	s := bundle.Default(false)
	s.Process.Terminal = false
	if len(args) > 0 {
		s.Process.Args = args
	}
	if err := bundle.Write(dir, s); err != nil {
		return nil, err
	}
	return s, nil
}

// BusyboxBundle makes a busybox bundle in a new temporary directory removed
// when t ends. Change the returned spec and call WriteSpec to adjust it.
func BusyboxBundle(t testing.TB, args ...string) (string, *specs.Spec) {
	t.Helper()
	dir := t.TempDir()
	s, err := MakeBusyboxBundle(dir, args...)
	if err != nil {
		t.Fatalf("make busybox bundle: %v", err)
	}
	return dir, s
}

// WriteSpec stores s as the config.json of the bundle in dir.
func WriteSpec(t testing.TB, dir string, s *specs.Spec) {
	t.Helper()
	if err := bundle.Write(dir, s); err != nil {
		t.Fatalf("write spec: %v", err)
	}
}
