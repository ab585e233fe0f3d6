package tests

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestContainersStartAttached checks start -a and start -a -i pass on
// output, input and the exit code.
func TestContainersStartAttached(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.c.Must(t, "create", "--name", "once", e.image, "sh", "-c", "echo started; exit 6")
		out, _, err := e.c.Run("start", "-a", "once")
		if code := ctrExitCode(t, err); code != 6 || out != "started\n" {
			t.Errorf("start -a: code %d out %q", code, out)
		}
		e.c.Must(t, "create", "-i", "--name", "reader", e.image, "sh", "-c", "read l; echo got $l")
		e.c.Stdin = "line\n"
		if out := e.c.Must(t, "start", "-a", "-i", "reader"); out != "got line\n" {
			t.Errorf("start -a -i: %q", out)
		}
	})
}

// TestContainersRestartAlwaysAcrossDaemonKill: a container with
// --restart always that dies while berthd is down is restarted when
// berthd comes back.
func TestContainersRestartAlwaysAcrossDaemonKill(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.mustRun(t, "-d", "--name", "always", "--restart", "always", e.image, "sleep", "1000")
		before := e.inspect(t, "always")
		if !before.State.Running || before.State.Pid <= 0 {
			t.Fatalf("not running: %+v", before.State)
		}
		e.d.Kill()
		p, err := os.FindProcess(before.State.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill the container's process %d: %v", before.State.Pid, err)
		}
		waitFor(t, "the container's process to go", func() bool { return ctrProcessGone(before.State.Pid) != nil })
		if err := e.d.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the restart by the policy", func() bool {
			in := e.inspect(t, "always")
			return in.State.Running && in.State.Pid != before.State.Pid && in.RestartCount >= 1
		})
		if out := strings.TrimSpace(e.c.Must(t, "ps", "--format", "{{.Names}}")); out != "always" {
			t.Errorf("ps after the restart: %q", out)
		}
	})
}
