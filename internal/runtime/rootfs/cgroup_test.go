package rootfs

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
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
