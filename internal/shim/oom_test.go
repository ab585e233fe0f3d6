package shim

import (
	"os"
	"path/filepath"
	"testing"
)

// The mount table of a hybrid host: v1 controllers under /sys/fs/cgroup and
// a cgroup2 mount holding only hugetlb.
const hybridMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hybridProcCgroup = `9:name=systemd:/system.slice/berthd.service
4:memory:/berth/c1
2:cpu,cpuacct:/berth/c1
0::/system.slice/berthd.service
`

func TestMemoryCounterPath(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, cgroup, want string
	}{
		{"hybrid", hybridMountinfo, hybridProcCgroup, "/sys/fs/cgroup/memory/berth/c1/memory.oom_control"},
		{"v1 co-mounted with a cgroup parent", `35 31 0:32 / /sys/fs/cgroup/memory,swap rw - cgroup cgroup rw,swap,memory
`, "4:swap,memory:/parent/x/c1\n", "/sys/fs/cgroup/memory,swap/parent/x/c1/memory.oom_control"},
		{"v2", `30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
`, "0::/system.slice/docker-c1.scope\n", "/sys/fs/cgroup/system.slice/docker-c1.scope/memory.events"},
		{"v2 mounted at a subtree", `30 23 0:26 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`, "0::/ns/berth/c1\n", "/sys/fs/cgroup/berth/c1/memory.events"},
		{"escaped mount point", `35 31 0:32 / /mnt/cg\040memory rw - cgroup cgroup rw,memory
`, "4:memory:/c1\n", "/mnt/cg memory/c1/memory.oom_control"},
	} {
		got, err := memoryCounterPath([]byte(tc.mountinfo), []byte(tc.cgroup))
		if err != nil || got != tc.want {
			t.Errorf("%s: memoryCounterPath = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, mountinfo, cgroup string }{
		{"no memory hierarchy mounted", `32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
`, "2:cpu:/c1\n4:memory:/c1\n"},
		{"cgroup outside the mount's root", `30 23 0:26 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`, "0::/nsother/c1\n"},
	} {
		if got, err := memoryCounterPath([]byte(tc.mountinfo), []byte(tc.cgroup)); err == nil {
			t.Errorf("%s: memoryCounterPath = %q, want an error", tc.name, got)
		}
	}
}

func TestParseOOMKills(t *testing.T) {
	for in, want := range map[string]uint64{
		"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n":                  3, // v1 memory.oom_control
		"low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n":   2, // v2 memory.events
		"oom_kill_disable 0\nunder_oom 0\noom_kill 0\n":                  0,
		"oom_kill_disable 0\nunder_oom 0\noom_kill 18446744073709551615": 1<<64 - 1,
	} {
		if got, ok := parseOOMKills([]byte(in)); !ok || got != want {
			t.Errorf("parseOOMKills(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "oom_kill_disable 0\nunder_oom 0\n", "oom_kill x\n", "oom_kill -1\n"} {
		if got, ok := parseOOMKills([]byte(in)); ok {
			t.Errorf("parseOOMKills(%q) = %d, want no count", in, got)
		}
	}
}

// TestOOMCounter reads a counter file that rises, and keeps the last count
// once the file can no longer be read (the cgroup was removed).
func TestOOMCounter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.oom_control")
	write := func(n string) {
		if err := os.WriteFile(path, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill "+n+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("2") // kills from an earlier use of the cgroup
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := readOOMKills(f)
	if err != nil || n != 2 {
		t.Fatalf("readOOMKills = %d, %v", n, err)
	}
	c := &oomCounter{f: f, base: n, last: n}
	if killed, err := c.killed(); killed || err != nil {
		t.Fatalf("killed with an unchanged count = %v, %v", killed, err)
	}
	write("3") // same inode: the held descriptor sees it
	if err := c.sample(); err != nil {
		t.Fatal(err)
	}
	c.f.Close() // reads now fail, as on a removed cgroup
	if killed, err := c.killed(); !killed || err == nil {
		t.Fatalf("killed after a rise and a failed read = %v, %v; want true and the read's error", killed, err)
	}
	c.f = nil
	c.close()
}
