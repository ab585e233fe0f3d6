package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzApplyConfined builds layers from fuzzed sequences of entries whose
// names and link targets mix plain paths with escape attempts, and checks
// that extraction never touches anything outside the layer directory,
// whatever else happens.
func FuzzApplyConfined(f *testing.F) {
	f.Add([]byte{2, 4, 9, 0, 5, 0})
	f.Add([]byte{2, 4, 8, 1, 0, 0, 0, 6, 0})
	f.Add([]byte{3, 1, 10, 3, 2, 11})
	f.Add([]byte{2, 0, 9, 1, 0, 0, 0, 1, 0, 4, 12, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 3*40 {
			return
		}
		parent := t.TempDir()
		layer, outside := filepath.Join(parent, "layer"), filepath.Join(parent, "outside")
		os.Mkdir(layer, 0o755)
		os.Mkdir(outside, 0o755)
		victim := filepath.Join(outside, "victim")
		os.WriteFile(victim, []byte("v"), 0o644)

		names := []string{"a", "a/b", "b", "../a", "link", "link/x", "/abs/x", "../../outside/x", "link/victim", "x/../../y", "up", "up/outside/victim", "a/.wh.b"}
		targets := []string{"a", "/", "..", outside, outside + "/victim", "../outside", "../../..", "link", "/etc/shadow", "b", "up/outside", "up/outside/victim", "a/b"}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i := 0; i+2 < len(ops); i += 3 {
			name := names[int(ops[i+1])%len(names)]
			target := targets[int(ops[i+2])%len(targets)]
			h := &tar.Header{Name: name, Mode: 0o755, ModTime: time.Unix(1, 0)}
			switch ops[i] % 6 {
			case 0:
				h.Typeflag, h.Size = tar.TypeReg, 1
			case 1:
				h.Typeflag = tar.TypeDir
			case 2:
				h.Typeflag, h.Linkname = tar.TypeSymlink, target
			case 3:
				h.Typeflag, h.Linkname = tar.TypeLink, target
			case 4:
				h.Typeflag, h.Name = tar.TypeReg, filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name))
			case 5:
				h.Typeflag, h.Name = tar.TypeReg, filepath.Join(name, ".wh..wh..opq")
			}
			tw.WriteHeader(h)
			if h.Size == 1 {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		Apply(context.Background(), layer, bytes.NewReader(buf.Bytes()), WithOwnership(false))

		if b, err := os.ReadFile(victim); err != nil || string(b) != "v" {
			t.Fatalf("victim outside changed: %q %v", b, err)
		}
		entries, _ := os.ReadDir(outside)
		if len(entries) != 1 {
			t.Fatalf("outside now holds %v", entries)
		}
		top, _ := os.ReadDir(parent)
		if len(top) != 2 {
			t.Fatalf("beside the layer: %v", top)
		}
		if st, err := os.Stat(victim); err != nil || st.Mode().Perm() != 0o644 {
			t.Fatalf("victim mode changed: %v %v", st, err)
		}
	})
}
