package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"sort"
	"testing"

	"github.com/berth-project/berth/internal/content"
	"github.com/berth-project/berth/internal/errdefs"
)

type contentInfo = content.Info

func makeTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	return buf.Bytes()
}

// rewriteTar copies the entries of a tar for which keep is true.
func rewriteTar(t *testing.T, in []byte, keep func(name string) bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(in))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !keep(hdr.Name) {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestArchiveLinks(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "a/layer.tar", Mode: 0o644}, "layer")
	add(&tar.Header{Name: "b/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../a/layer.tar"}, "")
	tw.Close()
	ad, err := unpackArchive(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := ad.read("b/layer.tar")
	if err != nil || string(data) != "layer" {
		t.Fatalf("read through link: %q %v", data, err)
	}

	for _, link := range []string{"../../etc/passwd", "/etc/passwd"} {
		buf.Reset()
		tw = tar.NewWriter(&buf)
		add(&tar.Header{Name: "x/layer.tar", Typeflag: tar.TypeSymlink, Linkname: link}, "")
		tw.Close()
		if _, err := unpackArchive(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir()); !errdefs.IsInvalidArgument(err) {
			t.Errorf("link to %s: %v", link, err)
		}
	}
}
