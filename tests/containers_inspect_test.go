package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// docker inspect and docker image inspect against berthd fill what Docker
// fills: the container's and image's layer directories (GraphDriver), the
// masked and read-only paths recorded at create, and /.dockerenv in every
// container.
func TestContainersInspectAsDocker(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
	d := StartDaemon(t, "--exec-root", shortExecRoot(t))
	c := DockerCLIFor(t, d)
	c.Must(t, "pull", "-q", ref)
	e := &ctrEnv{d: d, c: c, image: ref}
	t.Cleanup(func() { removeAllContainers(t, e) })

	// /.dockerenv is there, an empty file of mode 0755, and docker diff
	// leaves it out.
	out := c.Must(t, "run", "--name", "envfile", ref, "sh", "-c", "test -f /.dockerenv && stat -c '%a %s' /.dockerenv")
	if strings.TrimSpace(out) != "755 0" {
		t.Errorf("/.dockerenv: mode and size %q, want \"755 0\"", out)
	}
	if diff := c.Must(t, "diff", "envfile"); strings.Contains(diff, ".dockerenv") {
		t.Errorf("docker diff shows /.dockerenv:\n%s", diff)
	}

	// The container's layers, while it runs: the merged root is mounted and
	// holds /.dockerenv; the upper dir holds it too; the lower dir is the
	// image's.
	c.Must(t, "run", "-d", "--name", "running", ref, "sleep", "300")
	if name := strings.TrimSpace(c.Must(t, "inspect", "-f", "{{.GraphDriver.Name}}", "running")); name != "overlay2" {
		t.Errorf("GraphDriver.Name %q, want overlay2", name)
	}
	var gd map[string]string
	if err := json.Unmarshal([]byte(c.Must(t, "inspect", "-f", "{{json .GraphDriver.Data}}", "running")), &gd); err != nil {
		t.Fatalf("GraphDriver.Data: %v", err)
	}
	for _, k := range []string{"LowerDir", "UpperDir", "WorkDir", "MergedDir"} {
		if gd[k] == "" {
			t.Errorf("GraphDriver.Data lacks %s: %v", k, gd)
		}
	}
	if _, err := os.Stat(filepath.Join(gd["MergedDir"], "bin", "busybox")); err != nil {
		t.Errorf("MergedDir %s is not the running container's root: %v", gd["MergedDir"], err)
	}
	if st, err := os.Lstat(filepath.Join(gd["UpperDir"], ".dockerenv")); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
		t.Errorf("UpperDir %s/.dockerenv: %v %v", gd["UpperDir"], st, err)
	}
	if st, err := os.Stat(gd["WorkDir"]); err != nil || !st.IsDir() {
		t.Errorf("WorkDir %s: %v", gd["WorkDir"], err)
	}

	// Masked and read-only paths: Docker's defaults, recorded at create; none
	// for a privileged container.
	var masked, ro []string
	if err := json.Unmarshal([]byte(c.Must(t, "inspect", "-f", "{{json .HostConfig.MaskedPaths}}", "running")), &masked); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.Must(t, "inspect", "-f", "{{json .HostConfig.ReadonlyPaths}}", "running")), &ro); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(masked, "/proc/kcore") || !slices.Contains(masked, "/sys/firmware") {
		t.Errorf("HostConfig.MaskedPaths %v: want Docker's defaults", masked)
	}
	if !slices.Contains(ro, "/proc/sys") || !slices.Contains(ro, "/proc/sysrq-trigger") {
		t.Errorf("HostConfig.ReadonlyPaths %v: want Docker's defaults", ro)
	}
	// The other defaults Docker records at create.
	if got := strings.TrimSpace(c.Must(t, "inspect", "-f", "{{.HostConfig.ShmSize}} {{.HostConfig.IpcMode}} {{.HostConfig.CgroupnsMode}}", "running")); got != "67108864 private host" && got != "67108864 private private" {
		t.Errorf("HostConfig ShmSize, IpcMode, CgroupnsMode: %q", got)
	}
	// What is recorded is what the container gets, with either runtime.
	if out, _, err := c.Run("exec", "running", "sh", "-c", "cat /proc/kcore | wc -c"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("/proc/kcore in the container: %q %v, want masked (empty)", out, err)
	}
	if _, err := exec.LookPath("runc"); err == nil {
		out := c.Must(t, "run", "--rm", "--runtime", "runc", ref, "sh", "-c", "test -f /.dockerenv && cat /proc/kcore | wc -c")
		if strings.TrimSpace(out) != "0" {
			t.Errorf("with runc: /.dockerenv missing or /proc/kcore not masked: %q", out)
		}
	}
	c.Must(t, "create", "--privileged", "--name", "priv", ref, "true")
	for _, f := range []string{"{{json .HostConfig.MaskedPaths}}", "{{json .HostConfig.ReadonlyPaths}}"} {
		if got := strings.TrimSpace(c.Must(t, "inspect", "-f", f, "priv")); got != "null" {
			t.Errorf("privileged %s: %s, want null", f, got)
		}
	}
	// A request's own list is kept as given.
	c.Must(t, "create", "--security-opt", "systempaths=unconfined", "--name", "unconfined", ref, "true")
	for _, f := range []string{"{{json .HostConfig.MaskedPaths}}", "{{json .HostConfig.ReadonlyPaths}}"} {
		if got := strings.TrimSpace(c.Must(t, "inspect", "-f", f, "unconfined")); got != "[]" {
			t.Errorf("systempaths=unconfined %s: %s, want []", f, got)
		}
	}

	// The image: its layer directories, no parent, no Docker version, its
	// whole config.
	if name := strings.TrimSpace(c.Must(t, "image", "inspect", "-f", "{{.GraphDriver.Name}}", ref)); name != "overlay2" {
		t.Errorf("image GraphDriver.Name %q, want overlay2", name)
	}
	upper := strings.TrimSpace(c.Must(t, "image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", ref))
	if _, err := os.Stat(filepath.Join(upper, "bin", "busybox")); err != nil {
		t.Errorf("image UpperDir %q does not hold the layer: %v", upper, err)
	}
	if !strings.Contains(gd["LowerDir"], upper) {
		t.Errorf("container LowerDir %q lacks the image's layer %q", gd["LowerDir"], upper)
	}
	if got := c.Must(t, "image", "inspect", "-f", "[{{.Parent}}][{{.DockerVersion}}]", ref); strings.TrimSpace(got) != "[][]" {
		t.Errorf("image Parent and DockerVersion: %q, want empty", got)
	}
}
