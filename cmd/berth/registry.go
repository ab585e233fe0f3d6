package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	clitypes "github.com/docker/cli/cli/config/types"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// indexServer is the key Docker Hub credentials are stored under.
const indexServer = "https://index.docker.io/v1/"

// serverKey turns a registry domain or address into the key docker's
// config.json uses.
func serverKey(s string) string {
	h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://"), "/")
	switch h {
	case "", "docker.io", "index.docker.io", "index.docker.io/v1", "registry-1.docker.io":
		return indexServer
	}
	return h
}

func loadConfig() (*configfile.ConfigFile, error) {
	cf, err := config.Load(config.Dir())
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", config.Dir(), err)
	}
	return cf, nil
}

// encodedAuth returns the X-Registry-Auth value for domain from docker's
// config.json and credential helpers ("" when there are no credentials).
func encodedAuth(domain string) (string, error) {
	cf, err := loadConfig()
	if err != nil {
		return "", err
	}
	key := serverKey(domain)
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return "", fmt.Errorf("read credentials for %s: %w", key, err)
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return "", nil
	}
	return encodeAuthConfig(registry.AuthConfig{
		Username: ac.Username, Password: ac.Password, ServerAddress: key,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
}

func encodeAuthConfig(ac registry.AuthConfig) (string, error) {
	b, err := json.Marshal(ac)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

func (c *cli) loginCommand() *cobra.Command {
	var user, pass string
	var passStdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Authenticate to a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			server := indexServer
			if len(args) == 1 {
				server = serverKey(args[0])
			}
			if pass != "" && passStdin {
				return errors.New("--password and --password-stdin are mutually exclusive")
			}
			if passStdin {
				if user == "" {
					return errors.New("must provide --username with --password-stdin")
				}
				b, err := io.ReadAll(c.in)
				if err != nil {
					return err
				}
				pass = strings.TrimRight(string(b), "\r\n")
			}
			cf, err := loadConfig()
			if err != nil {
				return err
			}
			if user == "" {
				if prev, err := cf.GetAuthConfig(server); err == nil && prev.Username != "" && pass == "" {
					user, pass = prev.Username, prev.Password
				}
			}
			in := bufio.NewReader(c.in)
			if user == "" {
				fmt.Fprint(c.out, "Username: ")
				line, _ := in.ReadString('\n')
				user = strings.TrimSpace(line)
			}
			if pass == "" {
				fmt.Fprint(c.out, "Password: ")
				if f, ok := c.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					b, err := term.ReadPassword(int(f.Fd()))
					fmt.Fprintln(c.out)
					if err != nil {
						return err
					}
					pass = string(b)
				} else {
					line, _ := in.ReadString('\n')
					pass = strings.TrimRight(line, "\r\n")
				}
			}
			if user == "" || pass == "" {
				return errors.New("username and password are required")
			}
			if !passStdin && cmd.Flags().Changed("password") {
				fmt.Fprintln(c.errw, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.RegistryLogin(ctx, client.RegistryLoginOptions{Username: user, Password: pass, ServerAddress: server})
			if err != nil {
				return err
			}
			ac := clitypes.AuthConfig{Username: user, Password: pass, ServerAddress: server}
			if res.Auth.IdentityToken != "" {
				ac.Password, ac.IdentityToken = "", res.Auth.IdentityToken
			}
			if err := cf.GetCredentialsStore(server).Store(ac); err != nil {
				return fmt.Errorf("save credentials for %s: %w", server, err)
			}
			if res.Auth.Status != "" {
				fmt.Fprintln(c.out, res.Auth.Status)
			} else {
				fmt.Fprintln(c.out, "Login Succeeded")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "username")
	cmd.Flags().StringVarP(&pass, "password", "p", "", "password or personal access token")
	cmd.Flags().BoolVar(&passStdin, "password-stdin", false, "take the password or token from stdin")
	return cmd
}

func (c *cli) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := indexServer
			if len(args) == 1 {
				server = serverKey(args[0])
			}
			cf, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := cf.AuthConfigs[server]; !ok && cf.CredentialsStore == "" && cf.CredentialHelpers[server] == "" {
				fmt.Fprintf(c.out, "Not logged in to %s\n", server)
				return nil
			}
			fmt.Fprintf(c.out, "Removing login credentials for %s\n", server)
			if err := cf.GetCredentialsStore(server).Erase(server); err != nil {
				return fmt.Errorf("remove credentials for %s: %w", server, err)
			}
			return nil
		},
	}
}
