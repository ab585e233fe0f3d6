package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

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

func TestApplyChange(t *testing.T) {
	var c dockerspec.DockerOCIImageConfig
	for _, ch := range []string{
		"ENV A 1 2",
		`ENV B="x y" C=z`,
		"ENV A=3",
		"ENTRYPOINT /bin/app --flag",
		`VOLUME ["/data", "/logs"]`,
		"VOLUME /cache",
		"USER 1000:1000",
		"STOPSIGNAL SIGINT",
		"EXPOSE 53/udp 8080",
		"ONBUILD RUN true",
		`LABEL "k 1"=v`,
	} {
		if err := applyChange(&c, ch); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
	if got := strings.Join(c.Env, ","); got != "A=3,B=x y,C=z" {
		t.Errorf("env: %q", got)
	}
	if strings.Join(c.Entrypoint, "|") != "/bin/sh|-c|/bin/app --flag" {
		t.Errorf("entrypoint: %q", c.Entrypoint)
	}
	for _, v := range []string{"/data", "/logs", "/cache"} {
		if _, ok := c.Volumes[v]; !ok {
			t.Errorf("volume %s missing: %v", v, c.Volumes)
		}
	}
	for _, p := range []string{"53/udp", "8080/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s missing: %v", p, c.ExposedPorts)
		}
	}
	if c.User != "1000:1000" || c.StopSignal != "SIGINT" || len(c.OnBuild) != 1 || c.Labels["k 1"] != "v" {
		t.Errorf("config: %+v", c)
	}
	for _, bad := range []string{"RUN x", "ENV", "LABEL novalue"} {
		if err := applyChange(&c, bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
