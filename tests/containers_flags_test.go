package tests

import (
	"strings"
	"testing"
)

// TestContainersRunFlags checks docker's run flags take effect inside the
// container.
func TestContainersRunFlags(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		checks := []struct {
			args []string
			want string
		}{
			{[]string{"--read-only", e.image, "sh", "-c", "touch /x 2>/dev/null || echo ro"}, "ro\n"},
			{[]string{"-h", "myhost", e.image, "hostname"}, "myhost\n"},
			{[]string{"--add-host", "db.example:10.1.2.3", e.image, "sh", "-c", "grep db.example /etc/hosts | cut -f1"}, "10.1.2.3\n"},
			{[]string{"--ulimit", "nofile=123:456", e.image, "sh", "-c", "ulimit -n; ulimit -Hn"}, "123\n456\n"},
			{[]string{"--cap-drop", "ALL", e.image, "sh", "-c", "grep CapEff /proc/self/status | cut -f2"}, "0000000000000000\n"},
			{[]string{"--network", "none", e.image, "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"}, "lo "},
			{[]string{"--tmpfs", "/scratch:size=1m", e.image, "sh", "-c", "grep -c ' /scratch tmpfs' /proc/mounts"}, "1\n"},
			{[]string{"--shm-size", "8m", e.image, "sh", "-c", "df -k /dev/shm | tail -1 | awk '{print $2}'"}, "8192\n"},
			{[]string{"--user", "1234", e.image, "id", "-u"}, "1234\n"},
		}
		for _, c := range checks {
			out, _, err := e.run(append([]string{"--rm"}, c.args...)...)
			if err != nil {
				t.Errorf("run %q: %v", c.args, err)
				continue
			}
			if out != c.want {
				t.Errorf("run %q: %q, want %q", c.args, out, c.want)
			}
		}
		// logs -f follows until the container exits; --since in the future
		// shows nothing.
		e.mustRun(t, "-d", "--name", "follow", e.image, "sh", "-c", "echo a; sleep 1; echo b")
		if out := e.c.Must(t, "logs", "-f", "follow"); out != "a\nb\n" {
			t.Errorf("logs -f: %q", out)
		}
		if out := e.c.Must(t, "logs", "--since", "2100-01-01T00:00:00Z", "follow"); out != "" {
			t.Errorf("logs --since the future: %q", out)
		}
		if out := e.c.Must(t, "logs", "--until", "2000-01-01T00:00:00Z", "follow"); out != "" {
			t.Errorf("logs --until the past: %q", out)
		}
		if out := e.c.Must(t, "container", "ls", "-a", "--format", "{{.Names}}"); strings.TrimSpace(out) != "follow" {
			t.Errorf("container ls -a: %q", out)
		}
	})
}
