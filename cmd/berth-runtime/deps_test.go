package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRuntimeStaysBelowTheEngine holds the layering of DESIGN.md: the
// runtime knows bundles, never images, content, snapshots or the engine, and
// its binary (on every container's start path) stays free of net/http.
func TestRuntimeStaysBelowTheEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"archive", "content", "engine", "image", "metadata", "registry", "shim", "snapshot", "apiserver", "specgen", "build", "network"}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if pkg == "github.com/berth-project/berth/internal/"+f {
				t.Errorf("berth-runtime imports %s", pkg)
			}
		}
		if pkg == "net/http" {
			t.Errorf("berth-runtime imports net/http")
		}
	}
}
