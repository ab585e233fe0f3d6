// Command berthd is Berth's daemon: it owns the state on disk (content
// store, snapshots, metadata) and serves the Docker Engine API on a unix
// socket (or TCP with TLS). main reads flags and the JSON config file,
// constructs every component and wires them explicitly.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-project/berth/internal/apiserver"
	"github.com/berth-project/berth/internal/engine"
)

// Version is Berth's version, set at build time with -ldflags -X.
var Version = "0.1.0-dev"

// GitCommit is the commit berthd was built from, set at build time.
var GitCommit = ""

const defaultConfigFile = "/etc/berth/daemon.json"

// config is berthd's configuration: flags override the config file, whose
// keys are dockerd's daemon.json keys.
type config struct {
	DataRoot           string   `json:"data-root"`
	ExecRoot           string   `json:"exec-root"`
	Hosts              []string `json:"hosts"`
	Pidfile            string   `json:"pidfile"`
	LogLevel           string   `json:"log-level"`
	Debug              bool     `json:"debug"`
	InsecureRegistries []string `json:"insecure-registries"`
	RegistryMirrors    []string `json:"registry-mirrors"`
	Group              string   `json:"group"`
	TLS                bool     `json:"tls"`
	TLSVerify          bool     `json:"tlsverify"`
	TLSCACert          string   `json:"tlscacert"`
	TLSCert            string   `json:"tlscert"`
	TLSKey             string   `json:"tlskey"`
	MaxConcurrentDown  int      `json:"max-concurrent-downloads"`
	MaxConcurrentUp    int      `json:"max-concurrent-uploads"`
	// Runtimes are the OCI runtimes containers may name, as dockerd's
	// "runtimes" ({"name": {"path": ..., "runtimeArgs": [...]}});
	// DefaultRuntime is the one they get otherwise.
	Runtimes       map[string]runtimeConfig `json:"runtimes"`
	DefaultRuntime string                   `json:"default-runtime"`
	AddRuntimes    []string                 `json:"-"`
	// LiveRestore is accepted for dockerd compatibility: containers always
	// outlive berthd under their shims.
	LiveRestore bool `json:"live-restore"`
	// Init runs containers under the init unless they say otherwise;
	// InitPath is the init binary (default: berth-init next to berthd's
	// binary, else on PATH). dockerd's --init and --init-path.
	Init     bool   `json:"init"`
	InitPath string `json:"init-path"`
	// CgroupParent is the cgroup under which containers get theirs
	// unless they name one (dockerd's --cgroup-parent; default /berth).
	CgroupParent string `json:"cgroup-parent"`
}

// runtimeConfig is one entry of the "runtimes" configuration.
type runtimeConfig struct {
	Path        string   `json:"path"`
	RuntimeArgs []string `json:"runtimeArgs,omitempty"`
}

func main() {
	var cfg config
	var configFile string
	cmd := &cobra.Command{
		Use:           "berthd [flags]",
		Short:         "Berth daemon: serves the Docker Engine API",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			merged, err := loadConfig(cmd, configFile, cfg)
			if err != nil {
				return err
			}
			return run(merged)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataRoot, "data-root", "/var/lib/berth", "root directory of persistent state")
	f.StringVar(&cfg.ExecRoot, "exec-root", "/run/berth", "root directory of run-time state (socket, pid file, log)")
	f.StringArrayVarP(&cfg.Hosts, "host", "H", nil, "address to listen on (unix:///path or tcp://host:port with TLS); repeatable")
	f.StringVar(&configFile, "config-file", defaultConfigFile, "daemon configuration file (JSON)")
	f.StringVarP(&cfg.Pidfile, "pidfile", "p", "", "pid file (default <exec-root>/berthd.pid)")
	f.StringVarP(&cfg.LogLevel, "log-level", "l", "info", "log level (debug, info, warn, error)")
	f.BoolVarP(&cfg.Debug, "debug", "D", false, "debug logging")
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "registry (host[:port] or CIDR) to reach over plain HTTP or unverified TLS; repeatable")
	f.StringArrayVar(&cfg.RegistryMirrors, "registry-mirror", nil, "mirror for docker.io; repeatable")
	f.StringVarP(&cfg.Group, "group", "G", "berth", "group owning the unix socket (if it exists)")
	f.BoolVar(&cfg.TLS, "tls", false, "serve TLS (implied by --tlsverify)")
	f.BoolVar(&cfg.TLSVerify, "tlsverify", false, "serve TLS and verify clients against --tlscacert")
	f.StringVar(&cfg.TLSCACert, "tlscacert", "", "CA certificate for client verification")
	f.StringVar(&cfg.TLSCert, "tlscert", "", "server certificate")
	f.StringVar(&cfg.TLSKey, "tlskey", "", "server key")
	f.IntVar(&cfg.MaxConcurrentDown, "max-concurrent-downloads", 3, "parallel layer downloads per pull")
	f.IntVar(&cfg.MaxConcurrentUp, "max-concurrent-uploads", 5, "parallel layer uploads per push")
	f.StringArrayVar(&cfg.AddRuntimes, "add-runtime", nil, "register an OCI runtime as name=path; repeatable")
	f.StringVar(&cfg.DefaultRuntime, "default-runtime", "berth-runtime", "OCI runtime of containers that name none")
	f.BoolVar(&cfg.LiveRestore, "live-restore", true, "keep containers running while berthd is down (always on)")
	f.BoolVar(&cfg.Init, "init", false, "run an init in containers to forward signals and reap processes (a container's --init=false turns it off)")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "", "parent cgroup of containers that name none (default "+engine.DefaultCgroupParent+")")
	f.StringVar(&cfg.InitPath, "init-path", "", "init binary for containers run with --init (default berth-init next to berthd, else on PATH)")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "berthd:", err)
		os.Exit(1)
	}
}

// loadConfig merges the config file under the flags the user set.
func loadConfig(cmd *cobra.Command, path string, flags config) (config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !cmd.Flags().Changed("config-file") {
			return flags, nil
		}
		return config{}, fmt.Errorf("read config file %s: %w", path, err)
	}
	var file config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return config{}, fmt.Errorf("parse config file %s: %w", path, err)
	}
	out := file
	set := func(name string, apply func()) {
		if cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("data-root", func() { out.DataRoot = flags.DataRoot })
	set("exec-root", func() { out.ExecRoot = flags.ExecRoot })
	set("host", func() { out.Hosts = flags.Hosts })
	set("pidfile", func() { out.Pidfile = flags.Pidfile })
	set("log-level", func() { out.LogLevel = flags.LogLevel })
	set("debug", func() { out.Debug = flags.Debug })
	set("insecure-registry", func() { out.InsecureRegistries = append(out.InsecureRegistries, flags.InsecureRegistries...) })
	set("registry-mirror", func() { out.RegistryMirrors = append(out.RegistryMirrors, flags.RegistryMirrors...) })
	set("group", func() { out.Group = flags.Group })
	set("tls", func() { out.TLS = flags.TLS })
	set("tlsverify", func() { out.TLSVerify = flags.TLSVerify })
	set("tlscacert", func() { out.TLSCACert = flags.TLSCACert })
	set("tlscert", func() { out.TLSCert = flags.TLSCert })
	set("tlskey", func() { out.TLSKey = flags.TLSKey })
	set("max-concurrent-downloads", func() { out.MaxConcurrentDown = flags.MaxConcurrentDown })
	set("max-concurrent-uploads", func() { out.MaxConcurrentUp = flags.MaxConcurrentUp })
	set("default-runtime", func() { out.DefaultRuntime = flags.DefaultRuntime })
	set("init", func() { out.Init = flags.Init })
	set("init-path", func() { out.InitPath = flags.InitPath })
	set("cgroup-parent", func() { out.CgroupParent = flags.CgroupParent })
	out.AddRuntimes = flags.AddRuntimes
	if out.DefaultRuntime == "" {
		out.DefaultRuntime = flags.DefaultRuntime
	}
	// Defaults for keys neither the file nor the flags set.
	if out.DataRoot == "" {
		out.DataRoot = flags.DataRoot
	}
	if out.ExecRoot == "" {
		out.ExecRoot = flags.ExecRoot
	}
	if out.LogLevel == "" {
		out.LogLevel = flags.LogLevel
	}
	if out.Group == "" {
		out.Group = flags.Group
	}
	return out, nil
}

func newLogger(cfg config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: %w", cfg.LogLevel, err)
	}
	if cfg.Debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func run(cfg config) error {
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if cfg.DataRoot, err = filepath.Abs(cfg.DataRoot); err != nil {
		return err
	}
	if cfg.ExecRoot, err = filepath.Abs(cfg.ExecRoot); err != nil {
		return err
	}
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = []string{"unix://" + filepath.Join(cfg.ExecRoot, "berth.sock")}
	}
	if cfg.Pidfile == "" {
		cfg.Pidfile = filepath.Join(cfg.ExecRoot, "berthd.pid")
	}
	if err := os.MkdirAll(cfg.ExecRoot, 0o711); err != nil {
		return fmt.Errorf("create exec root %s: %w", cfg.ExecRoot, err)
	}
	if err := os.MkdirAll(cfg.DataRoot, 0o711); err != nil {
		return fmt.Errorf("create data root %s: %w", cfg.DataRoot, err)
	}
	if err := writePidfile(cfg.Pidfile); err != nil {
		return err
	}
	defer os.Remove(cfg.Pidfile)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	listeners, err := listenAll(cfg, log)
	if err != nil {
		return err
	}
	eng, err := engine.New(ctx, engine.Config{
		DataRoot:               cfg.DataRoot,
		InsecureRegistries:     cfg.InsecureRegistries,
		Mirrors:                cfg.RegistryMirrors,
		MaxConcurrentDownloads: cfg.MaxConcurrentDown,
		MaxConcurrentUploads:   cfg.MaxConcurrentUp,
		UserAgent:              "berth/" + Version,
		Logger:                 log,
	})
	if err != nil {
		closeAll(listeners)
		return err
	}
	defer eng.Close()
	ccfg, err := containerConfig(cfg)
	if err != nil {
		closeAll(listeners)
		return err
	}
	if err := eng.EnableContainers(ctx, ccfg); err != nil {
		closeAll(listeners)
		return fmt.Errorf("restore containers: %w", err)
	}
	defer eng.ContainersShutdown()
	id, err := daemonID(cfg.DataRoot)
	if err != nil {
		closeAll(listeners)
		return err
	}
	host, _ := os.Hostname()
	handler := apiserver.New(eng, apiserver.Identity{
		ID: id, Name: host, ServerVersion: Version, GitCommit: GitCommit,
		DataRoot: cfg.DataRoot, Debug: cfg.Debug,
		InsecureRegistries: cfg.InsecureRegistries, Mirrors: cfg.RegistryMirrors,
	}, log)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		log.Info("API listen", "addr", l.Addr().String())
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("berthd started", "version", Version, "pid", os.Getpid(), "data-root", cfg.DataRoot, "exec-root", cfg.ExecRoot)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", "signal")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server failed", "err", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown: closing connections still open", "err", err)
		srv.Close()
	}
	for _, h := range cfg.Hosts {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			os.Remove(p)
		}
	}
	log.Info("berthd stopped")
	return nil
}

// containerConfig resolves the shim, runtime and init binaries: berth-shim,
// berth-runtime and berth-init next to berthd's own binary, else on PATH
// (the init: --init-path when set); runtimes from the config file and
// --add-runtime.
func containerConfig(cfg config) (engine.ContainerConfig, error) {
	cc := engine.ContainerConfig{ExecRoot: cfg.ExecRoot, DefaultRuntime: cfg.DefaultRuntime, Runtimes: map[string]string{}}
	besides := func(name string) string {
		if self, err := os.Executable(); err == nil {
			p := filepath.Join(filepath.Dir(self), name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		return ""
	}
	cc.ShimBinary = besides("berth-shim") // empty: starting containers fails saying so
	cc.DefaultInit = cfg.Init
	cc.CgroupParent = cfg.CgroupParent
	if cfg.InitPath != "" {
		p, err := exec.LookPath(cfg.InitPath)
		if err != nil {
			return cc, fmt.Errorf("init binary %s (--init-path, \"init-path\"): %w", cfg.InitPath, err)
		}
		if cc.InitPath, err = filepath.Abs(p); err != nil {
			return cc, fmt.Errorf("init binary %s: %w", p, err)
		}
	} else {
		cc.InitPath = besides("berth-init") // empty: containers run with --init fail saying so
	}
	if cc.DefaultInit && cc.InitPath == "" {
		return cc, errors.New("--init (\"init\": true) needs an init binary: berth-init is neither next to berthd nor on PATH; install it or set --init-path")
	}
	if p := besides("berth-runtime"); p != "" {
		cc.Runtimes["berth-runtime"] = p
	}
	for name, rc := range cfg.Runtimes {
		if rc.Path == "" {
			return cc, fmt.Errorf("runtime %q in the config file has no path", name)
		}
		cc.Runtimes[name] = rc.Path
		if len(rc.RuntimeArgs) > 0 {
			if cc.RuntimeArgs == nil {
				cc.RuntimeArgs = map[string][]string{}
			}
			cc.RuntimeArgs[name] = rc.RuntimeArgs
		}
	}
	for _, a := range cfg.AddRuntimes {
		name, path, ok := strings.Cut(a, "=")
		if !ok || name == "" || path == "" {
			return cc, fmt.Errorf("invalid --add-runtime %q: want name=path", a)
		}
		cc.Runtimes[name] = path
	}
	return cc, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// writePidfile writes the pid file, refusing when it names a live process.
func writePidfile(path string) error {
	if data, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid != os.Getpid() {
			if liveBerthd(pid) {
				return fmt.Errorf("pid file %s names berthd process %d, which is still running", path, pid)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file %s: %w", path, err)
	}
	return nil
}

// liveBerthd reports whether pid is a running (not zombie) berthd.
func liveBerthd(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return false
	}
	return s[open+1:end] == "berthd" && s[end+2] != 'Z' && s[end+2] != 'X'
}

// daemonID returns the daemon's stable ID, created on first start.
func daemonID(root string) (string, error) {
	p := filepath.Join(root, "engine-id")
	if data, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(data))) > 0 {
		return strings.TrimSpace(string(data)), nil
	}
	b := make([]byte, 16)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Read(b); err != nil {
		return "", err
	}
	id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write daemon ID %s: %w", p, err)
	}
	return id, nil
}

func listenAll(cfg config, log *slog.Logger) ([]net.Listener, error) {
	var out []net.Listener
	for _, h := range cfg.Hosts {
		l, err := listen(cfg, h, log)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

func listen(cfg config, host string, log *slog.Logger) (net.Listener, error) {
	proto, addr, ok := strings.Cut(host, "://")
	if !ok {
		if strings.HasPrefix(host, "/") {
			proto, addr = "unix", host
		} else {
			return nil, fmt.Errorf("invalid -H %q: want unix:///path or tcp://host:port", host)
		}
	}
	switch proto {
	case "unix":
		return listenUnix(addr, cfg.Group, log)
	case "tcp":
		if !cfg.TLS && !cfg.TLSVerify {
			return nil, fmt.Errorf("refusing to listen on %s without TLS: set --tlscert and --tlskey (and --tlsverify)", host)
		}
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", host, err)
		}
		return tls.NewListener(l, tc), nil
	}
	return nil, fmt.Errorf("invalid -H %q: unsupported protocol %q", host, proto)
}

func serverTLS(cfg config) (*tls.Config, error) {
	if cfg.TLSCert == "" || cfg.TLSKey == "" {
		return nil, fmt.Errorf("TLS needs --tlscert and --tlskey")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair %s, %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSVerify {
		if cfg.TLSCACert == "" {
			return nil, fmt.Errorf("--tlsverify needs --tlscacert")
		}
		pem, err := os.ReadFile(cfg.TLSCACert)
		if err != nil {
			return nil, fmt.Errorf("read CA %s: %w", cfg.TLSCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificates in %s", cfg.TLSCACert)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// listenUnix creates the API socket with mode 0660 (group berth where that
// group exists), after making sure no other daemon answers on it.
func listenUnix(path, group string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory %s: %w", filepath.Dir(path), err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if alive(path) {
			return nil, fmt.Errorf("another daemon is already serving on %s", path)
		}
		log.Info("removing stale socket", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// The socket is created 0600 and widened to 0660 only after its group
	// is set, so it is never reachable by others.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	gid := -1
	if g, err := user.LookupGroup(group); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			gid = n
		}
	}
	mode := os.FileMode(0o660)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			// Keep the socket to its owner rather than share it with a
			// group that was not asked for.
			log.Warn("cannot give the socket to its group; keeping it owner-only", "path", path, "group", group, "err", err)
			mode = 0o600
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return l, nil
}

// alive reports whether something answers /_ping on the socket.
func alive(path string) bool {
	c := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}},
	}
	resp, err := c.Get("http://berthd/_ping")
	if err != nil {
		// A connection refused means no one listens: stale.
		return !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) && isConnected(path)
	}
	resp.Body.Close()
	return true
}

func isConnected(path string) bool {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
