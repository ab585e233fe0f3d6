package runtime

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestIDMapHelpers(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 5000, Size: 1}}
	if got, want := formatIDMap(maps), "0 100000 1000\n1000 5000 1\n"; got != want {
		t.Errorf("formatIDMap = %q, want %q", got, want)
	}
	for id, want := range map[uint32]int{0: 100000, 999: 100999, 1000: 5000, 1001: 1001} {
		if got := hostID(maps, id); got != want {
			t.Errorf("hostID(%d) = %d, want %d", id, got, want)
		}
	}
	if !isSelfMapping([]specs.LinuxIDMapping{{ContainerID: 0, HostID: 1001, Size: 1}}, 1001) {
		t.Error("0 1001 1 is a self mapping of 1001")
	}
	for _, m := range [][]specs.LinuxIDMapping{
		nil,
		{{ContainerID: 0, HostID: 1001, Size: 2}},
		{{ContainerID: 0, HostID: 1002, Size: 1}},
		{{ContainerID: 0, HostID: 1001, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 10}},
	} {
		if isSelfMapping(m, 1001) {
			t.Errorf("%v is not a self mapping of 1001", m)
		}
	}
	if !isInitialUIDMap("         0          0 4294967295\n") || isInitialUIDMap("0 1001 1\n") || isInitialUIDMap("0 0 4294967295\n1 1 1\n") {
		t.Error("isInitialUIDMap")
	}
	limit := int64(5)
	for _, c := range []struct {
		r    *specs.LinuxResources
		want bool
	}{
		{nil, false},
		{&specs.LinuxResources{}, false},
		{&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}, false},
		{&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}, true},
		{&specs.LinuxResources{Unified: map[string]string{"memory.max": "1G"}}, true},
	} {
		if got := resourcesRequested(c.r); got != c.want {
			t.Errorf("resourcesRequested(%+v) = %v", c.r, got)
		}
	}
}

// newUserNSChild starts a process in a new user namespace whose maps are
// not written yet, and ends it with the test.
func newUserNSChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new user namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

func readProc(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// Privileged, the maps are written as given and setgroups(2) stays allowed.
func TestWriteIDMapsPrivileged(t *testing.T) {
	testutil.RequiresRoot(t)
	if Rootless() {
		t.Skip("runs in a user namespace")
	}
	if got := DefaultStateRoot(); got != DefaultRoot {
		t.Errorf("DefaultStateRoot() = %q for root, want %q", got, DefaultRoot)
	}
	pid := newUserNSChild(t)
	l := &specs.Linux{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1000}, {ContainerID: 1000, HostID: 300000, Size: 10}},
	}
	if err := writeIDMaps(pid, l); err != nil {
		t.Fatal(err)
	}
	if got := readProc(t, pid, "uid_map"); got != "0 100000 65536" {
		t.Errorf("uid_map %q", got)
	}
	if got := readProc(t, pid, "gid_map"); got != "0 200000 1000 1000 300000 10" {
		t.Errorf("gid_map %q", got)
	}
	if got := readProc(t, pid, "setgroups"); got != "allow" {
		t.Errorf("setgroups %q, want allow", got)
	}
}

// Unprivileged (the test binary again, as nobody): the single self-mapping
// is written with setgroups denied first; a range needs newuidmap and
// /etc/subuid, and without them the error says so.
func TestWriteIDMapsUnprivileged(t *testing.T) {
	testutil.RequiresRoot(t)
	dir, err := os.MkdirTemp("", "berth-userns-unit-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "runtime.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperUnprivilegedIDMaps$", "-test.v")
	cmd.Env = []string{"BERTH_USERNS_HELPER=1", "PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=/run/user/test"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHelperUnprivilegedIDMaps") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func TestHelperUnprivilegedIDMaps(t *testing.T) {
	if os.Getenv("BERTH_USERNS_HELPER") != "1" {
		t.Skip("run by TestWriteIDMapsUnprivileged")
	}
	if !Rootless() {
		t.Fatalf("Rootless() is false for uid %d", os.Geteuid())
	}
	if got := DefaultStateRoot(); got != "/run/user/test/berth-runtime" {
		t.Errorf("DefaultStateRoot() = %q", got)
	}
	os.Unsetenv("XDG_RUNTIME_DIR")
	if got, want := DefaultStateRoot(), "/run/user/"+strconv.Itoa(os.Geteuid())+"/berth-runtime"; got != want {
		t.Errorf("DefaultStateRoot() without XDG_RUNTIME_DIR = %q, want %q", got, want)
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	pid := newUserNSChild(t)
	self := &specs.Linux{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 1}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	if err := writeIDMaps(pid, self); err != nil {
		t.Fatal(err)
	}
	if got, want := readProc(t, pid, "uid_map"), "0 "+strconv.Itoa(int(uid))+" 1"; got != want {
		t.Errorf("uid_map %q, want %q", got, want)
	}
	if got, want := readProc(t, pid, "gid_map"), "0 "+strconv.Itoa(int(gid))+" 1"; got != want {
		t.Errorf("gid_map %q, want %q", got, want)
	}
	if got := readProc(t, pid, "setgroups"); got != "deny" {
		t.Errorf("setgroups %q, want deny", got)
	}

	// nobody has no /etc/subuid range: newuidmap (or its absence) refuses.
	pid2 := newUserNSChild(t)
	ranges := &specs.Linux{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 10}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	err := writeIDMaps(pid2, ranges)
	if err == nil {
		t.Fatal("an unprivileged range mapping outside /etc/subuid was written")
	}
	if !errors.Is(err, errdefs.ErrFailedPrecond) || !strings.Contains(err.Error(), "newuidmap") {
		t.Errorf("error %v: want a failed precondition naming newuidmap", err)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("error %v does not wrap EPERM", err)
	}
	if got := readProc(t, pid2, "uid_map"); got != "" {
		t.Errorf("uid_map written anyway: %q", got)
	}
}
