package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// dockerConfigAuths reads the auths of the client's config.json.
func dockerConfigAuths(t testing.TB, c *CLI) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Config, "config.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("config.json: %v: %s", err, b)
	}
	return cfg.Auths
}

// loginFlow logs in to host with --password-stdin, pulls and pushes repo,
// logs out and checks that pulls then fail; a wrong password must fail first.
func loginFlow(t *testing.T, c *CLI, host, user, pass, repo string) {
	ref := host + "/" + repo
	if stderr := c.Fails(t, "pull", ref); stderr == "" {
		t.Error("anonymous pull failed without a message")
	}
	c.Stdin = "wrong-" + pass + "\n"
	if stderr := c.Fails(t, "login", "--username", user, "--password-stdin", host); !strings.Contains(strings.ToLower(stderr), "unauthorized") &&
		!strings.Contains(strings.ToLower(stderr), "incorrect") && !strings.Contains(strings.ToLower(stderr), "denied") {
		t.Errorf("login with a wrong password: %s", stderr)
	}
	if _, ok := dockerConfigAuths(t, c)[host]; ok {
		t.Error("a failed login stored credentials")
	}
	c.Stdin = pass + "\n"
	if out := c.Must(t, "login", "--username", user, "--password-stdin", host); !strings.Contains(out, "Login Succeeded") {
		t.Errorf("login output: %s", out)
	}
	if _, ok := dockerConfigAuths(t, c)[host]; !ok {
		t.Errorf("config.json in DOCKER_CONFIG has no auths entry for %s: %v", host, dockerConfigAuths(t, c))
	}
	c.Must(t, "pull", ref)
	if in := inspect(t, c, ref); !contains(in.RepoTags, ref) {
		t.Errorf("RepoTags %v", in.RepoTags)
	}
	pushed := host + "/pushed/" + c.Name + ":1"
	c.Must(t, "tag", ref, pushed)
	c.Must(t, "push", pushed)
	c.Must(t, "logout", host)
	if _, ok := dockerConfigAuths(t, c)[host]; ok {
		t.Errorf("logout left credentials for %s", host)
	}
	c.Must(t, "rmi", ref, pushed)
	c.Fails(t, "pull", pushed)
}

// TestImagesAuthBasicTLS uses a docker-registry behind TLS (a self-signed
// CA berthd trusts through SSL_CERT_FILE) with htpasswd basic auth.
func TestImagesAuthBasicTLS(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing", testutil.RegistryBinary)
	}
	reg := testutil.StartTLSRegistry(t, "alice", "s3cret")
	testutil.PushBusybox(t, reg.Addr, "private/busybox:1", reg.RemoteOptions()...)
	forEachClientEnv(t, []string{"SSL_CERT_FILE=" + reg.CAPath}, func(t *testing.T, d *Daemon, c *CLI) {
		loginFlow(t, c, reg.Addr, reg.User, reg.Password, "private/busybox:1")
	})
}

// TestImagesAuthToken uses an in-process registry that wants bearer tokens
// from its token server (WWW-Authenticate: Bearer realm, service, scope).
func TestImagesAuthToken(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartTokenRegistry(t, "bob", "tok3n")
	testutil.PushBusybox(t, reg.Addr, "team/busybox:1", reg.RemoteOptions()...)
	before := len(reg.TokenRequests())
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		loginFlow(t, c, reg.Addr, reg.User, reg.Password, "team/busybox:1")
	})
	var pull bool
	for _, s := range reg.TokenRequests()[before:] {
		if strings.Contains(s, "repository:team/busybox:pull") {
			pull = true
		}
	}
	if !pull {
		t.Errorf("berthd never asked the token server for repository:team/busybox:pull; scopes asked: %q", reg.TokenRequests()[before:])
	}
}

// TestImagesTLSVerification serves the TLS registry on a non-loopback
// address (not insecure by default): berthd must refuse its self-signed
// certificate until the CA is trusted (SSL_CERT_FILE), and then pull.
func TestImagesTLSVerification(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing", testutil.RegistryBinary)
	}
	ip := testutil.NonLoopbackIPv4()
	if ip == "" {
		t.Skip("this machine has no non-loopback IPv4 address")
	}
	reg := testutil.StartTLSRegistryOn(t, ip, "carol", "pw")
	testutil.PushBusybox(t, reg.Addr, "tls/busybox:1", reg.RemoteOptions()...)
	ref := reg.Addr + "/tls/busybox:1"
	login := func(t *testing.T, c *CLI) error {
		c.Stdin = reg.Password + "\n"
		_, _, err := c.Run("login", "--username", reg.User, "--password-stdin", reg.Addr)
		return err
	}
	t.Run("untrusted", func(t *testing.T) {
		d := StartDaemon(t)
		c := firstClient(t, d)
		if err := login(t, c); err == nil {
			t.Error("login to a registry with an untrusted certificate succeeded")
		}
		stderr := strings.ToLower(c.Fails(t, "pull", ref))
		if !strings.Contains(stderr, "certificate") && !strings.Contains(stderr, "x509") && !strings.Contains(stderr, "tls") {
			t.Errorf("the error does not name the certificate problem:\n%s", stderr)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		d := StartDaemonEnv(t, []string{"SSL_CERT_FILE=" + reg.CAPath})
		c := firstClient(t, d)
		if err := login(t, c); err != nil {
			t.Fatal(err)
		}
		c.Must(t, "pull", ref)
	})
}
