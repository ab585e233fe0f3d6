package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
)

// fakeCriu writes an executable script standing in for criu.
func fakeCriu(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindCriuNamesTheMissingBinary(t *testing.T) {
	_, err := FindCriu("/nonexistent/criu-binary")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/criu-binary") {
		t.Fatalf("err = %v, want unavailable naming the binary", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := FindCriu(""); err == nil || !strings.Contains(err.Error(), `"criu"`) {
		t.Fatalf("criu found in an empty PATH: %v", err)
	}
}

func TestCheckCriu(t *testing.T) {
	ok := fakeCriu(t, `[ "$1" = check ] && echo "Looks good." && exit 0; exit 9`)
	if err := CheckCriu(context.Background(), ok); err != nil {
		t.Fatalf("a passing check failed: %v", err)
	}
	// criu 3.17 on kernels whose vDSO it does not know prints errors and
	// still exits 0.
	broken := fakeCriu(t, `echo "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds" >&2; exit 0`)
	err := CheckCriu(context.Background(), broken)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "Unexpected rt vDSO area bounds") || !strings.Contains(err.Error(), broken) {
		t.Fatalf("err = %v, want unavailable quoting criu", err)
	}
	failing := fakeCriu(t, `echo "no kernel support" >&2; exit 1`)
	if err := CheckCriu(context.Background(), failing); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no kernel support") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckpointOptionValidation(t *testing.T) {
	for _, o := range []CheckpointOpts{
		{ManageCgroupsMode: "sometimes"},
		{EmptyNS: []string{"mount"}},
		{PreDump: true, LeaveRunning: true},
	} {
		if err := checkCheckpointOpts(o); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: err = %v", o, err)
		}
	}
	if err := checkCheckpointOpts(CheckpointOpts{ManageCgroupsMode: "soft", EmptyNS: []string{"network"}}); err != nil {
		t.Error(err)
	}
}

func TestRestoreChecksBeforeCriu(t *testing.T) {
	root := t.TempDir()
	missing := "/nonexistent/criu"
	if _, err := Restore(context.Background(), root, "../x", missing, RestoreOpts{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := Restore(context.Background(), root, "r1", missing, RestoreOpts{CreateOpts: CreateOpts{Bundle: t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("bundle without config: %v", err)
	}
}
