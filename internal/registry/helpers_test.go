package registry

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// newRegistryHandler is an in-memory registry that logs nothing.
func newRegistryHandler() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// startRegistry serves h (wrapped by wrap, when given) over plain HTTP on
// loopback and returns the server and its host:port.
func startRegistry(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://")
}

// seedImage writes a random image with layers layers of size bytes to
// host/repo:tag directly with go-containerregistry and returns it.
func seedImage(t *testing.T, host, repo, tag string, size int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
	return img
}

func mustRef(t *testing.T, s string) image.Reference {
	t.Helper()
	r, err := image.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// layerOf returns the i-th layer of img as a descriptor and its bytes.
func layerOf(t *testing.T, img v1.Image, i int) (ocispec.Descriptor, []byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[i].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := layers[i].MediaType()
	return ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(data), Size: int64(len(data))}, data
}

func fastRetry() Option { return WithRetry(3, time.Millisecond) }

// dialMap is a transport that connects to the mapped address when asked for
// a host:port in m, so tests can give servers on loopback other names.
func dialMap(m map[string]string) *http.Transport {
	d := &net.Dialer{}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := m[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

// staticAuth is a keychain answering one user and password for every registry.
type staticAuth struct{ user, pass string }

func (s staticAuth) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: s.user, Password: s.pass}), nil
}

// recorder collects progress events.
type recorder struct {
	mu  sync.Mutex
	evs []Progress
}

func (r *recorder) add(ev Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) count(a Action) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs {
		if ev.Action == a {
			n++
		}
	}
	return n
}

func readAll(t *testing.T, rc io.ReadCloser) ([]byte, error) {
	t.Helper()
	defer rc.Close()
	var b bytes.Buffer
	_, err := io.Copy(&b, rc)
	return b.Bytes(), err
}
