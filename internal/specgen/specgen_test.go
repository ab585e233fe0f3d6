package specgen

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/docker/go-units"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// hostCaps is a host whose engine lacks CAP_SYS_RESOURCE.
func hostCaps() []string {
	var out []string
	for _, c := range knownCapabilities() {
		if c != "CAP_SYS_RESOURCE" {
			out = append(out, c)
		}
	}
	return out
}

func writeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	testGroup  = "root:x:0:\ndaemon:x:1:\ntty:x:5:\naudio:x:29:alice,nobody\nvideo:x:44:alice\nalice:x:1000:\nnogroup:x:65534:\n"
)

func testImage() dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	img.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	img.Config.Cmd = []string{"sh"}
	return img
}

func testInput(t *testing.T) Input {
	t.Helper()
	return Input{
		ID:          testID,
		Image:       testImage(),
		Config:      &container.Config{},
		HostConfig:  &container.HostConfig{},
		Rootfs:      writeRootfs(t, testPasswd, testGroup),
		CgroupsPath: "/berth/" + testID,
		Files: NetworkFiles{
			Hostname:   "/var/lib/berth/containers/x/hostname",
			Hosts:      "/var/lib/berth/containers/x/hosts",
			ResolvConf: "/var/lib/berth/containers/x/resolv.conf",
		},
		InitPath: "/usr/libexec/berth/berth-init",
		Devices: func(p string) ([]HostDevice, error) {
			switch p {
			case "/dev/fuse":
				return []HostDevice{{Path: p, Type: "c", Major: 10, Minor: 229, FileMode: 0o666}}, nil
			case "/dev/sda":
				return []HostDevice{{Path: p, Type: "b", Major: 8, Minor: 0, FileMode: 0o660, GID: 6}}, nil
			case "/dev/snd":
				return []HostDevice{
					{Path: "/dev/snd/controlC0", Type: "c", Major: 116, Minor: 0, FileMode: 0o660, GID: 29},
					{Path: "/dev/snd/timer", Type: "c", Major: 116, Minor: 33, FileMode: 0o660, GID: 29},
				}, nil
			}
			return nil, os.ErrNotExist
		},
		Host: Host{
			Capabilities: hostCaps(),
			HardRlimits:  map[string]uint64{"RLIMIT_NOFILE": 1048576, "RLIMIT_NPROC": rlimInfinity},
			Hostname:     "berth-host",
			NumCPU:       2,
		},
	}
}

func generate(t *testing.T, in Input) *specs.Spec {
	t.Helper()
	s, err := Generate(in)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func i64(v int64) *int64 { return &v }

func TestDefaultRun(t *testing.T) {
	in := testInput(t)
	s := generate(t, in)

	if s.Version != specs.Version {
		t.Errorf("version %q", s.Version)
	}
	if s.Root.Path != in.Rootfs || s.Root.Readonly {
		t.Errorf("root %+v", s.Root)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
		}
	}
	check("args", s.Process.Args, []string{"sh"})
	check("env", s.Process.Env, []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=0123456789ab"})
	check("cwd", s.Process.Cwd, "/")
	check("terminal", s.Process.Terminal, false)
	check("user", s.Process.User, specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}})
	check("hostname", s.Hostname, "0123456789ab")
	check("bounding caps", s.Process.Capabilities.Bounding, DefaultCapabilities())
	check("effective caps", s.Process.Capabilities.Effective, DefaultCapabilities())
	check("permitted caps", s.Process.Capabilities.Permitted, DefaultCapabilities())
	if len(s.Process.Capabilities.Inheritable) != 0 || len(s.Process.Capabilities.Ambient) != 0 {
		t.Errorf("inheritable/ambient caps %v %v, Docker sets none", s.Process.Capabilities.Inheritable, s.Process.Capabilities.Ambient)
	}
	check("no new privileges", s.Process.NoNewPrivileges, false)
	check("oom score adj", *s.Process.OOMScoreAdj, 0)
	check("rlimits", s.Process.Rlimits, []specs.POSIXRlimit(nil))
	check("cgroups path", s.Linux.CgroupsPath, "/berth/"+testID)

	wantMounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: in.Files.ResolvConf, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/hostname", Type: "bind", Source: in.Files.Hostname, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/hosts", Type: "bind", Source: in.Files.Hosts, Options: []string{"rbind", "rprivate"}},
	}
	check("mounts", s.Mounts, wantMounts)
	check("namespaces", s.Linux.Namespaces, []specs.LinuxNamespace{
		{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
	})
	check("masked paths", s.Linux.MaskedPaths, []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
	})
	check("readonly paths", s.Linux.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})
	check("sysctls", s.Linux.Sysctl, map[string]string{"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"})
	check("device rules", s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(5), Minor: i64(1), Access: "rwm"},
		{Allow: false, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"},
	})
	check("devices", s.Linux.Devices, []specs.LinuxDevice{})
	f := false
	check("memory", s.Linux.Resources.Memory, &specs.LinuxMemory{DisableOOMKiller: &f})
	check("cpu", s.Linux.Resources.CPU, (*specs.LinuxCPU)(nil))
	check("pids", s.Linux.Resources.Pids, (*specs.LinuxPids)(nil))
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Fatalf("seccomp %+v, want Docker's default profile", s.Linux.Seccomp)
	}
	if s.Process.ApparmorProfile != "" {
		t.Errorf("apparmor %q on a host without AppArmor", s.Process.ApparmorProfile)
	}
	// The default profile is filtered by the capabilities in effect:
	// without CAP_SYS_ADMIN, mount is not allowed; with the defaults, chown is.
	if allows(s.Linux.Seccomp, "mount") || !allows(s.Linux.Seccomp, "chown") || !allows(s.Linux.Seccomp, "read") {
		t.Errorf("default seccomp profile does not match the capabilities")
	}
	// The spec must round-trip as JSON.
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
}

func allows(sc *specs.LinuxSeccomp, name string) bool {
	for _, sys := range sc.Syscalls {
		if sys.Action == specs.ActAllow && len(sys.Args) == 0 && slices.Contains(sys.Names, name) {
			return true
		}
	}
	return false
}

func mountAt(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func nsTypes(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		out[n.Type] = n.Path
	}
	return out
}

func TestPrivileged(t *testing.T) {
	in := testInput(t)
	in.HostConfig.Privileged = true
	in.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/fuse", PathInContainer: "/dev/myfuse", CgroupPermissions: "r"}}
	in.Host.PrivilegedDevices = []HostDevice{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: 0o666}, {Path: "/dev/sda", Type: "b", Major: 8, Minor: 0, FileMode: 0o660, GID: 6}}
	s := generate(t, in)
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, hostCaps()) {
		t.Errorf("privileged caps %v, want the host's grantable set", s.Process.Capabilities.Bounding)
	}
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_RESOURCE") {
		t.Errorf("privileged got CAP_SYS_RESOURCE the host cannot grant")
	}
	if s.Linux.Seccomp != nil {
		t.Errorf("privileged has seccomp")
	}
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Errorf("privileged masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if m := mountAt(s, "/sys"); slices.Contains(m.Options, "ro") {
		t.Errorf("/sys %v read-only when privileged", m.Options)
	}
	if m := mountAt(s, "/sys/fs/cgroup"); slices.Contains(m.Options, "ro") {
		t.Errorf("/sys/fs/cgroup %v read-only when privileged", m.Options)
	}
	if !reflect.DeepEqual(s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}) {
		t.Errorf("privileged device rules %+v", s.Linux.Resources.Devices)
	}
	var paths []string
	for _, d := range s.Linux.Devices {
		paths = append(paths, d.Path)
	}
	if !reflect.DeepEqual(paths, []string{"/dev/null", "/dev/sda", "/dev/myfuse"}) {
		t.Errorf("privileged devices %v", paths)
	}
	if _, ok := nsTypes(s)[specs.CgroupNamespace]; ok {
		t.Errorf("privileged on cgroup v1 got a cgroup namespace")
	}
}

func TestCapabilities(t *testing.T) {
	all := hostCaps()
	tests := []struct {
		name      string
		add, drop []string
		want      []string
		err       string
	}{
		{name: "add one", add: []string{"NET_ADMIN"}, want: append(DefaultCapabilities(), "CAP_NET_ADMIN")},
		{name: "add lower with prefix", add: []string{"cap_sys_ptrace"}, want: append(DefaultCapabilities(), "CAP_SYS_PTRACE")},
		{name: "drop one", drop: []string{"CAP_NET_RAW"}, want: slices.DeleteFunc(DefaultCapabilities(), func(c string) bool { return c == "CAP_NET_RAW" })},
		{name: "drop all", drop: []string{"ALL"}, want: nil},
		{name: "drop all add one", drop: []string{"all"}, add: []string{"chown"}, want: []string{"CAP_CHOWN"}},
		{name: "add all", add: []string{"ALL"}, want: all},
		{name: "add all drop one", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, want: slices.DeleteFunc(slices.Clone(all), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{name: "add twice is once", add: []string{"CHOWN"}, want: DefaultCapabilities()},
		{name: "unknown", add: []string{"FLY"}, err: `unknown capability: "CAP_FLY"`},
		{name: "not on host", add: []string{"SYS_RESOURCE"}, err: `capability not supported by your kernel or not available in the current environment: "CAP_SYS_RESOURCE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.HostConfig.CapAdd, in.HostConfig.CapDrop = tt.add, tt.drop
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want InvalidArgument %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Capabilities.Bounding, tt.want) {
				t.Errorf("caps %v, want %v", s.Process.Capabilities.Bounding, tt.want)
			}
			if !reflect.DeepEqual(s.Process.Capabilities.Effective, tt.want) || !reflect.DeepEqual(s.Process.Capabilities.Permitted, tt.want) {
				t.Errorf("effective/permitted differ from bounding")
			}
			// The seccomp profile follows the capabilities: mount and
			// friends come with CAP_SYS_ADMIN.
			if s.Linux.Seccomp == nil {
				t.Fatal("no seccomp")
			}
			if got, want := allows(s.Linux.Seccomp, "mount"), slices.Contains(tt.want, "CAP_SYS_ADMIN"); got != want {
				t.Errorf("seccomp allows mount %v, want %v", got, want)
			}
		})
	}
}

func TestEnvAndCommand(t *testing.T) {
	tests := []struct {
		name     string
		img      func(*dockerspec.DockerOCIImage)
		cfg      container.Config
		wantArgs []string
		wantEnv  []string
		wantCwd  string
		err      string
	}{
		{
			name:     "create env wins and tty adds TERM",
			img:      func(i *dockerspec.DockerOCIImage) { i.Config.Env = append(i.Config.Env, "A=image", "B=image") },
			cfg:      container.Config{Env: []string{"A=create", "C=create"}, Tty: true, Hostname: "web"},
			wantArgs: []string{"sh"},
			wantEnv:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=web", "TERM=xterm", "A=create", "C=create", "B=image"},
		},
		{
			name:     "PATH default when the image has none; TERM overridable",
			img:      func(i *dockerspec.DockerOCIImage) { i.Config.Env = nil },
			cfg:      container.Config{Env: []string{"TERM=dumb"}, Tty: true},
			wantArgs: []string{"sh"},
			wantEnv:  []string{"PATH=" + DefaultPathEnv, "HOSTNAME=0123456789ab", "TERM=dumb"},
		},
		{
			name:     "image PATH replaces the default in place",
			img:      func(i *dockerspec.DockerOCIImage) { i.Config.Env = []string{"X=1", "PATH=/opt/bin"} },
			wantArgs: []string{"sh"},
			wantEnv:  []string{"PATH=/opt/bin", "HOSTNAME=0123456789ab", "X=1"},
		},
		{
			name:     "variable without = unsets a default",
			cfg:      container.Config{Env: []string{"HOSTNAME"}},
			wantArgs: []string{"sh"},
			wantEnv:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		{
			name: "entrypoint and cmd from image",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry", "-x"}
				i.Config.Cmd = []string{"serve"}
			},
			wantArgs: []string{"/entry", "-x", "serve"},
		},
		{
			name: "create cmd replaces image cmd, keeps entrypoint",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry"}
				i.Config.Cmd = []string{"serve"}
			},
			cfg:      container.Config{Cmd: []string{"migrate"}},
			wantArgs: []string{"/entry", "migrate"},
		},
		{
			name: "create entrypoint clears image cmd",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry"}
				i.Config.Cmd = []string{"serve"}
			},
			cfg:      container.Config{Entrypoint: []string{"/bin/echo"}},
			wantArgs: []string{"/bin/echo"},
		},
		{
			name: "create entrypoint and cmd",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry"}
				i.Config.Cmd = []string{"serve"}
			},
			cfg:      container.Config{Entrypoint: []string{"/bin/echo"}, Cmd: []string{"hi"}},
			wantArgs: []string{"/bin/echo", "hi"},
		},
		{
			name: "empty entrypoint resets it",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry"}
				i.Config.Cmd = []string{"serve"}
			},
			cfg:      container.Config{Entrypoint: []string{""}, Cmd: []string{"ls", "/"}},
			wantArgs: []string{"ls", "/"},
		},
		{
			name: "empty entrypoint and no cmd",
			img: func(i *dockerspec.DockerOCIImage) {
				i.Config.Entrypoint = []string{"/entry"}
				i.Config.Cmd = []string{"serve"}
			},
			cfg: container.Config{Entrypoint: []string{""}},
			err: "no command specified",
		},
		{
			name: "no command at all",
			img:  func(i *dockerspec.DockerOCIImage) { i.Config.Cmd = nil },
			err:  "no command specified",
		},
		{
			name:     "working dir from image, create wins",
			img:      func(i *dockerspec.DockerOCIImage) { i.Config.WorkingDir = "/srv" },
			cfg:      container.Config{WorkingDir: "/tmp/"},
			wantArgs: []string{"sh"},
			wantCwd:  "/tmp",
		},
		{
			name: "relative working dir",
			cfg:  container.Config{WorkingDir: "srv"},
			err:  "the working directory 'srv' is invalid, it needs to be an absolute path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			if tt.img != nil {
				tt.img(&in.Image)
			}
			cfg := tt.cfg
			in.Config = &cfg
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Args, tt.wantArgs) {
				t.Errorf("args %q, want %q", s.Process.Args, tt.wantArgs)
			}
			if tt.wantEnv != nil && !reflect.DeepEqual(s.Process.Env, tt.wantEnv) {
				t.Errorf("env %q, want %q", s.Process.Env, tt.wantEnv)
			}
			if tt.wantCwd != "" && s.Process.Cwd != tt.wantCwd {
				t.Errorf("cwd %q, want %q", s.Process.Cwd, tt.wantCwd)
			}
			if s.Process.Terminal != cfg.Tty {
				t.Errorf("terminal %v", s.Process.Terminal)
			}
		})
	}
}

func TestUser(t *testing.T) {
	tests := []struct {
		user     string
		groupAdd []string
		image    string
		want     specs.User
		err      string
	}{
		{user: "", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{user: "alice", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 29, 44}}},
		{image: "alice", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 29, 44}}},
		{user: "daemon", image: "alice", want: specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1}}},
		{user: "1000", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 29, 44}}},
		{user: "alice:video", want: specs.User{UID: 1000, GID: 44, AdditionalGids: []uint32{44}}},
		{user: "alice:0", want: specs.User{UID: 1000, GID: 0, AdditionalGids: []uint32{0}}},
		{user: "4242", want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{user: "4242:4343", want: specs.User{UID: 4242, GID: 4343, AdditionalGids: []uint32{4343}}},
		{user: "nobody", groupAdd: []string{"video", "7", "audio"}, want: specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{65534, 29, 44, 7}}},
		{user: "bob", err: "unable to find user bob: no matching entries in passwd file"},
		{user: "alice:staff", err: "unable to find group staff: no matching entries in group file"},
		{user: "alice", groupAdd: []string{"staff"}, err: "unable to find group staff: no matching entries in group file"},
		{user: "-5", err: "user -5: uids and gids must be in range 0-2147483647"},
	}
	for _, tt := range tests {
		t.Run(tt.user+"/"+tt.image, func(t *testing.T) {
			in := testInput(t)
			in.Image.Config.User = tt.image
			in.Config.User = tt.user
			in.HostConfig.GroupAdd = tt.groupAdd
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.User, tt.want) {
				t.Errorf("user %+v, want %+v", s.Process.User, tt.want)
			}
		})
	}
}

func TestUserWithoutAccountFiles(t *testing.T) {
	root := writeRootfs(t, "", "")
	if u, err := LookupUser(root, "1000:1000", nil); err != nil || u.UID != 1000 || u.GID != 1000 {
		t.Errorf("numeric user without passwd: %+v %v", u, err)
	}
	if _, err := LookupUser(root, "alice", nil); err == nil || !errors.Is(err, ErrNoPasswdEntries) {
		t.Errorf("named user without passwd: %v", err)
	}
}

func TestUserFilesStayInRootfs(t *testing.T) {
	// An /etc/passwd that is a symlink to an absolute path resolves inside
	// the rootfs, never to the host's file.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "data/passwd"), []byte("svc:x:777:778::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/data/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../etc/passwd", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	u, err := LookupUser(root, "svc", nil)
	if err != nil || u.UID != 777 || u.GID != 778 {
		t.Fatalf("user through an in-rootfs symlink: %+v %v", u, err)
	}
	if _, err := LookupUser(root, "root", nil); err == nil {
		t.Errorf("root was found: the host's /etc/passwd was read")
	}
	// The group symlink climbs out towards the host's /etc/passwd; it
	// resolves to the rootfs's own /etc/passwd (read as a group file, it
	// has a group svc with GID 777), never to the host's (which has root).
	if _, err := LookupUser(root, "svc:root", nil); err == nil {
		t.Errorf("group root was found: a host file was read")
	}
	if u, err := LookupUser(root, "svc:svc", nil); err != nil || u.GID != 777 {
		t.Errorf("group svc from the rootfs: %+v %v", u, err)
	}
}

func TestReadOnlyRootfs(t *testing.T) {
	in := testInput(t)
	in.HostConfig.ReadonlyRootfs = true
	in.HostConfig.Binds = []string{"/srv/data:/data"}
	s := generate(t, in)
	if !s.Root.Readonly {
		t.Fatal("root not read-only")
	}
	for _, m := range s.Mounts {
		ro := slices.Contains(m.Options, "ro")
		switch m.Destination {
		case "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/data":
			if ro {
				t.Errorf("%s read-only: %v", m.Destination, m.Options)
			}
		default:
			if !ro {
				t.Errorf("%s writable with a read-only rootfs: %v", m.Destination, m.Options)
			}
		}
	}
}

func TestMounts(t *testing.T) {
	in := testInput(t)
	in.HostConfig.Binds = []string{
		"/srv/a/b:/deep/er/path:ro,rslave",
		"/srv/logs:/logs",
		"data:/var/lib/data:nocopy",
		"/srv/hosts:/etc/hosts:ro",
	}
	in.HostConfig.Mounts = []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/conf", Target: "/conf", ReadOnly: true, BindOptions: &mount.BindOptions{Propagation: mount.PropagationShared, NonRecursive: true}},
		{Type: mount.TypeVolume, Source: "cache", Target: "/cache"},
		{Type: mount.TypeTmpfs, Target: "/scratch", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20, Mode: 0o1777 | os.ModeSticky}},
	}
	in.HostConfig.Tmpfs = map[string]string{"/run": "rw,exec,size=10m", "/tmp": ""}
	in.Volumes = []Mount{
		{Source: "/var/lib/berth/volumes/data/_data", Destination: "/var/lib/data", Type: "volume"},
		{Source: "/var/lib/berth/volumes/cache/_data", Destination: "/cache", Type: "volume"},
		{Source: "/var/lib/berth/volumes/anon/_data", Destination: "/image/vol"},
	}
	s := generate(t, in)
	want := []specs.Mount{
		{Destination: "/logs", Type: "bind", Source: "/srv/logs", Options: []string{"rbind", "rprivate"}},
		{Destination: "/conf", Type: "bind", Source: "/srv/conf", Options: []string{"bind", "ro", "shared"}},
		{Destination: "/cache", Type: "bind", Source: "/var/lib/berth/volumes/cache/_data", Options: []string{"rbind"}},
		{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "rprivate", "rw", "exec", "size=10m"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate"}},
		{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate", "mode=1777", "size=64m"}},
		{Destination: "/image/vol", Type: "bind", Source: "/var/lib/berth/volumes/anon/_data", Options: []string{"rbind"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: in.Files.ResolvConf, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/hostname", Type: "bind", Source: in.Files.Hostname, Options: []string{"rbind", "rprivate"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "/srv/hosts", Options: []string{"rbind", "ro", "rprivate"}},
		{Destination: "/deep/er/path", Type: "bind", Source: "/srv/a/b", Options: []string{"rbind", "ro", "rslave"}},
		{Destination: "/var/lib/data", Type: "bind", Source: "/var/lib/berth/volumes/data/_data", Options: []string{"rbind"}},
	}
	got := s.Mounts[7:]
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("mounts:\n%s", gj)
	}
}

func TestMountOverridesDefaults(t *testing.T) {
	in := testInput(t)
	in.HostConfig.Binds = []string{"/srv/dev:/dev", "/srv/proc-x:/sys/fs/cgroup"}
	s := generate(t, in)
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/dev/") {
			t.Errorf("default %s kept under a user /dev", m.Destination)
		}
		if m.Destination == "/sys/fs/cgroup" && m.Type == "cgroup" {
			t.Errorf("default cgroup mount kept under a user bind")
		}
	}
}

func TestMountErrors(t *testing.T) {
	tests := []struct {
		name   string
		binds  []string
		mounts []mount.Mount
		tmpfs  map[string]string
		err    string
	}{
		{name: "relative destination", binds: []string{"/a:b"}, err: `invalid volume specification: '/a:b': invalid mount config for type "bind": invalid mount path: 'b' mount path must be absolute`},
		{name: "root destination", binds: []string{"/a:/"}, err: "invalid volume specification: '/a:/': invalid specification: destination can't be '/'"},
		{name: "bad mode", binds: []string{"/a:/b:rw,ro"}, err: "invalid mode: rw,ro"},
		{name: "unknown mode", binds: []string{"/a:/b:fast"}, err: "invalid mode: fast"},
		{name: "too many parts", binds: []string{"/a:/b:ro:x"}, err: "invalid volume specification: '/a:/b:ro:x'"},
		{name: "relative source", binds: []string{"./a:/b"}, err: `"./a" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`},
		{name: "duplicate", binds: []string{"/a:/b", "/c:/b/"}, err: "duplicate mount point: /b"},
		{name: "bind without source", mounts: []mount.Mount{{Type: mount.TypeBind, Target: "/x"}}, err: `invalid mount config for type "bind": field Source must not be empty`},
		{name: "tmpfs with source", mounts: []mount.Mount{{Type: mount.TypeTmpfs, Source: "/x", Target: "/x"}}, err: `invalid mount config for type "tmpfs": field Source must not be specified`},
		{name: "bind with tmpfs options", mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/x", Target: "/x", TmpfsOptions: &mount.TmpfsOptions{}}}, err: `invalid mount config for type "bind": field TmpfsOptions must not be specified`},
		{name: "tmpfs bad option", tmpfs: map[string]string{"/t": "size=1m,bogus"}, err: `tmpfs on /t: invalid tmpfs option "bogus"`},
		{name: "tmpfs relative", tmpfs: map[string]string{"t": ""}, err: `invalid mount path: 't' mount path must be absolute`},
		{name: "unknown mount type", mounts: []mount.Mount{{Type: "bogus", Target: "/x"}}, err: `invalid mount config for type "bogus": mount type unknown`},
		{name: "volume unresolved", binds: []string{"named:/n"}, err: `volume "named" for /n was not resolved by the engine`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.HostConfig.Binds, in.HostConfig.Mounts, in.HostConfig.Tmpfs = tt.binds, tt.mounts, tt.tmpfs
			_, err := Generate(in)
			if err == nil || err.Error() != tt.err {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
}

func TestResources(t *testing.T) {
	swp := int64(30)
	pids := int64(100)
	zero := int64(0)
	tests := []struct {
		name  string
		set   func(*container.HostConfig)
		check func(*testing.T, *specs.LinuxResources)
		err   string
	}{
		{
			name: "memory gets twice the swap by default",
			set:  func(h *container.HostConfig) { h.Memory = 256 << 20 },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.Memory.Limit != 256<<20 || *r.Memory.Swap != 512<<20 {
					t.Errorf("memory %d swap %d", *r.Memory.Limit, *r.Memory.Swap)
				}
			},
		},
		{
			name: "memory-swap -1 is unlimited: no swap limit",
			set:  func(h *container.HostConfig) { h.Memory = 256 << 20; h.MemorySwap = -1 },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if r.Memory.Swap != nil {
					t.Errorf("swap %d", *r.Memory.Swap)
				}
			},
		},
		{
			name: "memory-swap given",
			set: func(h *container.HostConfig) {
				h.Memory, h.MemorySwap, h.MemoryReservation, h.MemorySwappiness = 256<<20, 1<<30, 128<<20, &swp
			},
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.Memory.Swap != 1<<30 || *r.Memory.Reservation != 128<<20 || *r.Memory.Swappiness != 30 {
					t.Errorf("memory %+v", r.Memory)
				}
			},
		},
		{name: "swap below memory", set: func(h *container.HostConfig) { h.Memory, h.MemorySwap = 256<<20, 128<<20 }, err: "minimum memoryswap limit should be larger than memory limit, see usage"},
		{name: "swap without memory", set: func(h *container.HostConfig) { h.MemorySwap = 128 << 20 }, err: "you should always set the memory limit when using memoryswap limit, see usage"},
		{name: "memory too small", set: func(h *container.HostConfig) { h.Memory = 1 << 20 }, err: "Minimum memory limit allowed is 6MB"},
		{
			name: "cpus",
			set:  func(h *container.HostConfig) { h.NanoCPUs = 1500000000; h.CPUShares = 512; h.CpusetCpus = "0-1" },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.CPU.Period != 100000 || *r.CPU.Quota != 150000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0-1" {
					t.Errorf("cpu %+v", r.CPU)
				}
			},
		},
		{
			name: "cpu period and quota",
			set:  func(h *container.HostConfig) { h.CPUPeriod = 50000; h.CPUQuota = 25000 },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.CPU.Period != 50000 || *r.CPU.Quota != 25000 {
					t.Errorf("cpu %+v", r.CPU)
				}
			},
		},
		{name: "too many cpus", set: func(h *container.HostConfig) { h.NanoCPUs = 3e9 }, err: "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"},
		{name: "cpus and quota", set: func(h *container.HostConfig) { h.NanoCPUs = 1e9; h.CPUQuota = 5000 }, err: "conflicting options: Nano CPUs and CPU Quota cannot both be set"},
		{name: "bad cpuset", set: func(h *container.HostConfig) { h.CpusetCpus = "1-x" }, err: `invalid value 1-x for cpuset cpus: "x" is not a number`},
		{
			name: "pids",
			set:  func(h *container.HostConfig) { h.PidsLimit = &pids },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.Pids.Limit != 100 {
					t.Errorf("pids %+v", r.Pids)
				}
			},
		},
		{
			name: "pids 0 is unlimited",
			set:  func(h *container.HostConfig) { h.PidsLimit = &zero },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.Pids.Limit != -1 {
					t.Errorf("pids %+v", r.Pids)
				}
			},
		},
		{
			name: "blkio",
			set: func(h *container.HostConfig) {
				h.BlkioWeight = 300
				h.BlkioDeviceReadBps = append(h.BlkioDeviceReadBps, &blkiodev.ThrottleDevice{Path: "/dev/sda", Rate: 1 << 20})
			},
			check: func(t *testing.T, r *specs.LinuxResources) {
				if *r.BlockIO.Weight != 300 || len(r.BlockIO.ThrottleReadBpsDevice) != 1 || r.BlockIO.ThrottleReadBpsDevice[0].Major != 8 || r.BlockIO.ThrottleReadBpsDevice[0].Rate != 1<<20 {
					t.Errorf("blkio %+v", r.BlockIO)
				}
			},
		},
		{name: "blkio weight range", set: func(h *container.HostConfig) { h.BlkioWeight = 5 }, err: "range of blkio weight is from 10 to 1000"},
		{
			name: "oom kill disable",
			set:  func(h *container.HostConfig) { t := true; h.OomKillDisable = &t },
			check: func(t *testing.T, r *specs.LinuxResources) {
				if !*r.Memory.DisableOOMKiller {
					t.Errorf("memory %+v", r.Memory)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			tt.set(in.HostConfig)
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s.Linux.Resources)
		})
	}
}

func TestSwapDroppedWithoutSwapLimit(t *testing.T) {
	in := testInput(t)
	in.Host.NoSwapLimit = true
	in.HostConfig.Memory, in.HostConfig.MemorySwap = 256<<20, 1<<30
	s := generate(t, in)
	if s.Linux.Resources.Memory.Swap != nil {
		t.Errorf("swap %d on a host without swap limits", *s.Linux.Resources.Memory.Swap)
	}
}

func TestUlimits(t *testing.T) {
	tests := []struct {
		name     string
		ulimits  []*units.Ulimit
		defaults []*units.Ulimit
		canRaise bool
		want     []specs.POSIXRlimit
		err      string
	}{
		{
			name:    "within host limit",
			ulimits: []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}},
			want:    []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 4096}},
		},
		{
			name:    "above host hard limit",
			ulimits: []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2097152}},
			err:     "ulimit nofile: hard limit 2097152 is above the engine's own hard limit 1048576, which it cannot raise",
		},
		{
			name:     "above host hard limit with CAP_SYS_RESOURCE",
			ulimits:  []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2097152}},
			canRaise: true,
			want:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2097152}},
		},
		{
			name:    "unlimited where the host is unlimited",
			ulimits: []*units.Ulimit{{Name: "nproc", Soft: -1, Hard: -1}},
			want:    []specs.POSIXRlimit{{Type: "RLIMIT_NPROC", Soft: rlimInfinity, Hard: rlimInfinity}},
		},
		{
			name:     "daemon defaults fill the rest",
			ulimits:  []*units.Ulimit{{Name: "nofile", Soft: 10, Hard: 20}},
			defaults: []*units.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}, {Name: "core", Soft: 0, Hard: 0}},
			want:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}, {Type: "RLIMIT_CORE"}},
		},
		{name: "unknown", ulimits: []*units.Ulimit{{Name: "wings", Soft: 1, Hard: 1}}, err: "invalid ulimit type: wings"},
		{name: "soft above hard", ulimits: []*units.Ulimit{{Name: "nofile", Soft: 10, Hard: 1}}, err: "ulimit nofile: soft limit 10 is above hard limit 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.HostConfig.Ulimits = tt.ulimits
			in.Host.DefaultUlimits = tt.defaults
			in.Host.CanRaiseRlimits = tt.canRaise
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Rlimits, tt.want) {
				t.Errorf("rlimits %+v, want %+v", s.Process.Rlimits, tt.want)
			}
		})
	}
}

func TestDevices(t *testing.T) {
	in := testInput(t)
	in.HostConfig.Devices = []container.DeviceMapping{
		{PathOnHost: "/dev/fuse", CgroupPermissions: "rw"},
		{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda", CgroupPermissions: "rwm"},
		{PathOnHost: "/dev/snd", PathInContainer: "/dev/sound"},
	}
	in.HostConfig.DeviceCgroupRules = []string{"c 42:* rmw", "b *:* m"}
	s := generate(t, in)
	mode660, mode666 := os.FileMode(0o660), os.FileMode(0o666)
	u0, g0, g6, g29 := uint32(0), uint32(0), uint32(6), uint32(29)
	wantDevs := []specs.LinuxDevice{
		{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode666, UID: &u0, GID: &g0},
		{Path: "/dev/xvda", Type: "b", Major: 8, Minor: 0, FileMode: &mode660, UID: &u0, GID: &g6},
		{Path: "/dev/sound/controlC0", Type: "c", Major: 116, Minor: 0, FileMode: &mode660, UID: &u0, GID: &g29},
		{Path: "/dev/sound/timer", Type: "c", Major: 116, Minor: 33, FileMode: &mode660, UID: &u0, GID: &g29},
	}
	if !reflect.DeepEqual(s.Linux.Devices, wantDevs) {
		gj, _ := json.Marshal(s.Linux.Devices)
		t.Errorf("devices %s", gj)
	}
	rules := s.Linux.Resources.Devices[8:]
	wantRules := []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Major: i64(10), Minor: i64(229), Access: "rw"},
		{Allow: true, Type: "b", Major: i64(8), Minor: i64(0), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(116), Minor: i64(0), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(116), Minor: i64(33), Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(42), Minor: i64(-1), Access: "rmw"},
		{Allow: true, Type: "b", Major: i64(-1), Minor: i64(-1), Access: "m"},
	}
	if !reflect.DeepEqual(rules, wantRules) {
		gj, _ := json.Marshal(rules)
		t.Errorf("device rules %s", gj)
	}

	for _, bad := range []struct {
		dev  container.DeviceMapping
		rule string
		err  string
	}{
		{dev: container.DeviceMapping{PathOnHost: "/dev/nope"}, err: `error gathering device information while adding custom device "/dev/nope": file does not exist`},
		{dev: container.DeviceMapping{PathOnHost: "/dev/fuse", CgroupPermissions: "rx"}, err: `invalid device mode "rx" for device /dev/fuse: want a combination of r, w and m`},
		{rule: "c 1:2", err: "invalid device cgroup rule format: 'c 1:2'"},
	} {
		in := testInput(t)
		if bad.dev.PathOnHost != "" {
			in.HostConfig.Devices = []container.DeviceMapping{bad.dev}
		}
		if bad.rule != "" {
			in.HostConfig.DeviceCgroupRules = []string{bad.rule}
		}
		if _, err := Generate(in); err == nil || err.Error() != bad.err {
			t.Errorf("err %v, want %q", err, bad.err)
		}
	}
}

func TestSecurityOpts(t *testing.T) {
	profile := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO"}]}`
	tests := []struct {
		name     string
		opts     []string
		apparmor bool
		check    func(*testing.T, *specs.Spec)
		err      string
	}{
		{name: "unconfined", opts: []string{"seccomp=unconfined"}, check: func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp != nil {
				t.Error("seccomp set")
			}
		}},
		{name: "custom profile", opts: []string{"seccomp=" + profile}, check: func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow || len(s.Linux.Seccomp.Syscalls) != 1 {
				t.Errorf("seccomp %+v", s.Linux.Seccomp)
			}
		}},
		{name: "builtin", opts: []string{"seccomp=builtin"}, check: func(t *testing.T, s *specs.Spec) {
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
				t.Errorf("seccomp %+v", s.Linux.Seccomp)
			}
		}},
		{name: "bad profile", opts: []string{"seccomp={"}, err: "seccomp profile from --security-opt: Decoding seccomp profile failed: unexpected end of JSON input"},
		{name: "no-new-privileges", opts: []string{"no-new-privileges"}, check: func(t *testing.T, s *specs.Spec) {
			if !s.Process.NoNewPrivileges {
				t.Error("no-new-privileges not set")
			}
		}},
		{name: "no-new-privileges=false", opts: []string{"no-new-privileges=true", "no-new-privileges:false"}, check: func(t *testing.T, s *specs.Spec) {
			if s.Process.NoNewPrivileges {
				t.Error("no-new-privileges set")
			}
		}},
		{name: "label disable", opts: []string{"label=disable", "label:user:system_u"}, check: func(t *testing.T, s *specs.Spec) {}},
		{name: "bad label", opts: []string{"label=bogus"}, err: `bad label option "bogus", valid options 'disable' or 'user, role, level, type, filetype' followed by ':' and a value`},
		{name: "apparmor pass through", opts: []string{"apparmor=my-profile"}, apparmor: true, check: func(t *testing.T, s *specs.Spec) {
			if s.Process.ApparmorProfile != "my-profile" {
				t.Errorf("apparmor %q", s.Process.ApparmorProfile)
			}
		}},
		{name: "apparmor default", apparmor: true, check: func(t *testing.T, s *specs.Spec) {
			if s.Process.ApparmorProfile != "berth-default" {
				t.Errorf("apparmor %q", s.Process.ApparmorProfile)
			}
		}},
		{name: "apparmor without host support", opts: []string{"apparmor=my-profile"}, err: `apparmor profile "my-profile" requested, but AppArmor is not enabled on this host`},
		{name: "unknown", opts: []string{"fast=yes"}, err: `invalid --security-opt 2: "fast=yes"`},
		{name: "no value", opts: []string{"seccomp"}, err: `invalid --security-opt 1: "seccomp"`},
		{name: "writable cgroups", opts: []string{"writable-cgroups=true"}, check: func(t *testing.T, s *specs.Spec) {
			if m := mountAt(s, "/sys/fs/cgroup"); slices.Contains(m.Options, "ro") {
				t.Errorf("cgroup %v", m.Options)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.HostConfig.SecurityOpt = tt.opts
			in.Host.AppArmor = tt.apparmor
			in.Host.AppArmorProfile = "berth-default"
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestNamespaces(t *testing.T) {
	tests := []struct {
		name  string
		set   func(*Input)
		want  map[specs.LinuxNamespaceType]string
		check func(*testing.T, *specs.Spec)
		err   string
	}{
		{
			name: "network none: own empty namespace",
			set:  func(in *Input) { in.HostConfig.NetworkMode = "none" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": ""},
		},
		{
			name: "network host: none of its own, host's hostname, no net sysctls",
			set:  func(in *Input) { in.HostConfig.NetworkMode = "host" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "uts": "", "pid": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Hostname != "berth-host" || len(s.Linux.Sysctl) != 0 {
					t.Errorf("hostname %q sysctls %v", s.Hostname, s.Linux.Sysctl)
				}
			},
		},
		{
			name: "network of another container",
			set: func(in *Input) {
				in.HostConfig.NetworkMode = "container:abc"
				in.Shared.Network = "/proc/42/ns/net"
			},
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "/proc/42/ns/net", "uts": "", "pid": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if len(s.Linux.Sysctl) != 0 {
					t.Errorf("sysctls %v when joining a network namespace", s.Linux.Sysctl)
				}
			},
		},
		{
			name: "network of another container without a path",
			set:  func(in *Input) { in.HostConfig.NetworkMode = "container:abc" },
			err:  "network mode container:abc: the engine gave no namespace path",
		},
		{
			name: "engine's network namespace",
			set:  func(in *Input) { in.NetNSPath = "/run/berth/netns/x" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "/run/berth/netns/x", "uts": "", "pid": "", "ipc": ""},
		},
		{
			name: "pid host: no init",
			set: func(in *Input) {
				in.HostConfig.PidMode = "host"
				tr := true
				in.HostConfig.Init = &tr
			},
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Process.Args[0] != "sh" {
					t.Errorf("init with pid host: %q", s.Process.Args)
				}
			},
		},
		{
			name: "ipc host and uts host",
			set:  func(in *Input) { in.HostConfig.IpcMode = "host"; in.HostConfig.UTSMode = "host" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "pid": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if s.Hostname != "" {
					t.Errorf("hostname %q with uts host", s.Hostname)
				}
				if m := mountAt(s, "/dev/shm"); m == nil || m.Type != "bind" || m.Source != "/dev/shm" {
					t.Errorf("/dev/shm %+v with ipc host", m)
				}
			},
		},
		{
			name: "ipc none: no /dev/shm",
			set:  func(in *Input) { in.HostConfig.IpcMode = "none" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if m := mountAt(s, "/dev/shm"); m != nil {
					t.Errorf("/dev/shm %+v with ipc none", m)
				}
			},
		},
		{
			name: "ipc shareable binds the engine's shm",
			set:  func(in *Input) { in.HostConfig.IpcMode = "shareable"; in.ShmPath = "/var/lib/berth/containers/x/shm" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if m := mountAt(s, "/dev/shm"); m == nil || m.Source != "/var/lib/berth/containers/x/shm" {
					t.Errorf("/dev/shm %+v", m)
				}
			},
		},
		{
			name: "cgroup v2: private cgroup namespace by default",
			set:  func(in *Input) { in.Host.CgroupV2 = true },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": "", "cgroup": ""},
		},
		{
			name: "cgroup v1 asked private",
			set:  func(in *Input) { in.HostConfig.CgroupnsMode = "private" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": "", "cgroup": ""},
		},
		{
			name: "privileged on cgroup v2: private cgroup namespace",
			set:  func(in *Input) { in.Host.CgroupV2 = true; in.HostConfig.Privileged = true },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": "", "cgroup": ""},
		},
		{
			name: "pid and ipc of another container",
			set: func(in *Input) {
				in.HostConfig.PidMode, in.HostConfig.IpcMode = "container:abc", "container:abc"
				in.Shared.PID, in.Shared.IPC, in.ShmPath = "/proc/7/ns/pid", "/proc/7/ns/ipc", "/var/lib/berth/containers/abc/shm"
			},
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "/proc/7/ns/pid", "ipc": "/proc/7/ns/ipc"},
			check: func(t *testing.T, s *specs.Spec) {
				if m := mountAt(s, "/dev/shm"); m == nil || m.Source != "/var/lib/berth/containers/abc/shm" {
					t.Errorf("/dev/shm %+v", m)
				}
			},
		},
		{
			name: "ipc of another container without its shm",
			set:  func(in *Input) { in.HostConfig.IpcMode = "container:abc"; in.Shared.IPC = "/proc/7/ns/ipc" },
			err:  "IPC mode container:abc: the engine gave no /dev/shm path",
		},
		{
			name: "network disabled keeps an empty network namespace",
			set:  func(in *Input) { in.Config.NetworkDisabled = true; in.NetNSPath = "/run/berth/netns/x" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "uts": "", "pid": "", "ipc": ""},
		},
		{
			name: "uts host drops the domain name",
			set:  func(in *Input) { in.HostConfig.UTSMode = "host"; in.Config.Domainname = "example.com" },
			want: map[specs.LinuxNamespaceType]string{"mount": "", "network": "", "pid": "", "ipc": ""},
			check: func(t *testing.T, s *specs.Spec) {
				if _, ok := s.Linux.Sysctl["kernel.domainname"]; ok {
					t.Errorf("kernel.domainname set without a UTS namespace")
				}
			},
		},
		{name: "bad cgroupns", set: func(in *Input) { in.HostConfig.CgroupnsMode = "shared" }, err: "invalid cgroup namespace mode: shared"},
		{name: "bad ipc", set: func(in *Input) { in.HostConfig.IpcMode = "weird" }, err: "invalid IPC mode: weird"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			tt.set(&in)
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nsTypes(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("namespaces %v, want %v", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestSysctls(t *testing.T) {
	tests := []struct {
		name    string
		sysctls map[string]string
		netMode container.NetworkMode
		ipcMode container.IpcMode
		err     string
	}{
		{name: "namespaced", sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20"}},
		{name: "not namespaced", sysctls: map[string]string{"kernel.panic": "1"}, err: `sysctl "kernel.panic" is not namespaced: it would change the host`},
		{name: "vm", sysctls: map[string]string{"vm.swappiness": "1"}, err: `sysctl "vm.swappiness" is not namespaced: it would change the host`},
		{name: "net with host network", sysctls: map[string]string{"net.ipv4.ip_forward": "1"}, netMode: "host", err: `sysctl "net.ipv4.ip_forward" is not allowed in the host's network namespace`},
		{name: "ipc with host ipc", sysctls: map[string]string{"kernel.sem": "1 2 3 4"}, ipcMode: "host", err: `sysctl "kernel.sem" is not allowed in the host's IPC namespace`},
		{name: "hostname", sysctls: map[string]string{"kernel.hostname": "x"}, err: `sysctl "kernel.hostname" is not allowed: set the hostname instead`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.HostConfig.Sysctls = tt.sysctls
			in.HostConfig.NetworkMode = tt.netMode
			in.HostConfig.IpcMode = tt.ipcMode
			s, err := Generate(in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.sysctls {
				if s.Linux.Sysctl[k] != v {
					t.Errorf("sysctl %s = %q", k, s.Linux.Sysctl[k])
				}
			}
		})
	}
}

func TestInitHostnameDomainnameAnnotations(t *testing.T) {
	in := testInput(t)
	tr := true
	in.HostConfig.Init = &tr
	in.HostConfig.ShmSize = 128 << 20
	in.HostConfig.OomScoreAdj = 500
	in.HostConfig.Annotations = map[string]string{"org.example/team": "infra"}
	in.HostConfig.ConsoleSize = [2]uint{24, 80}
	in.Config.Hostname, in.Config.Domainname, in.Config.Tty = "web", "example.com", true
	in.Config.Labels = map[string]string{"a": "b"}
	in.Image.Config.Entrypoint = []string{"/entry"}
	s := generate(t, in)
	if want := []string{ContainerInitPath, "--", "/entry", "sh"}; !reflect.DeepEqual(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	init := s.Mounts[7]
	if init.Destination != ContainerInitPath || init.Source != in.InitPath || !reflect.DeepEqual(init.Options, []string{"bind", "ro"}) {
		t.Errorf("init mount %+v", init)
	}
	if s.Hostname != "web" || s.Linux.Sysctl["kernel.domainname"] != "example.com" {
		t.Errorf("hostname %q domainname %q", s.Hostname, s.Linux.Sysctl["kernel.domainname"])
	}
	if m := mountAt(s, "/dev/shm"); m.Options[len(m.Options)-1] != "size=134217728" {
		t.Errorf("/dev/shm %v", m.Options)
	}
	if *s.Process.OOMScoreAdj != 500 {
		t.Errorf("oom score adj %d", *s.Process.OOMScoreAdj)
	}
	if !reflect.DeepEqual(s.Annotations, map[string]string{"org.example/team": "infra"}) {
		t.Errorf("annotations %v: Docker passes HostConfig.Annotations only, not labels", s.Annotations)
	}
	if s.Process.ConsoleSize == nil || s.Process.ConsoleSize.Height != 24 || s.Process.ConsoleSize.Width != 80 {
		t.Errorf("console size %+v", s.Process.ConsoleSize)
	}
	in.InitPath = ""
	if _, err := Generate(in); err == nil || !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Errorf("init without a binary: %v", err)
	}
	in.HostConfig.OomScoreAdj = 2000
	if _, err := Generate(in); err == nil || err.Error() != "invalid value 2000, range for oom score adj is [-1000, 1000]" {
		t.Errorf("oom score adj: %v", err)
	}
}

func TestMaskedPathsOverride(t *testing.T) {
	in := testInput(t)
	in.HostConfig.MaskedPaths = []string{}
	in.HostConfig.ReadonlyPaths = []string{"/proc/sys"}
	in.Host.MaskedPaths = []string{"/sys/devices/system/cpu/cpu0/thermal_throttle"}
	s := generate(t, in)
	if len(s.Linux.MaskedPaths) != 0 || !reflect.DeepEqual(s.Linux.ReadonlyPaths, []string{"/proc/sys"}) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	in.HostConfig.MaskedPaths = nil
	s = generate(t, in)
	if s.Linux.MaskedPaths[len(s.Linux.MaskedPaths)-1] != "/sys/devices/system/cpu/cpu0/thermal_throttle" {
		t.Errorf("host masked path missing: %v", s.Linux.MaskedPaths)
	}
}

func TestSignals(t *testing.T) {
	for in, want := range map[string]int{"SIGTERM": 15, "term": 15, "9": 9, "SIGKILL": 9, "sigusr1": 10, "SIGRTMIN+3": 37, "RTMAX": 64, "RTMAX-2": 62} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "SIGFOO", "RTMIN+40", "65"} {
		if _, err := ParseSignal(bad); err == nil || !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseSignal(%q) = %v, want an InvalidArgument error", bad, err)
		}
	}
	img := testImage()
	if sig, err := StopSignal(img, container.Config{}); err != nil || sig != 15 {
		t.Errorf("default stop signal %d %v", sig, err)
	}
	img.Config.StopSignal = "SIGQUIT"
	if sig, _ := StopSignal(img, container.Config{}); sig != 3 {
		t.Errorf("image stop signal %d", sig)
	}
	if sig, _ := StopSignal(img, container.Config{StopSignal: "SIGINT"}); sig != 2 {
		t.Errorf("create stop signal %d", sig)
	}
}

func TestMergeKeepsImageLabelsAndVolumes(t *testing.T) {
	img := testImage()
	img.Config.Labels = map[string]string{"a": "image", "b": "image"}
	img.Config.Volumes = map[string]struct{}{"/data": {}}
	cfg, err := Merge(img, container.Config{Labels: map[string]string{"a": "create"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Labels, map[string]string{"a": "create", "b": "image"}) {
		t.Errorf("labels %v", cfg.Labels)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("volumes %v", cfg.Volumes)
	}
}

// No volumes from the image or the request is null in inspect, as Docker's
// (the docker CLI sends an empty map).
func TestMergeNoVolumesIsNil(t *testing.T) {
	cfg, err := Merge(testImage(), container.Config{Volumes: map[string]struct{}{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Volumes != nil {
		t.Errorf("volumes %#v, want nil", cfg.Volumes)
	}
}

func TestMergeExposedPorts(t *testing.T) {
	img := testImage()
	img.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "53/udp": {}}
	own := network.PortSet{network.MustParsePort("9000/tcp"): {}}
	cfg, err := Merge(img, container.Config{ExposedPorts: own})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for p := range cfg.ExposedPorts {
		got = append(got, p.String())
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "53/udp,8080/tcp,9000/tcp" || len(own) != 1 {
		t.Errorf("exposed ports %v (the request's set now %v)", got, own)
	}
	img.Config.ExposedPorts = map[string]struct{}{"http": {}, "80": {}}
	cfg, err = Merge(img, container.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.ExposedPorts[network.MustParsePort("80/tcp")]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("an image exposing 80 and a malformed port: %v", cfg.ExposedPorts)
	}
}

func TestInputErrors(t *testing.T) {
	in := testInput(t)
	in.HostConfig = nil
	if _, err := Generate(in); err == nil || !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil host config: %v", err)
	}
	in = testInput(t)
	in.ID = ""
	if _, err := Generate(in); err == nil || !errdefs.IsInvalidArgument(err) {
		t.Errorf("no ID: %v", err)
	}
	in = testInput(t)
	in.HostConfig.UsernsMode = "private"
	if _, err := Generate(in); err == nil || !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("userns: %v", err)
	}
}

func TestRecursiveReadOnly(t *testing.T) {
	in := testInput(t)
	in.Host.RecursiveReadOnly = true
	in.HostConfig.ReadonlyRootfs = true
	in.HostConfig.Binds = []string{"/srv/a:/a:ro"}
	in.HostConfig.Mounts = []mount.Mount{
		{Type: mount.TypeBind, Source: "/srv/b", Target: "/b", ReadOnly: true, BindOptions: &mount.BindOptions{ReadOnlyNonRecursive: true}},
		{Type: mount.TypeBind, Source: "/srv/c", Target: "/c", ReadOnly: true, BindOptions: &mount.BindOptions{ReadOnlyForceRecursive: true}},
	}
	s := generate(t, in)
	for dest, want := range map[string][]string{
		"/a":               {"rbind", "rro", "rprivate"},
		"/b":               {"rbind", "ro", "rprivate"},
		"/c":               {"rbind", "rro", "rprivate"},
		"/etc/hosts":       {"rbind", "rro", "rprivate"},
		"/etc/resolv.conf": {"rbind", "rro", "rprivate"},
	} {
		if m := mountAt(s, dest); m == nil || !reflect.DeepEqual(m.Options, want) {
			t.Errorf("%s: %+v, want options %v", dest, m, want)
		}
	}
	in.Host.RecursiveReadOnly = false
	if _, err := Generate(in); err == nil || !errors.Is(err, errdefs.ErrFailedPrecond) {
		t.Errorf("forced recursive read-only without support: %v", err)
	}
	in.HostConfig.Mounts = in.HostConfig.Mounts[:1]
	s = generate(t, in)
	if m := mountAt(s, "/a"); !reflect.DeepEqual(m.Options, []string{"rbind", "ro", "rprivate"}) {
		t.Errorf("/a without rro support: %v", m.Options)
	}
	in.HostConfig.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "/srv/b", Target: "/b", BindOptions: &mount.BindOptions{ReadOnlyNonRecursive: true}}}
	if _, err := Generate(in); err == nil || !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadOnlyNonRecursive without ReadOnly: %v", err)
	}
}

func TestGenerateLeavesRequestAlone(t *testing.T) {
	in := testInput(t)
	in.HostConfig.Memory = 64 << 20
	in.HostConfig.CapAdd = []string{"net_admin"}
	in.Config.Env = []string{"A=1"}
	in.Image.Config.Env = []string{"B=2"}
	hc, cfg := *in.HostConfig, *in.Config
	imgEnv := slices.Clone(in.Image.Config.Env)
	generate(t, in)
	if !reflect.DeepEqual(*in.HostConfig, hc) || !reflect.DeepEqual(*in.Config, cfg) || !reflect.DeepEqual(in.Image.Config.Env, imgEnv) {
		t.Errorf("Generate changed its input")
	}
}

// The defaults the engine records in a container's HostConfig are those a
// spec gets when the HostConfig names none, host paths included, and each
// call returns its own slice.
func TestDefaultMaskedAndReadonlyPaths(t *testing.T) {
	in := testInput(t)
	in.Host.MaskedPaths = []string{"/sys/devices/system/cpu/cpu0/thermal_throttle"}
	s := generate(t, in)
	masked := DefaultMaskedPaths(in.Host)
	if !reflect.DeepEqual(s.Linux.MaskedPaths, masked) {
		t.Errorf("spec masks %v, DefaultMaskedPaths %v", s.Linux.MaskedPaths, masked)
	}
	if !slices.Contains(masked, "/proc/kcore") || masked[len(masked)-1] != "/sys/devices/system/cpu/cpu0/thermal_throttle" {
		t.Errorf("DefaultMaskedPaths %v: want /proc/kcore and the host's path last", masked)
	}
	if ro := DefaultReadonlyPaths(); !reflect.DeepEqual(s.Linux.ReadonlyPaths, ro) || !slices.Contains(ro, "/proc/sys") {
		t.Errorf("spec read-only %v, DefaultReadonlyPaths %v", s.Linux.ReadonlyPaths, ro)
	}
	masked[0] = "/changed"
	DefaultReadonlyPaths()[0] = "/changed"
	if DefaultMaskedPaths(in.Host)[0] == "/changed" || DefaultReadonlyPaths()[0] == "/changed" {
		t.Error("the defaults share their slice with callers")
	}

	// Recorded in the HostConfig (as the engine does at create), they give
	// the same spec.
	in.HostConfig.MaskedPaths = DefaultMaskedPaths(in.Host)
	in.HostConfig.ReadonlyPaths = DefaultReadonlyPaths()
	s2 := generate(t, in)
	if !reflect.DeepEqual(s2.Linux.MaskedPaths, s.Linux.MaskedPaths) || !reflect.DeepEqual(s2.Linux.ReadonlyPaths, s.Linux.ReadonlyPaths) {
		t.Errorf("recorded defaults give masked %v read-only %v", s2.Linux.MaskedPaths, s2.Linux.ReadonlyPaths)
	}
}

// The defaults recorded at create are Docker's, by the host's cgroup
// version and the daemon's shm size, and a request's own values are kept.
func TestFillHostConfigDefaults(t *testing.T) {
	var hc container.HostConfig
	FillHostConfigDefaults(&hc, Host{})
	if hc.ShmSize != DefaultShmSize || hc.IpcMode != container.IPCModePrivate || hc.CgroupnsMode != container.CgroupnsModeHost ||
		hc.OomKillDisable == nil || *hc.OomKillDisable {
		t.Errorf("cgroup v1 defaults: shm %d ipc %q cgroupns %q oom-kill-disable %v", hc.ShmSize, hc.IpcMode, hc.CgroupnsMode, hc.OomKillDisable)
	}
	hc = container.HostConfig{}
	FillHostConfigDefaults(&hc, Host{CgroupV2: true, ShmSize: 1 << 20})
	if hc.ShmSize != 1<<20 || hc.CgroupnsMode != container.CgroupnsModePrivate {
		t.Errorf("cgroup v2 defaults with a daemon shm size: shm %d cgroupns %q", hc.ShmSize, hc.CgroupnsMode)
	}
	tr := true
	hc = container.HostConfig{ShmSize: 5 << 20, IpcMode: "host", CgroupnsMode: "private"}
	hc.OomKillDisable = &tr
	FillHostConfigDefaults(&hc, Host{})
	if hc.ShmSize != 5<<20 || hc.IpcMode != "host" || hc.CgroupnsMode != "private" || !*hc.OomKillDisable {
		t.Errorf("the request's own values changed: %+v", hc)
	}
}
