package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-project/berth/internal/errdefs"
)

// TestRealAttachBeforeStart: an attach registered before the start (docker
// run -a / start -a) gets all output, feeds stdin and ends with the
// container; StdinOnce closes the container's stdin when the client's ends.
func TestRealAttachBeforeStart(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	cfg := &container.Config{Image: r.image, OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Cmd: []string{"sh", "-c", "cat; echo done >&2; exit 4"}}
	id, err := r.tryCreateConfig("", cfg, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	registered := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		res <- r.e.ContainerAttach(ctx, id, AttachOptions{
			Stdin: strings.NewReader("line1\nline2\n"), Stdout: &stdout, Stderr: &stderr, Stream: true,
			Registered: func() { close(registered) },
		})
	}()
	select {
	case <-registered:
	case err := <-res:
		t.Fatalf("attach ended before it registered: %v", err)
	case <-ctx.Done():
		t.Fatal("attach did not register")
	}
	r.start(id)
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("attach did not end with the container (stdin not closed?); state %+v", r.inspect(id).State)
	}
	if code := r.wait(id); code != 4 {
		t.Errorf("exit code %d, want 4", code)
	}
	if stdout.String() != "line1\nline2\n" || stderr.String() != "done\n" {
		t.Errorf("attached streams: stdout %q stderr %q, want the stdin echoed and %q", stdout.String(), stderr.String(), "done\n")
	}
	if out, errOut := r.logsOf(id); out != "line1\nline2\n" || errOut != "done\n" {
		t.Errorf("logs: stdout %q stderr %q", out, errOut)
	}
}

// TestRealLogsFollow: following logs yields new lines as they come and
// ends when the container exits.
func TestRealLogsFollow(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo last; exit 2`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, seq, err := r.e.ContainerLogs(ctx, id, LogsOptions{Follow: true, Tail: -1})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	var lines []string
	for entry, err := range seq {
		if err != nil {
			t.Fatalf("follow logs: %v", err)
		}
		lines = append(lines, string(entry.Line))
		if string(entry.Line) == "first\n" {
			// Only now may the container go on.
			if _, _, code := r.execIn(id, "touch", "/tmp/go"); code != 0 {
				t.Fatalf("exec touch: code %d", code)
			}
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("following logs did not end when the container exited; got %q", lines)
	}
	if !slices.Equal(lines, []string{"first\n", "last\n"}) {
		t.Errorf("followed lines %q, want first and last", lines)
	}
	if code := r.wait(id); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}

// TestRealAutoRemove: a --rm container is removed without a trace when it
// exits; a wait for "removed" taken before the start yields its code.
func TestRealAutoRemove(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.create("", &container.HostConfig{AutoRemove: true}, "sh", "-c", "exit 3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	removed, err := r.e.ContainerWaitChan(ctx, id, WaitRemoved)
	if err != nil {
		t.Fatalf("wait removed: %v", err)
	}
	r.start(id)
	select {
	case code, ok := <-removed:
		if !ok {
			t.Fatal("wait for removal of an --rm container ended without a code")
		}
		if code != 3 {
			t.Errorf("wait removed: code %d, want 3", code)
		}
	case <-ctx.Done():
		t.Fatal("--rm container was not removed after it exited")
	}
	r.assertNoTrace(id)
}

// TestRealKillRestart: kill delivers signals, refuses a stopped container;
// restart gives a new process in the same container.
func TestRealKillRestart(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := time.Now()
	id := r.run(nil, "sh", "-c", `trap "exit 5" USR1; echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	if err := r.e.ContainerKill(ctx, id, "USR1"); err != nil {
		t.Fatalf("kill USR1: %v", err)
	}
	if code := r.wait(id); code != 5 {
		t.Errorf("after kill USR1: exit %d, want 5 from the trap", code)
	}
	if err := r.e.ContainerKill(ctx, id, ""); !errdefs.IsConflict(err) {
		t.Errorf("kill of a stopped container: %v, want a conflict", err)
	}
	if err := r.e.ContainerKill(ctx, id, "NOSUCHSIG"); err == nil {
		t.Errorf("kill with an unknown signal: accepted")
	}
	timeout := 1
	if err := r.e.ContainerRestart(ctx, id, "", &timeout); err != nil {
		t.Fatalf("restart of a stopped container: %v", err)
	}
	r.waitLog(id, "ready\nready")
	pid1 := r.inspect(id).State.Pid
	if err := r.e.ContainerRestart(ctx, id, "USR1", &timeout); err != nil {
		t.Fatalf("restart of a running container: %v", err)
	}
	st := r.inspect(id).State
	if !st.Running || st.Pid == pid1 || st.Pid == 0 {
		t.Errorf("after restart: state %+v, want running with a new pid (was %d)", st, pid1)
	}
	r.waitLog(id, "ready\nready\nready")
	if err := r.e.ContainerKill(ctx, id, ""); err != nil {
		t.Fatalf("kill: %v", err)
	}
	// SIGKILL's kill returns once the container exited.
	if st := r.inspect(id).State; st.Running || st.ExitCode != 137 {
		t.Errorf("after kill: state %+v, want exited with 137", st)
	}
	// The die event of the last kill may follow the wake-up of the kill's
	// wait: take the events once three dies are in.
	past := r.eventsUntil(id, since, func(ms []events.Message) bool {
		n := 0
		for _, m := range ms {
			if m.Action == events.ActionDie {
				n++
			}
		}
		return n >= 3
	})
	var kills []string
	restarts, dies := 0, 0
	for _, m := range past {
		switch m.Action {
		case events.ActionKill:
			kills = append(kills, m.Actor.Attributes["signal"])
		case events.ActionRestart:
			restarts++
		case events.ActionDie:
			dies++
		}
	}
	// The kills by ContainerKill (USR1 is 10, SIGKILL 9) are among the kill
	// events (a stop may add its own).
	if i := slices.Index(kills, "10"); i < 0 || !slices.Contains(kills[i+1:], "9") {
		t.Errorf("kill events with signals %v, want 10 and later 9", kills)
	}
	if restarts != 2 || dies != 3 {
		t.Errorf("events: %d restarts and %d dies, want 2 and 3", restarts, dies)
	}
}

// TestRealConcurrent: containers created, started, waited for and removed
// at the same time do not disturb each other.
func TestRealConcurrent(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	const n = 6
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.create(fmt.Sprintf("par%d", i), nil, "sh", "-c", fmt.Sprintf("echo $(hostname) %d; exit %d", i, i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.e.ContainerStart(ctx, id); err != nil {
				errs <- fmt.Errorf("start %d: %w", i, err)
				return
			}
			ch, err := r.e.ContainerWaitChan(ctx, id, WaitNotRunning)
			if err != nil {
				errs <- err
				return
			}
			if code := <-ch; code != i {
				errs <- fmt.Errorf("container %d: exit %d", i, code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, id := range ids {
		if out, _ := r.logsOf(id); out != fmt.Sprintf("%s %d\n", id[:12], i) {
			t.Errorf("container %d log %q, want its own hostname and number", i, out)
		}
	}
	errs = make(chan error, n)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.e.ContainerRemove(context.Background(), id, true, true); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		r.assertNoTrace(id)
	}
}

// TestRealOtherRuntimes: the engine runs containers through runc and crun
// as through berth-runtime (the runtime is pluggable).
func TestRealOtherRuntimes(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ran := 0
	for _, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil {
			t.Logf("%s is not installed: not tested", rt)
			continue
		}
		if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); rt == "crun" && err == nil && len(bytes.TrimSpace(b)) > 0 {
			// crun 1.8 refuses hybrid hierarchies with v2 controllers.
			t.Logf("crun not tested: this host's cgroup v2 mount holds controllers (%q) beside v1 ones", bytes.TrimSpace(b))
			continue
		}
		ran++
		ctx := context.Background()
		id := r.create("", &container.HostConfig{Runtime: rt}, "sh", "-c", `trap "exit 6" TERM; echo ready; while :; do sleep 0.1; done`)
		r.start(id)
		r.waitLog(id, "ready")
		if out, _, code := r.execIn(id, "sh", "-c", "echo in-$(hostname); exit 2"); out != "in-"+id[:12]+"\n" || code != 2 {
			t.Errorf("%s: exec: %q code %d", rt, out, code)
		}
		if err := r.e.ContainerPause(ctx, id); err != nil {
			t.Errorf("%s: pause: %v", rt, err)
		} else if err := r.e.ContainerUnpause(ctx, id); err != nil {
			t.Errorf("%s: unpause: %v", rt, err)
		}
		timeout := 20
		if err := r.e.ContainerStop(ctx, id, "", &timeout); err != nil {
			t.Errorf("%s: stop: %v", rt, err)
		}
		if st := r.inspect(id).State; st.ExitCode != 6 {
			t.Errorf("%s: after stop: state %+v, want exit 6 from the TERM trap", rt, st)
		}
		if err := r.e.ContainerRemove(ctx, id, false, true); err != nil {
			t.Errorf("%s: rm: %v", rt, err)
		}
		r.assertNoTrace(id)
	}
	if ran == 0 {
		t.Skip("neither runc nor crun is installed")
	}
}

// TestRealConcurrentStartsOfOne: starts of one container racing each
// other run it once: one start wins, the others are "not modified", and
// one shim serves it.
func TestRealConcurrentStartsOfOne(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.create("", nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.e.ContainerStart(context.Background(), id)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, ErrNotModified):
		default:
			t.Errorf("start %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d racing starts won, want 1 (errors %v)", won, n, errs)
	}
	r.waitLog(id, "ready")
	if out, _ := r.logsOf(id); out != "ready\n" {
		t.Errorf("log %q, want one run", out)
	}
	if shims := processesMentioning(id); len(shims) != 1 {
		t.Errorf("processes naming the container: %v, want its one shim", shims)
	}
}

// TestRealExecTty: an exec with a terminal gets one, its output comes
// through it (CRLF line ends) and its size is the one asked for.
func TestRealExecTty(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.run(nil, "sh", "-c", `echo ready; while :; do sleep 0.1; done`)
	r.waitLog(id, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xid, err := r.e.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"sh", "-c", "test -t 0 && test -t 1 && echo tty; stty size"}, Tty: true, AttachStdout: true, AttachStdin: false})
	if err != nil {
		t.Fatalf("exec create: %v", err)
	}
	var out bytes.Buffer
	if err := r.e.ExecStart(ctx, xid, ExecStartOptions{Stdout: &out, Height: 33, Width: 101}); err != nil {
		t.Fatalf("exec start: %v", err)
	}
	if out.String() != "tty\r\n33 101\r\n" {
		t.Errorf("tty exec output %q, want %q", out.String(), "tty\r\n33 101\r\n")
	}
	xi, err := r.e.ExecInspect(ctx, xid)
	if err != nil || xi.ExitCode == nil || *xi.ExitCode != 0 || !xi.ProcessConfig.Tty {
		t.Errorf("exec inspect: %+v %v", xi, err)
	}
}
