package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// maxTokenResponse bounds a token server's answer.
const maxTokenResponse = 1 << 20

// Login checks user and password with the registry at host (a reference
// domain or a Docker login server address): with basic auth on GET /v2/, or
// through the token server the registry names. It returns the identity
// (refresh) token when the token server issues one, for storing instead of
// the password. Wrong credentials are an errdefs.ErrUnauthorized error.
func (c *Client) Login(ctx context.Context, host, user, password string) (identityToken string, err error) {
	host = registryHost(NormalizeHost(host))
	reg, err := c.registry(host)
	if err != nil {
		return "", err
	}
	err = c.retry(ctx, "login to "+host, func() error {
		var err error
		identityToken, err = c.login(ctx, reg, user, password)
		return err
	})
	return identityToken, err
}

func (c *Client) login(ctx context.Context, reg name.Registry, user, password string) (string, error) {
	what := "login to " + reg.RegistryStr()
	ch, err := transport.Ping(ctx, reg, c.base)
	if err != nil {
		return "", classify(fmt.Errorf("%s: %w", what, err))
	}
	scheme := "https"
	if ch.Insecure {
		scheme = "http"
	}
	hc := &http.Client{Transport: c.base}
	switch strings.ToLower(ch.Scheme) {
	case "":
		// The registry asks for no credentials; there is nothing to check.
		return "", nil
	case "basic":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+reg.RegistryStr()+"/v2/", nil)
		if err != nil {
			return "", err
		}
		req.SetBasicAuth(user, password)
		resp, err := hc.Do(req)
		if err != nil {
			return "", classify(fmt.Errorf("%s: %w", what, err))
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			return "", errdefs.With(errdefs.ErrUnauthorized, fmt.Errorf("%s: incorrect username or password", what))
		}
		return "", checkResponse(resp, what, http.StatusOK)
	case "bearer":
		return c.loginToken(ctx, hc, reg, ch, scheme, user, password)
	}
	return "", errdefs.NotImplemented(fmt.Errorf("%s: unsupported authentication scheme %q", what, ch.Scheme))
}

// loginToken asks the registry's token server for a token with the
// credentials (asking for a refresh token as Docker does), then checks that
// the registry accepts the token.
func (c *Client) loginToken(ctx context.Context, hc *http.Client, reg name.Registry, ch *transport.Challenge, scheme, user, password string) (string, error) {
	what := "login to " + reg.RegistryStr()
	realm := ch.Parameters["realm"]
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return "", errdefs.InvalidArgument(fmt.Errorf("%s: registry names token server %q", what, realm))
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && ch.Insecure) {
		return "", errdefs.With(errdefs.ErrPermission, fmt.Errorf("%s: refusing to send credentials to token server %s over %s", what, realm, u.Scheme))
	}
	if u.Host != reg.RegistryStr() {
		// As go-containerregistry does for pulls: a token server elsewhere
		// must not be a private or link-local address (no credentials to the
		// metadata service or the LAN on a registry's say-so).
		if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()) {
			return "", errdefs.With(errdefs.ErrPermission, fmt.Errorf("%s: refusing token server %s at a private address", what, realm))
		}
	}
	q := u.Query()
	if svc := ch.Parameters["service"]; svc != "" {
		q.Set("service", svc)
	}
	q.Set("account", user)
	q.Set("client_id", "berth")
	q.Set("offline_token", "true")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(user, password)
	resp, err := hc.Do(req)
	if err != nil {
		return "", classify(fmt.Errorf("%s: token server %s: %w", what, u.Host, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", errdefs.With(errdefs.ErrUnauthorized, fmt.Errorf("%s: incorrect username or password", what))
	}
	if err := checkResponse(resp, what+": token server "+u.Host, http.StatusOK); err != nil {
		return "", err
	}
	var tok transport.Token
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&tok); err != nil {
		return "", fmt.Errorf("%s: decode token server's answer: %w", what, err)
	}
	if tok.Token == "" {
		tok.Token = tok.AccessToken
	}
	if tok.Token == "" {
		return "", fmt.Errorf("%s: token server %s sent no token", what, u.Host)
	}
	// The registry must take the token.
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp2, err := hc.Do(req)
	if err != nil {
		return "", classify(fmt.Errorf("%s: %w", what, err))
	}
	defer resp2.Body.Close()
	if resp2.StatusCode == http.StatusUnauthorized {
		return "", errdefs.With(errdefs.ErrUnauthorized, fmt.Errorf("%s: registry refuses the token its token server issued", what))
	}
	if err := checkResponse(resp2, what, http.StatusOK); err != nil {
		return "", err
	}
	return tok.RefreshToken, nil
}
