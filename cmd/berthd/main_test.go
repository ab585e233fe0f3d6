package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-project/berth/internal/testutil"
)

// buildBerthd compiles berthd into a temp dir.
func buildBerthd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berthd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build berthd: %v\n%s", err, out)
	}
	return bin
}

type daemon struct {
	cmd           *exec.Cmd
	sock, pidfile string
	log           *bytes.Buffer
	exited        chan error
}

func startDaemon(t *testing.T, bin string, args ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{sock: filepath.Join(dir, "exec", "berth.sock"), pidfile: filepath.Join(dir, "exec", "berthd.pid"), log: &bytes.Buffer{}, exited: make(chan error, 1)}
	all := append([]string{"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"), "--log-level", "debug"}, args...)
	d.cmd = exec.Command(bin, all...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.exited
		}
	})
	return d
}

func (d *daemon) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.WithHost("unix://"+d.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitReady polls /_ping until the daemon answers or exits.
func (d *daemon) waitReady(t *testing.T) {
	t.Helper()
	for i := 0; i < 400; i++ {
		select {
		case err := <-d.exited:
			t.Fatalf("berthd exited: %v\n%s", err, d.log)
		default:
		}
		if isConnected(d.sock) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("berthd did not listen on %s\n%s", d.sock, d.log)
}

func TestDaemonServesAPIAndShutsDown(t *testing.T) {
	bin := buildBerthd(t)
	d := startDaemon(t, bin)
	d.waitReady(t)
	ctx := context.Background()
	c := d.client(t)
	ping, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		t.Fatalf("ping: %v\n%s", err, d.log)
	}
	if ping.APIVersion == "" || ping.OSType != "linux" {
		t.Errorf("ping: %+v", ping)
	}
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil || v.APIVersion == "" {
		t.Fatalf("version: %+v %v", v, err)
	}
	imgs, err := c.ImageList(ctx, client.ImageListOptions{})
	if err != nil || len(imgs.Items) != 0 {
		t.Fatalf("images: %+v %v", imgs, err)
	}
	if _, err := c.ImageInspect(ctx, "nothing"); err == nil || !strings.Contains(err.Error(), "No such image") {
		t.Errorf("inspect missing: %v", err)
	}

	fi, err := os.Stat(d.sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %o, want 660", perm)
	}
	if data, err := os.ReadFile(d.pidfile); err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(d.cmd.Process.Pid) {
		t.Errorf("pid file: %q %v", data, err)
	}

	// A second daemon on the same socket refuses to start.
	second := exec.Command(bin, "--data-root", t.TempDir(), "--exec-root", t.TempDir(), "-H", "unix://"+d.sock)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already serving") {
		t.Errorf("second daemon: %v\n%s", err, out)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.exited; err != nil {
		t.Fatalf("berthd exit after SIGTERM: %v\n%s", err, d.log)
	}
	for _, p := range []string{d.sock, d.pidfile} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after shutdown (%v)", p, err)
		}
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	bin := buildBerthd(t)
	d := startDaemon(t, bin)
	d.waitReady(t)
	// Kill hard: the socket file stays behind.
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	if _, err := os.Stat(d.sock); err != nil {
		t.Fatalf("socket gone after SIGKILL: %v", err)
	}
	d2 := startDaemon(t, bin, "-H", "unix://"+d.sock, "--pidfile", d.pidfile)
	d2.sock = d.sock
	d2.waitReady(t)
	if _, err := d2.client(t).Ping(context.Background(), client.PingOptions{}); err != nil {
		t.Fatalf("ping after stale socket: %v\n%s", err, d2.log)
	}
}

func TestTCPNeedsTLS(t *testing.T) {
	bin := buildBerthd(t)
	out, err := exec.Command(bin, "--data-root", t.TempDir(), "--exec-root", t.TempDir(), "-H", "tcp://127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without TLS") {
		t.Fatalf("tcp without TLS: %v\n%s", err, out)
	}
}

func TestConfigFile(t *testing.T) {
	bin := buildBerthd(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte(`{"data-root":"`+filepath.Join(dir, "data")+`","insecure-registries":["10.0.0.0/8"],"bogus-key":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config-file", cfg, "--exec-root", filepath.Join(dir, "exec")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bogus-key") {
		t.Fatalf("unknown config key accepted: %v\n%s", err, out)
	}
	if err := os.WriteFile(cfg, []byte(`{"data-root":"`+filepath.Join(dir, "data")+`","insecure-registries":["10.0.0.0/8"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, "--config-file", cfg)
	d.waitReady(t)
	info, err := d.client(t).Info(context.Background(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range info.Info.RegistryConfig.InsecureRegistryCIDRs {
		if c.String() == "10.0.0.0/8" {
			found = true
		}
	}
	if !found {
		t.Errorf("insecure registries from config file missing: %v", info.Info.RegistryConfig.InsecureRegistryCIDRs)
	}
}

func TestTCPWithTLS(t *testing.T) {
	bin := buildBerthd(t)
	dir := t.TempDir()
	cert, key, err := testutil.SelfSignedCert(dir, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d := startDaemon(t, bin, "-H", "tcp://"+addr, "--tls", "--tlscert", cert, "--tlskey", key)
	c, err := client.New(client.WithHost("tcp://"+addr), client.WithTLSClientConfig(cert, "", ""), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var lastErr error
	for i := 0; i < 400; i++ {
		if _, lastErr = c.Ping(context.Background(), client.PingOptions{}); lastErr == nil {
			break
		}
		select {
		case err := <-d.exited:
			t.Fatalf("berthd exited: %v\n%s", err, d.log)
		case <-time.After(25 * time.Millisecond):
		}
	}
	if lastErr != nil {
		t.Fatalf("ping over TLS: %v\n%s", lastErr, d.log)
	}
}

// The init comes from --init-path, else berth-init next to berthd or on
// PATH; --init without one is refused at start.
func TestInitBinary(t *testing.T) {
	dir := t.TempDir()
	initBin := filepath.Join(dir, "berth-init")
	if err := os.WriteFile(initBin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if cc, err := containerConfig(config{}); err != nil || cc.InitPath != "" || cc.DefaultInit {
		t.Errorf("no init anywhere: %+v, %v; want no init path and no error", cc, err)
	}
	if _, err := containerConfig(config{Init: true}); err == nil || !strings.Contains(err.Error(), "--init-path") {
		t.Errorf("--init without an init binary: %v, want an error naming --init-path", err)
	}
	if _, err := containerConfig(config{InitPath: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "missing")) {
		t.Errorf("missing --init-path: %v, want an error naming it", err)
	}
	if cc, err := containerConfig(config{InitPath: initBin, Init: true}); err != nil || cc.InitPath != initBin || !cc.DefaultInit {
		t.Errorf("--init --init-path %s: %+v, %v", initBin, cc, err)
	}
	t.Setenv("PATH", dir)
	if cc, err := containerConfig(config{}); err != nil || cc.InitPath != initBin {
		t.Errorf("berth-init on PATH: init path %q, %v; want %s", cc.InitPath, err, initBin)
	}
	// daemon.json spells them as dockerd's.
	var file config
	dec := json.NewDecoder(strings.NewReader(`{"init": true, "init-path": "` + initBin + `"}`))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil || !file.Init || file.InitPath != initBin {
		t.Errorf("daemon.json init keys: %+v, %v", file, err)
	}
}
