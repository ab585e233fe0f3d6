package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyTheAPIClient holds the layering: the CLI talks to berthd
// through the Docker API client and imports no Berth internals.
func TestImportsOnlyTheAPIClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/berth-project/berth/internal/") {
			t.Errorf("berth imports %s", pkg)
		}
	}
}
