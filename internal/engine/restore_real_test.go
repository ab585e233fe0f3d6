package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-project/berth/internal/shim"
)

// TestRealLiveRestore: containers outlive the engine. One berthd life (a
// child process) starts three containers and exits; meanwhile one of them
// exits and one fails under an on-failure policy. A new engine on the same
// roots finds the first running (same process, signals reach it, its log
// goes on), the second exited with its code, and restarts the third.
func TestRealLiveRestore(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	trig := t.TempDir()
	bind := []string{trig + ":/trig"}
	loop := `while :; do sleep 0.1; done`
	r.closeEngine()
	ids := r.runDaemonProcess(
		CreateOptions{Name: "keeps-running", Config: &container.Config{Image: r.image,
			Cmd: []string{"sh", "-c", `trap "echo got-term; exit 9" TERM; echo ready; ` + loop}}},
		CreateOptions{Name: "exits-meanwhile", HostConfig: &container.HostConfig{Binds: bind}, Config: &container.Config{Image: r.image,
			Cmd: []string{"sh", "-c", `echo ready; while [ ! -e /trig/go ]; do sleep 0.05; done; echo bye; exit 7`}}},
		CreateOptions{Name: "fails-meanwhile", Config: &container.Config{Image: r.image,
			Cmd: []string{"sh", "-c", `if [ -e /trig/c-ran ]; then echo second-run; ` + loop + `; fi; touch /trig/c-ran; while [ ! -e /trig/go ]; do sleep 0.05; done; exit 3`}},
			HostConfig: &container.HostConfig{Binds: bind, RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure}}},
	)
	if len(ids) != 3 {
		t.Fatalf("daemon process started %d containers, want 3", len(ids))
	}
	keep, exits, fails := ids[0], ids[1], ids[2]
	pids := map[string]int{}
	for _, id := range ids {
		var rec ctrRecord
		data, err := os.ReadFile(filepath.Join(r.dataRoot, "containers", id, "config.v2.json"))
		if err == nil {
			err = json.Unmarshal(data, &rec)
		}
		if err != nil {
			t.Fatalf("record of %s after the daemon process ended: %v", id, err)
		}
		if rec.State.Status != StateRunning || rec.State.Pid <= 0 {
			t.Fatalf("record of %s after the daemon process ended: state %+v, want running with a pid", id, rec.State)
		}
		if err := unixKill0(rec.State.Pid); err != nil {
			t.Fatalf("process %d of container %s after the daemon process ended: %v (containers must outlive berthd)", rec.State.Pid, id, err)
		}
		pids[id] = rec.State.Pid
	}

	// Two containers exit while no engine runs: wait for that through
	// their shims.
	if err := os.WriteFile(filepath.Join(trig, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id, want := range map[string]int{exits: 7, fails: 3} {
		dir := r.shimStateDir(id)
		cl, err := shim.Connect(ctx, dir)
		if err != nil {
			t.Fatalf("connect to the shim of %s in %s: %v", id, dir, err)
		}
		es, err := cl.Wait(ctx)
		if err != nil || es.Code != want {
			t.Fatalf("shim of %s: wait %+v %v, want exit %d", id, es, err, want)
		}
	}

	r.open()
	in := r.inspect(keep)
	if in.State.Status != StateRunning || !in.State.Running || in.State.Pid != pids[keep] {
		t.Errorf("restored running container: state %+v, want running with pid %d", in.State, pids[keep])
	}
	in = r.inspect(exits)
	if in.State.Status != StateExited || in.State.Running || in.State.ExitCode != 7 || in.State.Pid != 0 {
		t.Errorf("container that exited while the engine was closed: state %+v, want exited with 7", in.State)
	}
	if out, _ := r.logsOf(exits); out != "ready\nbye\n" {
		t.Errorf("log of the container that exited meanwhile: %q, want %q", out, "ready\nbye\n")
	}
	if ms, _ := mountsUnder(filepath.Join(r.dataRoot, "containers", exits)); len(ms) > 0 {
		t.Errorf("container that exited meanwhile still has mounts after restore: %v", ms)
	}
	// The on-failure container is restarted by the new engine.
	r.waitLog(fails, "second-run")
	in = r.inspect(fails)
	if in.State.Status != StateRunning || in.RestartCount != 1 {
		t.Errorf("on-failure container that failed meanwhile: status %s RestartCount %d, want running after 1 restart", in.State.Status, in.RestartCount)
	}

	// The restored container is fully managed: exec, stop through its
	// stop signal, exit code from the new monitor.
	if out, _, code := r.execIn(keep, "echo", "restored"); out != "restored\n" || code != 0 {
		t.Errorf("exec in the restored container: %q code %d", out, code)
	}
	timeout := 20
	if err := r.e.ContainerStop(ctx, keep, "", &timeout); err != nil {
		t.Fatalf("stop the restored container: %v", err)
	}
	if code := r.wait(keep); code != 9 {
		t.Errorf("restored container after stop: exit %d, want 9 from its TERM trap", code)
	}
	if out, _ := r.logsOf(keep); out != "ready\ngot-term\n" {
		t.Errorf("log of the restored container: %q, want %q (output before and after the engine restart)", out, "ready\ngot-term\n")
	}
	if ms, _ := mountsUnder(filepath.Join(r.dataRoot, "containers", keep)); len(ms) > 0 {
		t.Errorf("restored container still has mounts after it stopped: %v", ms)
	}
}

// shimStateDir is the shim state directory the engine uses for id.
func (r *realEnv) shimStateDir(id string) string {
	dir := filepath.Join(r.execRoot, "containers", id)
	if len(dir) > maxSocketPath {
		dir = filepath.Join(r.execRoot, "containers", id[:16])
	}
	return dir
}

// killShim kills the shim of container id with SIGKILL (a shim crash).
func (r *realEnv) killShim(id string) {
	r.t.Helper()
	pids := processesMentioning(r.shimStateDir(id))
	if len(pids) != 1 {
		r.t.Fatalf("shim processes of %s: %v, want one", id, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		r.t.Fatalf("kill shim %d: %v", pids[0], err)
	}
	for range 500 {
		if unixKill0(pids[0]) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("shim %d of %s did not die", pids[0], id)
}

// leftAfterShimLoss lists what a container whose shim died still holds
// once the engine recorded its end: its process, cgroups, rootfs mount.
// It waits a little for the process to go (its end is asynchronous).
func (r *realEnv) leftAfterShimLoss(id string, pid int) []string {
	var left []string
	gone := false
	for range 200 {
		if unixKill0(pid) != nil {
			gone = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !gone {
		left = append(left, fmt.Sprintf("the container's process %d still runs", pid))
	}
	if cg := cgroupsOf(id); len(cg) > 0 {
		left = append(left, fmt.Sprintf("%d cgroups (%s, ...)", len(cg), cg[0]))
	}
	if ms, _ := mountsUnder(filepath.Join(r.dataRoot, "containers", id)); len(ms) > 0 {
		left = append(left, fmt.Sprintf("the rootfs mount %v", ms))
	}
	return left
}

// reapOrphan kills what is left of a container whose shim died (its
// processes, through its cgroups) and removes its cgroups, so a test that
// documents the leak leaves the host clean.
func reapOrphan(id string) {
	for _, cg := range cgroupsOf(id) {
		if data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	for _, cg := range cgroupsOf(id) {
		for range 100 {
			if err := os.Remove(cg); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRealShimKilled: when a container's shim dies (kill -9), the engine
// records the container's end and nothing of it keeps running: its
// process, cgroups and rootfs mount go (containerd runs `runc delete
// --force` for a dead shim).
func TestRealShimKilled(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	pid := r.inspect(id).State.Pid
	r.killShim(id)
	code := r.wait(id)
	st := r.inspect(id).State
	if st.Running || st.Status != StateExited || code == 0 {
		t.Errorf("after its shim died: wait %d, state %+v, want exited with a non-zero code", code, st)
	}
	left := r.leftAfterShimLoss(id, pid)
	if err := r.e.ContainerRemove(context.Background(), id, true, true); err != nil {
		t.Errorf("rm -f after the shim died: %v", err)
	}
	if len(left) > 0 {
		reapOrphan(id)
		t.Fatalf("after its shim was killed, the container's end is recorded (exit %d, Error %q) but the engine leaves %s; internal/engine/container_lifecycle.go monitor() only unmounts (lazily, under the still running process) and never runs `<runtime> delete --force`, and rm -f cannot kill it either (no shim)", st.ExitCode, st.Error, strings.Join(left, ", "))
	}
	r.assertNoTrace(id)
}

// TestRealShimKilledWhileEngineDown: a container whose shim died while no
// engine ran is found ended at restore, with an error saying so, and
// nothing of it keeps running or mounted.
func TestRealShimKilledWhileEngineDown(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	r.closeEngine()
	ids := r.runDaemonProcess(CreateOptions{Config: &container.Config{Image: r.image, Cmd: []string{"sh", "-c", `echo ready; while :; do sleep 0.1; done`}}})
	id := ids[0]
	var rec ctrRecord
	data, err := os.ReadFile(filepath.Join(r.dataRoot, "containers", id, "config.v2.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	r.killShim(id)
	r.open()
	st := r.inspect(id).State
	if st.Running || st.Status != StateExited || st.ExitCode == 0 || !strings.Contains(st.Error, "shim") {
		t.Errorf("restored container whose shim died: state %+v, want exited, a non-zero code and an error about the shim", st)
	}
	left := r.leftAfterShimLoss(id, rec.State.Pid)
	if err := r.e.ContainerRemove(context.Background(), id, true, true); err != nil {
		t.Errorf("rm -f: %v", err)
	}
	if len(left) > 0 {
		reapOrphan(id)
		t.Fatalf("at restore, a container whose shim died while the engine was down is recorded as exited (code %d, Error %q) but the engine leaves %s; internal/engine/container.go containers.restore (the \"shim is gone\" branch) neither unmounts the rootfs nor runs `<runtime> delete --force`", st.ExitCode, st.Error, strings.Join(left, ", "))
	}
	r.assertNoTrace(id)
}

// TestRealRestorePoliciesAndPause: at engine start, restart policies apply
// as Docker's do at daemon start (always restarts a container a client
// stopped, unless-stopped does not), a running always container is
// reconnected, not restarted, and a paused container is found paused, its
// health checks going on.
func TestRealRestorePoliciesAndPause(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	loop := []string{"sh", "-c", `trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done`}
	policy := func(name container.RestartPolicyMode) *container.HostConfig {
		return &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: name}}
	}
	health := &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: 100 * time.Millisecond, Retries: 1}
	r.closeEngine()
	ids := r.runDaemon(daemonRequest{
		Create: []CreateOptions{
			{Name: "always-stopped", Config: &container.Config{Image: r.image, Cmd: loop}, HostConfig: policy(container.RestartPolicyAlways)},
			{Name: "unless-stopped-stopped", Config: &container.Config{Image: r.image, Cmd: loop}, HostConfig: policy(container.RestartPolicyUnlessStopped)},
			{Name: "always-running", Config: &container.Config{Image: r.image, Cmd: loop}, HostConfig: policy(container.RestartPolicyAlways)},
			{Name: "paused", Config: &container.Config{Image: r.image, Cmd: loop, Healthcheck: health}},
		},
		Stop:  []int{0, 1},
		Pause: []int{3},
	})
	alwaysStopped, unlessStopped, alwaysRunning, paused := ids[0], ids[1], ids[2], ids[3]
	r.open()
	r.waitLog(alwaysStopped, "ready\nready\n")
	if in := r.inspect(alwaysStopped); !in.State.Running {
		t.Errorf("always container a client stopped: state %+v after engine start, want restarted (Docker restarts it at daemon start)", in.State)
	}
	if in := r.inspect(unlessStopped); in.State.Running || in.State.Status != StateExited {
		t.Errorf("unless-stopped container a client stopped: state %+v after engine start, want exited", in.State)
	}
	if in := r.inspect(alwaysRunning); !in.State.Running || in.RestartCount != 0 {
		t.Errorf("running always container: state %+v RestartCount %d after engine start, want running, reconnected (no restart)", in.State, in.RestartCount)
	}
	if out, _ := r.logsOf(alwaysRunning); out != "ready\n" {
		t.Errorf("running always container ran again at engine start: log %q", out)
	}
	in := r.inspect(paused)
	if in.State.Status != StatePaused || !in.State.Paused {
		t.Fatalf("paused container after engine start: state %+v, want paused", in.State)
	}
	if fs := freezerState(paused); fs != "" && fs != "FROZEN" {
		t.Errorf("paused container after engine start: freezer %q, want FROZEN", fs)
	}
	if err := r.e.ContainerUnpause(context.Background(), paused); err != nil {
		t.Fatalf("unpause after engine start: %v", err)
	}
	if out, _, code := r.execIn(paused, "echo", "thawed"); out != "thawed\n" || code != 0 {
		t.Errorf("exec after unpause: %q code %d", out, code)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := r.inspect(paused).State.Health
		if h != nil && h.Status == container.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health checks of the restored container: %+v, want healthy", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRealRestoreRestarting: a container whose policy restart was pending
// when the engine stopped is started again by the next engine, its restart
// counted.
func TestRealRestoreRestarting(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	trig := t.TempDir()
	r.closeEngine()
	// The first run fails at once; later runs (after the marker) stay up.
	ids := r.runDaemon(daemonRequest{
		Create: []CreateOptions{{Config: &container.Config{Image: r.image,
			Cmd: []string{"sh", "-c", `if [ -e /trig/ran ]; then echo again; while :; do sleep 0.1; done; fi; touch /trig/ran; exit 1`}},
			HostConfig: &container.HostConfig{Binds: []string{trig + ":/trig"}, RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure}}}},
		WaitRestarting: []int{0},
	})
	id := ids[0]
	var rec ctrRecord
	data, err := os.ReadFile(filepath.Join(r.dataRoot, "containers", id, "config.v2.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || rec.State.Status != StateRestarting {
		t.Logf("record when the daemon process ended: %+v %v (the pending restart may have run before it exited)", rec.State, err)
	}
	r.open()
	r.waitLog(id, "again")
	in := r.inspect(id)
	if in.State.ExitCode != 0 {
		t.Errorf("running container reports exit code %d", in.State.ExitCode)
	}
	out, _ := r.logsOf(id)
	if !in.State.Running || out != "again\n" {
		t.Fatalf("after the engine restart: state %+v log %q, want running once more", in.State, out)
	}
	if in.RestartCount == 2 {
		t.Fatalf("a restart pending when the engine stopped is counted twice: RestartCount %d after one restart. containers.scheduleRestart (internal/engine/container_lifecycle.go) counts the restart when it schedules it and saves the state \"restarting\"; containers.restore (internal/engine/container.go) then counts it again when it starts the container (c.rec.RestartCount++ for each of toStart), which also spends an on-failure:N budget twice", in.RestartCount)
	}
	if in.RestartCount != 1 {
		t.Errorf("after the engine restart: RestartCount %d, want 1", in.RestartCount)
	}
}
