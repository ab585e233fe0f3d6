package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// oomHog builds a 64 MiB string in the container's shell: far over the
// 8 MiB its container may use.
const oomHog = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"

// oomState is the part of inspect the OOM tests read.
type oomState struct {
	State struct {
		Status    string
		Pid       int
		ExitCode  int
		OOMKilled bool
	}
	HostConfig struct{ Memory int64 }
}

func oomInspect(t *testing.T, e *ctrEnv, name string) oomState {
	t.Helper()
	out := e.c.Must(t, "inspect", "--type", "container", name)
	var list []oomState
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("inspect %s: %v\n%s", name, err, out)
	}
	return list[0]
}

// oomEvents returns the actions of the container's events from since until
// now, as GET /events reports them (what docker events prints).
func oomEvents(t *testing.T, e *ctrEnv, name string, since time.Time) []string {
	t.Helper()
	q := url.Values{}
	q.Set("since", strconv.FormatInt(since.Unix(), 10))
	q.Set("until", strconv.FormatInt(time.Now().Unix()+1, 10))
	q.Set("filters", `{"container":[`+strconv.Quote(name)+`]}`)
	resp, err := e.d.HTTPClient().Get("http://berthd/events?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	var acts []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct{ Type, Action string }
		if err := dec.Decode(&m); err == io.EOF {
			return acts
		} else if err != nil {
			t.Fatalf("read events: %v", err)
		}
		if m.Type == "container" {
			acts = append(acts, m.Action)
		}
	}
}

// TestContainersOOMKilled checks State.OOMKilled and the "oom" event: set
// for a container the kernel OOM-killed, also while berthd was down, and
// not for one killed with SIGKILL.
func TestContainersOOMKilled(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		since := time.Now().Add(-time.Second)
		_, _, err := e.run("--name", "hog", "--memory", "8m", e.image, "sh", "-c", oomHog)
		if code := ctrExitCode(t, err); code != 137 {
			t.Fatalf("run of a container over its memory limit exited %d, want 137", code)
		}
		if in := oomInspect(t, e, "hog"); !in.State.OOMKilled || in.State.ExitCode != 137 || in.State.Status != "exited" {
			t.Errorf("inspect after the OOM kill: %+v, want exited with 137 and OOMKilled", in.State)
		}
		acts := oomEvents(t, e, "hog", since)
		oom, die := -1, -1
		for i, a := range acts {
			switch {
			case a == "oom" && oom < 0:
				oom = i
			case a == "die":
				die = i
			}
		}
		if oom < 0 || die < oom {
			t.Errorf("events of the OOM-killed container %q: want an oom before the die", acts)
		}

		e.mustRun(t, "-d", "--name", "killed", "--memory", "8m", e.image, "sleep", "1000")
		e.c.Must(t, "kill", "killed")
		if out := strings.TrimSpace(e.c.Must(t, "wait", "killed")); out != "137" {
			t.Fatalf("wait of a container killed with SIGKILL: %q, want 137", out)
		}
		if in := oomInspect(t, e, "killed"); in.State.OOMKilled || in.State.ExitCode != 137 {
			t.Errorf("inspect after kill: %+v, want exit code 137 and not OOMKilled", in.State)
		}
		if acts := oomEvents(t, e, "killed", since); strings.Contains(strings.Join(acts, " "), "oom") {
			t.Errorf("events of a container killed with SIGKILL: %q, want no oom", acts)
		}
		e.c.Must(t, "rm", "hog", "killed")
	})
}

// TestContainersOOMKilledWhileDaemonDown has containers OOM-killed while
// berthd is killed: the shim records it, and berthd reports it when it
// comes back, from the shim or, when the shim is gone too, from the exit
// record it left (and then deletes the container it left in the runtime).
func TestContainersOOMKilledWhileDaemonDown(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		pids := map[string]int{}
		for _, name := range []string{"late", "orphan"} {
			e.mustRun(t, "-d", "--name", name, "--memory", "8m", e.image, "sh", "-c",
				"while [ ! -e /tmp/go ]; do usleep 20000; done; "+oomHog)
			pids[name] = oomInspect(t, e, name).State.Pid
			if pids[name] <= 0 {
				t.Fatalf("%s has no pid", name)
			}
		}
		// The orphan's shim is its init's parent (the child subreaper).
		shimPid := oomParent(t, pids["orphan"])
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", shimPid))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if filepath.Base(args[0]) != "berth-shim" || len(args) != 3 || args[1] != "--state-dir" {
			t.Fatalf("the parent of the orphan's init is %q, not its shim", args)
		}
		exitFile := filepath.Join(args[2], "exit.json")
		cgroupDir := filepath.Dir(oomMemoryLimitFile(t, pids["orphan"]))

		e.d.Kill()
		for name, pid := range pids {
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/go", pid), nil, 0o644); err != nil {
				t.Fatalf("signal %s through its root: %v", name, err)
			}
		}
		for name, pid := range pids {
			waitFor(t, name+" to exit while berthd is down", func() bool { return ctrProcessGone(pid) != nil })
		}
		waitFor(t, "the orphan's shim to record its exit", func() bool {
			_, err := os.Stat(exitFile)
			return err == nil
		})
		if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the orphan's shim: %v", err)
		}
		waitFor(t, "the orphan's shim to die", func() bool { return ctrProcessGone(shimPid) != nil || oomZombie(shimPid) })
		if err := e.d.Start(); err != nil {
			t.Fatal(err)
		}
		for name := range pids {
			if in := oomInspect(t, e, name); !in.State.OOMKilled || in.State.ExitCode != 137 || in.State.Status != "exited" {
				t.Errorf("inspect %s after berthd came back: %+v, want exited with 137 and OOMKilled", name, in.State)
			}
		}
		if _, err := os.Stat(cgroupDir); !os.IsNotExist(err) {
			t.Errorf("the orphan's cgroup %s outlived its shim and container: %v", cgroupDir, err)
		}
		e.c.Must(t, "rm", "late", "orphan")
	})
}

// oomParent is a process's parent pid.
func oomParent(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("parent in /proc/%d/stat: %v", pid, err)
	}
	return ppid
}

// oomZombie reports whether pid has exited and waits to be reaped.
func oomZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// TestContainersUpdateMemory changes a running container's memory limit:
// the shim has the runtime write it to the container's cgroup.
func TestContainersUpdateMemory(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.mustRun(t, "-d", "--name", "upd", "--memory", "16m", e.image, "sleep", "1000")
		in := oomInspect(t, e, "upd")
		limitFile := oomMemoryLimitFile(t, in.State.Pid)
		if got := oomReadLimit(t, limitFile); got != 16<<20 {
			t.Fatalf("memory limit before the update: %d, want %d", got, 16<<20)
		}
		e.c.Must(t, "update", "--memory", "24m", "upd")
		if got := oomReadLimit(t, limitFile); got != 24<<20 {
			t.Errorf("memory limit after update --memory 24m: %d, want %d", got, 24<<20)
		}
		if in := oomInspect(t, e, "upd"); in.HostConfig.Memory != 24<<20 || in.State.Status != "running" {
			t.Errorf("inspect after the update: memory %d, state %+v", in.HostConfig.Memory, in.State)
		}
		// The container sees its new limit too.
		if out, _, err := e.c.Run("exec", "upd", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil || strings.TrimSpace(out) != strconv.Itoa(24<<20) {
			t.Errorf("the container reads memory.limit_in_bytes %q, want %d", out, 24<<20)
		}
		// A limit below Docker's minimum is refused; the old one stays.
		if _, _, err := e.c.Run("update", "--memory", "4k", "upd"); err == nil {
			t.Errorf("update --memory 4k succeeded")
		}
		if got := oomReadLimit(t, limitFile); got != 24<<20 {
			t.Errorf("memory limit after a refused update: %d, want %d", got, 24<<20)
		}
		e.c.Must(t, "rm", "-f", "upd")
	})
}

// oomMemoryLimitFile is memory.limit_in_bytes of the cgroup v1 memory
// controller holding pid.
func oomMemoryLimitFile(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range Lines(string(b)) {
		p := strings.SplitN(l, ":", 3)
		if len(p) == 3 && strings.Contains(","+p[1]+",", ",memory,") {
			return filepath.Join("/sys/fs/cgroup/memory", p[2], "memory.limit_in_bytes")
		}
	}
	t.Skipf("no cgroup v1 memory controller on this host:\n%s", b)
	return ""
}

func oomReadLimit(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}
