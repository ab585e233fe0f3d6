package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/runtime/bundle"
	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// worldDir makes a directory every user may traverse (t.TempDir's are 0700
// and root's: neither a container root mapped to another uid nor an
// unprivileged user could reach a bundle inside), removed when t ends.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chownTree gives every file of dir to uid:gid, as a user shifts a rootfs
// for a user namespace.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("chown %s: %v", dir, err)
	}
}

// As root, a container in a user namespace whose root is host uid 100000:
// the rootfs (shifted to 100000 as users do) is usable, id and the maps
// show the mapping, files it creates belong to 100000 on the host, the
// host's devices work inside, /proc is mounted and /sys too (a bind of the
// host's when the container shares the host's network namespace).
func TestRuntimeCLIUserNamespaceMapping(t *testing.T) {
	const base, size = 100000, 65536
	script := `id; cat /proc/self/uid_map /proc/self/gid_map; cat /proc/self/setgroups
echo data > /tmp/created && stat -c 'created %u:%g' /tmp/created
echo x > /dev/null && head -c 4 /dev/zero | wc -c | sed 's/^/zero /'
grep -q '^proc /proc proc' /proc/mounts && echo proc-mounted
test -d /sys/class && echo sys-mounted
stat -c 'pts %u:%g' /dev/pts/ptmx`
	for _, netns := range []bool{true, false} {
		t.Run(fmt.Sprintf("netns=%v", netns), func(t *testing.T) {
			r := newRT(t)
			dir := worldDir(t)
			s, err := testutil.MakeBusyboxBundle(dir, "sh", "-c", script)
			if err != nil {
				t.Fatal(err)
			}
			s.Root.Readonly = false
			var ns []specs.LinuxNamespace
			for _, n := range s.Linux.Namespaces {
				if n.Type != specs.NetworkNamespace || netns {
					ns = append(ns, n)
				}
			}
			s.Linux.Namespaces = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: size}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: size}}
			testutil.WriteSpec(t, dir, s)
			chownTree(t, filepath.Join(dir, "rootfs"), base, base)

			id := "userns-" + strconv.FormatBool(netns)
			out := r.ok("run", "--bundle", dir, id)
			for _, want := range []string{
				"uid=0(root) gid=0(root)",
				"0     100000      65536",
				"allow", // root on the host leaves setgroups(2) allowed, as runc
				"created 0:0",
				"zero 4",
				"proc-mounted",
				"sys-mounted",
				"pts 0:0",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dir, "rootfs/tmp/created"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != base || st.Gid != base {
				t.Errorf("file created by the container's root is %d:%d on the host, want %d:%d", st.Uid, st.Gid, base, base)
			}
			if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 0 {
				t.Fatalf("run left containers: %v", ids)
			}
		})
	}
}

// testUser creates a user for the test and removes it when the test ends.
// As an ordinary user (not --system) it gets ranges in /etc/subuid and
// /etc/subgid where useradd allocates them (Debian's SUB_UID_COUNT).
func testUser(t *testing.T) *user.User {
	t.Helper()
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed")
	}
	name := fmt.Sprintf("berthrt%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// userRT drives berth-runtime as an unprivileged user: its own copy of the
// binary and a state root of the user's own.
type userRT struct {
	t        *testing.T
	bin      string
	root     string
	uid, gid uint32
	env      []string
}

func newUserRT(t *testing.T) *userRT {
	t.Helper()
	testutil.RequiresRoot(t)
	src := RequireBinary(t, "berth-runtime")
	u := testUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := worldDir(t)
	bin := filepath.Join(dir, "berth-runtime")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &userRT{t: t, bin: bin, root: filepath.Join(dir, "state"), uid: uint32(uid), gid: uint32(gid),
		env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent"}}
	if err := os.Mkdir(r.root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(r.root, uid, gid); err != nil {
		t.Fatal(err)
	}
	// Registered after testUser's cleanup, so it runs before the user goes.
	t.Cleanup(func() {
		out, _, _ := r.exec(nil, "list", "-q")
		for _, id := range strings.Fields(out) {
			if _, e, err := r.exec(nil, "delete", "--force", id); err != nil {
				t.Errorf("cleanup %s: %v %s", id, err, e)
			}
		}
	})
	return r
}

// exec runs berth-runtime as the user, with output in files (see rt.exec).
// With extraEnv nil it passes --root; otherwise it adds extraEnv to the
// environment and leaves the state root to its default.
func (r *userRT) exec(extraEnv []string, args ...string) (stdout, stderr string, err error) {
	r.t.Helper()
	dir := r.t.TempDir()
	outF, err1 := os.Create(filepath.Join(dir, "stdout"))
	errF, err2 := os.Create(filepath.Join(dir, "stderr"))
	if err1 != nil || err2 != nil {
		r.t.Fatal(err1, err2)
	}
	defer outF.Close()
	defer errF.Close()
	if extraEnv == nil {
		args = append([]string{"--root", r.root}, args...)
	}
	c := exec.Command(r.bin, args...)
	c.Env = append(append([]string(nil), r.env...), extraEnv...)
	c.Dir = "/"
	c.Stdout, c.Stderr = outF, errF
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: []uint32{}}}
	err = c.Run()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return string(o), string(e), err
}

func (r *userRT) ok(args ...string) string {
	r.t.Helper()
	out, errOut, err := r.exec(nil, args...)
	if err != nil {
		r.t.Fatalf("berth-runtime %v as uid %d: %v: %s", args, r.uid, err, errOut)
	}
	return out
}

// rootlessBundle writes `spec --rootless` as the user into a bundle the
// user owns, with a busybox rootfs and args as the process.
func (r *userRT) rootlessBundle(args ...string) (string, *specs.Spec) {
	r.t.Helper()
	dir := filepath.Join(worldDir(r.t), "bundle")
	if err := os.Mkdir(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chown(dir, int(r.uid), int(r.gid)); err != nil {
		r.t.Fatal(err)
	}
	r.ok("spec", "--rootless", "--bundle", dir)
	if err := testutil.MakeBusyboxRootfs(filepath.Join(dir, "rootfs")); err != nil {
		r.t.Fatal(err)
	}
	chownTree(r.t, dir, int(r.uid), int(r.gid))
	s, _, err := bundle.Load(dir)
	if err != nil {
		r.t.Fatal(err)
	}
	s.Process.Terminal = false
	s.Process.Args = args
	r.write(dir, s)
	return dir, s
}

func (r *userRT) write(dir string, s *specs.Spec) {
	r.t.Helper()
	testutil.WriteSpec(r.t, dir, s)
	if err := os.Chown(filepath.Join(dir, "config.json"), int(r.uid), int(r.gid)); err != nil {
		r.t.Fatal(err)
	}
}

// `spec --rootless` bundles run as an unprivileged user: root inside, the
// user outside, without cgroups, and the user can kill and delete them.
func TestRuntimeCLIRootless(t *testing.T) {
	r := newUserRT(t)
	dir, _ := r.rootlessBundle("sh", "-c", "id; cat /proc/self/uid_map /proc/self/setgroups; test -d /sys/class && echo sys-mounted; echo x > /dev/null && echo null-ok")
	out := r.ok("run", "--bundle", dir, "once")
	want := []string{
		"uid=0(root) gid=0(root)",
		fmt.Sprintf("0 %10d %10d", r.uid, 1),
		"deny", // written before the gid map, as the kernel wants unprivileged
		"sys-mounted",
		"null-ok",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	dir2, _ := r.rootlessBundle("sleep", "1000")
	r.ok("run", "--detach", "--bundle", dir2, "bg")
	var st specs.State
	if err := json.Unmarshal([]byte(r.ok("state", "bg")), &st); err != nil || st.Status != specs.StateRunning {
		t.Fatalf("state %+v (%v)", st, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	wantUID := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", r.uid, r.uid, r.uid, r.uid)
	if !strings.Contains(string(status), wantUID+"\n") {
		t.Errorf("container process on the host: want %q in\n%s", wantUID, status)
	}
	r.ok("kill", "bg", "KILL")
	if _, e, err := r.exec(nil, "delete", "--force", "bg"); err != nil {
		t.Fatalf("delete as the user: %v: %s", err, e)
	}
	if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 0 {
		t.Fatalf("containers left: %v", ids)
	}
}

// Unprivileged, the state root defaults to $XDG_RUNTIME_DIR/berth-runtime.
func TestRuntimeCLIRootlessDefaultRoot(t *testing.T) {
	r := newUserRT(t)
	dir, _ := r.rootlessBundle("true")
	xdg := filepath.Join(worldDir(t), "xdg")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(xdg, int(r.uid), int(r.gid)); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_RUNTIME_DIR=" + xdg}
	if _, e, err := r.exec(env, "create", "--bundle", dir, "dflt"); err != nil {
		t.Fatalf("create: %v: %s", err, e)
	}
	if _, err := os.Stat(filepath.Join(xdg, "berth-runtime", "dflt", "state.json")); err != nil {
		entries, _ := filepath.Glob(filepath.Join(xdg, "*", "*"))
		t.Errorf("no state under $XDG_RUNTIME_DIR/berth-runtime: %v (found %v)", err, entries)
	}
	if _, e, err := r.exec(env, "delete", "--force", "dflt"); err != nil {
		t.Fatalf("delete: %v: %s", err, e)
	}
}

// Unprivileged, resources need a cgroup the user was not given: a clear
// error, and nothing is left behind.
func TestRuntimeCLIRootlessResourcesNeedDelegation(t *testing.T) {
	r := newUserRT(t)
	dir, s := r.rootlessBundle("true")
	limit := int64(10)
	s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}
	r.write(dir, s)
	_, e, err := r.exec(nil, "run", "--bundle", dir, "limited")
	if err == nil {
		t.Fatal("run with resources as an unprivileged user succeeded")
	}
	if !strings.Contains(e, "linux.resources") || !strings.Contains(e, "delegated") {
		t.Errorf("error does not say why: %s", e)
	}
	if ids := strings.Fields(r.ok("list", "-q")); len(ids) != 0 {
		t.Fatalf("containers left: %v", ids)
	}
}

// subRange returns the user's first range in /etc/subuid or /etc/subgid.
func subRange(t *testing.T, file, name string) (start, count uint32) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Skipf("no %s: %v", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 3 && f[0] == name {
			s, err1 := strconv.ParseUint(f[1], 10, 32)
			c, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 == nil && err2 == nil {
				return uint32(s), uint32(c)
			}
		}
	}
	t.Skipf("useradd gave %s no range in %s", name, file)
	return 0, 0
}

// Unprivileged, mappings beyond the user's own ID go through newuidmap and
// newgidmap within /etc/subuid and /etc/subgid: a file the container
// chowns to 1000 belongs to the range's 1000th ID on the host.
func TestRuntimeCLIRootlessSubordinateRanges(t *testing.T) {
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Skip("newuidmap is not installed (Debian package uidmap)")
	}
	r := newUserRT(t)
	u, err := user.LookupId(strconv.Itoa(int(r.uid)))
	if err != nil {
		t.Fatal(err)
	}
	us, uc := subRange(t, "/etc/subuid", u.Username)
	gs, gc := subRange(t, "/etc/subgid", u.Username)
	if uc < 1001 || gc < 1001 {
		t.Skipf("ranges too small: %d %d", uc, gc)
	}
	dir, s := r.rootlessBundle("sh", "-c", "cat /proc/self/uid_map; touch /tmp/owned && chown 1000:1000 /tmp/owned && echo chowned")
	s.Root.Readonly = false
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.uid, Size: 1}, {ContainerID: 1, HostID: us, Size: uc}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.gid, Size: 1}, {ContainerID: 1, HostID: gs, Size: gc}}
	caps := s.Process.Capabilities
	caps.Bounding = append(caps.Bounding, "CAP_CHOWN")
	caps.Effective = append(caps.Effective, "CAP_CHOWN")
	caps.Permitted = append(caps.Permitted, "CAP_CHOWN")
	r.write(dir, s)
	out := r.ok("run", "--bundle", dir, "ranges")
	if want := fmt.Sprintf("%10d %10d %10d", 1, us, uc); !strings.Contains(out, want) || !strings.Contains(out, "chowned") {
		t.Fatalf("output lacks %q or chowned:\n%s", want, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "rootfs/tmp/owned"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != us+999 || st.Gid != gs+999 {
		t.Errorf("container's 1000:1000 is %d:%d on the host, want %d:%d", st.Uid, st.Gid, us+999, gs+999)
	}

	// The container's root a subordinate ID too, not the user: the state
	// directory is closed to it, the exec FIFO reached by descriptor.
	s.Process.Args = []string{"sh", "-c", "id; cat /proc/self/uid_map"}
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: us, Size: uc}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: gs, Size: gc}}
	r.write(dir, s)
	out = r.ok("run", "--bundle", dir, "subroot")
	if want := fmt.Sprintf("%10d %10d %10d", 0, us, uc); !strings.Contains(out, want) || !strings.Contains(out, "uid=0(root)") {
		t.Fatalf("output lacks %q or uid=0(root):\n%s", want, out)
	}
}

// receiveMaster accepts one connection on a console socket at sock and
// returns the pty master it carries (nil on failure) through the channel.
func receiveMaster(t *testing.T, sock string) <-chan *os.File {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *os.File, 1)
	go func() {
		defer l.Close()
		conn, err := l.AcceptUnix()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(make([]byte, 256), oob)
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			got <- nil
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			got <- nil
			return
		}
		unix.SetNonblock(fds[0], true) // so that read deadlines apply
		got <- os.NewFile(uintptr(fds[0]), "master")
	}()
	return got
}

// The terminal of a container in a user namespace belongs to its root:
// /dev/console and its /dev/pts node show as 0 with the tty group inside
// (gid=5 of the devpts mount), as in runc.
func TestRuntimeCLIUserNamespaceConsole(t *testing.T) {
	const base, size = 100000, 65536
	r := newRT(t)
	dir := worldDir(t)
	s, err := testutil.MakeBusyboxBundle(dir, "sh", "-c", "stat -c 'console %u:%g' /dev/console; stat -c 'pts %u:%g' $(tty); echo done")
	if err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = true
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: size}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: size}}
	testutil.WriteSpec(t, dir, s)
	chownTree(t, filepath.Join(dir, "rootfs"), base, base)
	sock := filepath.Join(worldDir(t), "console.sock")
	got := receiveMaster(t, sock)
	r.ok("create", "--bundle", dir, "--console-socket", sock, "uconsole")
	master := <-got
	if master == nil {
		t.Fatal("no pty master received")
	}
	defer master.Close()
	r.ok("start", "uconsole")
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(out.String(), "done") {
		master.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, want := range []string{"console 0:5", "pts 0:5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("terminal output lacks %q: %q", want, out.String())
		}
	}
	r.waitStatus("uconsole", specs.StateStopped)
	r.ok("delete", "uconsole")
}
