package shim

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestShimBinaryStaysLean keeps the shim binary free of what would make
// every container's monitor heavy: an HTTP stack, CLI and logging
// frameworks, and package net (which with cgo links the C library).
func TestShimBinaryStaysLean(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		t.Skipf("go tool not found at %s: %v", goBin, err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/berth-project/berth/cmd/berth-shim").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	banned := []string{"net", "net/http", "runtime/cgo", "github.com/spf13/cobra", "github.com/sirupsen/logrus"}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			if dep == b {
				t.Errorf("berth-shim depends on %s", dep)
			}
		}
	}
}

func TestSpawnRejectsBadOpts(t *testing.T) {
	base := Opts{ID: "c1", Bundle: "/b", StateDir: "/s", ShimBinary: "/bin/true", Runtime: "/bin/true", RuntimeRoot: "/r"}
	long := base
	long.StateDir = "/" + strings.Repeat("d", 120)
	badID := base
	badID.ID = "../x"
	noRoot := base
	noRoot.RuntimeRoot = ""
	for name, o := range map[string]Opts{"long state dir": long, "bad id": badID, "no runtime root": noRoot} {
		if _, err := Spawn(t.Context(), o); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: Spawn(%+v) = %v, want an invalid argument", name, o, err)
		}
	}
}
