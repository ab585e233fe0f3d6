package engine

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/registry"
)

// baseClient is the registry client without credentials: like dockerd,
// berthd uses only the credentials a request carries, never a keychain of
// its own.
func (e *Engine) baseClient() *registry.Client {
	e.clientOnce.Do(func() {
		opts := []registry.Option{
			registry.WithAuth(authn.NewMultiKeychain()),
			registry.WithInsecure(e.cfg.InsecureRegistries...),
		}
		if len(e.cfg.Mirrors) > 0 {
			opts = append(opts, registry.WithMirrors(e.cfg.Mirrors...))
		}
		if e.cfg.UserAgent != "" {
			opts = append(opts, registry.WithUserAgent(e.cfg.UserAgent))
		}
		opts = append(opts, e.cfg.RegistryOptions...)
		e.client = registry.New(opts...)
	})
	return e.client
}

// registryClient returns a client using auth for ref's registry.
func (e *Engine) registryClient(auth *Auth, ref image.Reference) *registry.Client {
	c := e.baseClient()
	if auth == nil {
		return c
	}
	host := auth.ServerAddress
	if host == "" {
		host = ref.Domain
	}
	return c.WithCredentials(host, authn.AuthConfig{
		Username:      auth.Username,
		Password:      auth.Password,
		IdentityToken: auth.IdentityToken,
		RegistryToken: auth.RegistryToken,
	})
}

// Login checks auth against its registry (POST /auth) and returns the
// identity token the registry issued, if any.
func (e *Engine) Login(ctx context.Context, auth Auth) (string, error) {
	host := registry.NormalizeHost(auth.ServerAddress)
	token, err := e.baseClient().Login(ctx, host, auth.Username, auth.Password)
	if err != nil {
		// The registry client classifies rejected credentials as
		// unauthorized and unreachable registries as unavailable.
		return "", fmt.Errorf("login to %s: %w", host, err)
	}
	return token, nil
}
