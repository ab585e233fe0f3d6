package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// psLine is one line of busybox `ps -o pid,ppid,stat,comm`.
type psLine struct{ pid, ppid, stat, comm string }

// containerPS runs ps through exec in a running container.
func containerPS(t *testing.T, e *ctrEnv, name string) []psLine {
	t.Helper()
	return parsePS(t, e.c.Must(t, "exec", name, "ps", "-o", "pid,ppid,stat,comm"))
}

func parsePS(t *testing.T, out string) []psLine {
	t.Helper()
	var ps []psLine
	for _, l := range Lines(out) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] == "PID" {
			continue
		}
		if len(f) != 4 {
			t.Fatalf("unexpected ps line %q in:\n%s", l, out)
		}
		ps = append(ps, psLine{f[0], f[1], f[2], f[3]})
	}
	return ps
}

// pid1 is the command of PID 1 in ps's output.
func pid1(ps []psLine) string {
	for _, p := range ps {
		if p.pid == "1" {
			return p.comm
		}
	}
	return ""
}

func zombies(ps []psLine) []psLine {
	var z []psLine
	for _, p := range ps {
		if strings.HasPrefix(p.stat, "Z") {
			z = append(z, p)
		}
	}
	return z
}

// inspectInit is HostConfig.Init of a container (nil: not set).
func inspectInit(t *testing.T, e *ctrEnv, name string) *bool {
	t.Helper()
	out := e.c.Must(t, "inspect", "--type", "container", name)
	var list []struct{ HostConfig struct{ Init *bool } }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("inspect %s: %v\n%s", name, err, out)
	}
	return list[0].HostConfig.Init
}

// TestContainersInit: run --init runs berth-init as PID 1 (at
// /sbin/docker-init, as Docker's), which reaps the container's orphans,
// forwards stop's signal to the command and exits with its status; a
// daemon started with --init gives every container the init unless it says
// --init=false.
func TestContainersInit(t *testing.T) {
	RequireBinary(t, "berth-init")
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		// PID 1 is the init, the command its child.
		ps := parsePS(t, e.mustRun(t, "--rm", "--init", e.image, "ps", "-o", "pid,ppid,stat,comm"))
		if pid1(ps) != "docker-init" {
			t.Errorf("run --init: PID 1 is %q, want docker-init; ps: %v", pid1(ps), ps)
		}
		found := false
		for _, p := range ps {
			found = found || (p.comm == "ps" && p.ppid == "1")
		}
		if !found {
			t.Errorf("run --init: the command is not a child of PID 1; ps: %v", ps)
		}

		// The exit status passes through: the code, 128+N for signal N.
		_, _, err := e.run("--rm", "--init", e.image, "sh", "-c", "exit 5")
		if code := ctrExitCode(t, err); code != 5 {
			t.Errorf("run --init sh -c 'exit 5': exit %d", code)
		}
		_, _, err = e.run("--rm", "--init", e.image, "sh", "-c", "kill -KILL $$")
		if code := ctrExitCode(t, err); code != 137 {
			t.Errorf("run --init of a command killed by SIGKILL: exit %d, want 137", code)
		}
		_, errOut, err := e.run("--rm", "--init", e.image, "nope")
		if code := ctrExitCode(t, err); code != 127 || !strings.Contains(errOut, `berth-init: exec "nope": no such file or directory`) {
			t.Errorf("run --init of a missing command: exit %d, stderr %q; want 127 and the init naming it", code, errOut)
		}

		// An orphan that exits is reaped by the init. Without it, PID 1
		// (sleep) never waits and the orphan stays a zombie. The orphan, a
		// shell whose parent exits at once, lives until /go exists.
		orphan := `(sh -c 'until [ -e /go ]; do sleep 0.1; done' &); exec sleep 1000`
		e.mustRun(t, "-d", "--init", "--name", "reaper", e.image, "sh", "-c", orphan)
		e.mustRun(t, "-d", "--name", "noinit", e.image, "sh", "-c", orphan)
		for _, name := range []string{"reaper", "noinit"} {
			waitFor(t, "the orphan in "+name+" to be adopted by PID 1", func() bool {
				for _, p := range containerPS(t, e, name) {
					if p.comm == "sh" && p.ppid == "1" {
						return true
					}
				}
				return false
			})
			e.c.Must(t, "exec", name, "touch", "/go")
		}
		waitFor(t, "the orphan in the container without init to become a zombie", func() bool {
			return len(zombies(containerPS(t, e, "noinit"))) == 1
		})
		var last []psLine
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("last ps in the container with --init: %v", last)
			}
		})
		waitFor(t, "the orphan in the container with --init to be reaped", func() bool {
			last = containerPS(t, e, "reaper")
			if pid1(last) != "docker-init" {
				t.Fatalf("PID 1 of the container run with --init is %q; ps: %v", pid1(last), last)
			}
			for _, p := range last {
				if p.comm == "sh" || strings.HasPrefix(p.stat, "Z") {
					return false
				}
			}
			return true
		})
		if init := inspectInit(t, e, "reaper"); init == nil || !*init {
			t.Errorf("inspect: HostConfig.Init of a container run with --init is %v, want true", init)
		}
		e.c.Must(t, "rm", "-f", "reaper", "noinit")

		// stop's signal reaches the command: its trap's exit code, not
		// SIGKILL's after the timeout; a command without a handler (which
		// as PID 1 would ignore SIGTERM) dies of it. The fixture's stop
		// signal is SIGQUIT (which busybox sh ignores unless trapped).
		e.mustRun(t, "-d", "--init", "--name", "trapper", e.image, "sh", "-c", `trap "exit 7" QUIT; while :; do sleep 0.1; done`)
		e.mustRun(t, "-d", "--init", "--stop-signal", "SIGTERM", "--name", "plain", e.image, "sh", "-c", `while :; do sleep 0.1; done`)
		e.c.Must(t, "stop", "trapper", "plain")
		if in := e.inspect(t, "trapper"); in.State.ExitCode != 7 {
			t.Errorf("stop (SIGQUIT) of a command trapping it under --init: exit code %d, want 7", in.State.ExitCode)
		}
		if in := e.inspect(t, "plain"); in.State.ExitCode != 128+15 {
			t.Errorf("stop (SIGTERM) of a command under --init: exit code %d, want 143 (SIGTERM forwarded)", in.State.ExitCode)
		}
		e.c.Must(t, "rm", "trapper", "plain")

		// -it: the command's process group is the terminal's foreground,
		// so Ctrl-C reaches it.
		p := e.startOnPTY(t, e.runArgs("-it", "--rm", "--init", e.image, "sh", "-c",
			`echo "stat: $(cat /proc/$$/stat) :end"; while :; do sleep 1; done`)...)
		p.waitOutput(t, " :end")
		out := p.output()
		stat := out[strings.Index(out, "stat: ")+len("stat: ") : strings.Index(out, " :end")]
		// pid (comm) state ppid pgrp session tty_nr tpgid ...
		f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
		pid := strings.Fields(stat)[0]
		if len(f) < 6 || f[1] != "1" || f[2] != pid || f[5] != pid {
			t.Errorf("run -it --init: the command's stat is %q; want parent 1, its own process group, in the terminal's foreground", stat)
		}
		p.send(t, "\x03")
		if code := p.wait(t); code != 130 {
			t.Errorf("run -it --init, Ctrl-C: exit %d, want 130; terminal:\n%s", code, p.output())
		}

		// A daemon started with --init runs every container under the
		// init, unless it says --init=false.
		removeAllContainers(t, e)
		e.d.Args = append(e.d.Args, "--init")
		if err := e.d.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := e.d.Start(); err != nil {
			t.Fatal(err)
		}
		ps = parsePS(t, e.mustRun(t, "--rm", e.image, "ps", "-o", "pid,ppid,stat,comm"))
		if pid1(ps) != "docker-init" {
			t.Errorf("berthd --init: PID 1 of a container is %q, want docker-init", pid1(ps))
		}
		ps = parsePS(t, e.mustRun(t, "--rm", "--init=false", e.image, "ps", "-o", "pid,ppid,stat,comm"))
		if pid1(ps) != "ps" {
			t.Errorf("berthd --init, run --init=false: PID 1 is %q, want ps", pid1(ps))
		}
	})
}

// TestContainersInitMissing: a berthd with no init binary (none next to it,
// none on PATH) refuses --init saying how to provide one, and refuses to
// start with --init.
func TestContainersInitMissing(t *testing.T) {
	testutil.RequiresRoot(t)
	// berthd with its shim and runtime but no berth-init beside it.
	dir := t.TempDir()
	for _, name := range []string{"berthd", "berth-shim", "berth-runtime"} {
		data, err := os.ReadFile(RequireBinary(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
	d := StartDaemon(t, "--exec-root", shortExecRoot(t))
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d.Bin = filepath.Join(dir, "berthd")
	d.Env = append(d.Env, "PATH="+dir+":/usr/sbin:/usr/bin:/sbin:/bin")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	c := BerthCLI(t, d)
	c.Must(t, "pull", "-q", ref)
	t.Cleanup(func() { removeAllContainers(t, &ctrEnv{d: d, c: c}) })
	if out := c.Must(t, "run", "--rm", ref, "echo", "no init needed"); out != "no init needed\n" {
		t.Errorf("run without --init printed %q", out)
	}
	_, errOut, err := c.Run("run", "--rm", "--init", ref, "true")
	if err == nil || !strings.Contains(errOut, "no init binary") || !strings.Contains(errOut, "--init-path") {
		t.Errorf("run --init with no init binary: %v, stderr %q; want an error saying how to provide one", err, errOut)
	}
	removeAllContainers(t, &ctrEnv{d: d, c: c})

	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d.Args = append(d.Args, "--init")
	err = d.Start()
	if err == nil || !strings.Contains(err.Error(), "needs an init binary") {
		t.Errorf("berthd --init with no init binary started or failed otherwise: %v", err)
	}
}
