package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/image"
)

func TestImageRows(t *testing.T) {
	s := image.Summary{
		ID:          "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		RepoTags:    []string{"busybox:latest", "localhost:5000/x/y:1"},
		RepoDigests: []string{"busybox@sha256:aaaa", "other@sha256:bbbb"},
		Size:        4_260_000,
	}
	rows := imageRows(s, false)
	if len(rows) != 3 {
		t.Fatalf("rows: %+v", rows)
	}
	got := map[string]imageRow{}
	for _, r := range rows {
		got[r.Repository] = r
	}
	if r := got["busybox"]; r.Tag != "latest" || r.Digest != "sha256:aaaa" || r.ID != "0123456789ab" || r.Size != "4.26MB" {
		t.Errorf("busybox row: %+v", r)
	}
	if r := got["localhost:5000/x/y"]; r.Tag != "1" || r.Digest != "<none>" {
		t.Errorf("port row: %+v", r)
	}
	if r := got["other"]; r.Tag != "<none>" || r.Digest != "sha256:bbbb" {
		t.Errorf("digest-only row: %+v", r)
	}
	dangling := imageRows(image.Summary{ID: s.ID}, true)
	if len(dangling) != 1 || dangling[0].Repository != "<none>" || dangling[0].ID != s.ID {
		t.Errorf("dangling: %+v", dangling)
	}
}

func TestWriteFormatted(t *testing.T) {
	rows := []any{imageRow{Repository: "a", Tag: "1", ID: "x"}, imageRow{Repository: "b", Tag: "2", ID: "y"}}
	header := map[string]string{"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID"}
	var buf bytes.Buffer
	if err := writeFormatted(&buf, "{{.Repository}}:{{.Tag}}", "", header, rows); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "a:1\nb:2\n" {
		t.Errorf("plain template: %q", buf.String())
	}
	buf.Reset()
	if err := writeFormatted(&buf, "table {{.Repository}}\t{{.ID}}", "", header, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "REPOSITORY") || !strings.Contains(lines[0], "IMAGE ID") {
		t.Errorf("table: %q", buf.String())
	}
	buf.Reset()
	if err := writeFormatted(&buf, "json", "", header, rows[:1]); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"Repository":"a"`) {
		t.Errorf("json: %q", buf.String())
	}
	if err := writeFormatted(&buf, "{{.Nope", "", header, rows); err == nil {
		t.Error("broken template accepted")
	}
}

func TestServerKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                            indexServer,
		"docker.io":                   indexServer,
		"https://index.docker.io/v1/": indexServer,
		"localhost:5000":              "localhost:5000",
		"https://reg.example:443/":    "reg.example:443",
	} {
		if got := serverKey(in); got != want {
			t.Errorf("serverKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDaemonHostPrecedence(t *testing.T) {
	t.Setenv("BERTH_HOST", "")
	t.Setenv("DOCKER_HOST", "")
	c := &cli{}
	if h, def := c.daemonHost(); h != defaultHost || !def {
		t.Errorf("default: %s %v", h, def)
	}
	t.Setenv("DOCKER_HOST", "unix:///docker.sock")
	if h, def := c.daemonHost(); h != "unix:///docker.sock" || def {
		t.Errorf("DOCKER_HOST: %s %v", h, def)
	}
	t.Setenv("BERTH_HOST", "unix:///berth.sock")
	if h, _ := c.daemonHost(); h != "unix:///berth.sock" {
		t.Errorf("BERTH_HOST: %s", h)
	}
	c.host = "unix:///flag.sock"
	if h, _ := c.daemonHost(); h != "unix:///flag.sock" {
		t.Errorf("-H: %s", h)
	}
}

func testContext() context.Context { return context.Background() }
