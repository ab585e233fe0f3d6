package engine

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
)

func TestImportURL(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	e := newEngine(t)
	layer, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/rootfs.tar.gz":
			w.Write(gz.Bytes())
		case "/moved":
			http.Redirect(w, r, "/rootfs.tar.gz", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	var rec recorder
	src := srv.URL + "/moved"
	id, err := e.ImportURL(ctx, src, ImportOptions{Ref: "fromurl:v1", Changes: []string{"CMD /bin/true"}}, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	insp, err := e.Inspect(ctx, "fromurl:v1")
	if err != nil || insp.ID != id.String() {
		t.Fatalf("inspect: %+v %v", insp, err)
	}
	if insp.Comment != "Imported from "+src {
		t.Errorf("comment %q", insp.Comment)
	}
	if !rec.has("Downloading from "+src) || !rec.has("Importing") {
		t.Errorf("progress: %q", rec.statuses())
	}
	// The same tarball through the request body makes the same layer.
	id2, err := e.Import(ctx, bytes.NewReader(layer), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	insp2, err := e.Inspect(ctx, id2.String())
	if err != nil {
		t.Fatal(err)
	}
	if insp2.RootFS.Layers[0] != insp.RootFS.Layers[0] {
		t.Errorf("layers differ: %v and %v", insp.RootFS.Layers, insp2.RootFS.Layers)
	}
}

func TestImportURLErrors(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(bytes.Repeat([]byte{0}, 4096))
		case "/broken":
			http.Error(w, "no", http.StatusInternalServerError)
		case "/file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	_, err := e.ImportURL(ctx, srv.URL+"/missing.tar", ImportOptions{}, nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), srv.URL+"/missing.tar") || !strings.Contains(err.Error(), "404 Not Found") {
		t.Errorf("missing: %v, want not found naming the URL and status", err)
	}
	_, err = e.ImportURL(ctx, srv.URL+"/broken", ImportOptions{}, nil)
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/broken") || !strings.Contains(err.Error(), "500 Internal Server Error") {
		t.Errorf("broken: %v, want an error naming the URL and status", err)
	}
	_, err = e.ImportURL(ctx, srv.URL+"/file", ImportOptions{}, nil)
	if err == nil || !strings.Contains(err.Error(), "only http and https") {
		t.Errorf("redirect to file: %v, want refused", err)
	}
	for _, src := range []string{"file:///etc/passwd", "ftp://example.com/x.tar", "http://"} {
		if _, err := e.ImportURL(ctx, src, ImportOptions{}, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", src, err)
		}
	}

	old := MaxImportDownload
	MaxImportDownload = 1024
	defer func() { MaxImportDownload = old }()
	_, err = e.ImportURL(ctx, srv.URL+"/big", ImportOptions{}, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "1024 allowed") && !strings.Contains(err.Error(), "1024 bytes allowed") {
		t.Errorf("too big: %v, want refused naming the bound", err)
	}
}

func TestImportURLStreamedTooBig(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the bound applies while reading.
		for range 8 {
			w.Write(bytes.Repeat([]byte{0}, 512))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	old := MaxImportDownload
	MaxImportDownload = 1024
	defer func() { MaxImportDownload = old }()
	_, err := e.ImportURL(ctx, srv.URL+"/stream", ImportOptions{}, nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "larger than the 1024 bytes allowed") {
		t.Errorf("streamed too big: %v", err)
	}
}
