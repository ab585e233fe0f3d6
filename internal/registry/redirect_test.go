package registry

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// TestBlobRedirectToStorage has the registry send blob GETs to a separate
// storage server, as registries backed by object stores do: the blob and
// its Range arrive, the registry's credentials do not.
func TestBlobRedirectToStorage(t *testing.T) {
	inner := newRegistryHandler()
	_, seedHost := startRegistry(t, inner)
	img := seedImage(t, seedHost, "app", "v1", 5000, 1)
	desc, data := layerOf(t, img, 0)

	var mu sync.Mutex
	var storageAuth, storageRange []string
	_, storageHost := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		storageRange = append(storageRange, r.Header.Get("Range"))
		mu.Unlock()
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/storage")
		inner.ServeHTTP(w, r2)
	}))
	front := basicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, r, "http://"+storageHost+"/storage"+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		inner.ServeHTTP(w, r)
	}), "carol", "pw")
	_, host := startRegistry(t, front)

	c := New(fastRetry(), WithAuth(staticAuth{"carol", "pw"}))
	ref := mustRef(t, host+"/app:v1")
	for _, off := range []int64{0, 1000} {
		rc, err := c.FetchBlob(context.Background(), ref, desc, off)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, rc)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("redirected blob from %d: %d bytes, %v", off, len(got), err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(storageAuth) != 2 {
		t.Fatalf("storage saw %d requests, want 2", len(storageAuth))
	}
	for _, a := range storageAuth {
		if a != "" {
			t.Errorf("the registry's credentials reached the storage server: %q", a)
		}
	}
	if storageRange[0] != "" || !strings.HasPrefix(storageRange[1], "bytes=1000-") {
		t.Errorf("storage saw Range %q, want none then bytes=1000-", storageRange)
	}
}

func TestLoginWithoutAuthentication(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	tok, err := New(WithRetry(0, 0)).Login(context.Background(), host, "anyone", "anything")
	if err != nil || tok != "" {
		t.Errorf("Login to a registry without authentication = %q, %v", tok, err)
	}
}

func TestWithCredentialsOnlyForItsRegistry(t *testing.T) {
	base := New(WithAuth(staticAuth{"default", "pw"}))
	c := base.WithCredentials("https://index.docker.io/v1/", authn.AuthConfig{Username: "hub", Password: "pw"})
	for host, want := range map[string]string{
		"index.docker.io": "hub",
		"quay.io":         "default",
	} {
		reg, _ := name.NewRegistry(host)
		a, err := c.keychain.Resolve(reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := authn.Authorization(context.Background(), a)
		if err != nil || cfg.Username != want {
			t.Errorf("credentials for %s: %+v, %v; want user %s", host, cfg, err, want)
		}
	}
	if base.keychain == c.keychain {
		t.Error("WithCredentials changed the original client")
	}
}
