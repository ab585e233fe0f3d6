package registry

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
)

// tokenRegistry fronts a registry with the Docker token protocol: /v2/
// requests need a bearer token that /token issues for good basic
// credentials (with a refresh token, as Docker's token servers do).
type tokenRegistry struct {
	next       http.Handler
	user, pass string

	mu       sync.Mutex
	tokens   map[string]bool
	issued   int
	accounts []string
}

func (h *tokenRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		u, p, ok := r.BasicAuth()
		if !ok || u != h.user || p != h.pass {
			http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
			return
		}
		b := make([]byte, 16)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		h.mu.Lock()
		h.tokens[tok] = true
		h.issued++
		h.accounts = append(h.accounts, r.URL.Query().Get("account"))
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "refresh_token": "refresh-" + u, "expires_in": 300})
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	h.mu.Lock()
	ok := h.tokens[tok]
	h.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test-registry"`, r.Host))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	h.next.ServeHTTP(w, r)
}

func TestBearerTokenRegistry(t *testing.T) {
	inner := newRegistryHandler()
	_, seedHost := startRegistry(t, inner)
	img := seedImage(t, seedHost, "private/app", "v1", 1000, 1)
	want, _ := img.Digest()
	tr := &tokenRegistry{next: inner, user: "alice", pass: "s3cret", tokens: map[string]bool{}}
	_, host := startRegistry(t, tr)
	ctx := context.Background()
	ref := mustRef(t, host+"/private/app:v1")

	c := New(fastRetry(), WithAuth(staticAuth{"alice", "s3cret"}))
	desc, err := c.Resolve(ctx, ref)
	if err != nil || desc.Digest.String() != want.String() {
		t.Fatalf("Resolve with a token = %+v, %v", desc, err)
	}
	ldesc, _ := layerOf(t, img, 0)
	rc, err := c.FetchBlob(ctx, ref, ldesc, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, rc); err != nil {
		t.Fatalf("FetchBlob with a token: %v", err)
	}
	tr.mu.Lock()
	issued := tr.issued
	tr.mu.Unlock()
	if issued != 1 {
		t.Errorf("%d tokens issued for one repository and scope, want 1 (cached)", issued)
	}
	// Push through the token too.
	bdesc, bdata := randomBlob(t, 100)
	if _, err := c.PushBlob(ctx, ref, bdesc, (&opener{data: bdata}).open, nil); err != nil {
		t.Errorf("PushBlob with a token: %v", err)
	}

	noCreds := New(WithRetry(0, 0), WithAuth(authn.NewMultiKeychain()))
	if _, err := noCreds.Resolve(ctx, ref); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("Resolve without credentials: %v, want Unauthorized", err)
	}
	wrong := New(WithRetry(0, 0), WithAuth(staticAuth{"alice", "nope"}))
	if _, err := wrong.Resolve(ctx, ref); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("Resolve with a wrong password: %v, want Unauthorized", err)
	}
	// Per-request credentials, as the Docker API passes them.
	withCreds := noCreds.WithCredentials("http://"+host+"/", authn.AuthConfig{Username: "alice", Password: "s3cret"})
	if _, err := withCreds.Resolve(ctx, ref); err != nil {
		t.Errorf("Resolve WithCredentials: %v", err)
	}

	tokenCount := func() int { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.issued }
	before := tokenCount()
	idTok, err := noCreds.Login(ctx, host, "alice", "s3cret")
	if err != nil || idTok != "refresh-alice" {
		t.Errorf("Login = %q, %v; want the refresh token", idTok, err)
	}
	if tokenCount() != before+1 {
		t.Error("Login did not ask the token server")
	}
	tr.mu.Lock()
	last := tr.accounts[len(tr.accounts)-1]
	tr.mu.Unlock()
	if last != "alice" {
		t.Errorf("Login sent account %q, want alice", last)
	}
	if _, err := noCreds.Login(ctx, host, "alice", "wrong"); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("Login with a wrong password: %v, want Unauthorized", err)
	}
}

// basicAuth requires user and pass on every request.
func basicAuth(next http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestBasicAuthOverTLS(t *testing.T) {
	inner := newRegistryHandler()
	_, seedHost := startRegistry(t, inner)
	img := seedImage(t, seedHost, "app", "v1", 500, 1)
	want, _ := img.Digest()
	srv := httptest.NewTLSServer(basicAuth(inner, "bob", "pw"))
	t.Cleanup(srv.Close)
	// The test certificate is for example.com; reach the server by that name.
	host := "registry.example.com:5443"
	dial := map[string]string{host: srv.Listener.Addr().String()}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	ctx := context.Background()
	ref := mustRef(t, host+"/app:v1")

	c := New(fastRetry(), WithTransport(dialMap(dial)), WithRootCAs(pool), WithAuth(staticAuth{"bob", "pw"}))
	desc, err := c.Resolve(ctx, ref)
	if err != nil || desc.Digest.String() != want.String() {
		t.Fatalf("Resolve over TLS with basic auth = %+v, %v", desc, err)
	}
	if tok, err := c.Login(ctx, host, "bob", "pw"); err != nil || tok != "" {
		t.Errorf("Login = %q, %v", tok, err)
	}
	if _, err := c.Login(ctx, "https://"+host, "bob", "wrong"); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("Login with a wrong password: %v, want Unauthorized", err)
	}
	anon := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithRootCAs(pool), WithAuth(authn.NewMultiKeychain()))
	if _, err := anon.Resolve(ctx, ref); !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Errorf("Resolve without credentials: %v, want Unauthorized", err)
	}
	// The certificate is not trusted without the test CA.
	untrusted := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithAuth(staticAuth{"bob", "pw"}))
	if _, err := untrusted.Resolve(ctx, ref); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Resolve with an untrusted certificate: %v, want a certificate error", err)
	}
	// An insecure registry's certificate is not checked.
	insecure := New(WithRetry(0, 0), WithTransport(dialMap(dial)), WithInsecure(host), WithAuth(staticAuth{"bob", "pw"}))
	if _, err := insecure.Resolve(ctx, ref); err != nil {
		t.Errorf("Resolve from an insecure registry with an untrusted certificate: %v", err)
	}
}

func TestLoginRefusesForeignPrivateRealm(t *testing.T) {
	_, host := startRegistry(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://10.9.9.9:1/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	_, err := New(WithRetry(0, 0)).Login(context.Background(), host, "u", "p")
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "10.9.9.9") {
		t.Errorf("Login with a token server on a private address: %v, want a refusal naming it", err)
	}
}
