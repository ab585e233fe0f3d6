// Package bundle reads and writes OCI runtime bundles: a directory holding
// config.json and the root filesystem it names. It validates what the rest of
// the runtime relies on before any container state exists, and it produces the
// default configuration that `berth-runtime spec` writes.
package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigName is the file name of a bundle's configuration.
const ConfigName = "config.json"

// Load reads dir/config.json and validates it. dir is made absolute so that the
// result can be recorded in container state.
func Load(dir string) (*specs.Spec, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("bundle %s: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(abs, ConfigName))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, "", errdefs.NotFound(fmt.Errorf("bundle %s: no %s", abs, ConfigName))
		}
		return nil, "", fmt.Errorf("bundle %s: read %s: %w", abs, ConfigName, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, "", errdefs.InvalidArgument(fmt.Errorf("bundle %s: parse %s: %w", abs, ConfigName, err))
	}
	if err := Validate(&s); err != nil {
		return nil, "", fmt.Errorf("bundle %s: %w", abs, err)
	}
	return &s, abs, nil
}

// Validate checks the parts of a configuration that must hold before a
// container is created: a 1.x ociVersion, a root path, and a process with
// arguments and an absolute cwd.
func Validate(s *specs.Spec) error {
	if !strings.HasPrefix(s.Version, "1.") {
		return errdefs.InvalidArgument(fmt.Errorf("unsupported ociVersion %q: want 1.x", s.Version))
	}
	if s.Root == nil || s.Root.Path == "" {
		return errdefs.InvalidArgument(fmt.Errorf("config has no root.path"))
	}
	if s.Process == nil {
		return errdefs.InvalidArgument(fmt.Errorf("config has no process"))
	}
	if len(s.Process.Args) == 0 {
		return errdefs.InvalidArgument(fmt.Errorf("process.args is empty"))
	}
	if !filepath.IsAbs(s.Process.Cwd) {
		return errdefs.InvalidArgument(fmt.Errorf("process.cwd %q is not an absolute path", s.Process.Cwd))
	}
	if s.Linux == nil {
		return errdefs.InvalidArgument(fmt.Errorf("config has no linux section"))
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return errdefs.InvalidArgument(fmt.Errorf("mount destination %q is not an absolute path", m.Destination))
		}
	}
	return nil
}

// RootfsPath returns the absolute path of the bundle's root filesystem.
func RootfsPath(bundleDir string, s *specs.Spec) string {
	if filepath.IsAbs(s.Root.Path) {
		return filepath.Clean(s.Root.Path)
	}
	return filepath.Join(bundleDir, s.Root.Path)
}

// Write stores s as dir/config.json, atomically.
func Write(dir string, s *specs.Spec) error {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	path := filepath.Join(dir, ConfigName)
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
