package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
		dir := filepath.Join(r.execRoot, "containers", id)
		if len(dir) > maxSocketPath {
			dir = filepath.Join(r.execRoot, "containers", id[:16])
		}
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
