package engine

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestRealExecOptions: an exec's user (by name, through the image's
// /etc/passwd), working directory and environment, on top of the
// container's; a user the image lacks is refused naming it.
func TestRealExecOptions(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	cfg := &container.Config{Image: r.image, Env: []string{"FROM_CONTAINER=c", "OVERRIDDEN=old"}, WorkingDir: "/srv",
		Cmd: []string{"sh", "-c", `echo ready; while :; do sleep 0.1; done`}}
	id, err := r.tryCreateConfig("", cfg, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	r.waitLog(id, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, _, code := r.execIn(id, "sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $FROM_CONTAINER $OVERRIDDEN"`); out != "0:0 /srv c old\n" || code != 0 {
		t.Errorf("exec with the container's defaults: %q code %d, want %q", out, code, "0:0 /srv c old\n")
	}
	xid, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{
		Cmd:  []string{"sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $FROM_CONTAINER $OVERRIDDEN $ADDED"`},
		User: "daemon", WorkingDir: "/tmp", Env: []string{"OVERRIDDEN=new", "ADDED=a"}, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	var out, errOut strings.Builder
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatalf("exec start: %v", err)
	}
	if out.String() != "1:1 /tmp c new a\n" {
		t.Errorf("exec as daemon in /tmp with env: %q (stderr %q), want %q", out.String(), errOut.String(), "1:1 /tmp c new a\n")
	}
	xid, err = r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"true"}, User: "nosuchuser"})
	if err != nil {
		t.Fatalf("exec create with an unknown user: %v (the user is looked up at start)", err)
	}
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{}); err == nil || !strings.Contains(err.Error(), "nosuchuser") {
		t.Errorf("exec start as an unknown user: %v, want an error naming nosuchuser", err)
	}
	// A detached exec runs on after ExecStart returned.
	xid, err = r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"sh", "-c", "sleep 0.2; touch /tmp/detached-ran"}})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{Detach: true}); err != nil {
		t.Fatalf("detached exec start: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		xi, err := r.e.ExecInspect(ctx, xid)
		if err != nil {
			t.Fatalf("exec inspect: %v", err)
		}
		if !xi.Running && xi.ExitCode != nil {
			if *xi.ExitCode != 0 {
				t.Errorf("detached exec: exit %d", *xi.ExitCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detached exec did not finish: %+v", xi)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, code := r.execIn(id, "test", "-e", "/tmp/detached-ran"); code != 0 {
		t.Errorf("the detached exec's file is missing")
	}
	if _, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("exec create without a command: %v, want invalid argument", err)
	}
}

// TestRealContainerConfig: the container's user by name, working
// directory, environment and the engine's hostname, hosts and resolv.conf
// reach the process.
func TestRealContainerConfig(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	cfg := &container.Config{Image: r.image, User: "daemon", WorkingDir: "/srv", Env: []string{"GREETING=hi"},
		Cmd: []string{"sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $GREETING $(hostname) $(cat /etc/hostname)"; grep -c localhost /etc/hosts; grep -q nameserver /etc/resolv.conf && echo resolv`}}
	id, err := r.tryCreateConfig("", cfg, &container.HostConfig{ExtraHosts: []string{"extra.test:10.1.2.3"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	if code := r.wait(id); code != 0 {
		_, e := r.logsOf(id)
		t.Fatalf("exit %d, stderr %q", code, e)
	}
	out, _ := r.logsOf(id)
	want := "1:1 /srv hi " + id[:12] + " " + id[:12] + "\n"
	lines := strings.SplitAfter(out, "\n")
	if len(lines) < 3 || lines[0] != want || lines[2] != "resolv\n" {
		t.Errorf("container output %q, want first line %q and the resolv.conf check", out, want)
	}
	hosts, err := os.ReadFile(r.inspect(id).HostsPath)
	if err != nil || !strings.Contains(string(hosts), "10.1.2.3\textra.test") {
		t.Errorf("hosts file: %q %v, want the extra host", hosts, err)
	}
}

// TestRealResources: resource limits reach the container's cgroups at
// create and through update; stats and top see the running container.
func TestRealResources(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
	}
	pids := int64(50)
	hc := &container.HostConfig{Resources: container.Resources{Memory: 64 << 20, PidsLimit: &pids, CPUShares: 512}}
	id := r.run(hc, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	cg := func(ctrl, file string) string {
		data, err := os.ReadFile("/sys/fs/cgroup/" + ctrl + "/berth/" + id + "/" + file)
		if err != nil {
			return "unreadable: " + err.Error()
		}
		return strings.TrimSpace(string(data))
	}
	for _, c := range []struct{ ctrl, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"pids", "pids.max", "50"},
		{"cpu", "cpu.shares", "512"},
	} {
		if got := cg(c.ctrl, c.file); got != c.want {
			t.Errorf("%s/%s at create: %s, want %s", c.ctrl, c.file, got, c.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pids2 := int64(80)
	if _, err := r.e.ContainerUpdate(ctx, id, container.UpdateConfig{Resources: container.Resources{Memory: 96 << 20, MemorySwap: 192 << 20, PidsLimit: &pids2}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := cg("memory", "memory.limit_in_bytes"); got != "100663296" {
		t.Errorf("memory limit after update: %s, want 100663296", got)
	}
	if got := cg("pids", "pids.max"); got != "80" {
		t.Errorf("pids.max after update: %s, want 80", got)
	}
	if hcAfter := r.inspect(id).HostConfig; hcAfter == nil || hcAfter.Memory != 96<<20 || hcAfter.PidsLimit == nil || *hcAfter.PidsLimit != 80 || hcAfter.CPUShares != 512 {
		t.Errorf("inspect after update: %+v, want memory 96MiB, pids 80 and the cpu shares kept", hcAfter)
	}
	var stats []container.StatsResponse
	if err := r.e.ContainerStats(ctx, id, false, true, func(s container.StatsResponse) error { stats = append(stats, s); return nil }); err != nil {
		t.Fatalf("stats: %v", err)
	}
	if len(stats) != 1 || stats[0].MemoryStats.Usage == 0 || stats[0].PidsStats.Current == 0 || stats[0].MemoryStats.Limit != 96<<20 {
		t.Errorf("one-shot stats: %+v, want one sample with memory usage, the 96MiB limit and pids", stats)
	}
	top, err := r.e.ContainerTop(ctx, id, "")
	if err != nil {
		t.Fatalf("top: %v", err)
	}
	cmdCol := slices.Index(top.Titles, "CMD")
	found := false
	for _, p := range top.Processes {
		if cmdCol >= 0 && cmdCol < len(p) && strings.Contains(p[cmdCol], "echo ready") {
			found = true
		}
	}
	if !found {
		t.Errorf("top: %+v, want the container's sh among the processes", top)
	}
}

// TestRealLogsTail: tail and since select log entries.
func TestRealLogsTail(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done")
	r.wait(id)
	_, seq, err := r.e.ContainerLogs(context.Background(), id, LogsOptions{Tail: 2})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	var got []string
	var times []time.Time
	for e, err := range seq {
		if err != nil {
			t.Fatalf("logs: %v", err)
		}
		got = append(got, string(e.Line))
		times = append(times, e.Time)
	}
	if !slices.Equal(got, []string{"line4\n", "line5\n"}) {
		t.Errorf("tail 2: %q", got)
	}
	if len(times) == 2 {
		_, seq, err = r.e.ContainerLogs(context.Background(), id, LogsOptions{Tail: -1, Since: times[1]})
		if err != nil {
			t.Fatalf("logs since: %v", err)
		}
		var since []string
		for e, err := range seq {
			if err != nil {
				t.Fatalf("logs since: %v", err)
			}
			since = append(since, string(e.Line))
		}
		// Lines read in one chunk share a time; when line4's time is
		// before line5's, line1 (no later than line4) is excluded.
		if len(since) == 0 || since[len(since)-1] != "line5\n" || slices.Contains(since, "line1\n") && times[0].Before(times[1]) {
			t.Errorf("since the last line's time: %q", since)
		}
	}
}

// TestRealHealth: a health check moves the container from starting to
// healthy and, after Retries failures, to unhealthy, with events.
func TestRealHealth(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	cfg := &container.Config{Image: r.image, Cmd: []string{"sh", "-c", `touch /tmp/healthy; echo ready; while :; do sleep 0.1; done`},
		Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "test -e /tmp/healthy"}, Interval: 100 * time.Millisecond, Timeout: 5 * time.Second, Retries: 2}}
	id, err := r.tryCreateConfig("", cfg, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	if h := r.inspect(id).State.Health; h == nil || (h.Status != container.Starting && h.Status != container.Healthy) {
		t.Fatalf("health right after start: %+v, want starting", h)
	}
	waitHealth := func(want container.HealthStatus) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			h := r.inspect(id).State.Health
			if h != nil && h.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health did not become %s: %+v", want, h)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitHealth(container.Healthy)
	if _, _, code := r.execIn(id, "rm", "/tmp/healthy"); code != 0 {
		t.Fatal("rm /tmp/healthy failed")
	}
	waitHealth(container.Unhealthy)
	h := r.inspect(id).State.Health
	if h.FailingStreak < 2 || len(h.Log) == 0 || h.Log[len(h.Log)-1].ExitCode != 1 {
		t.Errorf("unhealthy: %+v, want a failing streak of 2 or more and the last probe's exit code 1", h)
	}
	past, _ := r.e.Events(context.Background(), time.Time{}, time.Now(), EventFilter{"container": {id}, "event": {"health_status"}})
	var got []string
	for _, m := range past {
		got = append(got, string(m.Action))
	}
	if !slices.Equal(got, []string{"health_status: healthy", "health_status: unhealthy"}) {
		t.Errorf("health events: %q", got)
	}
	timeout := 1
	if err := r.e.ContainerStop(context.Background(), id, "", &timeout); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestRealRemoveDuringRestartBackoff: rm -f of a container that the
// restart policy keeps restarting removes it for good, and stop leaves it
// stopped.
func TestRealRemoveDuringRestartBackoff(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	always := &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}}
	waitRestarts := func(id string, n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for r.inspect(id).RestartCount < n {
			if time.Now().After(deadline) {
				t.Fatalf("container %s did not restart %d times: %+v", id, n, r.inspect(id).State)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx := context.Background()
	rmID := r.run(always, "sh", "-c", "exit 1")
	stopID := r.run(always, "sh", "-c", "exit 1")
	waitRestarts(rmID, 2)
	waitRestarts(stopID, 2)
	if err := r.e.ContainerRemove(ctx, rmID, true, true); err != nil {
		t.Fatalf("rm -f of a restarting container: %v", err)
	}
	timeout := 1
	if err := r.e.ContainerStop(ctx, stopID, "", &timeout); err != nil && !errors.Is(err, ErrNotModified) {
		t.Fatalf("stop of a restarting container: %v", err)
	}
	// Wait out the back-off a pending restart would have used (the count
	// doubles the delay from 100ms: 2 restarts made, the next waits 400ms),
	// then check that neither came back.
	time.Sleep(time.Second)
	r.assertNoTrace(rmID)
	in := r.inspect(stopID)
	if in.State.Running || in.State.Restarting || in.State.Status != StateExited {
		t.Errorf("stopped container of an always policy: state %+v, want exited and staying so", in.State)
	}
	count := in.RestartCount
	time.Sleep(500 * time.Millisecond)
	if in := r.inspect(stopID); in.RestartCount != count || in.State.Running {
		t.Errorf("stopped container restarted again: RestartCount %d -> %d, state %+v", count, in.RestartCount, in.State)
	}
}

// TestRealKillDuringRestartBackoff: kill of a container that its restart
// policy keeps restarting, caught between two runs, ends the restarts, as
// Docker's kill of a restarting container does (it counts as running and
// the kill marks it manually stopped).
func TestRealKillDuringRestartBackoff(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}}, "sh", "-c", "exit 1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		in := r.inspect(id)
		// From the third restart on, the back-off (400ms and more) is far
		// longer than a run.
		if in.State.Restarting && in.RestartCount >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not seen between two restarts: %+v RestartCount %d", in.State, in.RestartCount)
		}
		time.Sleep(5 * time.Millisecond)
	}
	killErr := r.e.ContainerKill(context.Background(), id, "")
	// Whatever the answer, the container must not start again.
	time.Sleep(2 * time.Second)
	in := r.inspect(id)
	if in.State.Running || in.State.Restarting {
		timeout := 1
		r.e.ContainerStop(context.Background(), id, "", &timeout)
		if killErr != nil {
			t.Fatalf("ContainerKill of a container between two restarts of its policy (state restarting) fails with %q and the restarts go on (RestartCount %d after 2s); Docker's kill counts a restarting container as running, marks it manually stopped and so ends the loop (internal/engine/container_lifecycle.go Engine.ContainerKill checks c.running(), which excludes restarting, and leaves the restart timer)", killErr, in.RestartCount)
		}
		t.Fatalf("kill of a restarting container returned %v but it restarted again: %+v", killErr, in.State)
	}
	if killErr != nil {
		t.Errorf("kill of a restarting container: %v, want it accepted", killErr)
	}
}
