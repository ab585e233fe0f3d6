// Command berth is Berth's command-line client. It is a thin client of the
// Docker Engine API (github.com/moby/moby/client) served by berthd: it never
// touches Berth's state itself. It finds the daemon through -H, BERTH_HOST
// or DOCKER_HOST, else the default socket, and starts berthd in the
// background when nothing answers there.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// Version is the CLI's version, set at build time with -ldflags -X.
var Version = "0.1.0-dev"

const (
	defaultExecRoot = "/run/berth"
	defaultHost     = "unix://" + defaultExecRoot + "/berth.sock"
)

// cli holds the global options and the lazily made API client.
type cli struct {
	host      string
	api       *client.Client
	out, errw io.Writer
	in        io.Reader
}

func main() {
	c := &cli{out: os.Stdout, errw: os.Stderr, in: os.Stdin}
	root := c.rootCommand()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		var se statusError
		if errors.As(err, &se) {
			if se.msg != "" {
				fmt.Fprintln(os.Stderr, se.msg)
			}
			os.Exit(se.code)
		}
		// As docker's CLI: the error as it is ("Error response from
		// daemon: ..."), without a prefix of its own.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// statusError ends the program with a given exit code.
type statusError struct {
	code int
	msg  string
}

func (s statusError) Error() string { return s.msg }

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth [OPTIONS] COMMAND",
		Short:         "Berth: a container engine speaking the Docker Engine API",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVarP(&c.host, "host", "H", "", "daemon socket to connect to (default: $BERTH_HOST, $DOCKER_HOST, "+defaultHost+")")
	root.SetVersionTemplate("Berth version {{.Version}}\n")

	image := &cobra.Command{Use: "image", Short: "Manage images"}
	image.AddCommand(
		c.pullCommand(), c.pushCommand(), c.imagesCommand("ls", "list"), c.inspectCommand(),
		c.historyCommand(), c.tagCommand(), c.rmiCommand("rm", "remove"), c.pruneCommand(),
		c.saveCommand(), c.loadCommand(), c.importCommand(),
	)
	system := &cobra.Command{Use: "system", Short: "Manage Berth"}
	system.AddCommand(c.infoCommand(), c.eventsCommand())
	root.AddCommand(c.containerGroup(), c.volumeGroup())
	root.AddCommand(c.containerCommands()...)
	root.AddCommand(image, system,
		c.pullCommand(), c.pushCommand(), c.imagesCommand("images"), c.objectInspectCommand("", "Return low-level information on Berth objects"),
		c.historyCommand(), c.tagCommand(), c.rmiCommand("rmi"), c.saveCommand(),
		c.loadCommand(), c.importCommand(), c.loginCommand(), c.logoutCommand(),
		c.versionCommand(), c.infoCommand(), c.eventsCommand(),
	)
	return root
}

// daemonHost picks the daemon address: -H, BERTH_HOST, DOCKER_HOST, default.
func (c *cli) daemonHost() (host string, isDefault bool) {
	if c.host != "" {
		return c.host, false
	}
	if h := os.Getenv("BERTH_HOST"); h != "" {
		return h, false
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h, false
	}
	return defaultHost, true
}

// client returns the API client, starting berthd first when nothing
// answers on the default socket.
func (c *cli) client(ctx context.Context) (*client.Client, error) {
	if c.api != nil {
		return c.api, nil
	}
	host, isDefault := c.daemonHost()
	if !strings.Contains(host, "://") && strings.HasPrefix(host, "/") {
		host = "unix://" + host
	}
	api, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation(), client.WithUserAgent("berth-cli/"+Version))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", host, err)
	}
	if isDefault {
		sock := strings.TrimPrefix(host, "unix://")
		if !answers(ctx, sock) {
			if err := startDaemon(ctx, c.errw, sock); err != nil {
				return nil, err
			}
		}
	}
	c.api = api
	return api, nil
}

// answers reports whether a daemon answers /_ping on the unix socket.
func answers(ctx context.Context, sock string) bool {
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://berthd/_ping", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// findBerthd looks for berthd next to this binary, then on PATH.
func findBerthd() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berthd")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("berthd")
	if err != nil {
		return "", fmt.Errorf("no daemon answers on %s and berthd was found neither next to berth nor on PATH", defaultHost)
	}
	return p, nil
}

// startDaemon starts berthd in the background (its own session, logs to
// <exec-root>/berthd.log) and waits until it answers /_ping.
func startDaemon(ctx context.Context, errw io.Writer, sock string) error {
	bin, err := findBerthd()
	if err != nil {
		return err
	}
	execRoot := filepath.Dir(sock)
	if err := os.MkdirAll(execRoot, 0o711); err != nil {
		return fmt.Errorf("start berthd: create %s: %w (is berth running as root?)", execRoot, err)
	}
	logPath := filepath.Join(execRoot, "berthd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start berthd: open log %s: %w", logPath, err)
	}
	defer logf.Close()
	fmt.Fprintf(errw, "berth: no daemon answered on %s; starting %s in the background (logs: %s)\n", sock, bin, logPath)
	cmd := exec.Command(bin, "--exec-root", execRoot, "-H", "unix://"+sock)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("berthd exited while starting (%v); see %s", err, logPath)
		case <-deadline:
			return fmt.Errorf("berthd (pid %d) did not answer on %s within 30s; see %s", cmd.Process.Pid, sock, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if answers(ctx, sock) {
				return nil
			}
		}
	}
}
