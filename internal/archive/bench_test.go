package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// benchLayer makes a layer of about 50 MB shaped like a distribution's root
// filesystem: 5000 files of 1 to 20 KB, half-compressible, in 100 directories,
// with some symlinks and hardlinks.
func benchLayer(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"lib", "usr", "share", "doc", "config", "value", "binary", "\x00\x01", "data", "linux"}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	for d := range 100 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/lib/d%03d/", d), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt})
		for f := range 50 {
			var content bytes.Buffer
			size := 1024 + rng.IntN(19*1024)
			for content.Len() < size {
				if rng.IntN(2) == 0 {
					content.WriteString(words[rng.IntN(len(words))])
				} else {
					content.WriteByte(byte(rng.Uint32()))
				}
			}
			name := fmt.Sprintf("usr/lib/d%03d/f%02d.so", d, f)
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(content.Len()), ModTime: mt})
			tw.Write(content.Bytes())
			if f%10 == 0 {
				tw.WriteHeader(&tar.Header{Name: name + ".1", Typeflag: tar.TypeSymlink, Linkname: fmt.Sprintf("f%02d.so", f), ModTime: mt})
				tw.WriteHeader(&tar.Header{Name: name + ".hard", Typeflag: tar.TypeLink, Linkname: name, ModTime: mt})
			}
		}
	}
	tw.Close()
	return buf.Bytes()
}

// BenchmarkApply extracts benchLayer, plain, gzip- and zstd-compressed,
// into a directory under $BERTH_BENCH_DIR (default: the temp dir).
func BenchmarkApply(b *testing.B) {
	layer := benchLayer(b)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		data := compress(b, layer, c)
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(layer)))
			b.ReportMetric(float64(len(data))/1e6, "MB-compressed")
			for b.Loop() {
				b.StopTimer()
				d, err := os.MkdirTemp(os.Getenv("BERTH_BENCH_DIR"), "berth-bench-apply-")
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, _, err := Apply(context.Background(), d, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(d)
				b.StartTimer()
			}
		})
	}
}
