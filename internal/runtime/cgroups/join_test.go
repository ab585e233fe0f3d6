package cgroups

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// missingFrom returns the directories of the cgroup whose cgroup.procs
// does not list pid.
func missingFrom(t *testing.T, m *Manager, pid int) []string {
	t.Helper()
	var out []string
	for _, d := range m.dirs() {
		if !strings.Contains(" "+strings.Join(strings.Fields(read(t, d.dir, "cgroup.procs")), " ")+" ", " "+strconv.Itoa(pid)+" ") {
			out = append(out, d.dir)
		}
	}
	return out
}

// A process given the files of JoinFiles enters the cgroup by itself: it
// writes "0" to every v1 tasks file and is cloned into the unified
// directory; Join then finds it everywhere and changes nothing.
func TestRealJoinFilesSelf(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t), "")
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	tasks, unified := m.JoinFiles()
	defer func() {
		for _, f := range tasks {
			f.Close()
		}
		if unified != nil {
			unified.Close()
		}
	}()
	nv1 := 0
	for _, d := range m.dirs() {
		if !d.v2 {
			nv1++
		}
	}
	if len(tasks) != nv1 {
		t.Fatalf("JoinFiles opened %d tasks files, want one per v1 directory (%d)", len(tasks), nv1)
	}
	if hasV2 := len(m.dirs()) > nv1; hasV2 != (unified != nil) {
		t.Fatalf("unified directory opened: %v, host has one: %v", unified != nil, hasV2)
	}
	// A shell is single-threaded: "0" moves the whole process (bash: dash
	// takes no descriptor above 9).
	var script strings.Builder
	for i := range tasks {
		script.WriteString("echo 0 >&" + strconv.Itoa(3+i) + " || exit 1\n")
	}
	script.WriteString("echo joined; exec sleep 1000\n")
	cmd := exec.Command("bash", "-c", script.String())
	cmd.ExtraFiles = tasks
	if unified != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(unified.Fd())}
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "joined\n" {
		t.Fatalf("the process did not join: %q %v", buf, err)
	}
	pid := cmd.Process.Pid
	if miss := missingFrom(t, m, pid); len(miss) > 0 {
		t.Fatalf("process %d did not enter %v by itself", pid, miss)
	}
	if err := m.Join(pid); err != nil {
		t.Fatal(err)
	}
	if miss := missingFrom(t, m, pid); len(miss) > 0 {
		t.Fatalf("process %d not in %v after Join", pid, miss)
	}
}

// Join moves a process that did not enter by itself.
func TestRealJoinMoves(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t), "")
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	cmd := startSleep(t)
	if miss := missingFrom(t, m, cmd.Process.Pid); len(miss) != len(m.dirs()) {
		t.Fatalf("a new process is already in some of the cgroup: missing only from %v", miss)
	}
	if err := m.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if miss := missingFrom(t, m, cmd.Process.Pid); len(miss) > 0 {
		t.Fatalf("process not in %v after Join", miss)
	}
	for h, p := range ownCgroups(t, cmd.Process.Pid) {
		if !strings.HasPrefix(p, "/berth-test-") {
			t.Errorf("hierarchy %q: process in %s", h, p)
		}
	}
}

// Join refuses a directory that is not below a cgroup mount.
func TestJoinOutsideHierarchy(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{paths: map[string]string{"pids": dir}, mounts: map[string]string{"pids": "/sys/fs/cgroup/pids"}}
	if err := m.Join(os.Getpid()); err == nil || !strings.Contains(err.Error(), "no cgroup hierarchy") {
		t.Fatalf("Join outside a hierarchy: %v", err)
	}
	if tasks, unified := m.JoinFiles(); len(tasks) != 0 || unified != nil {
		t.Fatalf("JoinFiles opened files outside a hierarchy")
	}
}

// Destroy removes cgroups the container made below its own (a rmdir of the
// parent alone is refused with EBUSY), children first.
func TestRealDestroyWithChildren(t *testing.T) {
	testutil.RequiresRoot(t)
	m := newReal(t, "/"+uniqueName(t), "")
	if err := m.Apply(0); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.dirs() {
		if err := os.MkdirAll(d.dir+"/sub/subsub", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.dirs() {
		if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Destroy (%v)", d.dir, err)
		}
	}
}
