package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestRealRunExitCode: create, start and wait give the process's exit code,
// the state records it, and the container's output is in its log.
func TestRealRunExitCode(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.create("exit7", nil, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
	if st := r.inspect(id).State; st.Status != StateCreated || st.Running || st.Pid != 0 {
		t.Fatalf("new container: state %+v, want created, not running, no pid", st)
	}
	r.start(id)
	if code := r.wait(id); code != 7 {
		t.Fatalf("wait: exit code %d, want 7", code)
	}
	st := r.inspect(id).State
	if st.Status != StateExited || st.Running || st.ExitCode != 7 || st.Pid != 0 {
		t.Errorf("after exit: state %+v, want exited with code 7 and no pid", st)
	}
	if st.StartedAt == "0001-01-01T00:00:00Z" || st.FinishedAt == "0001-01-01T00:00:00Z" {
		t.Errorf("after exit: StartedAt %s FinishedAt %s, want both set", st.StartedAt, st.FinishedAt)
	}
	out, errOut := r.logsOf(id)
	if out != "to-stdout\n" || errOut != "to-stderr\n" {
		t.Errorf("logs: stdout %q stderr %q, want %q and %q", out, errOut, "to-stdout\n", "to-stderr\n")
	}
	// The rootfs is unmounted once the container exited.
	if ms, _ := mountsUnder(filepath.Join(r.dataRoot, "containers", id)); len(ms) > 0 {
		t.Errorf("exited container still has mounts: %v", ms)
	}
	// Started again, it runs again and waits again.
	r.start(id)
	if code := r.wait(id); code != 7 {
		t.Errorf("second run: exit code %d, want 7", code)
	}
	if out, _ := r.logsOf(id); out != "to-stdout\nto-stdout\n" {
		t.Errorf("logs after two runs: stdout %q, want the line twice", out)
	}
	// Exit code 0 too (a zero is not a missing value).
	id0 := r.run(nil, "true")
	if code := r.wait(id0); code != 0 {
		t.Errorf("true: exit code %d, want 0", code)
	}
}

// TestRealStopTimeoutKills: a container that ignores SIGTERM is killed with
// SIGKILL once the stop timeout passed.
func TestRealStopTimeoutKills(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	timeout := 1
	begin := time.Now()
	if err := r.e.ContainerStop(context.Background(), id, "", &timeout); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(begin)
	st := r.inspect(id).State
	if st.Status != StateExited || st.ExitCode != 137 {
		t.Errorf("after stop: state %+v, want exited with 137 (SIGKILL)", st)
	}
	if took < time.Duration(timeout)*time.Second {
		t.Errorf("stop returned after %v, before the %ds timeout: the container did not ignore TERM", took, timeout)
	}
	// Stopping it again is "not modified".
	if err := r.e.ContainerStop(context.Background(), id, "", &timeout); !errors.Is(err, ErrNotModified) {
		t.Errorf("second stop: %v, want ErrNotModified", err)
	}
}

// TestRealStopTrapExits: a container that traps SIGTERM exits with its own
// code, well before a long timeout.
func TestRealStopTrapExits(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `trap "exit 42" TERM; echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	timeout := 60
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.e.ContainerStop(ctx, id, "", &timeout); err != nil {
		t.Fatalf("stop: %v (a stop that waits for the 60s timeout means TERM never reached the trap)", err)
	}
	if st := r.inspect(id).State; st.Status != StateExited || st.ExitCode != 42 {
		t.Errorf("after stop: state %+v, want exited with 42 from the TERM trap", st)
	}
}

// TestRealStopSignal: the container's stop signal is what stop sends.
func TestRealStopSignal(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	cfg := &container.Config{Image: r.image, StopSignal: "SIGUSR1",
		Cmd: []string{"sh", "-c", `trap "exit 10" USR1; trap "exit 15" TERM; echo ready; while :; do sleep 0.1; done`}}
	id, err := r.tryCreateConfig("", cfg, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	r.waitLog(id, "ready")
	timeout := 60
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.e.ContainerStop(ctx, id, "", &timeout); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st := r.inspect(id).State; st.ExitCode != 10 {
		t.Errorf("after stop with StopSignal SIGUSR1: exit code %d, want 10 (15 means SIGTERM was sent)", st.ExitCode)
	}
}

// TestRealExec: an exec's output streams and its exit code.
func TestRealExec(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	out, errOut, code := r.execIn(id, "sh", "-c", `echo out-$((6*7)); echo err >&2; cat /srv/hello.txt; exit 3`)
	if out != "out-42\n"+helloText || errOut != "err\n" || code != 3 {
		t.Errorf("exec: stdout %q stderr %q code %d, want %q %q 3", out, errOut, code, "out-42\n"+helloText, "err\n")
	}
	// The exec runs in the container: same hostname (the short ID), its
	// own pid namespace where the container's process is 1.
	out, _, code = r.execIn(id, "sh", "-c", `hostname; cat /proc/1/cmdline | tr '\0' ' '`)
	want := id[:12] + "\nsh -c echo ready; while :; do sleep 0.1; done "
	if code != 0 || out != want {
		t.Errorf("exec hostname and pid 1: %q (code %d), want %q", out, code, want)
	}
	// A command that does not exist fails, saying so.
	_, errOut, code = r.execInAllowFail(id, "/no/such/binary")
	if code == 0 {
		t.Errorf("exec of a missing binary: exit code 0, stderr %q", errOut)
	}
	// Exec output is not in the container's log.
	if logOut, _ := r.logsOf(id); logOut != "ready\n" {
		t.Errorf("container log after execs: %q, want only %q", logOut, "ready\n")
	}
}

// execInAllowFail runs cmd like execIn but accepts a start error (an exec
// whose binary is missing may fail to start) as exit code -1.
func (r *realEnv) execInAllowFail(id string, cmd ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xid, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		r.t.Fatalf("exec create %q in %s: %v", cmd, id, err)
	}
	var o, e bytes.Buffer
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{Stdout: &o, Stderr: &e}); err != nil {
		return o.String(), err.Error(), -1
	}
	xi, err := r.e.ExecInspect(ctx, xid)
	if err != nil || xi.ExitCode == nil {
		r.t.Fatalf("exec inspect %s: %v %+v", xid, err, xi)
	}
	return o.String(), e.String(), *xi.ExitCode
}

// TestRealPauseUnpause: pause freezes the container's cgroup, unpause
// thaws it; state, exec refusal and stop of a paused container follow.
func TestRealPauseUnpause(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	ctx := context.Background()
	if err := r.e.ContainerPause(ctx, id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	st := r.inspect(id).State
	if st.Status != StatePaused || !st.Paused || !st.Running {
		t.Errorf("after pause: state %+v, want paused (and running)", st)
	}
	if fs := freezerState(id); fs != "" && fs != "FROZEN" {
		t.Errorf("after pause: freezer.state %q, want FROZEN", fs)
	}
	if err := r.e.ContainerPause(ctx, id); !errdefs.IsConflict(err) {
		t.Errorf("pause of a paused container: %v, want a conflict", err)
	}
	if _, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"true"}}); !errdefs.IsConflict(err) {
		t.Errorf("exec in a paused container: %v, want a conflict", err)
	}
	if err := r.e.ContainerUnpause(ctx, id); err != nil {
		t.Fatalf("unpause: %v", err)
	}
	st = r.inspect(id).State
	if st.Status != StateRunning || st.Paused || !st.Running {
		t.Errorf("after unpause: state %+v, want running", st)
	}
	if fs := freezerState(id); fs != "" && fs != "THAWED" {
		t.Errorf("after unpause: freezer.state %q, want THAWED", fs)
	}
	if err := r.e.ContainerUnpause(ctx, id); !errdefs.IsConflict(err) {
		t.Errorf("unpause of a running container: %v, want a conflict", err)
	}
	if out, _, code := r.execIn(id, "echo", "alive"); out != "alive\n" || code != 0 {
		t.Errorf("exec after unpause: %q code %d", out, code)
	}
	// A paused container stops: it is thawed to take the signal.
	if err := r.e.ContainerPause(ctx, id); err != nil {
		t.Fatalf("pause again: %v", err)
	}
	timeout := 1
	if err := r.e.ContainerStop(ctx, id, "", &timeout); err != nil {
		t.Fatalf("stop of a paused container: %v", err)
	}
	if st := r.inspect(id).State; st.Status != StateExited {
		t.Errorf("after stop of a paused container: state %+v, want exited", st)
	}
}

// freezerState reads the container's cgroup v1 freezer state ("" when the
// host has no v1 freezer hierarchy).
func freezerState(id string) string {
	if _, err := os.Stat("/sys/fs/cgroup/freezer/tasks"); err != nil {
		return ""
	}
	data, err := os.ReadFile("/sys/fs/cgroup/freezer/berth/" + id + "/freezer.state")
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return strings.TrimSpace(string(data))
}

// TestRealRestartOnFailure: on-failure:2 restarts a failing container
// exactly twice, then leaves it exited with its code.
func TestRealRestartOnFailure(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := r.create("", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 2}},
		"sh", "-c", "echo run; exit 3")
	_, evs := r.e.Events(ctx, time.Time{}, time.Time{}, EventFilter{"container": {id}})
	r.start(id)
	var starts, dies int
	for dies < 3 {
		select {
		case m := <-evs:
			switch m.Action {
			case events.ActionStart:
				starts++
			case events.ActionDie:
				dies++
				if c := m.Actor.Attributes["exitCode"]; c != "3" {
					t.Errorf("die event %d: exitCode %q, want 3", dies, c)
				}
			}
		case <-ctx.Done():
			t.Fatalf("waiting for 3 die events: saw %d starts and %d dies; state %+v", starts, dies, r.inspect(id).State)
		}
	}
	// After the third exit the policy is spent: the state settles at
	// exited (the engine decides that in the same step that records the
	// exit, so no further start can come).
	deadline := time.Now().Add(10 * time.Second)
	for r.inspect(id).State.Restarting && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	in := r.inspect(id)
	if in.State.Status != StateExited || in.State.ExitCode != 3 || in.RestartCount != 2 {
		t.Errorf("after the policy is spent: status %s exit %d RestartCount %d, want exited 3 with 2 restarts", in.State.Status, in.State.ExitCode, in.RestartCount)
	}
	if starts != 3 {
		t.Errorf("start events: %d, want 3 (the first start and 2 restarts)", starts)
	}
	if out, _ := r.logsOf(id); out != "run\nrun\nrun\n" {
		t.Errorf("log: %q, want three runs", out)
	}
	// A manual start resets the count.
	r.start(id)
	if code := r.wait(id); code != 3 {
		t.Errorf("manual start: exit %d", code)
	}
}

// TestRealRemoveForce: rm -f of a running container kills it and removes
// its rootfs mount, snapshot, directories, shim and cgroups.
func TestRealRemoveForce(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	rootfs := filepath.Join(r.dataRoot, "containers", id, "bundle", "rootfs")
	if ms, _ := mountsUnder(rootfs); !slices.Contains(ms, rootfs) {
		t.Fatalf("running container: no mount on %s (mounts %v)", rootfs, ms)
	}
	if len(cgroupsOf(id)) == 0 {
		t.Errorf("running container: no cgroup at /sys/fs/cgroup/*/berth/%s", id)
	}
	if _, err := r.e.snaps.Mounts(context.Background(), "container-"+id); err != nil {
		t.Errorf("running container: its snapshot container-%s: %v", id, err)
	}
	for _, p := range []string{filepath.Join(r.dataRoot, "containers", id), r.shimStateDir(id)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("running container: %v", err)
		}
	}
	shims := processesMentioning(r.execRoot)
	if len(shims) == 0 {
		t.Errorf("running container: no shim process names exec root %s", r.execRoot)
	}
	pid := r.inspect(id).State.Pid
	if err := r.e.ContainerRemove(context.Background(), id, false, false); !errdefs.IsConflict(err) {
		t.Errorf("rm without force of a running container: %v, want a conflict", err)
	}
	if err := r.e.ContainerRemove(context.Background(), id, true, false); err != nil {
		t.Fatalf("rm -f: %v", err)
	}
	r.assertNoTrace(id)
	if err := unixKill0(pid); err == nil {
		t.Errorf("container process %d still exists after rm -f", pid)
	}
	for _, p := range shims {
		if err := unixKill0(p); err == nil {
			t.Errorf("shim %d still exists after rm -f", p)
		}
	}
	if _, err := r.e.ContainerInspect(context.Background(), id, false); !errdefs.IsNotFound(err) {
		t.Errorf("inspect after rm: %v, want not found", err)
	}
}

// TestRealEvents: create, start, die and destroy are emitted in order.
func TestRealEvents(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	since := time.Now()
	id := r.create("evented", nil, "sh", "-c", "exit 5")
	r.start(id)
	r.wait(id)
	if err := r.e.ContainerRemove(context.Background(), id, false, false); err != nil {
		t.Fatalf("rm: %v", err)
	}
	past := r.eventsUntil(id, since, hasActions(events.ActionDie, events.ActionDestroy))
	var got []string
	for _, m := range past {
		got = append(got, string(m.Action))
		if m.Type != events.ContainerEventType || m.Actor.ID != id || m.Actor.Attributes["name"] != "evented" || m.Actor.Attributes["image"] != r.image {
			t.Errorf("event %s: type %s actor %+v, want container %s named evented from %s", m.Action, m.Type, m.Actor, id, r.image)
		}
		if m.Action == events.ActionDie && m.Actor.Attributes["exitCode"] != "5" {
			t.Errorf("die event: exitCode %q, want 5", m.Actor.Attributes["exitCode"])
		}
	}
	want := []string{"create", "start", "die", "destroy"}
	if !slices.Equal(got, want) {
		t.Errorf("events of container %s: %v, want %v", id, got, want)
	}
	for i := 1; i < len(past); i++ {
		if past[i].TimeNano < past[i-1].TimeNano {
			t.Errorf("event %s at %d before the earlier %s at %d", past[i].Action, past[i].TimeNano, past[i-1].Action, past[i-1].TimeNano)
		}
	}
}

// TestRealEventsStop: a stop emits what Docker's does: kill with the stop
// signal, die, then stop (clients such as compose wait for "stop").
func TestRealEventsStop(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	since := time.Now()
	timeout := 20
	if err := r.e.ContainerStop(context.Background(), id, "", &timeout); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// The die event may follow the wake-up of the stop's wait.
	past := r.eventsUntil(id, since, hasActions(events.ActionDie))
	var got []string
	for _, m := range past {
		a := string(m.Action)
		if m.Action == events.ActionKill {
			a += "(" + m.Actor.Attributes["signal"] + ")"
		}
		got = append(got, a)
	}
	want := []string{"kill(15)", "die", "stop"}
	if slices.Equal(got, want) {
		return
	}
	if slices.Equal(got, []string{"die"}) {
		t.Fatalf("ContainerStop (internal/engine/container_lifecycle.go, containers.stop) emits neither the \"kill\" event for the stop signal nor the \"stop\" event after the exit: events %v, Docker's are %v (docker events --filter event=stop never fires)", got, want)
	}
	t.Errorf("events of a stop: %v, want %v", got, want)
}

// hasActions is an eventsUntil condition: every one of actions was seen.
func hasActions(actions ...events.Action) func([]events.Message) bool {
	return func(ms []events.Message) bool {
		for _, a := range actions {
			if !slices.ContainsFunc(ms, func(m events.Message) bool { return m.Action == a }) {
				return false
			}
		}
		return true
	}
}
