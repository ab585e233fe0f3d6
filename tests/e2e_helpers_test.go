// Package tests holds Berth's end-to-end tests: they run the built binaries
// (berthd, berth, berth-runtime from BERTH_BIN, default ../bin) and the real
// docker CLI against a daemon each test starts with private directories, and
// skip with a clear message when a binary is missing.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
)

// DockerCLI is where the docker CLI the tests drive berthd with lives.
const DockerCLI = "/usr/local/bin/docker"

// daemonStartTimeout bounds how long berthd may take to answer /_ping.
const daemonStartTimeout = 30 * time.Second

// CommandTimeout bounds one client command, so a hung pull fails its test
// with a message instead of stalling the suite; BERTH_E2E_CMD_TIMEOUT (a Go
// duration) overrides it.
var CommandTimeout = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("BERTH_E2E_CMD_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Minute
}()

// BinDir is the directory of the built Berth binaries: $BERTH_BIN, or ../bin
// relative to this package (the repository's bin/).
func BinDir() string {
	if d := os.Getenv("BERTH_BIN"); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return d
	}
	abs, err := filepath.Abs("../bin")
	if err != nil {
		return "../bin"
	}
	return abs
}

// RequireBinary returns the path of a built Berth binary, or skips t
// saying how to build it.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(BinDir(), name)
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Skipf("%s is not built at %s (run `make build`, or set BERTH_BIN to the directory holding it)", name, p)
	}
	return p
}

// RequireDockerCLI returns the docker CLI's path or skips t.
func RequireDockerCLI(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(DockerCLI); err != nil {
		t.Skipf("docker CLI missing at %s: %v", DockerCLI, err)
	}
	return DockerCLI
}

// Daemon is a berthd the test started with private directories.
type Daemon struct {
	Bin      string
	DataRoot string
	ExecRoot string
	Socket   string
	Host     string // unix://<Socket>
	LogPath  string
	Args     []string // extra flags
	Env      []string // extra environment
	// CgroupParent is the daemon's --cgroup-parent, private to it.
	CgroupParent string

	t      testing.TB
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	exitEr error
}

// StartDaemon starts berthd from BinDir with a fresh data root, exec root
// and socket, waits until it answers /_ping, and stops it (SIGTERM, then
// SIGKILL, by PID) when t ends. Extra flags go after the standard ones.
func StartDaemon(t testing.TB, extra ...string) *Daemon {
	t.Helper()
	return StartDaemonEnv(t, nil, extra...)
}

// StartDaemonEnv is StartDaemon with extra environment variables for
// berthd (for example SSL_CERT_FILE for a test registry's CA).
func StartDaemonEnv(t testing.TB, env []string, extra ...string) *Daemon {
	t.Helper()
	testutil.RequiresRoot(t)
	bin := RequireBinary(t, "berthd")
	// A short base keeps the socket path under the 108-byte sun_path limit.
	base, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Errorf("remove the daemon's directories: %v", err)
		}
	})
	d := &Daemon{
		Bin:      bin,
		DataRoot: filepath.Join(base, "data"),
		ExecRoot: filepath.Join(base, "exec"),
		Socket:   filepath.Join(base, "berth.sock"),
		LogPath:  filepath.Join(base, "berthd.log"),
		Args:     extra,
		Env:      env,
		t:        t,
	}
	d.Host = "unix://" + d.Socket
	// Containers get their cgroups under a parent of this daemon's own,
	// removed once the daemon and its containers are gone.
	d.CgroupParent = "/" + filepath.Base(base)
	t.Cleanup(func() { removeCgroupEverywhere(t, d.CgroupParent) })
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("berthd log (%s):\n%s", d.LogPath, tail(d.Log(), 60))
		}
	})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Start starts berthd on the daemon's directories (again, after Stop or
// Kill) and waits for /_ping.
func (d *Daemon) Start() error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"-H", d.Host,
		"--pidfile", filepath.Join(filepath.Dir(d.Socket), "berthd.pid"),
		"--log-level", "debug",
	}, d.Args...)
	if d.CgroupParent != "" {
		args = append([]string{"--cgroup-parent", d.CgroupParent}, args...)
	}
	cmd := exec.Command(d.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logf, "=== start: %s %s\n", d.Bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.Bin, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) { d.exitEr = cmd.Wait(); close(done) }(d.done)
	deadline := time.Now().Add(daemonStartTimeout)
	for {
		if err := d.Ping(); err == nil {
			return nil
		}
		select {
		case <-d.done:
			d.cmd = nil
			return fmt.Errorf("berthd exited at start (%v):\n%s", d.exitEr, tail(d.Log(), 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Kill()
			return fmt.Errorf("berthd did not answer /_ping on %s within %v:\n%s", d.Socket, daemonStartTimeout, tail(d.Log(), 40))
		}
	}
}

// PID is berthd's process ID (0 when not running).
func (d *Daemon) PID() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM to berthd and waits for it to exit; after 20 seconds
// it sends SIGKILL. It returns berthd's exit error for SIGTERM.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		pid := d.cmd.Process.Pid
		d.cmd.Process.Kill()
		<-d.done
		d.cmd = nil
		return fmt.Errorf("berthd (pid %d) ignored SIGTERM for 20s", pid)
	}
	d.cmd = nil
	return d.exitEr
}

// Kill sends SIGKILL to berthd (kill -9) and waits for it.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
}

// Log returns what berthd wrote so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// HTTPClient talks to the daemon's socket.
func (d *Daemon) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		},
	}}
}

// Ping asks /_ping once.
func (d *Daemon) Ping() error {
	c := d.HTTPClient()
	c.Timeout = 2 * time.Second
	resp, err := c.Get("http://berthd/_ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping: %s", resp.Status)
	}
	return nil
}

// API calls the Engine API and decodes a JSON answer into out (unless nil).
// It returns the HTTP status.
func (d *Daemon) API(method, path string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequest(method, "http://berthd"+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s: %w: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, nil
}

// CLI runs one client (berth or docker) against a daemon.
type CLI struct {
	Name   string // "berth" or "docker"
	Path   string
	Env    []string // DOCKER_HOST or -H is set by the CLI itself
	Config string   // DOCKER_CONFIG directory (private to the test)
	Stdin  string   // fed to the next command only
	d      *Daemon
}

// Clients returns the berth CLI and the docker CLI for d, each with a
// private DOCKER_CONFIG; either is left out (with a log line) when missing.
func Clients(t testing.TB, d *Daemon) []*CLI {
	t.Helper()
	var out []*CLI
	if p := filepath.Join(BinDir(), "berth"); isExecutable(p) {
		out = append(out, BerthCLI(t, d))
	} else {
		t.Logf("berth CLI not built at %s: testing with docker only", p)
	}
	if isExecutable(DockerCLI) {
		out = append(out, DockerCLIFor(t, d))
	} else {
		t.Logf("docker CLI missing at %s: testing with berth only", DockerCLI)
	}
	if len(out) == 0 {
		t.Skip("neither the berth CLI nor the docker CLI is available")
	}
	return out
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// BerthCLI is the berth CLI from BinDir for d, with -H and a private
// DOCKER_CONFIG.
func BerthCLI(t testing.TB, d *Daemon) *CLI {
	t.Helper()
	return &CLI{Name: "berth", Path: RequireBinary(t, "berth"), Config: t.TempDir(), d: d}
}

// DockerCLIFor is the docker CLI for d, with DOCKER_HOST and a private
// DOCKER_CONFIG.
func DockerCLIFor(t testing.TB, d *Daemon) *CLI {
	t.Helper()
	return &CLI{Name: "docker", Path: RequireDockerCLI(t), Config: t.TempDir(), d: d}
}

// Run runs the client with args and returns stdout, stderr and the error.
func (c *CLI) Run(args ...string) (string, string, error) {
	full := args
	env := append(os.Environ(), "DOCKER_CONFIG="+c.Config)
	if c.Name == "berth" {
		full = append([]string{"-H", c.d.Host}, args...)
		env = append(env, "BERTH_HOST=", "DOCKER_HOST=")
	} else {
		env = append(env, "DOCKER_HOST="+c.d.Host, "DOCKER_CONTEXT=", "DOCKER_CLI_HINTS=false")
	}
	env = append(env, c.Env...)
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, full...)
	cmd.Env = env
	if c.Stdin != "" {
		cmd.Stdin = strings.NewReader(c.Stdin)
		c.Stdin = ""
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: %w after %v (killed); stdout: %q; stderr: %q", c.Name, strings.Join(args, " "),
			ErrCommandTimeout, CommandTimeout, tail(out.String(), 10), tail(errb.String(), 10))
	} else if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", c.Name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), err
}

// ErrCommandTimeout marks a client command killed after CommandTimeout.
var ErrCommandTimeout = errors.New("no answer")

// Start starts the client with args in the background (for kill tests).
func (c *CLI) Start(args ...string) (*exec.Cmd, *bytes.Buffer, error) {
	full := args
	env := append(os.Environ(), "DOCKER_CONFIG="+c.Config)
	if c.Name == "berth" {
		full = append([]string{"-H", c.d.Host}, args...)
		env = append(env, "BERTH_HOST=", "DOCKER_HOST=")
	} else {
		env = append(env, "DOCKER_HOST="+c.d.Host, "DOCKER_CONTEXT=")
	}
	cmd := exec.Command(c.Path, full...)
	cmd.Env = append(env, c.Env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	return cmd, &buf, cmd.Start()
}

// Must runs the client and fails t on error; it returns stdout.
func (c *CLI) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := c.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Fails runs the client, fails t if it succeeds, and returns stderr.
func (c *CLI) Fails(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := c.Run(args...)
	if err == nil {
		t.Fatalf("%s %s succeeded, want an error; stdout:\n%s", c.Name, strings.Join(args, " "), out)
	}
	if errors.Is(err, ErrCommandTimeout) {
		t.Fatalf("want a clear error, got a hang: %v", err)
	}
	return stderr
}

// Lines splits output into its non-empty trimmed lines.
func Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// removeCgroupEverywhere removes the cgroup dir (and its empty children)
// from every mounted hierarchy, failing t for what cannot be removed (a
// process of a container the test left behind).
func removeCgroupEverywhere(t testing.TB, dir string) {
	t.Helper()
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		p := filepath.Join(root, dir)
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		subs, _ := filepath.Glob(filepath.Join(p, "*", "cgroup.procs"))
		for _, s := range subs {
			if err := os.Remove(filepath.Dir(s)); err != nil {
				t.Errorf("remove cgroup %s: %v", filepath.Dir(s), err)
			}
		}
		if err := os.Remove(p); err != nil {
			t.Errorf("remove cgroup %s: %v", p, err)
		}
	}
}
