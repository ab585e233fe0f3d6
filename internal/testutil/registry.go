package testutil

// Test registries: Debian's docker-registry started on a free loopback port
// (plain, or TLS with htpasswd basic auth), go-containerregistry's registry
// in-process behind a bearer-token server, and fault proxies that corrupt,
// cut off or stall one blob.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (package docker-registry).
const RegistryBinary = "/usr/bin/docker-registry"

// registryStartTimeout bounds how long a registry may take to answer /v2/.
const registryStartTimeout = 30 * time.Second

// RegistryProcess is a docker-registry started by StartRegistryProcess.
type RegistryProcess struct {
	Addr    string // host:port
	Dir     string // config, storage and logs
	cmd     *exec.Cmd
	logFile *os.File
}

// Stop kills the registry by its PID and waits for it.
func (r *RegistryProcess) Stop() error {
	if r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	err := r.cmd.Process.Kill()
	r.cmd.Wait()
	r.logFile.Close()
	r.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill registry %s: %w", r.Addr, err)
	}
	return nil
}

// Log returns what the registry wrote to stdout and stderr.
func (r *RegistryProcess) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	return string(b)
}

// RegistryOptions configure StartRegistryProcess.
type RegistryOptions struct {
	CertFile, KeyFile string // TLS when both are set
	HtpasswdFile      string // basic auth when set
	Host              string // address to listen on; 127.0.0.1 when empty
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn returns a TCP port of host that was free a moment ago.
func FreePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartRegistryProcess starts docker-registry with storage and config under
// dir (created if missing) on a free port of 127.0.0.1 (or o.Host) and
// waits until /v2/ answers. The caller stops it with Stop. Tests use StartRegistry.
func StartRegistryProcess(dir string, o RegistryOptions) (*RegistryProcess, error) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		return nil, fmt.Errorf("registry binary: %w (install Debian's docker-registry: make deps)", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, fmt.Errorf("registry dir: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another process may take the free port first
		host := o.Host
		if host == "" {
			host = "127.0.0.1"
		}
		port, err := FreePortOn(host)
		if err != nil {
			return nil, err
		}
		r, err := startRegistryOnce(dir, net.JoinHostPort(host, fmt.Sprint(port)), o)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRegistryOnce(dir, addr string, o RegistryOptions) (*RegistryProcess, error) {
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&cfg, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n", filepath.Join(dir, "storage"))
	fmt.Fprintf(&cfg, "http:\n  addr: %s\n  secret: berth-test-secret\n", addr)
	scheme := "http"
	if o.CertFile != "" {
		scheme = "https"
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %s\n    key: %s\n", o.CertFile, o.KeyFile)
	}
	if o.HtpasswdFile != "" {
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", o.HtpasswdFile)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write registry config: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("registry log: %w", err)
	}
	cmd := exec.Command(RegistryBinary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", RegistryBinary, err)
	}
	r := &RegistryProcess{Addr: addr, Dir: dir, cmd: cmd, logFile: logFile}
	exited := make(chan struct{})
	go func() { cmd.Process.Wait(); close(exited) }()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(registryStartTimeout)
	for {
		resp, err := client.Get(scheme + "://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r, nil
			}
		}
		select {
		case <-exited:
			logFile.Close()
			return nil, fmt.Errorf("registry on %s exited at start: %s", addr, r.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("registry on %s did not answer /v2/ within %v: %s", addr, registryStartTimeout, r.Log())
		}
	}
}

// StartRegistry starts a plain-HTTP docker-registry on a free loopback port
// for the length of t (storage in t.TempDir(), deletes enabled) and returns
// its host:port. It is killed by PID when t ends.
func StartRegistry(t testing.TB) string {
	t.Helper()
	r, err := StartRegistryProcess(t.TempDir(), RegistryOptions{})
	if err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() { r.Stop() })
	return r.Addr
}

// StartRegistryOn is StartRegistry listening on host (an address of this
// machine other than loopback, for insecure-registry tests).
func StartRegistryOn(t testing.TB, host string) string {
	t.Helper()
	r, err := StartRegistryProcess(t.TempDir(), RegistryOptions{Host: host})
	if err != nil {
		t.Fatalf("start registry on %s: %v", host, err)
	}
	t.Cleanup(func() { r.Stop() })
	return r.Addr
}

// NonLoopbackIPv4 returns an IPv4 address of this machine outside
// 127.0.0.0/8, or "" when it has none.
func NonLoopbackIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// TLSRegistry is a docker-registry behind TLS with basic auth.
type TLSRegistry struct {
	Addr     string // 127.0.0.1:port
	CAPath   string // PEM of the self-signed certificate the registry serves
	User     string
	Password string
	Pool     *x509.CertPool
}

// RemoteOptions are go-containerregistry options that trust the
// registry's certificate and log in with its credentials.
func (r *TLSRegistry) RemoteOptions() []remote.Option {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.Pool}
	return []remote.Option{
		remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}),
	}
}

// SelfSignedCert writes a self-signed ECDSA certificate for 127.0.0.1, ::1
// and localhost (and the given extra DNS names or IP addresses) and its key
// into dir; it returns the certificate (also the CA) and key paths.
func SelfSignedCert(dir string, names ...string) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", "", fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Berth tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("marshal key: %w", err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	return certPath, keyPath, nil
}

// WriteHtpasswd writes an htpasswd file with user's bcrypt password hash.
func WriteHtpasswd(path, user, pass string) error {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("bcrypt password of %s: %w", user, err)
	}
	if err := os.WriteFile(path, []byte(user+":"+string(h)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write htpasswd: %w", err)
	}
	return nil
}

// StartTLSRegistry starts docker-registry serving TLS with a fresh
// self-signed certificate and htpasswd basic auth for user and pass.
func StartTLSRegistry(t testing.TB, user, pass string) *TLSRegistry {
	t.Helper()
	return StartTLSRegistryOn(t, "", user, pass)
}

// StartTLSRegistryOn is StartTLSRegistry listening on host (127.0.0.1 when
// empty), with host in the certificate.
func StartTLSRegistryOn(t testing.TB, host, user, pass string) *TLSRegistry {
	t.Helper()
	dir := t.TempDir()
	var names []string
	if host != "" {
		names = append(names, host)
	}
	cert, key, err := SelfSignedCert(dir, names...)
	if err != nil {
		t.Fatalf("tls registry: %v", err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := WriteHtpasswd(htpasswd, user, pass); err != nil {
		t.Fatalf("tls registry: %v", err)
	}
	r, err := StartRegistryProcess(filepath.Join(dir, "registry"), RegistryOptions{CertFile: cert, KeyFile: key, HtpasswdFile: htpasswd, Host: host})
	if err != nil {
		t.Fatalf("start tls registry: %v", err)
	}
	t.Cleanup(func() { r.Stop() })
	pemBytes, err := os.ReadFile(cert)
	if err != nil {
		t.Fatalf("read certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &TLSRegistry{Addr: r.Addr, CAPath: cert, User: user, Password: pass, Pool: pool}
}

// TokenRegistry is an in-process registry that accepts only bearer tokens
// from its own token server, which hands them out for basic-auth
// credentials (or to anyone when User is empty).
type TokenRegistry struct {
	Addr     string // host:port of the registry (plain HTTP on loopback)
	Realm    string // token endpoint URL
	Service  string
	User     string
	Password string

	mu       sync.Mutex
	tokens   map[string]string // token -> granted scope
	requests []string          // scopes asked for at the token endpoint
}

// RemoteOptions are go-containerregistry options that log in with the
// registry's credentials (its token server trades them for a token).
func (r *TokenRegistry) RemoteOptions() []remote.Option {
	if r.User == "" {
		return nil
	}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password})}
}

// TokenRequests lists the scopes clients asked the token server for.
func (r *TokenRegistry) TokenRequests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

var repoPathRE = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)/`)

// StartTokenRegistry serves go-containerregistry's registry behind bearer
// authentication: requests without a valid token get 401 with
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, and the realm
// (/token on the same server) issues tokens for user and pass (anonymous
// when user is empty).
func StartTokenRegistry(t testing.TB, user, pass string) *TokenRegistry {
	t.Helper()
	tr := &TokenRegistry{Service: "berth-test-registry", User: user, Password: pass, tokens: map[string]string{}}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	mux := http.NewServeMux()
	mux.HandleFunc("/token", tr.serveToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		scope := ""
		if m := repoPathRE.FindStringSubmatch(req.URL.Path); m != nil {
			action := "pull"
			if req.Method != http.MethodGet && req.Method != http.MethodHead {
				action = "pull,push"
			}
			scope = "repository:" + m[1] + ":" + action
		}
		if !tr.validToken(req, scope) {
			ch := fmt.Sprintf(`Bearer realm=%q,service=%q`, tr.Realm, tr.Service)
			if scope != "" {
				ch += fmt.Sprintf(`,scope=%q`, scope)
			}
			w.Header().Set("WWW-Authenticate", ch)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		reg.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr.Addr = strings.TrimPrefix(srv.URL, "http://")
	tr.Realm = srv.URL + "/token"
	return tr
}

func (r *TokenRegistry) serveToken(w http.ResponseWriter, req *http.Request) {
	if r.User != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.User || p != r.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test-token"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
	}
	q := req.URL.Query()
	if q.Get("service") != "" && q.Get("service") != r.Service {
		http.Error(w, "unknown service "+q.Get("service"), http.StatusBadRequest)
		return
	}
	scope := strings.Join(q["scope"], " ")
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	r.mu.Lock()
	r.tokens[tok] = scope
	r.requests = append(r.requests, scope)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token": tok, "access_token": tok, "expires_in": 300, "issued_at": time.Now().UTC().Format(time.RFC3339),
	})
}

// validToken says whether req carries a token granted for scope (any token
// for the /v2/ base and the catalog). A token for repository:x:pull,push
// covers repository:x:pull.
func (r *TokenRegistry) validToken(req *http.Request, scope string) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	r.mu.Lock()
	granted, ok := r.tokens[tok]
	r.mu.Unlock()
	if !ok {
		return false
	}
	if scope == "" {
		return true
	}
	repo, actions, _ := strings.Cut(strings.TrimPrefix(scope, "repository:"), ":")
	for _, g := range strings.Fields(granted) {
		gRepo, gActions, _ := strings.Cut(strings.TrimPrefix(g, "repository:"), ":")
		if gRepo != repo {
			continue
		}
		all := true
		for _, a := range strings.Split(actions, ",") {
			if !strings.Contains(","+gActions+",", ","+a+",") && gActions != "*" {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

// ProxyRequest is one request a FaultProxy forwarded or answered.
type ProxyRequest struct {
	Method, Path, Query, Range string
	Status                     int   // status sent to the client
	Bytes                      int64 // body bytes sent to the client
	Faulted                    bool  // the fault was applied to this request
}

// Fault kinds for StartFaultProxy.
const (
	FaultCorrupt = "corrupt" // every GET of the blob: same length, its middle byte flipped
	FaultCut     = "cut"     // first GET: N bytes, then the connection is dropped
	FaultStall   = "stall"   // first GET: N bytes, then stall until Release or the client leaves
	FaultBusy    = "busy"    // the first N GETs: 503 Service Unavailable without a body from upstream
)

// FaultProxy forwards registry requests to an upstream plain-HTTP registry
// and applies one fault to GETs of one blob.
type FaultProxy struct {
	Addr     string // host:port to pull from
	Upstream string
	Digest   string
	Kind     string
	N        int64

	// Stalled is closed when a FaultStall request has sent its N bytes.
	Stalled chan struct{}

	mu        sync.Mutex
	requests  []ProxyRequest
	pending   int // requests being served and not yet recorded
	faulted   bool
	busy      int64 // GETs answered 503 so far (FaultBusy)
	release   chan struct{}
	stallOnce sync.Once
	relOnce   sync.Once
}

// Requests lists what the proxy saw, in order. A client can have its whole
// answer before the proxy's handler has returned and recorded it, so this
// first waits (up to 10 s) for the requests being served to be recorded;
// a stalled request is recorded before it stalls.
func (p *FaultProxy) Requests() []ProxyRequest {
	deadline := time.Now().Add(10 * time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending > 0 && time.Now().Before(deadline) {
		p.mu.Unlock()
		time.Sleep(time.Millisecond)
		p.mu.Lock()
	}
	return append([]ProxyRequest(nil), p.requests...)
}

// BlobRequests lists the GET requests for the faulty blob.
func (p *FaultProxy) BlobRequests() []ProxyRequest {
	var out []ProxyRequest
	for _, r := range p.Requests() {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/blobs/"+p.Digest) {
			out = append(out, r)
		}
	}
	return out
}

// Release lets a stalled request go on.
func (p *FaultProxy) Release() { p.relOnce.Do(func() { close(p.release) }) }

// StartFaultProxy serves a proxy to upstream (host:port, plain HTTP) on a
// loopback port for the length of t. GETs of the blob digest get the fault
// kind; n is the byte count for FaultCut and FaultStall.
func StartFaultProxy(t testing.TB, upstream, digest, kind string, n int64) *FaultProxy {
	t.Helper()
	p := &FaultProxy{Upstream: upstream, Digest: digest, Kind: kind, N: n, Stalled: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Release()
		srv.CloseClientConnections()
		srv.Close()
	})
	p.Addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// StartCorruptingProxy proxies upstream and serves digest's blob with its
// middle byte changed (right length, wrong digest).
func StartCorruptingProxy(t testing.TB, upstream, digest string) *FaultProxy {
	return StartFaultProxy(t, upstream, digest, FaultCorrupt, 0)
}

// StartCutProxy proxies upstream and drops the connection after n bytes of
// the first GET of digest's blob; later requests (with or without Range)
// pass through.
func StartCutProxy(t testing.TB, upstream, digest string, n int64) *FaultProxy {
	return StartFaultProxy(t, upstream, digest, FaultCut, n)
}

// StartRecordingProxy proxies upstream without faults; Requests tells what
// clients asked (for example which blobs a push uploaded or mounted).
func StartRecordingProxy(t testing.TB, upstream string) *FaultProxy {
	return StartFaultProxy(t, upstream, "", "", 0)
}

// StartBusyProxy proxies upstream and answers the first n GETs of
// digest's blob with 503 Service Unavailable (a transient error).
func StartBusyProxy(t testing.TB, upstream, digest string, n int64) *FaultProxy {
	return StartFaultProxy(t, upstream, digest, FaultBusy, n)
}

// StartStallProxy proxies upstream and, on the first GET of digest's blob,
// sends n bytes, closes Stalled and holds the connection until Release.
func StartStallProxy(t testing.TB, upstream, digest string, n int64) *FaultProxy {
	return StartFaultProxy(t, upstream, digest, FaultStall, n)
}

// record adds a served request; each ServeHTTP records exactly once.
func (p *FaultProxy) record(r ProxyRequest) {
	p.mu.Lock()
	p.requests = append(p.requests, r)
	p.pending--
	p.mu.Unlock()
}

// ServeHTTP forwards req upstream and applies the fault.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p.mu.Lock()
	p.pending++
	p.mu.Unlock()
	rec := ProxyRequest{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Range: req.Header.Get("Range")}
	target := p.Digest != "" && strings.HasSuffix(req.URL.Path, "/blobs/"+p.Digest) && req.Method == http.MethodGet
	if target {
		p.mu.Lock()
		switch p.Kind {
		case FaultCorrupt:
			rec.Faulted = true
		case FaultCut, FaultStall:
			rec.Faulted = !p.faulted
			p.faulted = true
		case FaultBusy:
			rec.Faulted = p.busy < p.N
			p.busy++
		}
		p.mu.Unlock()
	}
	if rec.Faulted && p.Kind == FaultBusy {
		rec.Status = http.StatusServiceUnavailable
		p.record(rec)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}`)
		return
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, "http://"+p.Upstream+req.URL.RequestURI(), req.Body)
	if err != nil {
		rec.Status = http.StatusInternalServerError
		p.record(rec)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.Header = req.Header.Clone()
	out.ContentLength = req.ContentLength
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		rec.Status = http.StatusBadGateway
		p.record(rec)
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if strings.EqualFold(k, "Location") {
			for i, v := range vs { // keep uploads and redirects going through the proxy
				vs[i] = strings.Replace(v, "//"+p.Upstream+"/", "//"+p.Addr+"/", 1)
			}
		}
		w.Header()[k] = vs
	}
	rec.Status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if rec.Faulted && p.Kind == FaultCorrupt && resp.StatusCode/100 == 2 {
		body = &flipReader{r: resp.Body, at: max(resp.ContentLength/2, 0)}
	}
	if rec.Faulted && (p.Kind == FaultCut || p.Kind == FaultStall) && resp.StatusCode/100 == 2 {
		n, _ := io.Copy(w, io.LimitReader(body, p.N))
		rec.Bytes = n
		p.record(rec)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if p.Kind == FaultStall {
			p.stallOnce.Do(func() { close(p.Stalled) })
			select {
			case <-p.release:
			case <-req.Context().Done():
			}
		}
		panic(http.ErrAbortHandler) // drops the connection mid-body
	}
	n, _ := io.Copy(w, body)
	rec.Bytes = n
	p.record(rec)
}

// flipReader inverts the byte at offset at of the stream.
type flipReader struct {
	r   io.Reader
	at  int64
	off int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.at >= f.off && f.at < f.off+int64(n) {
		b[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}
