package rootfs

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/mount"
	"github.com/berth-project/berth/internal/testutil"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// TestCgroupMount mounts "cgroup" on this host's layout (v1 controllers
// plus a cgroup2 mount, or cgroup2 only): binds of the container's own
// cgroups without a cgroup namespace (from CgroupPaths or, failing that,
// this process's cgroups), fresh cgroup mounts with one, read-only when
// asked.
func TestCgroupMount(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		c := &Config{Spec: a.Spec, Rootfs: a.Rootfs, CgroupNS: a.Extra["cgroupns"] == "1"}
		if p := a.Extra["pids"]; p != "" {
			c.CgroupPaths = map[string]string{"pids": p}
		}
		layout, err := hostCgroups()
		must(t, err)
		self, err := selfCgroups()
		must(t, err)
		setupAll(t, c)
		checkCgroups(t, c, layout, self, a.Extra)
		return
	}
	testutil.RequiresRoot(t)
	layout, err := hostCgroups()
	if err != nil || (len(layout.v1) == 0 && layout.unified == nil) {
		t.Skipf("no cgroup mounts on this host: %v", err)
	}
	extra := map[string]string{}
	// A cgroup of our own in the pids hierarchy stands for the container's.
	for _, h := range layout.v1 {
		if len(h.controllers) == 1 && h.controllers[0] == "pids" {
			dir := filepath.Join(h.mountpoint, "berth-rootfs-test-"+strconv.Itoa(os.Getpid()))
			must(t, os.Mkdir(dir, 0o755))
			t.Cleanup(func() { os.Remove(dir) })
			extra["pids"] = dir
			extra["pidsrel"] = "/" + path.Base(dir)
		}
	}
	for _, ro := range []bool{true, false} {
		for _, ns := range []bool{false, true} {
			s := baseSpec()
			for i, m := range s.Mounts {
				if m.Type == "cgroup" && !ro {
					s.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "relatime"}
				}
			}
			e := map[string]string{"pids": extra["pids"], "pidsrel": extra["pidsrel"], "ro": strconv.FormatBool(ro)}
			var flags uintptr
			if ns {
				e["cgroupns"] = "1"
				flags = syscall.CLONE_NEWCGROUP
			}
			runChild(t, args{Rootfs: newRootfs(t), Spec: s, Extra: e}, flags)
		}
	}
}

func checkCgroups(t *testing.T, c *Config, l cgroupLayout, self map[string]string, extra map[string]string) {
	ro := extra["ro"] == "true"
	check := func(point, fstype, root string) {
		m := topMount(t, point)
		if m.FSType != fstype || m.hasOpt("ro") != ro || !m.hasOpt("nosuid") || !m.hasOpt("noexec") || !m.hasOpt("nodev") {
			t.Errorf("%s: %+v (want %s, ro %v)", point, m, fstype, ro)
		}
		if root != "" && m.Root != root {
			t.Errorf("%s shows cgroup %s, want %s", point, m.Root, root)
		}
	}
	if l.v2Only {
		root := self[""]
		if c.CgroupNS {
			root = "/"
		}
		check("/sys/fs/cgroup", "cgroup2", root)
		return
	}
	check("/sys/fs/cgroup", "tmpfs", "")
	for _, h := range l.v1 {
		name := path.Base(h.mountpoint)
		var root string
		switch {
		case c.CgroupNS:
			root = "/"
		case extra["pids"] != "" && name == "pids":
			root = extra["pidsrel"]
		default:
			root = self[strings.Join(h.controllers, ",")]
		}
		check(path.Join("/sys/fs/cgroup", name), "cgroup", root)
	}
	if l.unified != nil {
		root := self[""]
		if c.CgroupNS {
			root = "/"
		}
		check(path.Join("/sys/fs/cgroup", path.Base(l.unified.mountpoint)), "cgroup2", root)
	}
	if err := writable("/sys/fs/cgroup"); ro != errors.Is(err, unix.EROFS) {
		t.Errorf("/sys/fs/cgroup writable: %v (read-only wanted: %v)", err, ro)
	}
}

func TestParseCgroupLayout(t *testing.T) {
	subsys := map[string]bool{"cpu": true, "cpuacct": true, "memory": true, "pids": true}
	hybrid := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup", FSType: "tmpfs", Root: "/"},
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Root: "/", VFSOptions: "rw,cpu,cpuacct"},
		{Mountpoint: "/sys/fs/cgroup/memory", FSType: "cgroup", Root: "/", VFSOptions: "rw,clone_children,memory"},
		{Mountpoint: "/sys/fs/cgroup/systemd", FSType: "cgroup", Root: "/", VFSOptions: "rw,xattr,name=systemd,release_agent=/x"},
		{Mountpoint: "/elsewhere/memory", FSType: "cgroup", Root: "/", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Root: "/", VFSOptions: "rw,nsdelegate"},
	}
	l := parseCgroupLayout(hybrid, subsys)
	if l.v2Only || l.unified == nil || l.unified.mountpoint != "/sys/fs/cgroup/unified" {
		t.Errorf("unified: %+v %v", l.unified, l.v2Only)
	}
	want := []hierarchy{
		{mountpoint: "/sys/fs/cgroup/cpu,cpuacct", root: "/", controllers: []string{"cpu", "cpuacct"}},
		{mountpoint: "/sys/fs/cgroup/memory", root: "/", controllers: []string{"memory"}},
		{mountpoint: "/sys/fs/cgroup/systemd", root: "/", controllers: []string{"name=systemd"}},
	}
	if !reflect.DeepEqual(l.v1, want) {
		t.Errorf("v1 = %+v, want %+v", l.v1, want)
	}
	l = parseCgroupLayout([]*mountinfo.Info{{Mountpoint: "/sys/fs/cgroup", FSType: "cgroup2", Root: "/"}}, subsys)
	if !l.v2Only || len(l.v1) != 0 {
		t.Errorf("v2-only layout: %+v", l)
	}
}

func TestCgroupHostDir(t *testing.T) {
	self := func() (map[string]string, error) {
		return map[string]string{"cpu,cpuacct": "/a/b", "name=systemd": "/user.slice/x", "": "/c", "memory": "/outside"}, nil
	}
	cpu := hierarchy{mountpoint: "/sys/fs/cgroup/cpu,cpuacct", root: "/", controllers: []string{"cpu", "cpuacct"}}
	systemd := hierarchy{mountpoint: "/sys/fs/cgroup/systemd", root: "/user.slice", controllers: []string{"name=systemd"}}
	unified := hierarchy{mountpoint: "/sys/fs/cgroup/unified", root: "/"}
	memory := hierarchy{mountpoint: "/sys/fs/cgroup/memory", root: "/inner", controllers: []string{"memory"}}
	for _, tc := range []struct {
		paths map[string]string
		h     hierarchy
		want  string
	}{
		{nil, cpu, "/sys/fs/cgroup/cpu,cpuacct/a/b"},
		{map[string]string{"cpuacct": "/given"}, cpu, "/given"},
		{map[string]string{"cpu,cpuacct": "/joined"}, cpu, "/joined"},
		{map[string]string{"systemd": "/named"}, systemd, "/named"},
		{nil, systemd, "/sys/fs/cgroup/systemd/x"},
		{map[string]string{"": "/v2"}, unified, "/v2"},
		{nil, unified, "/sys/fs/cgroup/unified/c"},
		{nil, memory, ""},
		{nil, hierarchy{mountpoint: "/m", root: "/out", controllers: []string{"memory"}}, ""}, // "/outside" is not under "/out"
	} {
		c := &Config{CgroupPaths: tc.paths}
		got, err := c.hostDir(tc.h, self)
		if tc.want == "" {
			if !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("hostDir(%s) = %q, %v; want a not-found error", tc.h.mountpoint, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("hostDir(%s, %v) = %q, %v; want %q", tc.h.mountpoint, tc.paths, got, err, tc.want)
		}
	}
}

// TestCgroupCoMounted: a hierarchy with several controllers is mounted
// once, named after the host's mount, with a link per controller.
func TestCgroupCoMounted(t *testing.T) {
	if isChild() {
		a := childArgsOf(t)
		root, err := openRoot(a.Rootfs)
		must(t, err)
		defer root.Close()
		l := cgroupLayout{v1: []hierarchy{{mountpoint: "/fake/cpu,cpuacct", root: "/", controllers: []string{"cpu", "cpuacct"}}}}
		c := &Config{CgroupPaths: map[string]string{"cpu": a.Extra["cpu"]}}
		opts := []string{"nosuid", "nodev", "noexec", "ro"}
		o, err := mount.Parse(opts)
		must(t, err)
		if err := c.mountCgroupLayout(root, "/sys/fs/cgroup", opts, o, l); err != nil {
			t.Fatalf("mount: %v", err)
		}
		base := filepath.Join(a.Rootfs, "sys/fs/cgroup")
		if m := topMount(t, filepath.Join(base, "cpu,cpuacct")); m.FSType != "cgroup" || !m.hasOpt("ro") {
			t.Errorf("co-mounted hierarchy: %+v", m)
		}
		for _, l := range []string{"cpu", "cpuacct"} {
			if got, err := os.Readlink(filepath.Join(base, l)); err != nil || got != "cpu,cpuacct" {
				t.Errorf("link %s -> %q (%v)", l, got, err)
			}
		}
		return
	}
	testutil.RequiresRoot(t)
	layout, err := hostCgroups()
	must(t, err)
	cpu := ""
	for _, h := range layout.v1 {
		for _, c := range h.controllers {
			if c == "cpu" {
				cpu = h.mountpoint
			}
		}
	}
	if cpu == "" {
		t.Skip("no v1 cpu hierarchy on this host")
	}
	runChild(t, args{Rootfs: newRootfs(t), Extra: map[string]string{"cpu": cpu}}, 0)
}
