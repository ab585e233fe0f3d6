package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-project/berth/internal/runtime/bundle"
)

func TestBusyboxBundle(t *testing.T) {
	dir, s := BusyboxBundle(t, "echo", "hi")
	if _, err := os.Stat(filepath.Join(dir, "rootfs/bin/sh")); err != nil {
		t.Fatalf("rootfs has no sh: %v", err)
	}
	got, abs, err := bundle.Load(dir)
	if err != nil {
		t.Fatalf("load bundle: %v", err)
	}
	if abs != dir || got.Process.Args[0] != "echo" || s.Process.Terminal {
		t.Fatalf("bundle = %s %v terminal=%v", abs, got.Process.Args, s.Process.Terminal)
	}
}
