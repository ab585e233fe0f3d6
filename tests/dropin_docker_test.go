package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// dockerEngine is a dockerd the test started with private data, exec and
// config paths, no networking, and the runtime under test added as "berth";
// dockerd starts its own containerd under the exec root.
type dockerEngine struct {
	*dropin
	sock   string
	daemon *daemonProc
}

// dropinRuntimeName is the name dockerd knows the runtime under test by.
const dropinRuntimeName = "berth"

func startDocker(t *testing.T) *dockerEngine {
	t.Helper()
	bin := dropinRequirePeer(t, "dockerd", "docker.io")
	dropinRequirePeer(t, "containerd", "containerd")
	RequireDockerCLI(t)
	d := newDropin(t, "docker")
	// dockerd puts its plugin directory, and containerd its shim sockets,
	// under /run whatever they are told.
	d.hostPaths("/run/docker", "/run/docker/plugins", "/run/containerd", "/run/containerd/s")
	e := &dockerEngine{dropin: d, sock: filepath.Join(d.dir, "d.sock")}
	conf := filepath.Join(d.dir, "daemon.json")
	// dockerd 20.10 writes a trust key to /etc/docker/key.json unless told
	// another path, which only its configuration file can.
	config := fmt.Sprintf("{%q: %q}\n", "deprecated-key-path", filepath.Join(d.dir, "key.json"))
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e.daemon = d.startDaemon(filepath.Join(d.dir, "dockerd.log"), nil, bin,
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"--config-file", conf,
		"-H", "unix://"+e.sock,
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false",
		"--storage-driver", "vfs",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", "/"+d.cgroup,
		"--add-runtime", dropinRuntimeName+"="+d.runtime,
		"--log-level", "debug",
	)
	t.Cleanup(e.cleanup) // runs before the daemon's stop
	e.daemon.waitFor(t, "an answer on its socket", func() error {
		_, _, err := e.dockerRun(t, "version")
		return err
	})
	return e
}

// dockerRun runs the docker CLI against the test's dockerd with a private
// client configuration.
func (e *dockerEngine) dockerRun(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	env := []string{"DOCKER_HOST=unix://" + e.sock, "DOCKER_CONTEXT=", "DOCKER_CONFIG=" + filepath.Join(e.dir, "client"), "DOCKER_CLI_HINTS=false"}
	return e.run(t, env, DockerCLI, args...)
}

func (e *dockerEngine) docker(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := e.dockerRun(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanup removes every container while dockerd runs; stopping dockerd
// then stops its containerd, and newDropin's cleanup ends any shim left.
func (e *dockerEngine) cleanup() {
	t := e.t
	if e.daemon.exited() {
		return
	}
	out, _, _ := e.dockerRun(t, "ps", "--all", "--quiet")
	if ids := Lines(out); len(ids) > 0 {
		if _, _, err := e.dockerRun(t, append([]string{"rm", "--force"}, ids...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// dockerRunFlags are the flags every container gets: the runtime under test and
// no network.
func dockerRunFlags() []string {
	return []string{"--runtime", dropinRuntimeName, "--network", "none"}
}

func TestDropinDocker(t *testing.T) {
	e := startDocker(t)
	if out := e.docker(t, "load", "--input", e.imageArchive(t)); !strings.Contains(out, "berth-dropin/busybox") {
		t.Fatalf("docker load printed %q", out)
	}

	t.Run("Run", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, dockerRunFlags()...), dropinImage, "sh", "-c", "echo hello from $(grep :memory: /proc/self/cgroup)")
		out := e.docker(t, args...)
		if !strings.Contains(out, "hello from ") || !strings.Contains(out, "/"+e.cgroup+"/") {
			t.Fatalf("docker run printed %q, want the container's memory cgroup under /%s", out, e.cgroup)
		}
		e.requireCalled(t, "create", "--bundle", "--pid-file")
		e.requireCalled(t, "start")
		_, _, err := e.dockerRun(t, append(append([]string{"run", "--rm"}, dockerRunFlags()...), dropinImage, "sh", "-c", "exit 7")...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("docker run of a container exiting 7: %v, want status 7", err)
		}
	})

	t.Run("DetachedExecStopRm", func(t *testing.T) {
		args := append(append([]string{"run", "--detach", "--name", "d1"}, dockerRunFlags()...), dropinImage)
		e.docker(t, append(args, dropinLoop...)...)
		if st := strings.TrimSpace(e.docker(t, "inspect", "--format", "{{.State.Status}}", "d1")); st != "running" {
			t.Fatalf("status after run -d: %q", st)
		}
		out := e.docker(t, "exec", "d1", "sh", "-c", "echo exec-$((6*7)); tr '\\0' ' ' </proc/1/cmdline")
		if !strings.Contains(out, "exec-42") || !strings.Contains(out, "trap") {
			t.Fatalf("docker exec printed %q, want exec-42 and the init's command line", out)
		}
		e.requireCalled(t, "exec", "--process", "--detach")
		_, _, err := e.dockerRun(t, "exec", "d1", "sh", "-c", "exit 5")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("docker exec of a process exiting 5: %v, want status 5", err)
		}
		e.docker(t, "stop", "--time", "20", "d1") // SIGTERM: the trap exits 3
		if got := strings.TrimSpace(e.docker(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "d1")); got != "exited 3" {
			t.Fatalf("after stop: %q, want exited 3 (the init's TERM trap)", got)
		}
		e.requireCalled(t, "kill", "15")
		e.docker(t, "rm", "d1")
		e.requireCalled(t, "delete")
		if ids := Lines(e.docker(t, "ps", "--all", "--quiet")); len(ids) != 0 {
			t.Fatalf("containers left after rm: %v", ids)
		}
		// dockerd gives every runc-like runtime this state root.
		root := filepath.Join(e.dir, "exec", "runtime-runc", "moby")
		if out, _, err := e.run(t, nil, e.target, "--root", root, "list", "--quiet"); err != nil || len(Lines(out)) != 0 {
			t.Fatalf("the runtime still lists containers after docker rm: %q (%v)", out, err)
		}
	})

	t.Run("TopPauseUnpause", func(t *testing.T) {
		args := append(append([]string{"run", "--detach", "--name", "p1"}, dockerRunFlags()...), dropinImage)
		id := strings.TrimSpace(e.docker(t, append(args, dropinLoop...)...))
		defer e.docker(t, "rm", "--force", "p1")
		e.docker(t, "pause", "p1")
		if st, err := dropinCgroupFile("freezer", "/"+e.cgroup+"/"+id, "freezer.state"); err != nil || st != "FROZEN" {
			t.Fatalf("freezer.state of a paused container: %q (%v), want FROZEN", st, err)
		}
		e.docker(t, "unpause", "p1")
		e.requireCalled(t, "pause", id)
		e.requireCalled(t, "resume", id)
		top := e.docker(t, "top", "p1")
		pid := strings.TrimSpace(e.docker(t, "inspect", "--format", "{{.State.Pid}}", "p1"))
		if !strings.Contains(top, "trap") || !strings.Contains(top, pid) {
			t.Fatalf("docker top does not show the init (pid %s):\n%s", pid, top)
		}
	})

	t.Run("MemoryOOMKill", func(t *testing.T) {
		args := append(append([]string{"run", "--name", "oom1", "--memory", "16m", "--memory-swap", "16m"}, dockerRunFlags()...), dropinImage,
			"sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "+dropinHog64M)
		out, _, err := e.dockerRun(t, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 137 {
			t.Fatalf("a container building a 64 MiB string under --memory 16m: %v, want status 137", err)
		}
		if !strings.Contains(out, strconv.Itoa(16<<20)) {
			t.Fatalf("the container saw memory.limit_in_bytes %q, want %d", out, 16<<20)
		}
		if got := strings.TrimSpace(e.docker(t, "inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom1")); got != "true 137" {
			t.Fatalf("inspect after the OOM kill: %q, want OOMKilled true, exit code 137", got)
		}
		e.docker(t, "rm", "oom1")
	})
	t.Run("UpdateMemory", func(t *testing.T) {
		args := append(append([]string{"run", "--detach", "--name", "u1", "--memory", "32m", "--memory-swap", "64m"}, dockerRunFlags()...), dropinImage)
		id := strings.TrimSpace(e.docker(t, append(args, dropinLoop...)...))
		defer e.docker(t, "rm", "--force", "u1")
		e.docker(t, "update", "--memory", "48m", "--memory-swap", "96m", "u1")
		e.requireCalled(t, "update", "--resources", id)
		if got, err := dropinCgroupFile("memory", "/"+e.cgroup+"/"+id, "memory.limit_in_bytes"); err != nil || got != strconv.Itoa(48<<20) {
			t.Fatalf("memory.limit_in_bytes after docker update --memory 48m: %q (%v), want %d", got, err, 48<<20)
		}
		if got, err := dropinCgroupFile("memory", "/"+e.cgroup+"/"+id, "memory.memsw.limit_in_bytes"); err != nil || got != strconv.Itoa(96<<20) {
			t.Fatalf("memory.memsw.limit_in_bytes after docker update --memory-swap 96m: %q (%v), want %d", got, err, 96<<20)
		}
		if got := strings.TrimSpace(e.docker(t, "inspect", "--format", "{{.HostConfig.Memory}}", "u1")); got != strconv.Itoa(48<<20) {
			t.Fatalf("HostConfig.Memory after update: %q", got)
		}
	})

	t.Run("Terminals", func(t *testing.T) {
		env := []string{"DOCKER_HOST=unix://" + e.sock, "DOCKER_CONTEXT=", "DOCKER_CONFIG=" + filepath.Join(e.dir, "client"), "DOCKER_CLI_HINTS=false"}
		args := append(append([]string{"run", "--rm", "--interactive", "--tty"}, dockerRunFlags()...), dropinImage, "sh")
		out, err := dropinInTerminal(t, env, DockerCLI, args, "tty; test -t 0 && echo stdin-is-a-$((0+1))tty; exit 4\r")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("docker run -it: %v, want status 4; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/0") || !strings.Contains(out, "stdin-is-a-1tty") {
			t.Fatalf("docker run -it: the terminal showed %q, want /dev/pts/0 and stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "create", "--console-socket")

		e.docker(t, append(append([]string{"run", "--detach", "--name", "tty2"}, dockerRunFlags()...), append([]string{dropinImage}, dropinLoop...)...)...)
		defer e.docker(t, "rm", "--force", "tty2")
		out, err = dropinInTerminal(t, env, DockerCLI, []string{"exec", "--interactive", "--tty", "tty2", "sh"}, "tty; test -t 0 && echo exec-stdin-is-a-$((0+1))tty; exit 6\r")
		if !errors.As(err, &ee) || ee.ExitCode() != 6 {
			t.Fatalf("docker exec -it: %v, want status 6; terminal showed:\n%s", err, out)
		}
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "exec-stdin-is-a-1tty") {
			t.Fatalf("docker exec -it: the terminal showed %q, want a /dev/pts path and exec-stdin-is-a-1tty", out)
		}
		e.requireCalled(t, "exec", "--console-socket")
	})

	t.Run("Init", func(t *testing.T) {
		// docker-init (tini), bind-mounted into the container, runs as PID 1.
		args := append(append([]string{"run", "--rm", "--init"}, dockerRunFlags()...), dropinImage,
			"sh", "-c", "echo parent-$PPID; tr '\\0' ' ' </proc/1/cmdline")
		out := e.docker(t, args...)
		if !strings.Contains(out, "parent-1") || !strings.Contains(out, "init") {
			t.Fatalf("docker run --init printed %q, want the shell under an init as PID 1", out)
		}
	})

	t.Run("MissingCommandError", func(t *testing.T) {
		_, _, err := e.dockerRun(t, append(append([]string{"run", "--rm"}, dockerRunFlags()...), dropinImage, "/no/such/command")...)
		t.Logf("docker run of a missing command: %v", err)
		// dockerd reads the runtime's error text to tell "command not found"
		// (status 127) from other failures (126, 125).
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(err.Error(), "/no/such/command") {
			t.Fatalf("docker run of a missing command: %v, want status 127 and an error naming /no/such/command", err)
		}
	})
}
