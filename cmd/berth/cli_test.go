package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
)

// buildBinaries compiles berth and berthd into one temp dir.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", ".", "../berthd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func run(t *testing.T, stdin []byte, bin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func TestCLIAgainstDaemon(t *testing.T) {
	testutil.RequiresRoot(t)
	bins := buildBinaries(t)
	dir := t.TempDir()
	sock := startBerthd(t, bins, dir)
	berth := filepath.Join(bins, "berth")
	h := "unix://" + sock
	if out, errOut, err := run(t, nil, berth, "-H", h, "version"); err != nil || !strings.Contains(out, "Server: Berth Engine") {
		t.Fatalf("version: %v\n%s%s", err, out, errOut)
	}
	layer, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, layer, berth, "-H", h, "import", "-c", "CMD [\"/bin/sh\"]", "-m", "imported", "-", "example/bb:1")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "sha256:") {
		t.Fatalf("import: %v\n%s%s", err, out, errOut)
	}
	id := strings.TrimSpace(out)
	out, _, err = run(t, nil, berth, "-H", h, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if err != nil || strings.TrimSpace(out) != "example/bb:1 "+id[7:19] {
		t.Fatalf("images: %v %q", err, out)
	}
	out, _, err = run(t, nil, berth, "-H", h, "image", "inspect", "-f", "{{.Id}} {{index .Config.Cmd 0}} {{.Comment}}", "example/bb:1")
	if err != nil || strings.TrimSpace(out) != id+" /bin/sh imported" {
		t.Fatalf("inspect: %v %q", err, out)
	}
	if _, _, err := run(t, nil, berth, "-H", h, "tag", "example/bb:1", "example/other:2"); err != nil {
		t.Fatalf("tag: %v", err)
	}
	out, _, _ = run(t, nil, berth, "-H", h, "images", "-q")
	if strings.TrimSpace(out) != id[7:19] {
		t.Errorf("images -q: %q", out)
	}
	saved := filepath.Join(dir, "saved.tar")
	if _, errOut, err := run(t, nil, berth, "-H", h, "save", "-o", saved, "example/bb:1"); err != nil {
		t.Fatalf("save: %v %s", err, errOut)
	}
	out, _, err = run(t, nil, berth, "-H", h, "rmi", "example/bb:1", "example/other:2")
	if err != nil || !strings.Contains(out, "Untagged: example/bb:1") || !strings.Contains(out, "Deleted: "+id) {
		t.Fatalf("rmi: %v %q", err, out)
	}
	if _, errOut, err := run(t, nil, berth, "-H", h, "inspect", "example/bb:1"); err == nil || !strings.Contains(errOut, "No such object: example/bb:1") {
		t.Errorf("inspect after rmi: %v %q", err, errOut)
	}
	out, errOut, err = run(t, nil, berth, "-H", h, "load", "-i", saved)
	if err != nil || !strings.Contains(out, "Loaded image: example/bb:1") {
		t.Fatalf("load: %v %q %q", err, out, errOut)
	}
	// BERTH_HOST is honoured like -H.
	cmd := exec.Command(berth, "images", "-q", "--no-trunc")
	cmd.Env = append(os.Environ(), "BERTH_HOST="+h, "DOCKER_HOST=unix:///nonexistent.sock")
	if b, err := cmd.Output(); err != nil || strings.TrimSpace(string(b)) != id {
		t.Errorf("BERTH_HOST: %v %q", err, b)
	}
}

// startBerthd runs the built berthd on temp dirs under dir until the test
// ends, and returns its socket path once it answers.
func startBerthd(t *testing.T, bins, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "exec", "berth.sock")
	d := exec.Command(filepath.Join(bins, "berthd"), "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"))
	var dlog bytes.Buffer
	d.Stdout, d.Stderr = &dlog, &dlog
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.Wait() }()
	t.Cleanup(func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	for i := 0; i < 400 && !answersSock(sock); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if !answersSock(sock) {
		t.Fatalf("berthd did not answer on %s\n%s", sock, dlog.String())
	}
	return sock
}

func answersSock(sock string) bool {
	_, err := os.Stat(sock)
	return err == nil && answers(testContext(), sock)
}

// TestAutoStart runs berth in a private mount namespace with tmpfs over
// /run and /var/lib, so the daemon it starts on the default socket touches
// nothing of the host; the script stops that daemon by the
// PID in its pid file before the namespace goes.
func TestAutoStart(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not available")
	}
	bins := buildBinaries(t)
	// tmpfs over /run and /var/lib (directories that exist) rather than
	// over new directories: nothing is created on the host.
	script := `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
unset BERTH_HOST DOCKER_HOST
"$1/berth" images -q
status=$?
pid=$(cat /run/berth/berthd.pid)
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
test -S /run/berth/berth.sock && echo "socket left behind" >&2 && exit 1
grep -q "berthd started" /run/berth/berthd.log
exit $status
`
	cmd := exec.Command("unshare", "--mount", "--fork", "sh", "-c", script, "sh", bins)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("auto-start: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "starting") || !strings.Contains(errb.String(), "berthd") {
		t.Errorf("berth did not say it started berthd: %q", errb.String())
	}
}

func TestLoginPullLogout(t *testing.T) {
	testutil.RequiresRoot(t)
	reg := testutil.StartTokenRegistry(t, "alice", "s3cret")
	testutil.PushBusybox(t, reg.Addr, "private/bb:1", reg.RemoteOptions()...)
	bins := buildBinaries(t)
	dir := t.TempDir()
	sock := startBerthd(t, bins, dir)
	cfgDir := filepath.Join(dir, "docker-config")
	berth := func(stdin string, args ...string) (string, string, error) {
		cmd := exec.Command(filepath.Join(bins, "berth"), append([]string{"-H", "unix://" + sock}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfgDir)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	if _, _, err := berth("", "pull", "-q", reg.Addr+"/private/bb:1"); err == nil {
		t.Fatal("pull without login succeeded")
	}
	if out, errOut, err := berth("wrong\n", "login", "-u", "alice", "--password-stdin", reg.Addr); err == nil {
		t.Fatalf("login with a wrong password: %s %s", out, errOut)
	}
	out, errOut, err := berth("s3cret\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v %q %q", err, out, errOut)
	}
	cfg, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil || !strings.Contains(string(cfg), reg.Addr) {
		t.Fatalf("config.json after login: %v %s", err, cfg)
	}
	if out, errOut, err := berth("", "pull", "-q", reg.Addr+"/private/bb:1"); err != nil || strings.TrimSpace(out) != reg.Addr+"/private/bb:1" {
		t.Fatalf("pull after login: %v %q %q", err, out, errOut)
	}
	if out, _, err := berth("", "logout", reg.Addr); err != nil || !strings.Contains(out, "Removing login credentials for "+reg.Addr) {
		t.Fatalf("logout: %v %q", err, out)
	}
	cfg, _ = os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if strings.Contains(string(cfg), reg.Addr) {
		t.Fatalf("credentials left after logout: %s", cfg)
	}
}
