package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// containerRuntimes are the OCI runtimes the container suite runs under:
// berthd's default (berth-runtime) and runc.
var containerRuntimes = []string{"", "runc"}

// ctrEnv is one daemon with the busybox image, and one client.
type ctrEnv struct {
	d       *Daemon
	c       *CLI
	image   string
	runtime string
}

// run is the client's `run` with the suite's runtime flag.
func (e *ctrEnv) runArgs(args ...string) []string {
	if e.runtime == "" {
		return append([]string{"run"}, args...)
	}
	return append([]string{"run", "--runtime", e.runtime}, args...)
}

func (e *ctrEnv) run(args ...string) (string, string, error) { return e.c.Run(e.runArgs(args...)...) }

func (e *ctrEnv) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := e.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ctrInspect is the part of GET /containers/{id}/json the tests check.
type ctrInspect struct {
	ID      string `json:"Id"`
	Name    string
	Image   string
	Created string
	Path    string
	Args    []string
	State   struct {
		Status     string
		Running    bool
		Paused     bool
		Restarting bool
		Pid        int
		ExitCode   int
		StartedAt  string
		FinishedAt string
		Health     *struct {
			Status        string
			FailingStreak int
		}
	}
	RestartCount int
	Config       struct {
		Hostname   string
		User       string
		Env        []string
		Cmd        []string
		Image      string
		WorkingDir string
		Labels     map[string]string
		Tty        bool
		OpenStdin  bool
		StopSignal string
	}
	HostConfig struct {
		Runtime       string
		AutoRemove    bool
		RestartPolicy struct{ Name string }
		Memory        int64
		NanoCpus      int64
	}
	Mounts []struct {
		Type        string
		Name        string
		Source      string
		Destination string
		RW          bool
	}
}

func (e *ctrEnv) inspect(t testing.TB, name string) ctrInspect {
	t.Helper()
	out := e.c.Must(t, "inspect", "--type", "container", name)
	var list []ctrInspect
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("inspect %s: %v\n%s", name, err, out)
	}
	return list[0]
}

// exitCode is the process exit status held in err (0 for nil).
func ctrExitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !ctrAsExitError(err, &ee) {
		t.Fatalf("not an exit status: %v", err)
	}
	return ee.ExitCode()
}

func ctrAsExitError(err error, target **exec.ExitError) bool {
	for err != nil {
		if e, ok := err.(*exec.ExitError); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// forEachRuntimeClient runs fn for each runtime and each client, each with
// its own berthd that has pulled the busybox fixture from a local registry.
func forEachRuntimeClient(t *testing.T, fn func(t *testing.T, e *ctrEnv)) {
	t.Helper()
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
	for _, rt := range containerRuntimes {
		name := rt
		if name == "" {
			name = "berth-runtime"
		}
		t.Run(name, func(t *testing.T) {
			if rt != "" {
				if _, err := exec.LookPath(rt); err != nil {
					t.Skipf("%s is not installed: %v", rt, err)
				}
			}
			for _, client := range []string{"berth", "docker"} {
				t.Run(client, func(t *testing.T) {
					d := StartDaemon(t, "--exec-root", shortExecRoot(t))
					var c *CLI
					if client == "berth" {
						c = BerthCLI(t, d)
					} else {
						c = DockerCLIFor(t, d)
					}
					c.Must(t, "pull", "-q", ref)
					e := &ctrEnv{d: d, c: c, image: ref, runtime: rt}
					t.Cleanup(func() { removeAllContainers(t, e) })
					fn(t, e)
				})
			}
		})
	}
}

// shortExecRoot is an exec root short enough for the shims' unix sockets
// under <exec-root>/containers/<64-hex id>/ (sun_path holds 107 bytes; the
// daemon helper's temp base is too long for them). It is removed after the
// daemon stops.
func shortExecRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove exec root %s: %v", dir, err)
		}
	})
	return dir
}

// removeAllContainers force-removes what a test left, so its daemon stops
// with no container (and no shim) running.
func removeAllContainers(t testing.TB, e *ctrEnv) {
	if e.d.PID() == 0 {
		return
	}
	out, _, err := e.c.Run("ps", "-aq", "--no-trunc")
	if err != nil {
		t.Logf("list containers to clean up: %v", err)
		return
	}
	for _, id := range Lines(out) {
		if _, _, err := e.c.Run("rm", "-f", "-v", id); err != nil {
			t.Errorf("clean up container %s: %v", id, err)
		}
	}
}

func TestContainersRunOutputAndExitCodes(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		out, errOut, err := e.run("--rm", e.image, "sh", "-c", "echo out; echo err >&2; exit 3")
		if code := ctrExitCode(t, err); code != 3 || out != "out\n" || errOut != "err\n" {
			t.Errorf("run exit 3: code %d stdout %q stderr %q", code, out, errOut)
		}
		if out := e.mustRun(t, "--rm", "-e", "A=1", "-e", "B", "-w", "/tmp", "-u", "1:1", e.image,
			"sh", "-c", `echo "$A|$B|$(pwd)|$(id -u):$(id -g)|$(hostname)"`); !strings.HasPrefix(out, "1||/tmp|1:1|") {
			t.Errorf("env, workdir, user: %q", out)
		}
		_, _, err = e.run("--rm", e.image, "/does/not/exist")
		if code := ctrExitCode(t, err); code != 127 {
			t.Errorf("missing command: exit %d, want 127 (%v)", code, err)
		}
		_, _, err = e.run("--rm", e.image, "/etc/passwd")
		if code := ctrExitCode(t, err); code != 126 {
			t.Errorf("non-executable command: exit %d, want 126 (%v)", code, err)
		}
		_, _, err = e.run("--rm", "--memory", "12zz", e.image, "true")
		if code := ctrExitCode(t, err); code != 125 {
			t.Errorf("bad flag: exit %d, want 125 (%v)", code, err)
		}
		if out := e.mustRun(t, "--rm", "--entrypoint", "echo", e.image, "from", "entrypoint"); out != "from entrypoint\n" {
			t.Errorf("--entrypoint: %q", out)
		}
		e.c.Stdin = "piped input\n"
		if out := e.mustRun(t, "--rm", "-i", e.image, "cat"); out != "piped input\n" {
			t.Errorf("-i: %q", out)
		}
		// --rm leaves nothing behind.
		if out := e.c.Must(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
			t.Errorf("containers left after --rm runs: %q", out)
		}
	})
}

func TestContainersDetachLogsStopRemove(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		id := strings.TrimSpace(e.mustRun(t, "-d", "--name", "ticker", "-l", "app=tick", e.image,
			"sh", "-c", "i=0; while [ $i -lt 5 ]; do echo line $i; i=$((i+1)); done; echo to-stderr >&2; exec sleep 1000"))
		if len(id) != 64 {
			t.Fatalf("run -d printed %q, want a 64-hex id", id)
		}
		waitFor(t, "the ticker to write its lines", func() bool {
			out, _, _ := e.c.Run("logs", "ticker")
			return strings.Contains(out, "line 4")
		})
		out, errOut, err := e.c.Run("logs", "ticker")
		if err != nil || out != "line 0\nline 1\nline 2\nline 3\nline 4\n" || errOut != "to-stderr\n" {
			t.Errorf("logs: %v stdout %q stderr %q", err, out, errOut)
		}
		if out := e.c.Must(t, "logs", "--tail", "2", "ticker"); out != "line 4\n" && out != "line 3\nline 4\n" {
			// stderr's line is one of the last two; stdout holds the rest.
			t.Errorf("logs --tail 2 stdout: %q", out)
		}
		if out := e.c.Must(t, "logs", "-t", "ticker"); !strings.Contains(out, "Z line 0") {
			t.Errorf("logs -t lacks timestamps: %q", out)
		}
		if got := strings.TrimSpace(e.c.Must(t, "ps", "-q")); got != id[:12] {
			t.Errorf("ps -q: %q, want %q", got, id[:12])
		}
		if got := strings.TrimSpace(e.c.Must(t, "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}} {{.Label \"app\"}}")); got != id+" ticker running tick" {
			t.Errorf("ps --format: %q", got)
		}
		if got := strings.TrimSpace(e.c.Must(t, "ps", "--filter", "label=app=none", "-q")); got != "" {
			t.Errorf("ps --filter label=app=none: %q", got)
		}
		table := e.c.Must(t, "ps")
		if !strings.HasPrefix(table, "CONTAINER ID") || !strings.Contains(table, "ticker") {
			t.Errorf("ps table:\n%s", table)
		}
		in := e.inspect(t, "ticker")
		if in.ID != id || in.Name != "/ticker" || !in.State.Running || in.State.Pid <= 0 || in.Config.Labels["app"] != "tick" {
			t.Errorf("inspect running: %+v", in)
		}
		if e.runtime != "" && in.HostConfig.Runtime != e.runtime {
			t.Errorf("HostConfig.Runtime %q, want %q", in.HostConfig.Runtime, e.runtime)
		}
		if got := strings.TrimSpace(e.c.Must(t, "inspect", "-f", "{{.State.Status}} {{.Config.Image}}", "ticker")); got != "running "+e.image {
			t.Errorf("inspect -f: %q", got)
		}
		top := e.c.Must(t, "top", "ticker")
		if !strings.Contains(top, "PID") || !strings.Contains(top, "sleep 1000") {
			t.Errorf("top:\n%s", top)
		}
		e.c.Must(t, "stop", "-t", "1", "ticker")
		in = e.inspect(t, "ticker")
		if in.State.Running || in.State.Status != "exited" {
			t.Errorf("after stop: %+v", in.State)
		}
		if got := strings.TrimSpace(e.c.Must(t, "ps", "-a", "--format", "{{.Names}} {{.State}}")); got != "ticker exited" {
			t.Errorf("ps -a after stop: %q", got)
		}
		if got := strings.TrimSpace(e.c.Must(t, "ps", "-q")); got != "" {
			t.Errorf("ps after stop lists %q", got)
		}
		if out := e.c.Must(t, "rm", "ticker"); strings.TrimSpace(out) != "ticker" {
			t.Errorf("rm printed %q", out)
		}
		if errOut := e.c.Fails(t, "inspect", "--type", "container", "ticker"); !strings.Contains(strings.ToLower(errOut), "no such container") {
			t.Errorf("inspect after rm: %q", errOut)
		}
	})
}

func TestContainersExec(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.mustRun(t, "-d", "--name", "box", e.image, "sleep", "1000")
		if out := e.c.Must(t, "exec", "box", "echo", "hi"); out != "hi\n" {
			t.Errorf("exec echo: %q", out)
		}
		_, _, err := e.c.Run("exec", "box", "sh", "-c", "exit 7")
		if code := ctrExitCode(t, err); code != 7 {
			t.Errorf("exec exit 7: %d (%v)", code, err)
		}
		if out := e.c.Must(t, "exec", "-e", "X=y", "-w", "/tmp", "-u", "2", "box", "sh", "-c", `echo "$X $(pwd) $(id -u)"`); out != "y /tmp 2\n" {
			t.Errorf("exec -e -w -u: %q", out)
		}
		e.c.Stdin = "from stdin\n"
		if out := e.c.Must(t, "exec", "-i", "box", "cat"); out != "from stdin\n" {
			t.Errorf("exec -i: %q", out)
		}
		e.c.Must(t, "exec", "-d", "box", "sh", "-c", "echo detached > /tmp/marker")
		waitFor(t, "the detached exec's marker", func() bool {
			out, _, _ := e.c.Run("exec", "box", "cat", "/tmp/marker")
			return out == "detached\n"
		})
		_, _, err = e.c.Run("exec", "box", "/no/such/binary")
		if code := ctrExitCode(t, err); code != 127 && code != 126 {
			t.Errorf("exec of a missing binary: exit %d, want 126 or 127 (%v)", code, err)
		}
	})
}

func TestContainersCopyDiffExportCommit(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.mustRun(t, "-d", "--name", "fs", e.image, "sh", "-c", "mkdir -p /work/sub && echo inside > /work/sub/f && rm /bin/true && exec sleep 1000")
		waitFor(t, "the container's files", func() bool {
			out, _, _ := e.c.Run("exec", "fs", "cat", "/work/sub/f")
			return out == "inside\n"
		})
		// Out of the container: a directory into an existing one, and a file
		// to a new name.
		dst := t.TempDir()
		e.c.Must(t, "cp", "fs:/work", dst)
		if b, err := os.ReadFile(filepath.Join(dst, "work", "sub", "f")); err != nil || string(b) != "inside\n" {
			t.Errorf("cp out of the container: %q %v", b, err)
		}
		e.c.Must(t, "cp", "fs:/work/sub/f", filepath.Join(dst, "renamed"))
		if b, err := os.ReadFile(filepath.Join(dst, "renamed")); err != nil || string(b) != "inside\n" {
			t.Errorf("cp of a file to a new name: %q %v", b, err)
		}
		// Into the container.
		src := filepath.Join(t.TempDir(), "in")
		if err := os.MkdirAll(filepath.Join(src, "deep"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "deep", "g"), []byte("outside\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.c.Must(t, "cp", src, "fs:/work/")
		if out := e.c.Must(t, "exec", "fs", "cat", "/work/in/deep/g"); out != "outside\n" {
			t.Errorf("cp into the container: %q", out)
		}
		e.c.Must(t, "cp", filepath.Join(src, "deep", "g"), "fs:/etc/g2")
		if out := e.c.Must(t, "exec", "fs", "cat", "/etc/g2"); out != "outside\n" {
			t.Errorf("cp of a file to a new name inside: %q", out)
		}
		diff := Lines(e.c.Must(t, "diff", "fs"))
		for _, want := range []string{"A /work", "A /work/sub/f", "C /bin", "D /bin/true", "A /etc/g2"} {
			if !contains(diff, want) {
				t.Errorf("diff lacks %q:\n%s", want, strings.Join(diff, "\n"))
			}
		}
		exported := filepath.Join(t.TempDir(), "fs.tar")
		e.c.Must(t, "export", "-o", exported, "fs")
		list, err := execOut("tar", "-tf", exported)
		if err != nil {
			t.Fatal(err)
		}
		names := Lines(list)
		if !contains(names, "work/sub/f") || contains(names, "bin/true") || !contains(names, "bin/busybox") {
			t.Errorf("export lists %d entries; work/sub/f %v bin/true %v bin/busybox %v", len(names),
				contains(names, "work/sub/f"), contains(names, "bin/true"), contains(names, "bin/busybox"))
		}
		id := strings.TrimSpace(e.c.Must(t, "commit", "-m", "committed", "-a", "tester", "-c", "ENV COMMITTED=yes", "fs", "e2e/committed:1"))
		if !strings.HasPrefix(id, "sha256:") {
			t.Errorf("commit printed %q", id)
		}
		if out := e.mustRun(t, "--rm", "e2e/committed:1", "sh", "-c", `cat /work/sub/f; echo "$COMMITTED"; test -e /bin/true || echo no-true`); out != "inside\nyes\nno-true\n" {
			t.Errorf("run of the committed image: %q", out)
		}
	})
}

func TestContainersVolumes(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if out := strings.TrimSpace(e.c.Must(t, "volume", "create", "--label", "k=v", "vol1")); out != "vol1" {
			t.Errorf("volume create: %q", out)
		}
		e.mustRun(t, "--rm", "-v", "vol1:/v", e.image, "sh", "-c", "echo kept > /v/file")
		if out := e.mustRun(t, "--rm", "-v", "vol1:/v:ro", e.image, "sh", "-c", "cat /v/file; touch /v/x 2>/dev/null || echo read-only"); out != "kept\nread-only\n" {
			t.Errorf("named volume: %q", out)
		}
		host := t.TempDir()
		e.mustRun(t, "--rm", "-v", host+":/h", e.image, "sh", "-c", "echo bound > /h/b")
		if b, err := os.ReadFile(filepath.Join(host, "b")); err != nil || string(b) != "bound\n" {
			t.Errorf("bind mount: %q %v", b, err)
		}
		if out := e.mustRun(t, "--rm", "--mount", "type=bind,src="+host+",dst=/m,readonly", "--tmpfs", "/scratch", e.image,
			"sh", "-c", "cat /m/b; grep -c ' /scratch tmpfs' /proc/mounts"); out != "bound\n1\n" {
			t.Errorf("--mount and --tmpfs: %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "volume", "ls", "-q")); !strings.Contains(out, "vol1") {
			t.Errorf("volume ls -q: %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Labels.k}}", "vol1")); out != "vol1 local v" {
			t.Errorf("volume inspect: %q", out)
		}
		// The image's VOLUME /data is an anonymous volume, removed with -v.
		e.mustRun(t, "--name", "anon", e.image, "true")
		in := e.inspect(t, "anon")
		var anon string
		for _, m := range in.Mounts {
			if m.Destination == "/data" && m.Type == "volume" {
				anon = m.Name
			}
		}
		if anon == "" {
			t.Errorf("no anonymous volume for the image's /data: %+v", in.Mounts)
		}
		e.c.Must(t, "rm", "-v", "anon")
		if anon != "" {
			if out := e.c.Must(t, "volume", "ls", "-q"); strings.Contains(out, anon) {
				t.Errorf("anonymous volume %s left after rm -v", anon)
			}
		}
		e.c.Must(t, "volume", "rm", "vol1")
		if out := strings.TrimSpace(e.c.Must(t, "volume", "ls", "-q")); strings.Contains(out, "vol1") {
			t.Errorf("vol1 listed after rm: %q", out)
		}
		e.c.Must(t, "volume", "create", "unused")
		out := e.c.Must(t, "volume", "prune", "-f", "-a")
		if !strings.Contains(out, "unused") {
			t.Errorf("volume prune -a: %q", out)
		}
	})
}

func TestContainersLifecycleCommands(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		id := strings.TrimSpace(e.c.Must(t, "create", "--name", "life", e.image, "sleep", "1000"))
		if in := e.inspect(t, id); in.State.Status != "created" {
			t.Errorf("after create: %q", in.State.Status)
		}
		e.c.Must(t, "start", "life")
		e.c.Must(t, "pause", "life")
		if in := e.inspect(t, "life"); in.State.Status != "paused" || !in.State.Paused {
			t.Errorf("after pause: %+v", in.State)
		}
		e.c.Must(t, "unpause", "life")
		e.c.Must(t, "rename", "life", "renamed")
		in := e.inspect(t, "renamed")
		if in.Name != "/renamed" || !in.State.Running {
			t.Errorf("after rename: %q %+v", in.Name, in.State)
		}
		pid := in.State.Pid
		e.c.Must(t, "restart", "-t", "1", "renamed")
		if in := e.inspect(t, "renamed"); !in.State.Running || in.State.Pid == pid {
			t.Errorf("after restart: pid %d (was %d) %+v", in.State.Pid, pid, in.State)
		}
		e.c.Must(t, "update", "--memory", "64m", "--cpus", "0.5", "renamed")
		if in := e.inspect(t, "renamed"); in.HostConfig.Memory != 64<<20 || in.HostConfig.NanoCpus != 500000000 {
			t.Errorf("after update: memory %d cpus %d", in.HostConfig.Memory, in.HostConfig.NanoCpus)
		}
		stats := e.c.Must(t, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "renamed")
		if !strings.HasPrefix(strings.TrimSpace(stats), "renamed ") {
			t.Errorf("stats: %q", stats)
		}
		e.c.Must(t, "kill", "-s", "KILL", "renamed")
		if out := strings.TrimSpace(e.c.Must(t, "wait", "renamed")); out != "137" {
			t.Errorf("wait after kill -9: %q", out)
		}
		if errOut := e.c.Fails(t, "rm", "notthere"); !strings.Contains(strings.ToLower(errOut), "no such container") {
			t.Errorf("rm of a missing container: %q", errOut)
		}
		out := e.c.Must(t, "container", "prune", "-f")
		if !strings.Contains(out, id) {
			t.Errorf("container prune: %q", out)
		}
		// rm -f of a running container.
		e.mustRun(t, "-d", "--name", "forced", e.image, "sleep", "1000")
		e.c.Must(t, "rm", "-f", "forced")
		if out := strings.TrimSpace(e.c.Must(t, "ps", "-aq")); out != "" {
			t.Errorf("left after rm -f and prune: %q", out)
		}
	})
}

func TestContainersRestartPolicyAndHealth(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.mustRun(t, "-d", "--name", "flaky", "--restart", "on-failure:2", e.image, "sh", "-c", "echo run; exit 1")
		waitFor(t, "two restarts", func() bool {
			in := e.inspect(t, "flaky")
			return in.RestartCount == 2 && !in.State.Running && !in.State.Restarting
		})
		if in := e.inspect(t, "flaky"); in.State.ExitCode != 1 {
			t.Errorf("after the retries: %+v", in.State)
		}
		if out := e.c.Must(t, "logs", "flaky"); out != "run\nrun\nrun\n" {
			t.Errorf("logs of three runs: %q", out)
		}
		e.mustRun(t, "-d", "--name", "healthy", "--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
			"--health-retries", "2", e.image, "sh", "-c", "touch /tmp/ok; exec sleep 1000")
		waitFor(t, "healthy", func() bool {
			in := e.inspect(t, "healthy")
			return in.State.Health != nil && in.State.Health.Status == "healthy"
		})
		e.c.Must(t, "exec", "healthy", "rm", "/tmp/ok")
		waitFor(t, "unhealthy", func() bool {
			in := e.inspect(t, "healthy")
			return in.State.Health != nil && in.State.Health.Status == "unhealthy"
		})
		if out := e.c.Must(t, "ps", "--filter", "health=unhealthy", "--format", "{{.Names}}"); strings.TrimSpace(out) != "healthy" {
			t.Errorf("ps --filter health=unhealthy: %q", out)
		}
	})
}

// TestContainersSurviveDaemonKill kills berthd with SIGKILL while
// containers run and write: they keep running, their logs lose no line,
// the restarted berthd reports each rightly (one exited meanwhile), and
// stop and rm work.
func TestContainersSurviveDaemonKill(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		const lines = 400
		e.mustRun(t, "-d", "--name", "writer", e.image, "sh", "-c",
			fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo line $i; i=$((i+1)); usleep 20000; done; exec sleep 1000", lines))
		e.mustRun(t, "-d", "--name", "quitter", e.image, "sleep", "1000")
		e.mustRun(t, "-d", "--name", "ender", e.image, "sh", "-c", "while [ ! -e /tmp/go ]; do usleep 50000; done; exit 42")
		before := e.inspect(t, "writer")
		e.d.Kill()
		// While berthd is down: the writer goes on, the ender exits.
		if err := ctrProcessGone(before.State.Pid); err != nil {
			t.Fatalf("writer (pid %d) died with berthd: %v", before.State.Pid, err)
		}
		if err := e.d.Start(); err != nil {
			t.Fatal(err)
		}
		ender := e.inspect(t, "ender")
		enderPid := ender.State.Pid
		if !ender.State.Running {
			t.Fatalf("ender not running after the restart: %+v", ender.State)
		}
		e.d.Kill()
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/go", enderPid), nil, 0o644); err != nil {
			t.Fatalf("signal the ender through its root: %v", err)
		}
		waitFor(t, "the ender to exit while berthd is down", func() bool { return ctrProcessGone(enderPid) != nil })
		if err := e.d.Start(); err != nil {
			t.Fatal(err)
		}
		if in := e.inspect(t, "ender"); in.State.Running || in.State.ExitCode != 42 || in.State.Status != "exited" {
			t.Errorf("ender after berthd came back: %+v, want exited with 42", in.State)
		}
		w := e.inspect(t, "writer")
		if !w.State.Running || w.State.Pid != before.State.Pid {
			t.Errorf("writer after two daemon kills: %+v (pid was %d)", w.State, before.State.Pid)
		}
		waitFor(t, "all the writer's lines", func() bool {
			out, _, _ := e.c.Run("logs", "writer")
			return strings.Contains(out, fmt.Sprintf("line %d\n", lines-1))
		})
		out := e.c.Must(t, "logs", "writer")
		got := Lines(out)
		if len(got) != lines {
			t.Errorf("logs hold %d lines, want %d", len(got), lines)
		}
		for i, l := range got {
			if l != "line "+strconv.Itoa(i) {
				t.Errorf("log line %d is %q", i, l)
				break
			}
		}
		if out := e.c.Must(t, "exec", "writer", "echo", "reattached"); out != "reattached\n" {
			t.Errorf("exec after the restart: %q", out)
		}
		e.c.Must(t, "stop", "-t", "1", "writer", "quitter")
		for _, n := range []string{"writer", "quitter"} {
			if in := e.inspect(t, n); in.State.Running {
				t.Errorf("%s still running after stop", n)
			}
		}
		e.c.Must(t, "rm", "writer", "quitter", "ender")
		if out := strings.TrimSpace(e.c.Must(t, "ps", "-aq")); out != "" {
			t.Errorf("containers left: %q", out)
		}
	})
}

// syscallKill0 reports whether a process exists (signal 0).
func ctrProcessGone(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(syscall.Signal(0))
}
