package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hog builds a 64 MiB string in the shell: far over an 8 MiB limit.
const hog = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"

const oomLimit = 8 << 20

// runcContainer spawns the test binary as the shim of a busybox container
// run by runc with an 8 MiB memory limit in the v1-or-v2 cgroup
// cgroupsPath, and starts it.
func runcContainer(t *testing.T, cgroupsPath string, args ...string) (*Client, Opts) {
	t.Helper()
	testutil.RequiresRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skipf("runc is not installed: %v", err)
	}
	t.Setenv(serveEnv, "1")
	bundle, spec := testutil.BusyboxBundle(t, args...)
	limit := int64(oomLimit)
	spec.Version = "1.0.2" // runc 1.1 refuses newer spec versions
	spec.Linux.CgroupsPath = cgroupsPath
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	testutil.WriteSpec(t, bundle, spec)
	base, err := os.MkdirTemp("", "bshim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	o := Opts{
		ID: filepath.Base(cgroupsPath), Bundle: bundle, StateDir: filepath.Join(base, "s"),
		ShimBinary: os.Args[0], Runtime: runc, RuntimeRoot: filepath.Join(base, "root"),
	}
	ctx := testCtx(t)
	c, err := Spawn(ctx, o)
	if err != nil {
		t.Fatalf("spawn shim: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.Delete(ctx, true); err != nil {
			t.Errorf("delete container %s: %v", o.ID, err)
			exec.Command(runc, "--root", o.RuntimeRoot, "delete", "--force", o.ID).Run()
			syscall.Kill(c.ShimPid(), syscall.SIGKILL)
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return c, o
}

func testCgroupsPath(t *testing.T) string {
	return fmt.Sprintf("/berth-shimtest/%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "-"), os.Getpid(), time.Now().UnixNano())
}

// removeCgroupParent removes /berth-shimtest from every hierarchy once the
// containers in it are deleted.
func removeCgroupParent(t *testing.T) {
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-shimtest")
		dirs = append(dirs, "/sys/fs/cgroup/berth-shimtest")
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				t.Logf("remove %s: %v", d, err)
			}
		}
	})
}

// checkExit checks the exit status in what Wait, State and the exit file
// report.
func checkExit(t *testing.T, c *Client, code int, oom bool) {
	t.Helper()
	ctx := testCtx(t)
	es, err := c.Wait(ctx)
	if err != nil || es.Code != code || es.OOMKilled != oom {
		t.Fatalf("Wait = %+v, %v; want code %d, OOMKilled %v", es, err, code, oom)
	}
	st, err := c.State(ctx)
	if err != nil || st.Exit == nil || *st.Exit != es {
		t.Errorf("State = %+v (exit %+v), %v; want the exit Wait returned", st, st.Exit, err)
	}
	if rec, err := ReadExit(c.StateDir()); err != nil || rec != es {
		t.Errorf("exit file holds %+v, %v; want %+v", rec, err, es)
	}
}

func TestOOMKilledWithRunc(t *testing.T) {
	removeCgroupParent(t)
	t.Run("init OOM-killed", func(t *testing.T) {
		c, _ := runcContainer(t, testCgroupsPath(t), "sh", "-c", hog)
		checkExit(t, c, 137, true)
	})
	t.Run("child OOM-killed, init exits 0", func(t *testing.T) {
		// As Docker's: the container's cgroup saw an OOM kill.
		c, _ := runcContainer(t, testCgroupsPath(t), "sh", "-c", "sh -c '"+strings.ReplaceAll(hog, "'", `'\''`)+"'; exit 0")
		checkExit(t, c, 0, true)
	})
	t.Run("SIGKILL", func(t *testing.T) {
		c, _ := runcContainer(t, testCgroupsPath(t), "sleep", "1000")
		if err := c.Kill(testCtx(t), syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		checkExit(t, c, 137, false)
	})
	t.Run("OOM kill from before the container", func(t *testing.T) {
		path := testCgroupsPath(t)
		before := oomKillInCgroup(t, path)
		c, _ := runcContainer(t, path, "sleep", "1000")
		if err := c.Kill(testCtx(t), syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
		checkExit(t, c, 137, false)
		if n := before(); n < 1 {
			t.Fatalf("the cgroup's count fell to %d", n)
		}
	})
}

// oomKillInCgroup has the kernel OOM-kill a process in the memory cgroup
// path (created here, with an 8 MiB limit) and returns a function reading
// the cgroup's count. The cgroup is removed after the test.
func oomKillInCgroup(t *testing.T, path string) func() uint64 {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	// Where this process's memory cgroup is, the new one goes from the root.
	own, err := memoryCounterPath(mi, self)
	if err != nil {
		t.Skipf("no memory cgroup: %v", err)
	}
	file := filepath.Base(own)
	root := own
	for _, l := range strings.Split(string(self), "\n") {
		if p := strings.SplitN(l, ":", 3); len(p) == 3 && (strings.Contains(","+p[1]+",", ",memory,") || file == "memory.events" && p[0] == "0") {
			root = strings.TrimSuffix(filepath.Dir(own), filepath.Clean(p[2]))
		}
	}
	dir := filepath.Join(root, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	limitFile, limit := "memory.limit_in_bytes", strconv.Itoa(oomLimit)
	if file == "memory.events" {
		limitFile = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(limit), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `echo $$ >"$1/cgroup.procs" && exec sh -c "$2"`, "sh", dir, hog)
	if err := cmd.Run(); err == nil {
		t.Fatalf("the hog survived its cgroup's limit")
	}
	read := func() uint64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := parseOOMKills(b)
		return n
	}
	if n := read(); n < 1 {
		t.Fatalf("no OOM kill counted in %s: %d", dir, n)
	}
	return read
}
