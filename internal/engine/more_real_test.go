package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestRealReadOnlyRootfs: --read-only makes the root filesystem read-only
// while --tmpfs mounts and the engine's /etc files stay usable.
func TestRealReadOnlyRootfs(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	hc := &container.HostConfig{ReadonlyRootfs: true, Tmpfs: map[string]string{"/scratch": "size=1m"}}
	id := r.run(hc, "sh", "-c", `if touch /in-rootfs 2>/dev/null; then echo rootfs-writable; fi; echo ok > /scratch/f && cat /scratch/f; cat /etc/hostname`)
	if code := r.wait(id); code != 0 {
		_, e := r.logsOf(id)
		t.Fatalf("exit %d, stderr %q", code, e)
	}
	if out, _ := r.logsOf(id); out != "ok\n"+id[:12]+"\n" {
		t.Errorf("read-only container output %q, want %q", out, "ok\n"+id[:12]+"\n")
	}
	// Nothing reached the container's writable layer.
	changes := filepath.Join(r.dataRoot, "snapshots")
	var written []string
	filepath.WalkDir(changes, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "in-rootfs" {
			written = append(written, p)
		}
		return nil
	})
	if len(written) > 0 {
		t.Errorf("a read-only container wrote %v", written)
	}
}

// TestRealLogRotation: with max-size and max-file the log is rotated, and
// reading it yields the newest lines in order with none missing between
// the first kept and the last.
func TestRealLogRotation(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	hc := &container.HostConfig{LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "2k", "max-file": "3"}}}
	id := r.run(hc, "sh", "-c", `i=1; while [ $i -le 400 ]; do echo "line-$i-padding-padding"; i=$((i+1)); done`)
	if code := r.wait(id); code != 0 {
		t.Fatalf("exit %d", code)
	}
	out, _ := r.logsOf(id)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != "line-400-padding-padding" {
		t.Fatalf("rotated log does not end with the last line: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if len(lines) >= 400 {
		t.Errorf("rotated log kept all %d lines with max-size 2k and max-file 3", len(lines))
	}
	var first int
	if _, err := fmt.Sscanf(lines[0], "line-%d-", &first); err != nil {
		t.Fatalf("first kept line %q", lines[0])
	}
	for i, l := range lines {
		if want := fmt.Sprintf("line-%d-padding-padding", first+i); l != want {
			t.Fatalf("rotated log line %d is %q, want %q (lines lost or reordered)", i, l, want)
		}
	}
	logPath := r.inspect(id).LogPath
	files, _ := filepath.Glob(logPath + "*")
	if len(files) > 3 {
		t.Errorf("log files %v, want at most 3", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 2048+256 {
			t.Errorf("log file %s is %d bytes, over max-size 2k", f, fi.Size())
		}
	}
}

// TestRealExecLifecycle: an exec created while the container runs cannot
// start once the container stopped; a long exec ends with its container.
func TestRealExecLifecycle(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := r.run(nil, "sh", "-c", `trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	late, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"true"}})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	long, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"sleep", "1000"}, AttachStdout: true})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.e.ExecStart(ctx, long, ExecStartOptions{Stdout: &strings.Builder{}}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		xi, err := r.e.ExecInspect(ctx, long)
		if err == nil && xi.Running && xi.Pid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("long exec is not running: %+v %v", xi, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	timeout := 10
	if err := r.e.ContainerStop(ctx, id, "", &timeout); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Logf("long exec start returned %v when its container stopped", err)
		}
	case <-ctx.Done():
		t.Fatal("a running exec did not end when its container stopped")
	}
	if xi, err := r.e.ExecInspect(ctx, long); err != nil || xi.Running {
		t.Errorf("long exec after its container stopped: %+v %v, want not running", xi, err)
	}
	if err := r.e.ExecStart(ctx, late, ExecStartOptions{}); !errdefs.IsConflict(err) {
		t.Errorf("start of an exec whose container stopped: %v, want a conflict", err)
	}
	if _, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"true"}}); !errdefs.IsConflict(err) {
		t.Errorf("exec create in a stopped container: %v, want a conflict", err)
	}
}

// TestRealRenameAndWaitNextExit: a running container renamed keeps running
// under its new name, and a next-exit wait taken while it runs yields the
// exit of that run.
func TestRealRenameAndWaitNextExit(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := r.create("before", nil, "sh", "-c", `trap "exit 3" TERM; echo ready; while :; do sleep 0.1; done`)
	next, err := r.e.ContainerWaitChan(ctx, id, WaitNextExit)
	if err != nil {
		t.Fatalf("wait next-exit: %v", err)
	}
	r.start(id)
	r.waitLog(id, "ready")
	if err := r.e.ContainerRename(ctx, "before", "after"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, err := r.e.ContainerInspect(ctx, "before", false); !errdefs.IsNotFound(err) {
		t.Errorf("old name after rename: %v, want not found", err)
	}
	if in := r.inspect("after"); in.ID != id || in.Name != "/after" || !in.State.Running {
		t.Errorf("inspect by the new name: id %s name %s state %+v", in.ID, in.Name, in.State)
	}
	other := r.create("other", nil, "true")
	if err := r.e.ContainerRename(ctx, other, "after"); !errdefs.IsConflict(err) {
		t.Errorf("rename to a name in use: %v, want a conflict", err)
	}
	if err := r.e.ContainerStop(ctx, "after", "", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case code := <-next:
		if code != 3 {
			t.Errorf("next-exit wait: %d, want 3", code)
		}
	case <-ctx.Done():
		t.Fatal("next-exit wait did not fire")
	}
	r.eventsUntil(id, time.Time{}, hasActions(events.ActionDie)) // the die event may follow the wait's wake-up
	past, _ := r.e.Events(ctx, time.Time{}, time.Now(), EventFilter{"container": {"after"}, "event": {"die"}})
	if len(past) != 1 || past[0].Actor.ID != id {
		t.Errorf("die events filtered by the new name: %+v", past)
	}
}

// TestRealPrune: container prune removes stopped containers only, volume
// prune the unused anonymous volumes only (Docker's default), both leaving
// nothing of what they removed.
func TestRealPrune(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx := context.Background()
	img := r.importImage([]string{"VOLUME /srv"})
	stopped, err := r.tryCreateConfig("", &container.Config{Image: img, Cmd: []string{"true"}}, &container.HostConfig{Binds: []string{"keepme:/keep"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(stopped)
	r.wait(stopped)
	running := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(running, "ready")
	anon := ""
	for _, m := range r.inspect(stopped).Mounts {
		if m.Destination == "/srv" {
			anon = m.Name
		}
	}
	rep, err := r.e.ContainerPrune(ctx, nil)
	if err != nil {
		t.Fatalf("container prune: %v", err)
	}
	if !slices.Equal(rep.ContainersDeleted, []string{stopped}) {
		t.Errorf("container prune deleted %v, want only the stopped %s", rep.ContainersDeleted, stopped)
	}
	r.assertNoTrace(stopped)
	if !r.inspect(running).State.Running {
		t.Errorf("container prune touched the running container")
	}
	vrep, err := r.e.VolumePrune(ctx, nil)
	if err != nil {
		t.Fatalf("volume prune: %v", err)
	}
	if !slices.Equal(vrep.VolumesDeleted, []string{anon}) {
		t.Errorf("volume prune deleted %v, want only the anonymous %s", vrep.VolumesDeleted, anon)
	}
	if _, err := r.e.VolumeInspect(ctx, "keepme"); err != nil {
		t.Errorf("named volume after a default volume prune: %v, want kept", err)
	}
	vrep, err = r.e.VolumePrune(ctx, map[string][]string{"all": {"true"}})
	if err != nil || !slices.Equal(vrep.VolumesDeleted, []string{"keepme"}) {
		t.Errorf("volume prune all=true: %v %v, want keepme deleted", vrep.VolumesDeleted, err)
	}
}

// TestRealLongExecRoot: under an exec root too long for the shim sockets
// of <exec-root>/containers/<64-hex id>/, the shim's state lives under the
// ID's first 16 characters; containers run, survive an engine restart and
// leave nothing there.
func TestRealLongExecRoot(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	r.closeEngine()
	short := r.execRoot
	long := filepath.Join(short, strings.Repeat("x", 30))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	r.execRoot = long
	t.Cleanup(func() { os.RemoveAll(short) })
	if n := len(filepath.Join(long, "containers", strings.Repeat("0", 64), "shim.sock.tmp")); n <= 107 {
		t.Fatalf("exec root %s is not long enough for the test (%d bytes)", long, n)
	}
	id := r.runDaemonProcess(CreateOptions{Config: &container.Config{Image: r.image,
		Cmd: []string{"sh", "-c", `trap "exit 4" TERM; echo ready; while :; do sleep 0.1; done`}}})[0]
	if _, err := os.Stat(filepath.Join(long, "containers", id[:16], "shim.sock")); err != nil {
		t.Errorf("shim socket under the short name: %v", err)
	}
	r.open()
	r.waitLog(id, "ready")
	if st := r.inspect(id).State; !st.Running {
		t.Fatalf("after an engine restart: state %+v, want running", st)
	}
	if out, _, code := r.execIn(id, "echo", "hi"); out != "hi\n" || code != 0 {
		t.Errorf("exec: %q %d", out, code)
	}
	if err := r.e.ContainerStop(context.Background(), id, "", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if code := r.wait(id); code != 4 {
		t.Errorf("exit %d, want 4", code)
	}
	if err := r.e.ContainerRemove(context.Background(), id, false, false); err != nil {
		t.Fatalf("rm: %v", err)
	}
	r.assertNoTrace(id)
}

// TestRealPausedKillAndRemove: rm -f and kill -9 of a paused container end
// it (the frozen process must be thawed to die: runc's kill --all thaws
// after signalling, Docker's kill resumes a paused container) and leave
// nothing; with berth-runtime and with runc.
func TestRealPausedKillAndRemove(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	runtimes := []string{"berth-runtime"}
	if _, err := exec.LookPath("runc"); err == nil {
		runtimes = append(runtimes, "runc")
	}
	var bug string
	for _, rt := range runtimes {
		for _, how := range []string{"rm -f", "kill"} {
			id := r.run(&container.HostConfig{Runtime: rt}, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
			r.waitLog(id, "ready")
			pid := r.inspect(id).State.Pid
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := r.e.ContainerPause(ctx, id); err != nil {
				t.Fatalf("%s: pause: %v", rt, err)
			}
			switch how {
			case "rm -f":
				if err := r.e.ContainerRemove(ctx, id, true, false); err != nil {
					t.Fatalf("%s: rm -f of a paused container: %v", rt, err)
				}
			case "kill":
				err := r.e.ContainerKill(ctx, id, "KILL")
				if errors.Is(err, context.DeadlineExceeded) && rt == "berth-runtime" {
					st := r.inspect(id).State
					if err := r.e.ContainerRemove(context.Background(), id, true, false); err != nil {
						t.Fatalf("rm -f after the hung kill: %v", err)
					}
					bug = fmt.Sprintf("ContainerKill(SIGKILL) of a paused berth-runtime container hangs until the caller's deadline (3s here; state then %+v): `berth-runtime kill --all` leaves the frozen cgroup frozen, so the process never dies, where runc's kill --all thaws after signalling (the runc run of this test passes); internal/engine/container_lifecycle.go Engine.ContainerKill does not resume a paused container either, as Docker's kill and the engine's own stop and remove do", st)
					r.assertNoTrace(id)
					continue
				}
				if err != nil {
					t.Fatalf("%s: kill -9 of a paused container: %v", rt, err)
				}
				if st := r.inspect(id).State; st.Running || st.Paused || st.ExitCode != 137 {
					t.Errorf("%s: after kill -9 of a paused container: state %+v, want exited with 137", rt, st)
				}
				if err := r.e.ContainerRemove(ctx, id, false, false); err != nil {
					t.Fatalf("%s: rm: %v", rt, err)
				}
			}
			if unixKill0(pid) == nil {
				t.Errorf("%s: %s of a paused container: its process %d still exists", rt, how, pid)
			}
			r.assertNoTrace(id)
		}
	}
	if bug != "" {
		t.Fatal(bug)
	}
}

// TestRealTtyContainer: a container with a terminal logs its output as one
// stream through the terminal (CRLF), and ContainerLogs says it has one.
func TestRealTtyContainer(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id, err := r.tryCreateConfig("", &container.Config{Image: r.image, Tty: true, Cmd: []string{"sh", "-c", "test -t 1 && echo tty; echo err >&2"}}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	if code := r.wait(id); code != 0 {
		t.Fatalf("exit %d", code)
	}
	tty, seq, err := r.e.ContainerLogs(context.Background(), id, LogsOptions{Tail: -1})
	if err != nil || !tty {
		t.Fatalf("logs: tty %v err %v, want a terminal", tty, err)
	}
	var out strings.Builder
	for e, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		if e.Stream != "stdout" {
			t.Errorf("tty log entry on %s, want all on stdout", e.Stream)
		}
		out.Write(e.Line)
	}
	if out.String() != "tty\r\nerr\r\n" {
		t.Errorf("tty log %q, want %q", out.String(), "tty\r\nerr\r\n")
	}
}

// TestRealStopTimeoutFromConfig: without a timeout, stop waits the
// container's own StopTimeout before SIGKILL.
func TestRealStopTimeoutFromConfig(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	one := 1
	id, err := r.tryCreateConfig("", &container.Config{Image: r.image, StopTimeout: &one,
		Cmd: []string{"sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.1; done`}}, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r.start(id)
	r.waitLog(id, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	begin := time.Now()
	if err := r.e.ContainerStop(ctx, id, "", nil); err != nil {
		t.Fatalf("stop without a timeout: %v (the container's StopTimeout is 1s, the default 10s)", err)
	}
	if st := r.inspect(id).State; st.ExitCode != 137 {
		t.Errorf("after stop: state %+v, want killed (137)", st)
	}
	if took := time.Since(begin); took < time.Second {
		t.Errorf("stop took %v, less than the StopTimeout of 1s", took)
	}
}

// TestRealBinds: a host directory bound read-write shares files both
// ways, bound read-only refuses writes, and a volume with nocopy gets none
// of the image's content.
func TestRealBinds(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "from-host"), []byte("h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hc := &container.HostConfig{Binds: []string{host + ":/rw", host + ":/ro:ro", "fresh:/srv:nocopy"}}
	id := r.run(hc, "sh", "-c", `cat /rw/from-host; echo c > /rw/from-container; if echo x > /ro/nope 2>/dev/null; then echo ro-writable; fi; ls -A /srv; echo end`)
	if code := r.wait(id); code != 0 {
		_, e := r.logsOf(id)
		t.Fatalf("exit %d: %s", code, e)
	}
	if out, _ := r.logsOf(id); out != "h\nend\n" {
		t.Errorf("output %q, want the host file, no write through the read-only bind, an empty nocopy volume", out)
	}
	if data, err := os.ReadFile(filepath.Join(host, "from-container")); err != nil || string(data) != "c\n" {
		t.Errorf("file written through the bind: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(host, "nope")); err == nil {
		t.Errorf("a write through the read-only bind reached the host")
	}
}
