package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	bmount "github.com/berth-project/berth/internal/mount"
	"github.com/berth-project/berth/internal/testutil"
)

func TestParseMountinfo(t *testing.T) {
	const info = `21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 21 0:50 / /var/lib/berth/containers/abc/mnt-1 rw - overlay overlay rw,lowerdir=/x
31 30 8:1 /volumes/v/_data /var/lib/berth/containers/abc/mnt-1/data rw - ext4 /dev/sda1 rw
32 30 0:51 / /var/lib/berth/containers/abc/mnt-1/my\040dir rw - tmpfs tmpfs ro
33 21 0:52 / /var/lib/berth/containers/abc/mnt-10 rw - tmpfs tmpfs rw
34 21 0:53 / /proc rw,nosuid master:5 - proc proc rw
`
	got, err := parseMountinfo(strings.NewReader(info), "/var/lib/berth/containers/abc/mnt-1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]viewMountPoint{
		30: {"/", "overlay", 21},
		31: {"/data", "ext4", 30},
		32: {"/my dir", "tmpfs", 30},
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("mount %d: %v, want %v", id, got[id], w)
		}
	}
	// A container's own table: every mount, relative to its root.
	all, err := parseMountinfo(strings.NewReader(info), "/")
	if err != nil {
		t.Fatal(err)
	}
	if all[21].Point != "/" || all[34].Point != "/proc" || len(all) != 6 {
		t.Errorf("container table: %v", all)
	}
}

func TestClassifyMount(t *testing.T) {
	mounts := []viewMount{
		{Dest: "/data", Source: "/vol/a", RW: true, Volume: "a"},
		{Dest: "/data/sub", Source: "/host/b", RW: false},
		{Dest: "/etc/hosts", Source: "/c/hosts", RW: true, Network: true},
	}
	// 1 the root filesystem; 2 /data, 3 /data/sub and 4 below it (a
	// submount of the recursive bind); 5 /etc/hosts; 6 /proc and 7 under it;
	// 8 /dev and 9 /dev/shm; 10 an unknown mount.
	table := map[uint64]viewMountPoint{
		2: {"/data", "ext4", 1}, 3: {"/data/sub", "ext4", 2}, 4: {"/data/sub/nested", "tmpfs", 3},
		5: {"/etc/hosts", "ext4", 1}, 6: {"/proc", "proc", 1}, 7: {"/proc/kcore", "tmpfs", 6},
		8: {"/dev", "tmpfs", 1}, 9: {"/dev/shm", "tmpfs", 8},
	}
	byID := map[uint64]*viewMount{2: &mounts[0], 3: &mounts[1], 5: &mounts[2]}
	for _, tc := range []struct {
		id    uint64
		place place
		dest  string
	}{
		{1, onRootfs, ""},
		{2, onMount, "/data"},
		{3, onMount, "/data/sub"},
		{4, onMount, "/data/sub"},
		{5, onRootfs, "/etc/hosts"},
		{6, onSystem, ""},
		{7, onSystem, ""},
		{9, onSystem, ""},
		{10, onSystem, ""},
	} {
		pl, m := classify(tc.id, 1, table, byID)
		dest := ""
		if m != nil {
			dest = m.Dest
		}
		if pl != tc.place || dest != tc.dest {
			t.Errorf("classify(%d) = %v %q, want %v %q", tc.id, pl, dest, tc.place, tc.dest)
		}
	}
}

func TestTmpfsStandIn(t *testing.T) {
	got := strings.Join(tmpfsStandIn("rw,noexec,size=64m,mode=1777,uid=5"), ",")
	if got != "ro,size=4k,mode=1777,uid=5" {
		t.Errorf("tmpfsStandIn: %s", got)
	}
}

// The view tests mount, so each runs in a child process of its own mount
// namespace (the view itself is built in yet another, private one).
const archiveChildEnv = "BERTH_ENGINE_ARCHIVE_CHILD"

func inArchiveChild(t *testing.T) bool {
	t.Helper()
	testutil.RequiresRoot(t)
	if os.Getenv(archiveChildEnv) != "" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make / private in the test's mount namespace: %v", err)
		}
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), archiveChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	text := string(out)
	switch {
	case err != nil || strings.Contains(text, "--- FAIL"):
		t.Fatalf("%s in its own mount namespace failed (%v):\n%s", t.Name(), err, text)
	case !strings.Contains(text, "--- PASS: "+t.Name()):
		t.Fatalf("%s did not pass in its mount namespace:\n%s", t.Name(), text)
	}
	return false
}

// viewFixture is a stopped container's layout on disk: a root filesystem
// directory and the sources of its mounts.
type viewFixture struct {
	rootfs, vol, roVol, bind, hosts string
	mounts                          []viewMount
}

func newViewFixture(t *testing.T) *viewFixture {
	t.Helper()
	base := t.TempDir()
	f := &viewFixture{
		rootfs: filepath.Join(base, "rootfs"),
		vol:    filepath.Join(base, "vol"),
		roVol:  filepath.Join(base, "rovol"),
		bind:   filepath.Join(base, "bind"),
		hosts:  filepath.Join(base, "hosts"),
	}
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(f.rootfs, "etc", "shadow"), "container shadow\n")
	write(filepath.Join(f.rootfs, "etc", "hosts"), "")
	write(filepath.Join(f.rootfs, "data", "image-file"), "under the volume\n")
	write(filepath.Join(f.rootfs, "srv", "top"), "srv\n")
	write(filepath.Join(f.vol, "f"), "in the volume\n")
	link("/etc/shadow", filepath.Join(f.vol, "abs"))
	link("../../../../../../../../etc/shadow", filepath.Join(f.vol, "rel"))
	link("../../../../../../../..", filepath.Join(f.vol, "up"))
	link("/etc", filepath.Join(f.vol, "etclink"))
	link("/data", filepath.Join(f.rootfs, "datalink"))
	write(filepath.Join(f.roVol, "r"), "read-only\n")
	write(filepath.Join(f.bind, "b"), "bound\n")
	write(f.hosts, "127.0.0.1 localhost\n")
	f.mounts = []viewMount{
		{Dest: "/data", Source: f.vol, RW: true},
		{Dest: "/etc/hosts", Source: f.hosts, RW: true, Network: true},
		{Dest: "/ro", Source: f.roVol},
		{Dest: "/srv/bind", Source: f.bind, RW: true},
		{Dest: "/tmpfs", Tmpfs: true, RW: true, Data: "mode=1777"},
	}
	return f
}

func (f *viewFixture) open(t *testing.T, readonlyRootfs bool) *fsView {
	t.Helper()
	dir := t.TempDir()
	rootfs := func(target string) error {
		return bmount.Mount{Type: "bind", Source: f.rootfs, Options: []string{"rbind"}}.Mount(target)
	}
	v, err := openPrivateView(dir, rootfs, f.mounts, readonlyRootfs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ns unix.Stat_t
	if err := unix.Fstat(int(v.hold[0].Fd()), &ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Close()
		// The thread that built the view has ended, so with the last
		// descriptor closed the namespace and its mounts are gone.
		tasks, _ := filepath.Glob("/proc/self/task/*/ns/mnt")
		for _, task := range tasks {
			var st unix.Stat_t
			if err := unix.Stat(task, &st); err == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
				t.Errorf("%s is still in the view's mount namespace", task)
			}
		}
	})
	// Nothing of the view is mounted in the caller's namespace.
	if mounted, err := isMountPoint(dir); err != nil || mounted {
		t.Errorf("the view's root %s is a mount point in the caller's namespace (%v)", dir, err)
	}
	return v
}

func isMountPoint(p string) (bool, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
	return len(ms) > 0, err
}

// tarOf archives p from the view and returns its entries: name -> content
// (directories "<dir>", symlinks "-> target").
func tarOf(t *testing.T, v *fsView, p string) (map[string]string, container.PathStat, error) {
	t.Helper()
	var buf bytes.Buffer
	var st container.PathStat
	err := v.archive(context.Background(), p, func(s container.PathStat) { st = s }, &buf)
	if err != nil {
		return nil, st, err
	}
	out := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read the archive of %s: %v", p, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			out[hdr.Name] = "<dir>"
		case tar.TypeSymlink:
			out[hdr.Name] = "-> " + hdr.Linkname
		default:
			b, _ := io.ReadAll(tr)
			out[hdr.Name] = string(b)
		}
	}
	return out, st, nil
}

func tarWith(t *testing.T, name, content string) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestViewReadsThroughMounts(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	v := f.open(t, false)

	got, st, err := tarOf(t, v, "/data/f")
	if err != nil || got["f"] != "in the volume\n" || st.Name != "f" || st.Size != int64(len("in the volume\n")) {
		t.Errorf("/data/f: %v %+v %v", got, st, err)
	}
	// The volume's content, not the image's under it.
	if _, err := v.stat("/data/image-file"); !errdefs.IsNotFound(err) {
		t.Errorf("the image's file under the volume is visible: %v", err)
	}
	// Through a symlink of the root filesystem that points into the volume.
	if got, _, err := tarOf(t, v, "/datalink/f"); err != nil || got["f"] != "in the volume\n" {
		t.Errorf("/datalink/f: %v %v", got, err)
	}
	// A directory holding mount points includes what is mounted there.
	got, _, err = tarOf(t, v, "/srv")
	if err != nil || got["srv/top"] != "srv\n" || got["srv/bind/b"] != "bound\n" {
		t.Errorf("/srv: %v %v", got, err)
	}
	got, st, err = tarOf(t, v, "/")
	if err != nil || got["/data/f"] != "in the volume\n" || got["/ro/r"] != "read-only\n" ||
		got["/etc/hosts"] != "127.0.0.1 localhost\n" || got["/tmpfs/"] != "<dir>" || st.Name != "/" {
		t.Errorf("/: %v %+v %v", got, st, err)
	}
	if _, ok := got["/data/image-file"]; ok {
		t.Errorf("the archive of / holds the image's file under the volume")
	}
	// The stopped container's tmpfs is empty.
	if got, _, err := tarOf(t, v, "/tmpfs"); err != nil || len(got) != 1 {
		t.Errorf("/tmpfs: %v %v", got, err)
	}
	// Contents only, with "/.".
	if got, _, err := tarOf(t, v, "/ro/."); err != nil || got["r"] != "read-only\n" {
		t.Errorf("/ro/.: %v %v", got, err)
	}
}

func TestViewSymlinksInVolumeStayInContainer(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	v := f.open(t, false)
	for _, p := range []string{"/data/abs", "/data/rel"} {
		st, err := v.stat(p)
		if err != nil || st.Mode&os.ModeSymlink == 0 || st.LinkTarget != "/etc/shadow" {
			t.Errorf("stat %s: %+v %v", p, st, err)
		}
		// Copied as a link.
		if got, _, err := tarOf(t, v, p); err != nil || !strings.HasPrefix(got[filepath.Base(p)], "-> ") {
			t.Errorf("archive %s: %v %v", p, got, err)
		}
		// Followed (the docker CLI's -L asks for the link target; a
		// descriptor followed through the link reads the same file).
		lf, err := v.lookup(p, true)
		if err != nil {
			t.Fatalf("follow %s: %v", p, err)
		}
		b, err := os.ReadFile("/proc/self/fd/" + itoa(lf.Fd()))
		lf.Close()
		if err != nil || string(b) != "container shadow\n" {
			t.Errorf("%s followed reads %q (%v), want the container's /etc/shadow", p, b, err)
		}
	}
	if got, _, err := tarOf(t, v, "/data/up/etc/shadow"); err != nil || got["shadow"] != "container shadow\n" {
		t.Errorf("/data/up/etc/shadow: %v %v", got, err)
	}
	if got, _, err := tarOf(t, v, "/data/up/"); err != nil || got["up/etc/shadow"] != "container shadow\n" {
		t.Errorf("/data/up/: %d entries, shadow %q, %v", len(got), got["up/etc/shadow"], err)
	}
	if st, err := v.stat("/data/up"); err != nil || st.LinkTarget != "/" {
		t.Errorf("stat /data/up: %+v %v", st, err)
	}
	// Extracting through a link in the volume lands in the container.
	if err := v.extract(context.Background(), "/data/etclink", tarWith(t, "planted", "x"), false, ""); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.rootfs, "etc", "planted")); err != nil || string(b) != "x" {
		t.Errorf("extract through /data/etclink: %q %v", b, err)
	}
	if _, err := os.Lstat("/etc/planted"); err == nil {
		os.Remove("/etc/planted")
		t.Errorf("extract through a link in the volume wrote the host's /etc")
	}
	// Entries climbing out of the extraction point are refused.
	if err := v.extract(context.Background(), "/data", tarWith(t, "../../../../escaped", "x"), false, ""); err == nil {
		t.Errorf("an entry with ../ was extracted")
	}
	if err := v.extract(context.Background(), "/data/up", tarWith(t, "etc/up-planted", "y"), false, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.rootfs, "etc", "up-planted")); err != nil {
		t.Errorf("extract through /data/up: %v", err)
	}
}

func TestViewExtractRules(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	v := f.open(t, false)
	ctx := context.Background()
	if err := v.extract(ctx, "/data", tarWith(t, "new", "to the volume"), false, ""); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.vol, "new")); err != nil || string(b) != "to the volume" {
		t.Errorf("copy into the volume: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(f.rootfs, "data", "new")); err == nil {
		t.Errorf("copy into the volume wrote the root filesystem under it")
	}
	if err := v.extract(ctx, "/srv/bind/", tarWith(t, "nb", "to the bind"), false, ""); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.bind, "nb")); err != nil || string(b) != "to the bind" {
		t.Errorf("copy into the bind: %q %v", b, err)
	}
	err := v.extract(ctx, "/ro", tarWith(t, "x", "x"), false, "")
	if !errdefs.IsInvalidArgument(err) || err.Error() != "mounted volume is marked read-only" {
		t.Errorf("copy into a read-only volume: %v", err)
	}
	if err := v.extract(ctx, "/tmpfs", tarWith(t, "x", "x"), false, ""); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "tmpfs") {
		t.Errorf("copy into a stopped container's tmpfs: %v", err)
	}
	if err := v.extract(ctx, "/data/f", tarWith(t, "x", "x"), false, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("copy into a file: %v", err)
	}
	if err := v.extract(ctx, "/nowhere", tarWith(t, "x", "x"), false, ""); !errdefs.IsNotFound(err) {
		t.Errorf("copy into a missing directory: %v", err)
	}

	ro := f.open(t, true)
	err = ro.extract(ctx, "/etc", tarWith(t, "x", "x"), false, "")
	if !errdefs.IsInvalidArgument(err) || err.Error() != "container rootfs is marked read-only" {
		t.Errorf("copy into a read-only root filesystem: %v", err)
	}
	if err := ro.extract(ctx, "/data", tarWith(t, "ok", "x"), false, ""); err != nil {
		t.Errorf("copy into a volume of a read-only container: %v", err)
	}
}

func itoa(fd uintptr) string { return strconv.Itoa(int(fd)) }

func TestRunningViewRefusesAnotherProcess(t *testing.T) {
	// This process's root is not the directory named as the container's
	// root filesystem (as for a PID reused after a container died): no view.
	_, err := openRunningView(os.Getpid(), t.TempDir(), nil, false)
	if !errdefs.IsConflict(err) {
		t.Errorf("a view of a process outside the root filesystem: %v", err)
	}
}

func TestRunningViewSeesProcessMounts(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	rootfs := testutil.BusyboxRootfs(t)
	if err := os.Mkdir(filepath.Join(rootfs, "tm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "tm", "under"), []byte("under the tmpfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A process in a mount namespace of its own, chrooted into rootfs, with
	// /proc and a tmpfs mounted there: the mounts exist only in its namespace.
	cmd := exec.Command("/bin/busybox", "sh", "-c", "busybox mount -t proc proc /proc && busybox mount -t tmpfs tmpfs /tm && echo in-tmpfs > /tm/f && echo ready && exec busybox sleep 1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Chroot: rootfs, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("the process did not start: %q %v", line, err)
	}
	mounts := []viewMount{{Dest: "/tm", Tmpfs: true, RW: true}}
	v, err := openRunningView(cmd.Process.Pid, rootfs, mounts, false)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	if got, _, err := tarOf(t, v, "/tm/f"); err != nil || got["f"] != "in-tmpfs\n" {
		t.Errorf("/tm/f: %v %v", got, err)
	}
	if _, err := v.stat("/tm/under"); !errdefs.IsNotFound(err) {
		t.Errorf("the root filesystem under the tmpfs is visible: %v", err)
	}
	// The runtime's mounts are not reached, and not entered.
	if _, err := v.stat("/proc/cpuinfo"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("stat /proc/cpuinfo: %v", err)
	}
	if err := v.extract(context.Background(), "/proc", tarWith(t, "x", "x"), false, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("extract into /proc: %v", err)
	}
	got, _, err := tarOf(t, v, "/")
	if err != nil || got["/tm/f"] != "in-tmpfs\n" || got["/proc/"] != "<dir>" || got["/bin/busybox"] == "" {
		t.Errorf("/: %d entries, /tm/f %q, /proc/ %q, %v", len(got), got["/tm/f"], got["/proc/"], err)
	}
	for name := range got {
		if strings.HasPrefix(name, "/proc/") && name != "/proc/" {
			t.Errorf("the archive of / entered /proc: %s", name)
			break
		}
	}
	// A copy into the tmpfs is what the process sees.
	if err := v.extract(context.Background(), "/tm", tarWith(t, "new", "copied"), false, ""); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/root/tm/new")
	if err != nil || string(b) != "copied" {
		t.Errorf("the process reads %q (%v) from the copied file", b, err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "tm", "new")); err == nil {
		t.Errorf("the copy went to the root filesystem under the tmpfs")
	}
}

func TestViewFileMountPoints(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	// A missing file mount point is created, as the runtime does.
	f := newViewFixture(t)
	hosts := filepath.Join(f.rootfs, "etc", "hosts")
	if err := os.Remove(hosts); err != nil {
		t.Fatal(err)
	}
	if got, _, err := tarOf(t, f.open(t, false), "/etc/hosts"); err != nil || got["hosts"] != "127.0.0.1 localhost\n" {
		t.Errorf("/etc/hosts on a created mount point: %v %v", got, err)
	}
	if fi, err := os.Lstat(hosts); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("the mount point created in the root filesystem: %v %v", fi, err)
	}
	// One that is a link inside the container is followed there.
	if err := os.Remove(hosts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.rootfs, "etc", "hosts.real"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hosts.real", hosts); err != nil {
		t.Fatal(err)
	}
	v := f.open(t, false)
	if got, _, err := tarOf(t, v, "/etc/hosts.real"); err != nil || got["hosts.real"] != "127.0.0.1 localhost\n" {
		t.Errorf("/etc/hosts.real: %v %v", got, err)
	}
	// A FIFO (or device) there is refused, never opened.
	if err := os.Remove(hosts); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(hosts, 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := func(target string) error {
		return bmount.Mount{Type: "bind", Source: f.rootfs, Options: []string{"rbind"}}.Mount(target)
	}
	if v, err := openPrivateView(t.TempDir(), rootfs, f.mounts, false, nil); err == nil {
		v.Close()
		t.Errorf("a view with a FIFO at a file's mount point was made")
	} else if !strings.Contains(err.Error(), "/etc/hosts") {
		t.Errorf("the error does not name the mount point: %v", err)
	}
}

func TestViewExtractOptions(t *testing.T) {
	if !inArchiveChild(t) {
		return
	}
	f := newViewFixture(t)
	if err := os.WriteFile(filepath.Join(f.rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\nworker:x:1234:4321::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := f.open(t, false)
	ctx := context.Background()
	// Docker's noOverwriteDirNonDir: neither a directory replaced by a file
	// nor the reverse, in the root filesystem or in a volume.
	err := v.extract(ctx, "/", tarWith(t, "srv", "not a directory"), true, "")
	if !errdefs.IsInvalidArgument(err) || err.Error() != `cannot overwrite directory "/srv" with non-directory "srv"` {
		t.Errorf("a file over a directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(f.rootfs, "srv", "top")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the directory was touched: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "f/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	err = v.extract(ctx, "/data", &buf, true, "")
	if !errdefs.IsInvalidArgument(err) || err.Error() != `cannot overwrite non-directory "/f" with directory "f"` {
		t.Errorf("a directory over a file in the volume: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(f.vol, "f")); err != nil || string(b) != "in the volume\n" {
		t.Errorf("the volume's file was touched: %q %v", b, err)
	}
	// A file over a file is fine.
	if err := v.extract(ctx, "/data", tarWith(t, "f", "replaced"), true, ""); err != nil {
		t.Errorf("a file over a file: %v", err)
	}
	// copyUIDGID: the container's user (from its /etc/passwd) owns what is
	// copied.
	if err := v.extract(ctx, "/data", tarWith(t, "owned", "x"), true, "worker"); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(f.vol, "owned"), &st); err != nil || st.Uid != 1234 || st.Gid != 4321 {
		t.Errorf("copied with the container's user: %d:%d %v", st.Uid, st.Gid, err)
	}
	if err := v.extract(ctx, "/data", tarWith(t, "x", "x"), false, "nosuchuser"); err == nil {
		t.Errorf("an unknown container user was accepted")
	}
}
