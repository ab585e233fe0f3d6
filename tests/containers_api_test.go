package tests

import (
	"os"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// containerFixture starts berthd and a registry holding busybox, pulls it,
// and returns the daemon, the docker CLI for it and the image reference.
func containerFixture(t *testing.T, args ...string) (*Daemon, *CLI, string) {
	t.Helper()
	d := StartDaemon(t, args...)
	for _, b := range []string{"berth-shim", "berth-runtime"} {
		RequireBinary(t, b)
	}
	reg := testutil.StartRegistry(t)
	testutil.PushBusybox(t, reg, "busybox:latest")
	ref := reg + "/busybox:latest"
	c := DockerCLIFor(t, d)
	c.Must(t, "pull", "-q", ref)
	t.Cleanup(func() { cleanupContainers(t, d, c) })
	return d, c, ref
}

// cleanupContainers force-removes every container the test left and checks
// that no mount under the data root remains.
func cleanupContainers(t *testing.T, d *Daemon, c *CLI) {
	out, _, err := c.Run("ps", "-aq")
	if err == nil {
		for _, id := range Lines(out) {
			if _, _, err := c.Run("rm", "-f", "-v", id); err != nil {
				t.Errorf("remove container %s: %v", id, err)
			}
		}
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.DataRoot+"/") {
			t.Errorf("mount left under the data root: %s", f[4])
		}
	}
}

func TestContainersAPIDockerRun(t *testing.T) {
	_, c, ref := containerFixture(t)
	out := c.Must(t, "run", "--rm", ref, "sh", "-c", "echo hello; echo err >&2; hostname")
	lines := Lines(out)
	if len(lines) != 2 || lines[0] != "hello" || len(lines[1]) != 12 {
		t.Fatalf("docker run printed %q, want hello and a 12-character hostname", out)
	}
	_, _, err := c.Run("run", "--rm", ref, "sh", "-c", "exit 3")
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("docker run of exit 3: %v, want exit status 3", err)
	}
	if out := c.Must(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("--rm left containers: %q", out)
	}
}
