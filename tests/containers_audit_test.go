package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/testutil"
)

// The containers issue's floor, item by item, checked by its effect inside
// the container or on the host. Flags whose effect depends on the OCI
// runtime (cgroups, capabilities, seccomp, devices, sysctls, namespaces)
// run for both runtimes and both clients; commands whose effect is the
// daemon's and whose output is the client's run for both clients under
// the default runtime.

// forEachAuditClient is forEachRuntimeClient for the default runtime only.
func forEachAuditClient(t *testing.T, fn func(t *testing.T, e *ctrEnv)) {
	t.Helper()
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
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
			e := &ctrEnv{d: d, c: c, image: ref}
			t.Cleanup(func() { removeAllContainers(t, e) })
			fn(t, e)
		})
	}
}

// hostCgroupFile reads a file of pid's cgroup in the v1 hierarchy of ctrl
// on the host ("" when the hierarchy or the file is missing).
func hostCgroupFile(t *testing.T, pid int, ctrl, file string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("cgroups of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !contains(strings.Split(f[1], ","), ctrl) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, f[2], file))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return ""
}

// statusField is a field of /proc/self/status as the container's process
// sees it.
func statusField(status, key string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestContainersAuditRunEffects checks the run flags the other tests do not
// check by effect: --env-file, the cgroup limits (--cpus, --cpu-shares,
// --memory, --memory-swap, --pids-limit), --cap-add with --cap-drop,
// --security-opt no-new-privileges and seccomp (the default, a profile
// file, unconfined), --privileged, --sysctl, --device, --network host, -t,
// --stop-signal, --stop-timeout and the health flags.
func TestContainersAuditRunEffects(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		dir := t.TempDir()
		envFile := filepath.Join(dir, "env")
		if err := os.WriteFile(envFile, []byte("# a comment\nFROMFILE=yes\n\nPASSED\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.c.Env = []string{"PASSED=through"}
		defer func() { e.c.Env = nil }()
		e.mustRun(t, "-d", "--name", "fx", "--env-file", envFile,
			"--cpus", "0.5", "--cpu-shares", "512", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
			"--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "--security-opt", "no-new-privileges",
			"--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=123456789",
			"--device", "/dev/null:/dev/mynull", "--stop-signal", "USR1",
			e.image, "sh", "-c", `trap "echo got-usr1; exit 3" USR1; trap "echo got-usr2" USR2; echo ready; while true; do usleep 20000; done`)
		e.c.Env = nil
		waitFor(t, "fx to set its traps", func() bool {
			out, _, _ := e.c.Run("logs", "fx")
			return out == "ready\n"
		})
		in := e.inspect(t, "fx")
		pid := in.State.Pid
		for _, c := range []struct{ ctrl, file, want string }{
			{"cpu", "cpu.cfs_quota_us", "50000"},
			{"cpu", "cpu.cfs_period_us", "100000"},
			{"cpu", "cpu.shares", "512"},
			{"memory", "memory.limit_in_bytes", strconv.Itoa(64 << 20)},
			{"pids", "pids.max", "50"},
		} {
			if got := hostCgroupFile(t, pid, c.ctrl, c.file); got != c.want {
				t.Errorf("%s of the container's cgroup: %q, want %q", c.file, got, c.want)
			}
		}
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			if got := hostCgroupFile(t, pid, "memory", "memory.memsw.limit_in_bytes"); got != strconv.Itoa(128<<20) {
				t.Errorf("--memory-swap 128m: memory.memsw.limit_in_bytes %q", got)
			}
		}
		if out := e.c.Must(t, "exec", "fx", "sh", "-c", `echo "$FROMFILE|$PASSED"`); out != "yes|through\n" {
			t.Errorf("--env-file: %q", out)
		}
		status := e.c.Must(t, "exec", "fx", "cat", "/proc/self/status")
		// Docker's default set a80425fb without CHOWN (bit 0), with
		// NET_ADMIN (bit 12).
		if got := statusField(status, "CapEff"); got != "00000000a80435fa" {
			t.Errorf("--cap-add NET_ADMIN --cap-drop CHOWN: CapEff %s, want 00000000a80435fa", got)
		}
		if got := statusField(status, "NoNewPrivs"); got != "1" {
			t.Errorf("--security-opt no-new-privileges: NoNewPrivs %q", got)
		}
		if got := statusField(status, "Seccomp"); got != "2" {
			t.Errorf("default seccomp profile: Seccomp %q, want 2 (filter)", got)
		}
		if out, _, err := e.c.Run("exec", "fx", "sh", "-c", "touch /tmp/f && chown 1 /tmp/f"); err == nil {
			t.Errorf("chown without CAP_CHOWN succeeded: %q", out)
		}
		if out := e.c.Must(t, "exec", "fx", "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax"); out != "1\n123456789\n" {
			t.Errorf("--sysctl: %q", out)
		}
		if out := e.c.Must(t, "exec", "fx", "sh", "-c", "echo x > /dev/mynull && stat -c '%t:%T %F' /dev/mynull"); out != "1:3 character special file\n" {
			t.Errorf("--device /dev/null:/dev/mynull: %q", out)
		}
		// kill -s sends the signal; stop sends --stop-signal.
		e.c.Must(t, "kill", "-s", "USR2", "fx")
		waitFor(t, "the USR2 trap", func() bool {
			out, _, _ := e.c.Run("logs", "fx")
			return strings.Contains(out, "got-usr2")
		})
		e.c.Must(t, "stop", "fx")
		if in := e.inspect(t, "fx"); in.State.ExitCode != 3 || in.Config.StopSignal != "USR1" {
			t.Errorf("stop with --stop-signal USR1: exit %d, StopSignal %q", in.State.ExitCode, in.Config.StopSignal)
		}
		if out := e.c.Must(t, "logs", "fx"); out != "ready\ngot-usr2\ngot-usr1\n" {
			t.Errorf("logs of the signalled container: %q", out)
		}

		// --stop-timeout: a container ignoring SIGTERM is killed after its
		// own timeout, not the default 10 seconds.
		e.mustRun(t, "-d", "--name", "stubborn", "--stop-timeout", "1", e.image, "sh", "-c", `trap "" TERM; echo ready; while true; do usleep 20000; done`)
		waitFor(t, "stubborn to ignore TERM", func() bool {
			out, _, _ := e.c.Run("logs", "stubborn")
			return out == "ready\n"
		})
		start := time.Now()
		e.c.Must(t, "stop", "stubborn")
		if took := time.Since(start); took >= 10*time.Second {
			t.Errorf("stop of a container with --stop-timeout 1 took %v: the default timeout was used", took)
		}
		if in := e.inspect(t, "stubborn"); in.State.ExitCode != 137 {
			t.Errorf("stop after --stop-timeout: exit %d, want 137", in.State.ExitCode)
		}

		// Seccomp: a profile file that denies mkdir, and unconfined.
		profile := filepath.Join(dir, "profile.json")
		if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := e.mustRun(t, "--rm", "--security-opt", "seccomp="+profile, e.image, "sh", "-c", "mkdir /tmp/d 2>/dev/null && echo made || echo denied; echo ok > /tmp/f && cat /tmp/f"); out != "denied\nok\n" {
			t.Errorf("--security-opt seccomp=PROFILE denying mkdir: %q", out)
		}
		if out := e.mustRun(t, "--rm", "--security-opt", "seccomp=unconfined", e.image, "grep", "Seccomp:", "/proc/self/status"); strings.Fields(out)[1] != "0" {
			t.Errorf("seccomp=unconfined: %q", out)
		}

		// --privileged: every capability berthd has, no seccomp, the host's
		// devices, all devices allowed.
		bnd := statusField(mustReadFile(t, "/proc/self/status"), "CapBnd")
		priv := e.mustRun(t, "--rm", "--privileged", e.image, "sh", "-c", "cat /proc/self/status; ls /dev; cat /sys/fs/cgroup/devices/devices.list 2>/dev/null")
		if got := statusField(priv, "CapEff"); got != bnd {
			t.Errorf("--privileged: CapEff %s, want the host's bounding set %s", got, bnd)
		}
		if got := statusField(priv, "Seccomp"); got != "0" {
			t.Errorf("--privileged: Seccomp %q, want 0", got)
		}
		if _, err := os.Stat("/dev/loop-control"); err == nil && !contains(Lines(priv), "loop-control") {
			t.Errorf("--privileged lacks the host's /dev/loop-control:\n%s", priv)
		}
		if _, err := os.Stat("/sys/fs/cgroup/devices"); err == nil && !contains(Lines(priv), "a *:* rwm") {
			t.Errorf("--privileged: devices.list does not allow every device:\n%s", priv)
		}

		// --network host: the host's network namespace and host name.
		hostNet, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		hostName, _ := os.Hostname()
		if out := e.mustRun(t, "--rm", "--network", "host", e.image, "sh", "-c", "readlink /proc/self/ns/net; hostname"); out != hostNet+"\n"+hostName+"\n" {
			t.Errorf("--network host: %q, want %q and %q", out, hostNet, hostName)
		}

		// -t without -i: the container's stdout is a terminal.
		if out := e.mustRun(t, "--rm", "-t", e.image, "sh", "-c", "test -t 1 && echo tty"); out != "tty\r\n" {
			t.Errorf("run -t: %q", out)
		}

		// Health: a probe that outlives --health-timeout fails; during
		// --health-start-period failures do not count; --no-healthcheck
		// turns off the image's check.
		e.mustRun(t, "-d", "--name", "slowprobe", "--health-cmd", "sleep 5", "--health-timeout", "100ms",
			"--health-interval", "200ms", "--health-retries", "1", e.image, "sleep", "1000")
		e.mustRun(t, "-d", "--name", "grace", "--health-cmd", "false", "--health-interval", "100ms", "--health-retries", "1",
			"--health-start-period", "1h", "--health-start-interval", "100ms", e.image, "sleep", "1000")
		waitFor(t, "slowprobe unhealthy", func() bool {
			return healthOf(t, e, "slowprobe").Status == "unhealthy"
		})
		if h := healthOf(t, e, "slowprobe"); len(h.Log) == 0 || h.Log[len(h.Log)-1].ExitCode != -1 ||
			!strings.Contains(h.Log[len(h.Log)-1].Output, "exceeded timeout") {
			t.Errorf("--health-timeout: %+v", h)
		}
		waitFor(t, "two probes in the start period", func() bool { return len(healthOf(t, e, "grace").Log) >= 2 })
		if h := healthOf(t, e, "grace"); h.Status != "starting" || h.FailingStreak != 0 {
			t.Errorf("--health-start-period: failures counted: %+v", h)
		}
		e.mustRun(t, "-d", "--name", "nocheck", "--no-healthcheck", e.image, "sleep", "1000")
		if out := strings.TrimSpace(e.c.Must(t, "inspect", "-f", "{{json .State.Health}} {{json .Config.Healthcheck.Test}}", "nocheck")); out != `null ["NONE"]` {
			t.Errorf("--no-healthcheck: %s", out)
		}
	})
}

type healthState struct {
	Status        string
	FailingStreak int
	Log           []struct {
		ExitCode int
		Output   string
	}
}

func healthOf(t *testing.T, e *ctrEnv, name string) healthState {
	t.Helper()
	var h healthState
	out := e.c.Must(t, "inspect", "-f", "{{json .State.Health}}", name)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("health of %s: %v: %s", name, err, out)
	}
	return h
}

func mustReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestContainersAuditSignals: signals sent with kill and stop reach the
// container's process whatever the engine's own processes ignore (SIGHUP
// and SIGINT are the signals a shell's trap cannot catch when they were
// ignored at its start).
func TestContainersAuditSignals(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if e.c.Name != "berth" {
			t.Skip("the signal's path is the daemon's: the berth client covers it")
		}
		if out := e.mustRun(t, "--rm", e.image, "grep", "SigIgn:", "/proc/self/status"); strings.Fields(out)[1] != "0000000000000000" {
			t.Errorf("the container's process starts with signals ignored: %q", out)
		}
		e.mustRun(t, "-d", "--name", "hup", "--stop-signal", "INT", e.image, "sh", "-c",
			`trap "echo got-hup" HUP; trap "echo got-int; exit 0" INT; echo ready; while true; do usleep 20000; done`)
		waitFor(t, "the traps", func() bool { out, _, _ := e.c.Run("logs", "hup"); return out == "ready\n" })
		e.c.Must(t, "kill", "-s", "HUP", "hup")
		e.c.Must(t, "stop", "-t", "5", "hup")
		if out := e.c.Must(t, "logs", "hup"); out != "ready\ngot-hup\ngot-int\n" {
			t.Errorf("kill -s HUP and stop with --stop-signal INT: logs %q", out)
		}
	})
}

// psHeader splits a table header at its column gaps (two spaces or more).
var columnGap = regexp.MustCompile(`\s{2,}`)

// TestContainersAuditCommands checks by effect and output format: logs
// --since/--until/--tail/-t, ps columns, -s sizes and filters, stats
// --no-stream columns, top with ps options, pause (the freezer cgroup),
// rename, attach, update, events with filters and since/until, volume
// prune and copy-up through the CLI, --mount volume and tmpfs.
func TestContainersAuditCommands(t *testing.T) {
	forEachAuditClient(t, func(t *testing.T, e *ctrEnv) {
		t0 := time.Now()
		// logs: since and until around two lines written apart.
		e.mustRun(t, "-d", "--name", "lg", "--memory", "64m", e.image, "sh", "-c",
			"echo early; while [ ! -e /tmp/go ]; do usleep 20000; done; echo late; echo last; dd if=/dev/zero of=/big bs=1000 count=1000 2>/dev/null; exec sleep 1000")
		waitFor(t, "the first line", func() bool { out, _, _ := e.c.Run("logs", "lg"); return out == "early\n" })
		e.c.Must(t, "exec", "lg", "touch", "/tmp/go")
		waitFor(t, "the last line", func() bool { out, _, _ := e.c.Run("logs", "lg"); return strings.HasSuffix(out, "last\n") })
		stamped := Lines(e.c.Must(t, "logs", "-t", "lg"))
		if len(stamped) != 3 {
			t.Fatalf("logs -t: %q", stamped)
		}
		var times []string
		for i, want := range []string{"early", "late", "last"} {
			ts, line, _ := strings.Cut(stamped[i], " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || line != want {
				t.Errorf("logs -t line %d: %q (%v)", i, stamped[i], err)
			}
			times = append(times, ts)
		}
		if out := e.c.Must(t, "logs", "--since", times[1], "lg"); out != "late\nlast\n" {
			t.Errorf("logs --since the second line's time: %q", out)
		}
		if out := e.c.Must(t, "logs", "--until", times[0], "lg"); out != "early\n" {
			t.Errorf("logs --until the first line's time: %q", out)
		}
		if out := e.c.Must(t, "logs", "--tail", "1", "lg"); out != "last\n" {
			t.Errorf("logs --tail 1: %q", out)
		}
		if out := e.c.Must(t, "logs", "--tail", "0", "lg"); out != "" {
			t.Errorf("logs --tail 0: %q", out)
		}
		if out := e.c.Must(t, "logs", "--since", "1h", "--tail", "all", "lg"); out != "early\nlate\nlast\n" {
			t.Errorf("logs --since 1h: %q", out)
		}

		// inspect templates see docker's API types first (a struct prints
		// as Go prints it), then the JSON.
		if out := e.c.Must(t, "inspect", "-f", "{{.HostConfig.RestartPolicy}}|{{.Config.Cmd}}|{{.State.Running}}", "lg"); !strings.HasPrefix(out, "{no 0}|[sh -c echo early;") || !strings.HasSuffix(out, "|true\n") {
			t.Errorf("inspect -f over the typed container: %q", out)
		}

		// A --rm run whose start fails shows the start's error alone.
		_, errOut, err := e.run("--rm", e.image, "/no/such/cmd")
		if code := ctrExitCode(t, err); code != 127 || !strings.Contains(errOut, "/no/such/cmd") || strings.Contains(errOut, "was removed") {
			t.Errorf("run --rm of a missing command: exit %d, stderr %q", code, errOut)
		}

		// ps: docker's columns, sizes, filters.
		header := columnGap.Split(Lines(e.c.Must(t, "ps"))[0], -1)
		if strings.Join(header, "|") != "CONTAINER ID|IMAGE|COMMAND|CREATED|STATUS|PORTS|NAMES" {
			t.Errorf("ps columns: %q", header)
		}
		sized := Lines(e.c.Must(t, "ps", "-s"))
		if h := columnGap.Split(sized[0], -1); h[len(h)-1] != "SIZE" {
			t.Errorf("ps -s columns: %q", h)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "--format", "{{.Size}}", "--filter", "name=lg")); !regexp.MustCompile(`^1(\.\d+)?MB \(virtual [0-9.]+[kMG]?B\)$`).MatchString(out) {
			t.Errorf("ps size of a container that wrote 1MB: %q", out)
		}

		// stats --no-stream: docker's columns, one row per running
		// container, the memory limit.
		stats := Lines(e.c.Must(t, "stats", "--no-stream"))
		if len(stats) != 2 || strings.Join(columnGap.Split(stats[0], -1), "|") != "CONTAINER ID|NAME|CPU %|MEM USAGE / LIMIT|MEM %|NET I/O|BLOCK I/O|PIDS" {
			t.Errorf("stats --no-stream:\n%s", strings.Join(stats, "\n"))
		} else if row := columnGap.Split(stats[1], -1); len(row) != 8 || row[1] != "lg" || !strings.HasSuffix(row[3], " / 64MiB") || row[7] != "1" {
			t.Errorf("stats row: %q", row)
		}

		// top with ps options.
		if top := Lines(e.c.Must(t, "top", "lg", "-o", "pid,comm")); len(top) != 2 || strings.Join(strings.Fields(top[0]), " ") != "PID COMMAND" || !strings.HasSuffix(top[1], "sleep") {
			t.Errorf("top lg -o pid,comm:\n%s", strings.Join(top, "\n"))
		}

		// pause freezes the cgroup; exec is refused; ps filters on it.
		pid := e.inspect(t, "lg").State.Pid
		e.c.Must(t, "pause", "lg")
		if got := hostCgroupFile(t, pid, "freezer", "freezer.state"); got != "FROZEN" {
			t.Errorf("freezer.state after pause: %q", got)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "--filter", "status=paused", "--format", "{{.Names}} {{.Status}}")); !strings.HasPrefix(out, "lg Up ") || !strings.HasSuffix(out, "(Paused)") || strings.Contains(out, "health") {
			t.Errorf("ps --filter status=paused: %q", out)
		}
		if errOut := e.c.Fails(t, "exec", "lg", "true"); !strings.Contains(errOut, "is paused") {
			t.Errorf("exec in a paused container: %q", errOut)
		}
		e.c.Must(t, "unpause", "lg")
		if got := hostCgroupFile(t, pid, "freezer", "freezer.state"); got != "THAWED" {
			t.Errorf("freezer.state after unpause: %q", got)
		}

		// update changes the cgroup of a running container.
		e.c.Must(t, "update", "--memory", "96m", "--memory-swap", "-1", "--cpus", "0.25", "--pids-limit", "20", "lg")
		for _, c := range []struct{ ctrl, file, want string }{
			{"memory", "memory.limit_in_bytes", strconv.Itoa(96 << 20)},
			{"cpu", "cpu.cfs_quota_us", "25000"},
			{"pids", "pids.max", "20"},
		} {
			if got := hostCgroupFile(t, pid, c.ctrl, c.file); got != c.want {
				t.Errorf("after update: %s %q, want %q", c.file, got, c.want)
			}
		}

		// rename: the new name works, the old one is gone.
		e.c.Must(t, "rename", "lg", "logger")
		if errOut := e.c.Fails(t, "inspect", "lg"); !strings.Contains(errOut, "No such object: lg") {
			t.Errorf("inspect by the old name: %q", errOut)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "--format", "{{.Names}}")); out != "logger" {
			t.Errorf("ps after rename: %q", out)
		}

		// attach to a running container: its output and exit code, and the
		// attach event.
		e.mustRun(t, "-d", "--name", "att", e.image, "sh", "-c", "while [ ! -e /tmp/go ]; do echo tick; usleep 50000; done; echo attached-out; exit 4")
		a := e.startOnPTY(t, "attach", "att")
		a.waitOutput(t, "tick")
		e.c.Must(t, "exec", "att", "touch", "/tmp/go")
		if code := a.wait(t); code != 4 || !strings.HasSuffix(a.output(), "attached-out\r\n") {
			t.Errorf("attach: exit %d, output %q", code, a.output())
		}
		if out := e.c.Must(t, "events", "--since", t0.Format(time.RFC3339Nano), "--until", time.Now().Format(time.RFC3339Nano),
			"--filter", "event=attach", "--filter", "container=att", "--format", "{{.Action}}"); out != "attach\n" {
			t.Errorf("events --filter event=attach: %q", out)
		}

		// events: filters by type and action, since and until.
		e.c.Must(t, "stop", "-t", "1", "logger")
		until := time.Now()
		out := e.c.Must(t, "events", "--since", t0.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano),
			"--filter", "type=container", "--filter", "event=die", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
		if got := Lines(out); strings.Join(got, ",") != "container die att 4,container die logger 137" {
			t.Errorf("events --filter type=container --filter event=die: %q", got)
		}
		if out := e.c.Must(t, "events", "--since", t0.Add(-2*time.Hour).Format(time.RFC3339Nano), "--until", t0.Add(-time.Hour).Format(time.RFC3339Nano)); out != "" {
			t.Errorf("events in a window with none: %q", out)
		}
		def := Lines(e.c.Must(t, "events", "--since", t0.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), "--filter", "event=rename"))
		if len(def) != 1 || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\S* container rename [0-9a-f]{64} \(.*name=logger.*oldName=/lg.*\)$`).MatchString(def[0]) {
			t.Errorf("events default format: %q", def)
		}

		// Volumes: the image's content copied into a new named volume,
		// --mount volume and tmpfs, prune without -a keeps named volumes.
		e.c.Must(t, "volume", "create", "named")
		if out := e.mustRun(t, "--name", "vols", "-v", "fresh:/etc", "--mount", "type=volume,src=named,dst=/n",
			"--mount", "type=tmpfs,dst=/t,tmpfs-size=1048576", e.image, "sh", "-c",
			"cat /etc/hostname >/dev/null && ls /etc/passwd; echo kept > /n/f; grep ' /t ' /proc/mounts | cut -d' ' -f3,4"); out != "/etc/passwd\ntmpfs rw,nosuid,nodev,noexec,relatime,size=1024k\n" {
			t.Errorf("-v fresh:/etc and --mount: %q", out)
		}
		var mp string
		if err := json.Unmarshal([]byte(e.c.Must(t, "volume", "inspect", "-f", "{{json .Mountpoint}}", "fresh")), &mp); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(mp, "passwd")); err != nil {
			t.Errorf("the image's /etc was not copied into the new volume: %v", err)
		}
		anon := ""
		for _, m := range e.inspect(t, "vols").Mounts {
			if m.Destination == "/data" {
				anon = m.Name
			}
		}
		// ps filters on mounts and on the ports the image exposes.
		for _, c := range []struct{ filter, want string }{
			{"volume=named", "vols"}, {"volume=/n", "vols"}, {"volume=nosuch", ""},
			{"expose=8080/tcp", "vols,att,logger"}, {"expose=8000-8100", "vols,att,logger"}, {"expose=8080/udp", ""},
			{"publish=8080", ""}, {"is-task=true", ""},
		} {
			if got := strings.Join(Lines(e.c.Must(t, "ps", "-a", "--filter", c.filter, "--format", "{{.Names}}")), ","); got != c.want {
				t.Errorf("ps -a --filter %s: %q, want %q", c.filter, got, c.want)
			}
		}
		if out := strings.TrimSpace(e.c.Must(t, "inspect", "-f", "{{json .Config.ExposedPorts}}", "vols")); out != `{"8080/tcp":{}}` {
			t.Errorf("the image's exposed port in the container's config: %s", out)
		}
		e.c.Must(t, "rm", "vols")
		pruned := e.c.Must(t, "volume", "prune", "-f")
		left := Lines(e.c.Must(t, "volume", "ls", "-q"))
		if anon == "" || !strings.Contains(pruned, anon) || contains(left, anon) || !contains(left, "named") || !contains(left, "fresh") {
			t.Errorf("volume prune (anonymous %q): pruned %q, left %q", anon, pruned, left)
		}
		if out := e.mustRun(t, "--rm", "-v", "named:/n:ro", e.image, "cat", "/n/f"); out != "kept\n" {
			t.Errorf("the named volume's file: %q", out)
		}
	})
}

// TestContainersAuditTTY: -it puts the client's terminal in raw mode
// (Ctrl-C goes to the container, not to the client) and passes on window
// resizes, for run -it and exec -it.
func TestContainersAuditTTY(t *testing.T) {
	forEachAuditClient(t, func(t *testing.T, e *ctrEnv) {
		p := e.startOnPTY(t, e.runArgs("-it", "--rm", e.image, "sh")...)
		p.send(t, "echo up-$((3*3))\r")
		p.waitOutput(t, "up-9")
		p.send(t, "\x03")
		p.send(t, "echo alive-$((4*4))\r")
		// The shell in the container takes Ctrl-C and goes on; the client
		// ending here means the interrupt ended the shell or the client.
		var exited error
		waitFor(t, "alive-16 on the terminal", func() bool {
			select {
			case err := <-p.done:
				exited = fmt.Errorf("client ended: %v", err)
				return true
			default:
				return strings.Contains(p.output(), "alive-16")
			}
		})
		if exited != nil {
			t.Fatalf("Ctrl-C under -it: %v; terminal:\n%s", exited, p.output())
		}
		if err := setWinsize(p, 40, 120); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new size inside", func() bool {
			p.send(t, "stty size\r")
			time.Sleep(100 * time.Millisecond)
			return strings.Contains(p.output(), "40 120")
		})
		p.send(t, "exit 0\r")
		if code := p.wait(t); code != 0 {
			t.Errorf("exit code %d; terminal:\n%s", code, p.output())
		}

		// exec -it: the exec's terminal follows the client's too.
		e.mustRun(t, "-d", "--name", "execwin", e.image, "sleep", "1000")
		x := e.startOnPTY(t, "exec", "-it", "execwin", "sh")
		x.send(t, "echo in-$((5*5))\r")
		x.waitOutput(t, "in-25")
		if err := setWinsize(x, 44, 111); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the exec's new size", func() bool {
			x.send(t, "stty size\r")
			time.Sleep(100 * time.Millisecond)
			return strings.Contains(x.output(), "44 111")
		})
		x.send(t, "exit 2\r")
		if code := x.wait(t); code != 2 {
			t.Errorf("exec -it exit code %d; terminal:\n%s", code, x.output())
		}
	})
}

// setWinsize resizes the client's terminal (the kernel signals SIGWINCH to
// the client).
func setWinsize(p *ptyClient, rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(p.ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// TestContainersAuditAPI checks the endpoints the CLIs do not drive in the
// other tests: wait with next-exit on a running container and with
// removed, streamed and one-shot stats, the container resize endpoint, and
// the network files of the floor (/etc/hosts naming the container,
// /etc/resolv.conf).
func TestContainersAuditAPI(t *testing.T) {
	d, c, ref := containerFixture(t)
	cl := apiClient(t, d)
	ctx := context.Background()

	id := create(t, cl, "later", &container.Config{Image: ref, Tty: true,
		Cmd: []string{"sh", "-c", "while [ ! -e /tmp/go ]; do usleep 20000; done; exit 5"}}, nil)
	if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	next := cl.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})

	// Stats: a stream gives samples one after the other, each with the
	// previous one's CPU figures; stream=false gives one.
	st, err := cl.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(st.Body)
	var s1, s2 container.StatsResponse
	if err := dec.Decode(&s1); err != nil {
		t.Fatalf("first streamed sample: %v", err)
	}
	if err := dec.Decode(&s2); err != nil {
		t.Fatalf("second streamed sample: %v", err)
	}
	st.Body.Close()
	if !s2.Read.After(s1.Read) || s2.PreCPUStats.CPUUsage.TotalUsage != s1.CPUStats.CPUUsage.TotalUsage || s2.PidsStats.Current < 1 || s2.MemoryStats.Limit == 0 {
		t.Errorf("streamed stats: first read %v cpu %d, second read %v precpu %d pids %d memory limit %d", s1.Read, s1.CPUStats.CPUUsage.TotalUsage,
			s2.Read, s2.PreCPUStats.CPUUsage.TotalUsage, s2.PidsStats.Current, s2.MemoryStats.Limit)
	}
	one, err := cl.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(one.Body)
	one.Body.Close()
	if err != nil || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 || !strings.Contains(string(body), `"pids_stats"`) {
		t.Errorf("stats with stream=false: %v %q", err, body)
	}

	// Resize of the container's terminal.
	if _, err := cl.ContainerResize(ctx, id, client.ContainerResizeOptions{Height: 33, Width: 77}); err != nil {
		t.Fatal(err)
	}
	if out := c.Must(t, "exec", id, "stty", "-F", "/dev/console", "size"); out != "33 77\n" {
		t.Errorf("terminal size after resize: %q", out)
	}

	// The network files (no network yet: /etc/hosts as Docker's for
	// --network none).
	if out := c.Must(t, "exec", id, "sh", "-c", `grep -c "^127.0.0.1\s*localhost$" /etc/hosts; test "$(cat /etc/hostname)" = "$(hostname)" && echo named; test -f /etc/resolv.conf && echo resolv`); out != "1\nnamed\nresolv\n" {
		t.Errorf("/etc/hosts and /etc/resolv.conf: %q", out)
	}

	c.Must(t, "exec", id, "touch", "/tmp/go")
	select {
	case res := <-next.Result:
		if res.StatusCode != 5 {
			t.Errorf("wait next-exit: %d, want 5", res.StatusCode)
		}
	case err := <-next.Error:
		t.Fatalf("wait next-exit: %v", err)
	}

	// events refuses a filter it does not know, as Docker's.
	if code := apiStatus(t, d, "GET", "/events?until=1&filters="+url.QueryEscape(`{"bogus":["x"]}`)); code != 400 {
		t.Errorf("events with an unknown filter: %d, want 400", code)
	}

	// removed: the answer comes once an auto-removed container is gone.
	gone := create(t, cl, "gone", &container.Config{Image: ref, Cmd: []string{"sh", "-c", "exit 6"}}, &container.HostConfig{AutoRemove: true})
	removed := cl.ContainerWait(ctx, gone, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	if _, err := cl.ContainerStart(ctx, gone, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-removed.Result:
		if res.StatusCode != 6 {
			t.Errorf("wait removed: %d, want 6", res.StatusCode)
		}
	case err := <-removed.Error:
		t.Fatalf("wait removed: %v", err)
	}
	if code := apiStatus(t, d, "GET", "/containers/"+gone+"/json"); code != 404 {
		t.Errorf("inspect after wait removed: %d, want 404", code)
	}
}

// TestContainersAuditWorkdir: -w names a directory the image lacks; it is
// made, as Docker makes it, whatever the runtime.
func TestContainersAuditWorkdir(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if e.c.Name != "berth" {
			t.Skip("the directory is the daemon's and the runtime's to make: the berth client covers it")
		}
		if out, _, err := e.run("--rm", "-w", "/new/dir", e.image, "pwd"); err != nil || out != "/new/dir\n" {
			t.Errorf("run -w /new/dir: %q %v", out, err)
		}
	})
}

// TestContainersAuditPaused: a paused container is killed by kill (the
// engine thaws it after the signal, as Docker does) and refuses start.
func TestContainersAuditPaused(t *testing.T) {
	d, c, ref := containerFixture(t)
	cl := apiClient(t, d)
	c.Must(t, "run", "-d", "--name", "frozen", ref, "sleep", "1000")
	c.Must(t, "pause", "frozen")
	if _, errOut, err := c.Run("start", "frozen"); err == nil || !strings.Contains(errOut, "cannot start a paused container, try unpause instead") {
		t.Errorf("start of a paused container: %v %q", err, errOut)
	}
	// A kill that does not thaw the container never sees it exit: the
	// deadline tells that hang from an answer.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.ContainerKill(ctx, "frozen", client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill of a paused container: %v", err)
	}
	if in := inspectAPI(t, cl, "frozen"); in.State.Status != "exited" || in.State.ExitCode != 137 || in.State.Paused {
		t.Errorf("after kill of a paused container: %+v", in.State)
	}
}
