package registry

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
)

func TestIsInsecure(t *testing.T) {
	c := New(WithInsecure("myreg.example:5000", "plain.example", "10.0.0.0/8", "FD00::/8"))
	for host, want := range map[string]bool{
		"127.0.0.1":           true,
		"127.0.0.1:5000":      true,
		"127.9.8.7:80":        true,
		"[::1]:5000":          true,
		"::1":                 true,
		"localhost":           true,
		"localhost:5000":      true,
		"LOCALHOST:5000":      true,
		"myreg.example:5000":  true,
		"myreg.example:5001":  false,
		"myreg.example":       false,
		"plain.example":       true,
		"plain.example:8080":  true,
		"10.1.2.3:5000":       true,
		"11.1.2.3:5000":       false,
		"192.168.1.1:5000":    false,
		"[fd00::1]:5000":      true,
		"index.docker.io":     false,
		"registry.example.io": false,
		"localhost.evil.com":  false,
		"127.0.0.1.nip.io":    false,
	} {
		if got := c.IsInsecure(host); got != want {
			t.Errorf("IsInsecure(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestPlainHTTPOnlyForInsecureRegistries(t *testing.T) {
	var hits atomic.Int32
	inner := newRegistryHandler()
	_, seedHost := startRegistry(t, inner)
	img := seedImage(t, seedHost, "app", "v1", 100, 1)
	want, _ := img.Digest()
	srv, addr := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		inner.ServeHTTP(w, r)
	}))
	_ = srv
	ctx := context.Background()
	named, private := "registry.example.com:5000", "10.1.2.3:5000"
	dial := map[string]string{named: addr, private: addr}

	for _, host := range []string{named, private} {
		c := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithAuth(authn.NewMultiKeychain()))
		if _, err := c.Resolve(ctx, mustRef(t, host+"/app:v1")); err == nil {
			t.Errorf("Resolve from %s over plain HTTP without it being insecure: no error", host)
		}
		if hits.Load() != 0 {
			t.Fatalf("a plain HTTP request reached the registry as %s", host)
		}
		if _, err := c.Login(ctx, host, "u", "p"); err == nil {
			t.Errorf("Login to %s over plain HTTP without it being insecure: no error", host)
		}
		if hits.Load() != 0 {
			t.Fatalf("a plain HTTP login request reached the registry as %s", host)
		}
	}
	// The private address is tried over http (go-containerregistry's
	// heuristic) and refused by policy, with an error saying so.
	c := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithAuth(authn.NewMultiKeychain()))
	_, err := c.Resolve(ctx, mustRef(t, private+"/app:v1"))
	if err == nil || !strings.Contains(err.Error(), "not an insecure registry") {
		t.Errorf("Resolve from %s: %v, want the plain-HTTP refusal", private, err)
	}
	// Any plain-HTTP request to a secure host is refused by the transport.
	req, _ := http.NewRequest(http.MethodGet, "http://"+named+"/v2/", nil)
	if _, err := c.base.RoundTrip(req); !errors.Is(err, ErrPlainHTTP) {
		t.Errorf("plain HTTP request to %s: %v, want ErrPlainHTTP", named, err)
	}
	if !errors.Is(classify(errPlain(named)), errdefs.ErrPermission) {
		t.Error("a plain-HTTP refusal is not classified as a permission error")
	}

	for _, tc := range []struct{ host, insecure string }{{named, named}, {private, "10.0.0.0/8"}} {
		c := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithInsecure(tc.insecure), WithAuth(authn.NewMultiKeychain()))
		desc, err := c.Resolve(ctx, mustRef(t, tc.host+"/app:v1"))
		if err != nil || desc.Digest.String() != want.String() {
			t.Errorf("Resolve from %s configured insecure as %s = %+v, %v", tc.host, tc.insecure, desc, err)
		}
	}
}

func errPlain(host string) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/", nil)
	_, err := New().base.RoundTrip(req)
	return err
}

func TestDockerHubMirrors(t *testing.T) {
	mirrorInner, originInner := newRegistryHandler(), newRegistryHandler()
	var mirrorHits, originHits atomic.Int32
	mirrorSrv, mirrorAddr := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mirrorHits.Add(1)
		mirrorInner.ServeHTTP(w, r)
	}))
	_, originAddr := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originHits.Add(1)
		originInner.ServeHTTP(w, r)
	}))
	cached := seedImage(t, mirrorAddr, "library/busybox", "latest", 300, 1)
	seedImage(t, originAddr, "library/busybox", "latest", 300, 1)
	onlyOrigin := seedImage(t, originAddr, "library/alpine", "latest", 300, 1)
	mirrorHits.Store(0)
	originHits.Store(0)

	// Docker Hub is played by the origin server, reached as index.docker.io
	// over plain HTTP (made insecure for the test).
	dial := map[string]string{"index.docker.io:443": originAddr, "index.docker.io:80": originAddr}
	newClient := func(mirrors ...string) *Client {
		return New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithInsecure("index.docker.io"),
			WithAuth(authn.NewMultiKeychain()), WithMirrors(mirrors...))
	}
	ctx := context.Background()

	c := newClient("http://" + mirrorAddr)
	desc, err := c.Resolve(ctx, mustRef(t, "busybox"))
	if d, _ := cached.Digest(); err != nil || desc.Digest.String() != d.String() {
		t.Fatalf("Resolve busybox through the mirror = %+v, %v; want %s", desc, err, d)
	}
	if mirrorHits.Load() == 0 || originHits.Load() != 0 {
		t.Errorf("mirror hits %d, Docker Hub hits %d; want only the mirror", mirrorHits.Load(), originHits.Load())
	}
	ldesc, _ := layerOf(t, cached, 0)
	rc, err := c.FetchBlob(ctx, mustRef(t, "busybox"), ldesc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, rc); err != nil || originHits.Load() != 0 {
		t.Errorf("FetchBlob through the mirror: %v, Docker Hub hits %d", err, originHits.Load())
	}

	// Not on the mirror: Docker Hub itself.
	desc, err = c.Resolve(ctx, mustRef(t, "alpine"))
	if d, _ := onlyOrigin.Digest(); err != nil || desc.Digest.String() != d.String() {
		t.Fatalf("Resolve alpine (not mirrored) = %+v, %v; want %s", desc, err, d)
	}
	if originHits.Load() == 0 {
		t.Error("Docker Hub was not asked for what the mirror lacks")
	}

	// Mirrors are for Docker Hub pulls only: pushes go to Docker Hub.
	before := mirrorHits.Load()
	bdesc, bdata := randomBlob(t, 50)
	if _, err := c.PushBlob(ctx, mustRef(t, "user/app"), bdesc, (&opener{data: bdata}).open, nil); err != nil {
		t.Errorf("PushBlob to Docker Hub: %v", err)
	}
	if mirrorHits.Load() != before {
		t.Error("a push went to the mirror")
	}

	// A mirror that is down is skipped.
	mirrorSrv.Close()
	if _, err := newClient("http://"+mirrorAddr).Resolve(ctx, mustRef(t, "busybox")); err != nil {
		t.Errorf("Resolve with the mirror down: %v", err)
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io",
		"index.docker.io":             "docker.io",
		"registry-1.docker.io":        "docker.io",
		"docker.io":                   "docker.io",
		"":                            "docker.io",
		"localhost:5000":              "localhost:5000",
		"http://localhost:5000/":      "localhost:5000",
		"Quay.IO":                     "quay.io",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}
