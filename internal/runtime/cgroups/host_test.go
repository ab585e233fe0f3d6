package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
)

// hybridMountinfo is a hybrid host: v1 controllers plus a unified mount
// holding only hugetlb.
const hybridMountinfo = `23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hybridSelf = `9:name=systemd:/
5:devices:/
4:memory:/session/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/outer/inner
`

func TestParseHybrid(t *testing.T) {
	h, err := parseHost([]byte(hybridMountinfo), []byte(hybridSelf))
	if err != nil {
		t.Fatal(err)
	}
	if h.mode() != "hybrid" || len(h.v1) != 6 || h.v2 == nil || h.v2.mountpoint != "/sys/fs/cgroup/unified" {
		t.Fatalf("host = %+v (mode %s)", h, h.mode())
	}
	cases := []struct {
		path string
		want map[string]string
	}{
		{"/berth/c1", map[string]string{
			"cpu":          "/sys/fs/cgroup/cpu/berth/c1",
			"cpuacct":      "/sys/fs/cgroup/cpuacct/berth/c1",
			"cpuset":       "/sys/fs/cgroup/cpuset/berth/c1",
			"memory":       "/sys/fs/cgroup/memory/berth/c1",
			"devices":      "/sys/fs/cgroup/devices/berth/c1",
			"name=systemd": "/sys/fs/cgroup/systemd/berth/c1",
			"":             "/sys/fs/cgroup/unified/berth/c1",
		}},
		// Relative: below the own cgroup in v1, below its parent in v2.
		{"a/b", map[string]string{
			"cpu":          "/sys/fs/cgroup/cpu/a/b",
			"cpuacct":      "/sys/fs/cgroup/cpuacct/a/b",
			"cpuset":       "/sys/fs/cgroup/cpuset/a/b",
			"memory":       "/sys/fs/cgroup/memory/session/abc/a/b",
			"devices":      "/sys/fs/cgroup/devices/a/b",
			"name=systemd": "/sys/fs/cgroup/systemd/a/b",
			"":             "/sys/fs/cgroup/unified/outer/a/b",
		}},
	}
	for _, c := range cases {
		got, err := h.resolve(c.path)
		if err != nil {
			t.Fatalf("resolve %q: %v", c.path, err)
		}
		if len(got) != len(c.want) {
			t.Errorf("resolve %q = %v, want %v", c.path, got, c.want)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("resolve %q [%q] = %q, want %q", c.path, k, got[k], v)
			}
		}
	}
}

func TestNewManagerPaths(t *testing.T) {
	h, err := parseHost([]byte(hybridMountinfo), []byte(hybridSelf))
	if err != nil {
		t.Fatal(err)
	}
	h.systemdDir = filepath.Join(t.TempDir(), "no-systemd")
	m, err := newManager(h, "", "ctr1", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Paths()["memory"]; got != "/sys/fs/cgroup/memory/session/abc/ctr1" {
		t.Errorf("empty path: memory dir %q", got)
	}
	for _, bad := range []string{"../escape", "/a/../../b"} {
		if _, err := newManager(h, bad, "ctr1", false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("path %q: err %v, want invalid argument", bad, err)
		}
	}
	for _, bad := range []string{"", "a/b", ".."} {
		if _, err := newManager(h, "/x", bad, false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("id %q: err %v, want invalid argument", bad, err)
		}
	}
	_, err = newManager(h, "system.slice:berth:ctr1", "ctr1", true)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("systemd without systemd: err %v, want unavailable", err)
	}
	// With systemd running the unit's cgroup is used.
	h.systemdDir = t.TempDir()
	m, err = newManager(h, "machine-vm.slice:berth:ctr1", "ctr1", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Paths()["cpu"]; got != "/sys/fs/cgroup/cpu/machine.slice/machine-vm.slice/berth-ctr1.scope" {
		t.Errorf("systemd path: cpu dir %q", got)
	}
}

func TestParseUnifiedAndBindMounts(t *testing.T) {
	mi := "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	h, err := parseHost([]byte(mi), []byte("0::/user.slice/session-1.scope\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.mode() != "unified" {
		t.Fatalf("mode %s", h.mode())
	}
	p, _ := h.resolve("ctr")
	if p[""] != "/sys/fs/cgroup/user.slice/ctr" || len(p) != 1 {
		t.Errorf("unified relative = %v", p)
	}

	// A container's view: the hierarchy's subtree /docker/abc is mounted,
	// and the mount point has an escaped space.
	mi = `40 31 0:32 /docker/abc /sys/fs/cgroup/mem\040ory rw - cgroup cgroup rw,memory
41 31 0:33 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
`
	h, err = parseHost([]byte(mi), []byte("3:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc/sub\n1:pids:/\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ = h.resolve("ctr")
	want := map[string]string{
		"memory":  "/sys/fs/cgroup/mem ory/ctr",
		"cpu":     "/sys/fs/cgroup/cpu,cpuacct/sub/ctr",
		"cpuacct": "/sys/fs/cgroup/cpu,cpuacct/sub/ctr",
	}
	if len(p) != len(want) {
		t.Errorf("paths %v, want %v (pids is not mounted)", p, want)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("[%s] = %q, want %q", k, p[k], v)
		}
	}

	if _, err := parseHost([]byte("1 0 0:1 / / rw - ext4 /dev/vda rw\n"), []byte("0::/\n")); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("no cgroup mounts: err %v", err)
	}
}

func TestSystemdPath(t *testing.T) {
	cases := map[string]string{
		"system.slice:berth:abc":   "/system.slice/berth-abc.scope",
		":berth:abc":               "/system.slice/berth-abc.scope",
		"a-b-c.slice:p:n":          "/a.slice/a-b.slice/a-b-c.slice/p-n.scope",
		"-.slice::n":               "/n.scope",
		"user.slice:p:child.slice": "/user.slice/child.slice",
	}
	for in, want := range cases {
		got, err := systemdPath(in, "id")
		if err != nil || got != want {
			t.Errorf("systemdPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, _ := systemdPath("", "id"); got != "/system.slice/berth-id.scope" {
		t.Errorf("empty = %q", got)
	}
	for _, bad := range []string{"a:b", "x:p:n", "a--b.slice:p:n", "s.slice:p:", "s.slice:p/x:n"} {
		if _, err := systemdPath(bad, "id"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("systemdPath(%q): err %v, want invalid argument", bad, err)
		}
	}
}

func TestConversions(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 2: 1, 1024: 39, 262144: 10000, 1: 1, 1 << 40: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
	for w, want := range map[uint16]uint64{0: 0, 10: 1, 1000: 10000, 500: 4950} {
		if got := BlkioWeightToIOWeight(w); got != want {
			t.Errorf("BlkioWeightToIOWeight(%d) = %d, want %d", w, got, want)
		}
	}
	swaps := []struct {
		limit, swap int64
		set         bool
		want        int64
		bad         bool
	}{
		{-1, 0, false, -1, false},
		{100, 300, true, 200, false},
		{100, -1, true, -1, false},
		{100, 0, false, 0, false},
		{0, 300, true, 0, true},
		{300, 100, true, 0, true},
	}
	for _, s := range swaps {
		got, err := swapV2(s.limit, s.swap, s.set)
		if (err != nil) != s.bad || got != s.want {
			t.Errorf("swapV2(%d, %d) = %d, %v", s.limit, s.swap, got, err)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\011c\134`); got != "/a b\tc\\" {
		t.Errorf("got %q", got)
	}
}

func TestDiscoverThisHost(t *testing.T) {
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skip("no /proc")
	}
	h, err := discoverHost()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.v1) == 0 && h.v2 == nil {
		t.Fatal("no hierarchy found")
	}
	all := h.v1
	if h.v2 != nil {
		all = append(all, *h.v2)
	}
	for _, hy := range all {
		if _, err := os.Stat(filepath.Join(hy.mountpoint, "cgroup.procs")); err != nil {
			t.Errorf("hierarchy at %s: %v", hy.mountpoint, err)
		}
	}
}
