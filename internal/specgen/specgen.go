package specgen

import (
	"fmt"
	"path"

	"github.com/berth-project/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Docker's fixed values.
const (
	// DefaultPathEnv is the PATH a container gets when neither the image nor
	// the request sets one.
	DefaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// DefaultShmSize is the size of /dev/shm when the request gives none (64 MiB).
	DefaultShmSize = 64 << 20
	// ContainerInitPath is where the engine's init binary is bound inside the
	// container with --init, the path Docker uses for its docker-init.
	ContainerInitPath = "/sbin/docker-init"
)

// Input is everything Generate needs to know about one container. Config and
// HostConfig are the create request as the API received it; the rest is what
// the engine prepared for it or knows about the host.
type Input struct {
	// ID is the container's full ID; the hostname defaults to its first 12
	// characters.
	ID string
	// Image is the config of the container's image.
	Image dockerspec.DockerOCIImage
	// Config and HostConfig are the container-create request.
	Config     *container.Config
	HostConfig *container.HostConfig
	// Rootfs is the path of the container's root filesystem, already mounted.
	Rootfs string
	// CgroupsPath is the container's cgroup, as the engine chose it
	// (e.g. "/berth/<id>").
	CgroupsPath string
	// Files are the host paths of the files the engine wrote for the
	// container; an empty path is not mounted.
	Files NetworkFiles
	// Volumes are the volume mounts the engine resolved: one for each
	// volume named in HostConfig.Binds or HostConfig.Mounts (matched by
	// Destination, Source being the volume's directory on the host), and
	// any other volume the engine mounts (anonymous image volumes,
	// --volumes-from), taken as they are.
	Volumes []Mount
	// NetNSPath, when set, is a network namespace the engine prepared for a
	// container with its own network; the container joins it instead of
	// getting an empty one.
	NetNSPath string
	// Shared names the namespaces of other containers that this one joins
	// (network, ipc and pid modes "container:<id>").
	Shared SharedNamespaces
	// ShmPath is the host directory bound at /dev/shm when the IPC mode is
	// shareable, container:<id> or host (default "/dev/shm" for host).
	ShmPath string
	// InitPath is the host path of the engine's init binary, bound at
	// ContainerInitPath when the container runs with --init.
	InitPath string
	// Devices finds host devices for --device, --blkio-weight-device and
	// the --device-*-bps/iops throttles.
	Devices DeviceLookup
	// Host is what the engine knows about the host and its own defaults.
	Host Host
}

// NetworkFiles are the host paths of the per-container files bound at
// /etc/hostname, /etc/hosts and /etc/resolv.conf.
type NetworkFiles struct {
	Hostname   string
	Hosts      string
	ResolvConf string
}

// SharedNamespaces are the namespace paths (e.g. /proc/<pid>/ns/net) of the
// containers named by "container:<id>" modes.
type SharedNamespaces struct {
	Network string
	IPC     string
	PID     string
}

// Mount is a mount whose source the engine resolved.
type Mount struct {
	Source      string
	Destination string
	Type        string
	Options     []string
}

// Host holds the facts about the host and the daemon-wide defaults that
// Docker's choices depend on.
type Host struct {
	// CgroupV2 says /sys/fs/cgroup is a cgroup v2 (unified) mount: the
	// default cgroup namespace is then private, else the host's.
	CgroupV2 bool
	// Capabilities are those the engine can grant ("CAP_CHOWN", ...): what a
	// privileged container or --cap-add ALL gets. Nil means every capability
	// known, as Docker falls back to when it cannot read its own.
	Capabilities []string
	// HardRlimits are the engine's hard rlimits by type ("RLIMIT_NOFILE"):
	// no --ulimit may go above them unless CanRaiseRlimits.
	HardRlimits map[string]uint64
	// CanRaiseRlimits says the engine holds CAP_SYS_RESOURCE, so rlimits
	// above its own hard limits can be set.
	CanRaiseRlimits bool
	// Hostname is the host's name, the default hostname with --network host.
	Hostname string
	// NumCPU bounds --cpus.
	NumCPU int
	// NoSwapLimit says the host cannot limit swap: --memory-swap is then
	// dropped, as Docker drops it.
	NoSwapLimit bool
	// AppArmor says the host enforces AppArmor; AppArmorProfile is the
	// profile for containers that name none (Docker's "docker-default"),
	// empty for none.
	AppArmor        bool
	AppArmorProfile string
	// MaskedPaths are host-specific paths masked besides Docker's fixed list
	// (/sys/devices/system/cpu/cpuN/thermal_throttle where present).
	MaskedPaths []string
	// MissingSysctls are sysctls this kernel lacks; Docker's default
	// net.ipv4.ping_group_range and net.ipv4.ip_unprivileged_port_start are
	// left out when listed.
	MissingSysctls []string
	// PrivilegedDevices are the host's devices (as under /dev) a privileged
	// container gets.
	PrivilegedDevices []HostDevice
	// DefaultUlimits are the daemon's ulimits, for types the request does not set.
	DefaultUlimits []*container.Ulimit
	// Init says containers run with an init unless the request says otherwise.
	Init bool
	// ShmSize is the daemon's /dev/shm size; 0 means DefaultShmSize.
	ShmSize int64
	// RecursiveReadOnly says the runtime and kernel (5.12 or later) can
	// make a bind read-only with its submounts ("rro"), which Docker then
	// uses for read-only binds.
	RecursiveReadOnly bool
}

// Generate builds the runtime spec for in. Errors about the request are
// errdefs.InvalidArgument and name the field at fault.
func Generate(in Input) (*specs.Spec, error) {
	if in.Config == nil || in.HostConfig == nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("generate spec for container %s: config and host config are required", in.ID))
	}
	if in.ID == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("generate spec: no container ID"))
	}
	if in.Rootfs == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("generate spec for container %s: no rootfs", in.ID))
	}
	hc := *in.HostConfig
	cfg, err := Merge(in.Image, *in.Config)
	if err != nil {
		return nil, err
	}
	if err := defaultHostConfig(&hc, in.Host); err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		if hc.NetworkMode.IsHost() && in.Host.Hostname != "" {
			cfg.Hostname = in.Host.Hostname
		} else {
			cfg.Hostname = shortID(in.ID)
		}
	}
	sec, err := ParseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return nil, err
	}

	s := defaultSpec(in.Host)
	s.Root = &specs.Root{Path: in.Rootfs, Readonly: hc.ReadonlyRootfs}
	s.Linux.CgroupsPath = in.CgroupsPath

	if err := setProcess(s, &in, &cfg, &hc); err != nil {
		return nil, err
	}
	if err := setResources(s, &in, &hc); err != nil {
		return nil, err
	}
	if err := setDevices(s, &in, &hc); err != nil {
		return nil, err
	}
	if err := setRlimits(s, &in, &hc); err != nil {
		return nil, err
	}
	if err := setNamespaces(s, &in, &cfg, &hc); err != nil {
		return nil, err
	}
	if err := setSysctls(s, &in, &cfg, &hc); err != nil {
		return nil, err
	}
	if err := setCapabilities(s, &in, &hc); err != nil {
		return nil, err
	}
	if err := setSeccomp(s, &hc, sec); err != nil {
		return nil, err
	}
	if err := setMounts(s, &in, &hc, sec); err != nil {
		return nil, err
	}
	if err := setAppArmor(s, &in, &hc, sec); err != nil {
		return nil, err
	}
	s.Process.NoNewPrivileges = sec.NoNewPrivileges
	oom := hc.OomScoreAdj
	s.Process.OOMScoreAdj = &oom
	if len(hc.Annotations) > 0 {
		s.Annotations = make(map[string]string, len(hc.Annotations))
		for k, v := range hc.Annotations {
			s.Annotations[k] = v
		}
	}
	if hc.MaskedPaths != nil {
		s.Linux.MaskedPaths = append([]string{}, hc.MaskedPaths...)
	}
	if hc.ReadonlyPaths != nil {
		s.Linux.ReadonlyPaths = append([]string{}, hc.ReadonlyPaths...)
	}
	return s, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// FillHostConfigDefaults sets the defaults Docker's daemon records in a
// container's HostConfig at create where the request leaves them unset:
// the /dev/shm size, the IPC mode, the cgroup namespace mode (by the
// host's cgroup version) and OomKillDisable. Inspect shows them; Generate
// applies the same defaults to a HostConfig recorded without them.
func FillHostConfigDefaults(hc *container.HostConfig, h Host) {
	if hc.ShmSize == 0 {
		hc.ShmSize = DefaultShmSize
		if h.ShmSize > 0 {
			hc.ShmSize = h.ShmSize
		}
	}
	if hc.IpcMode.IsEmpty() {
		hc.IpcMode = container.IPCModePrivate
	}
	if hc.CgroupnsMode.IsEmpty() {
		hc.CgroupnsMode = container.CgroupnsModeHost
		if h.CgroupV2 {
			hc.CgroupnsMode = container.CgroupnsModePrivate
		}
	}
	if hc.OomKillDisable == nil {
		f := false
		hc.OomKillDisable = &f
	}
}

// defaultHostConfig fills what Docker's daemon fills at create and checks
// what it refuses there.
func defaultHostConfig(hc *container.HostConfig, h Host) error {
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		hc.MemorySwap = hc.Memory * 2
	}
	FillHostConfigDefaults(hc, h)
	if !hc.IpcMode.Valid() {
		return invalid("invalid IPC mode: %v", hc.IpcMode)
	}
	if !hc.PidMode.Valid() {
		return invalid("invalid PID mode: %v", hc.PidMode)
	}
	if !hc.UTSMode.Valid() {
		return invalid("invalid UTS mode: %v", hc.UTSMode)
	}
	if !hc.CgroupnsMode.Valid() {
		return invalid("invalid cgroup namespace mode: %v", hc.CgroupnsMode)
	}
	if hc.UsernsMode != "" && !hc.UsernsMode.IsHost() {
		return errdefs.NotImplemented(fmt.Errorf("user namespace mode %q: Berth runs containers in the host's user namespace", hc.UsernsMode))
	}
	if hc.ShmSize < 0 {
		return invalid("SHM size can not be less than 0")
	}
	if hc.OomScoreAdj < -1000 || hc.OomScoreAdj > 1000 {
		return invalid("invalid value %d, range for oom score adj is [-1000, 1000]", hc.OomScoreAdj)
	}
	return nil
}

func invalid(format string, a ...any) error {
	return errdefs.InvalidArgument(fmt.Errorf(format, a...))
}

// DefaultMaskedPaths are the paths Docker masks in a container that is
// not privileged: its fixed list and the host's own (h.MaskedPaths). A new
// slice each call. The engine records them in the container's HostConfig
// at create, as Docker does.
func DefaultMaskedPaths(h Host) []string {
	masked := []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
	return append(masked, h.MaskedPaths...)
}

// DefaultReadonlyPaths are the paths Docker makes read-only in a container
// that is not privileged. A new slice each call.
func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// defaultSpec is Docker's default Linux spec.
func defaultSpec(h Host) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			MaskedPaths:   DefaultMaskedPaths(h),
			ReadonlyPaths: DefaultReadonlyPaths(),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
			},
			Devices: []specs.LinuxDevice{},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{
					{Allow: false, Access: "rwm"},
					devRule(true, "c", 1, 5, "rwm"),
					devRule(true, "c", 1, 3, "rwm"),
					devRule(true, "c", 1, 9, "rwm"),
					devRule(true, "c", 1, 8, "rwm"),
					devRule(true, "c", 5, 0, "rwm"),
					devRule(true, "c", 5, 1, "rwm"),
					devRule(false, "c", 10, 229, "rwm"),
				},
			},
			Sysctl: map[string]string{},
		},
	}
}

func devRule(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: &major, Minor: &minor, Access: access}
}

// setProcess sets the command, environment, working directory, terminal,
// user and hostname.
func setProcess(s *specs.Spec, in *Input, cfg *container.Config, hc *container.HostConfig) error {
	args, err := Command(*cfg)
	if err != nil {
		return err
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return invalid("the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir)
	}
	s.Process.Cwd = path.Clean(cwd)
	if hc.PidMode.IsPrivate() && ((hc.Init != nil && *hc.Init) || (hc.Init == nil && in.Host.Init)) {
		if in.InitPath == "" {
			return errdefs.FailedPrecondition(fmt.Errorf("container %s asks for an init (--init), but the daemon has no init binary: install berth-init next to berthd or on its PATH, or set berthd's --init-path", in.ID))
		}
		args = append([]string{ContainerInitPath, "--"}, args...)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: ContainerInitPath, Type: "bind", Source: in.InitPath, Options: []string{"bind", "ro"}})
	}
	s.Process.Args = args
	s.Process.Env = Env(*cfg)
	s.Process.Terminal = cfg.Tty
	if cfg.Tty && hc.ConsoleSize[0] > 0 && hc.ConsoleSize[1] > 0 {
		s.Process.ConsoleSize = &specs.Box{Height: hc.ConsoleSize[0], Width: hc.ConsoleSize[1]}
	}
	s.Hostname = cfg.Hostname
	if cfg.Domainname != "" {
		s.Linux.Sysctl["kernel.domainname"] = cfg.Domainname
	}
	u, err := LookupUser(in.Rootfs, cfg.User, hc.GroupAdd)
	if err != nil {
		return err
	}
	s.Process.User = u
	if hc.Umask != nil {
		m := *hc.Umask
		s.Process.User.Umask = &m
	}
	return nil
}

// hostSysctlMissing reports whether the host lacks sysctl name.
func (h Host) hostSysctlMissing(name string) bool {
	for _, m := range h.MissingSysctls {
		if m == name {
			return true
		}
	}
	return false
}
