// Package registry is Berth's client for the OCI distribution protocol: it
// resolves references, fetches manifests and blobs (resuming with HTTP Range
// requests), pushes blobs (skipping what the registry has, mounting across
// repositories) and manifests, and logs in. It owns the policy around the
// wire: which hosts may be spoken to over plain HTTP (loopback and configured
// insecure registries only), Docker Hub mirrors, retries with exponential
// back-off on transient failures, and verification of everything it fetches
// against its digest. Authentication (basic, bearer token exchange, docker
// config.json and credential helpers) comes from go-containerregistry.
// It stores nothing: the engine writes what it fetches to the content store.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Defaults for New.
const (
	DefaultRetries   = 5
	DefaultBackoff   = 500 * time.Millisecond
	maxBackoff       = 30 * time.Second
	defaultUserAgent = "berth"
	// dockerHubHost is where Docker Hub's registry API is served; references
	// say "docker.io".
	dockerHubHost = "index.docker.io"
)

// Client talks to registries. It is safe for concurrent use; authenticated
// transports (and their bearer tokens) are cached per registry and scope.
type Client struct {
	insecureHosts []string
	insecureNets  []*net.IPNet
	mirrors       []mirror
	keychain      authn.Keychain
	userAgent     string
	retries       int
	backoff       time.Duration
	chunkSize     int64
	noBlobVerify  bool
	rootCAs       *x509.CertPool
	tlsConfig     *tls.Config
	baseRT        http.RoundTripper
	progress      func(Progress)

	base http.RoundTripper // policy transport over the secure and insecure ones

	mu         sync.Mutex
	transports map[string]http.RoundTripper
}

type mirror struct {
	host   string
	scheme string // "https", or "http" when configured so explicitly
}

// Option configures a Client.
type Option func(*Client)

// WithInsecure adds registries that may be spoken to over plain HTTP (and
// whose TLS certificates are not verified), as host, host:port or a CIDR.
// Loopback addresses (127.0.0.0/8, ::1) and localhost are always insecure.
func WithInsecure(hosts ...string) Option {
	return func(c *Client) {
		for _, h := range hosts {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			if _, n, err := net.ParseCIDR(h); err == nil {
				c.insecureNets = append(c.insecureNets, n)
				continue
			}
			c.insecureHosts = append(c.insecureHosts, registryHost(NormalizeHost(h)))
		}
	}
}

// WithMirrors sets pull-through mirrors for Docker Hub, tried in order before
// Docker Hub itself; given as "https://mirror.example", "mirror.example:5000"
// or "http://10.0.0.2:5000" (an explicit http:// makes that mirror insecure).
func WithMirrors(mirrors ...string) Option {
	return func(c *Client) {
		for _, m := range mirrors {
			m = strings.TrimSpace(m)
			if m == "" {
				continue
			}
			scheme := "https"
			if u, err := url.Parse(m); err == nil && u.Scheme != "" && u.Host != "" {
				scheme, m = u.Scheme, u.Host
			}
			m = strings.TrimSuffix(m, "/")
			c.mirrors = append(c.mirrors, mirror{host: m, scheme: scheme})
			if scheme == "http" {
				c.insecureHosts = append(c.insecureHosts, strings.ToLower(m))
			}
		}
	}
}

// WithAuth sets where credentials come from; the default is
// authn.DefaultKeychain (docker config.json and credential helpers).
func WithAuth(kc authn.Keychain) Option { return func(c *Client) { c.keychain = kc } }

// WithUserAgent sets the User-Agent sent to registries.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithRetry sets how many times a transient failure (connection reset, 408,
// 429, 5xx) is retried and the first back-off, doubled on each retry (capped
// at 30s). n = 0 disables retries.
func WithRetry(n int, backoff time.Duration) Option {
	return func(c *Client) {
		if n < 0 {
			n = 0
		}
		c.retries, c.backoff = n, backoff
	}
}

// WithRootCAs sets the certificate authorities trusted for registries'
// TLS certificates (default: the system pool).
func WithRootCAs(pool *x509.CertPool) Option { return func(c *Client) { c.rootCAs = pool } }

// WithTLSConfig sets the TLS client configuration for secure registries
// (client certificates, roots). WithRootCAs, when also given, sets its RootCAs.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *Client) { c.tlsConfig = cfg.Clone() } }

// WithTransport sets the HTTP transport under the client (for proxies and
// tests). TLS options then apply only if it is an *http.Transport.
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.baseRT = rt } }

// WithChunkSize makes PushBlob upload in chunks of n bytes (PATCH with
// Content-Range, then PUT); n <= 0 (the default) uploads in one PUT.
func WithChunkSize(n int64) Option { return func(c *Client) { c.chunkSize = n } }

// WithBlobVerification sets whether FetchBlob checks a blob read from its
// start against its digest (default true). Size is always checked. Turn it
// off only when the reader's consumer verifies the digest itself (as
// content.Writer does), to hash each byte once.
func WithBlobVerification(on bool) Option { return func(c *Client) { c.noBlobVerify = !on } }

// WithProgress sets a hook called with progress of every transfer this
// client makes (see also ContextWithProgress for one operation's).
func WithProgress(fn func(Progress)) Option { return func(c *Client) { c.progress = fn } }

// New returns a Client configured by opts.
func New(opts ...Option) *Client {
	c := &Client{
		keychain:   authn.DefaultKeychain,
		userAgent:  defaultUserAgent,
		retries:    DefaultRetries,
		backoff:    DefaultBackoff,
		transports: map[string]http.RoundTripper{},
	}
	for _, o := range opts {
		o(c)
	}
	c.base = transport.NewUserAgent(c.newBaseTransport(), c.userAgent)
	return c
}

// WithCredentials returns a client that authenticates to host (as in an
// image reference, or a Docker login server address such as
// "https://index.docker.io/v1/") with cfg and resolves other registries as c
// does. It shares c's configuration but not its token cache.
func (c *Client) WithCredentials(host string, cfg authn.AuthConfig) *Client {
	return &Client{
		insecureHosts: c.insecureHosts, insecureNets: c.insecureNets, mirrors: c.mirrors,
		keychain:  &staticKeychain{host: registryHost(NormalizeHost(host)), auth: authn.FromConfig(cfg), next: c.keychain},
		userAgent: c.userAgent, retries: c.retries, backoff: c.backoff, chunkSize: c.chunkSize, noBlobVerify: c.noBlobVerify,
		rootCAs: c.rootCAs, tlsConfig: c.tlsConfig, baseRT: c.baseRT, progress: c.progress,
		base:       c.base,
		transports: map[string]http.RoundTripper{},
	}
}

type staticKeychain struct {
	host string
	auth authn.Authenticator
	next authn.Keychain
}

func (k *staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if strings.EqualFold(r.RegistryStr(), k.host) {
		return k.auth, nil
	}
	if k.next == nil {
		return authn.Anonymous, nil
	}
	return k.next.Resolve(r)
}

// NormalizeHost turns a registry address as users and the Docker API give it
// ("https://index.docker.io/v1/", "registry-1.docker.io", "localhost:5000/")
// into the domain image references use ("docker.io", "localhost:5000").
func NormalizeHost(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(s)
	switch s {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return image.DefaultDomain
	}
	return s
}

// registryHost is the host a reference domain's API is served from.
func registryHost(domain string) string {
	if domain == image.DefaultDomain {
		return dockerHubHost
	}
	return domain
}

// IsInsecure reports whether host (host or host:port) may be spoken to over
// plain HTTP: loopback, localhost, or configured with WithInsecure.
func (c *Client) IsInsecure(host string) bool {
	host = strings.ToLower(host)
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	hostname = strings.TrimSuffix(strings.TrimPrefix(hostname, "["), "]")
	if hostname == "localhost" {
		return true
	}
	ip := net.ParseIP(hostname)
	if ip != nil && ip.IsLoopback() {
		return true
	}
	for _, h := range c.insecureHosts {
		if h == host || h == hostname {
			return true
		}
	}
	if ip != nil {
		for _, n := range c.insecureNets {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// endpoint is one place a repository can be reached: the registry itself or
// a mirror of it.
type endpoint struct {
	reg    name.Registry
	mirror bool
}

// endpoints lists where to pull ref from: Docker Hub mirrors first, then the
// registry itself.
func (c *Client) endpoints(ref image.Reference, pull bool) ([]endpoint, error) {
	var eps []endpoint
	if pull && ref.Domain == image.DefaultDomain {
		for _, m := range c.mirrors {
			reg, err := c.registry(m.host)
			if err != nil {
				return nil, fmt.Errorf("mirror %s: %w", m.host, err)
			}
			eps = append(eps, endpoint{reg: reg, mirror: true})
		}
	}
	reg, err := c.registry(registryHost(ref.Domain))
	if err != nil {
		return nil, err
	}
	return append(eps, endpoint{reg: reg}), nil
}

func (c *Client) registry(host string) (name.Registry, error) {
	opts := []name.Option{name.StrictValidation}
	if c.IsInsecure(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("registry %q: %w", host, err)
	}
	return reg, nil
}

// transport returns a RoundTripper authenticated to ep for scopes, pinging
// the registry and exchanging a token the first time.
func (c *Client) transport(ctx context.Context, reg name.Registry, scopes ...string) (http.RoundTripper, error) {
	key := reg.RegistryStr() + "|" + strings.Join(scopes, " ")
	c.mu.Lock()
	rt, ok := c.transports[key]
	c.mu.Unlock()
	if ok {
		return rt, nil
	}
	auth, err := c.keychain.Resolve(reg)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	rt, err = transport.NewWithContext(ctx, reg, auth, c.base, scopes)
	if err != nil {
		return nil, classify(fmt.Errorf("authenticate to %s: %w", reg.RegistryStr(), err))
	}
	c.mu.Lock()
	c.transports[key] = rt
	c.mu.Unlock()
	return rt, nil
}

func pullScope(repo string) string { return "repository:" + repo + ":pull" }
func pushScope(repo string) string { return "repository:" + repo + ":push,pull" }

// newBaseTransport builds the transport every request goes through: it
// refuses plain HTTP to hosts that are not insecure and skips certificate
// verification only for insecure ones.
func (c *Client) newBaseTransport() http.RoundTripper {
	if c.baseRT != nil {
		if t, ok := c.baseRT.(*http.Transport); ok {
			return &policyTransport{c: c, secure: c.withTLS(t, false), insecure: c.withTLS(t, true)}
		}
		return &policyTransport{c: c, secure: c.baseRT, insecure: c.baseRT}
	}
	t := http.DefaultTransport.(*http.Transport)
	return &policyTransport{c: c, secure: c.withTLS(t, false), insecure: c.withTLS(t, true)}
}

func (c *Client) withTLS(t *http.Transport, insecure bool) http.RoundTripper {
	t = t.Clone()
	cfg := c.tlsConfig
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		cfg = cfg.Clone()
	}
	if c.rootCAs != nil {
		cfg.RootCAs = c.rootCAs
	}
	if insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // only for registries configured as insecure
	}
	t.TLSClientConfig = cfg
	return t
}

type policyTransport struct {
	c                *Client
	secure, insecure http.RoundTripper
}

// ErrPlainHTTP is returned (wrapped) for a plain-HTTP request to a registry
// that is not insecure.
var ErrPlainHTTP = errors.New("plain HTTP to a secure registry refused")

func (p *policyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	insecure := p.c.IsInsecure(req.URL.Host)
	if req.URL.Scheme == "http" && !insecure {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s is not an insecure registry (configure it with --insecure-registry to allow http)", ErrPlainHTTP, req.URL.Host)
	}
	if insecure {
		return p.insecure.RoundTrip(req)
	}
	return p.secure.RoundTrip(req)
}
