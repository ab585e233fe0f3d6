package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/cli/opts"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// runOptions holds docker's create/run flags as parsed from the command
// line; toConfig turns them into the API's create request.
type runOptions struct {
	name, hostname, domainname, user, workdir, entrypoint string
	stopSignal, runtime, detachKeys, platform             string
	restart, pid, ipc, uts, cgroupns, pull                string
	cpusetCPUs                                            string
	env, envFile, labels, labelFile, volumes, tmpfs       opts.ListOpts
	addHosts, devices, securityOpts, capAdd               opts.ListOpts
	sysctls                                               *opts.MapOpts
	capDrop, groupAdd, dns, dnsSearch, dnsOpts, attach    opts.ListOpts
	publish                                               opts.ListOpts
	mounts                                                opts.MountOpt
	ulimits                                               *opts.UlimitOpt
	memory, memoryReservation, shmSize                    opts.MemBytes
	memorySwap                                            opts.MemSwapBytes
	cpus                                                  opts.NanoCPUs
	cpuShares, pidsLimit, cpuPeriod, cpuQuota             int64
	blkioWeight                                           uint16
	oomScoreAdj                                           int
	stopTimeout                                           int
	tty, interactive, detach, rm, readOnly, privileged    bool
	init, oomKillDisable, sigProxy, publishAll            bool
	healthCmd                                             string
	healthInterval, healthTimeout, healthStartPeriod      time.Duration
	healthStartInterval                                   time.Duration
	healthRetries                                         int
	noHealthcheck                                         bool

	// Flags docker accepts that the daemon decides about.
	cgroupParent, cidfile, cpusetMems, ip, ip6, isolation string
	logDriver, macAddress, userns, volumeDriver           string
	annotations                                           *opts.MapOpts
	blkioWeightDevice                                     opts.WeightdeviceOpt
	deviceReadBps, deviceReadIOps                         opts.ThrottledeviceOpt
	deviceWriteBps, deviceWriteIOps                       opts.ThrottledeviceOpt
	deviceCgroupRules, expose, links, linkLocalIPs        opts.ListOpts
	logOpts, aliases, storageOpts, volumesFrom            opts.ListOpts
	gpus                                                  opts.GpuOpts
	ioMaxBandwidth, kernelMemory                          opts.MemBytes
	ioMaxIOps                                             uint64
	cpuCount, cpuPercent, cpuRtPeriod, cpuRtRuntime       int64
	memorySwappiness                                      int64
	quiet, useAPISocket, disableContentTrust              bool

	networks opts.NetworkOpt

	flags *pflag.FlagSet
}

func newRunOptions() *runOptions {
	o := &runOptions{ulimits: opts.NewUlimitOpt(nil)}
	o.env = opts.NewListOpts(opts.ValidateEnv)
	o.envFile = opts.NewListOpts(nil)
	o.labels = opts.NewListOpts(opts.ValidateLabel)
	o.labelFile = opts.NewListOpts(nil)
	o.volumes = opts.NewListOpts(nil)
	o.tmpfs = opts.NewListOpts(nil)
	o.addHosts = opts.NewListOpts(opts.ValidateExtraHost)
	o.devices = opts.NewListOpts(nil)
	o.sysctls = opts.NewMapOpts(nil, opts.ValidateSysctl)
	o.securityOpts = opts.NewListOpts(nil)
	o.capAdd = opts.NewListOpts(nil)
	o.capDrop = opts.NewListOpts(nil)
	o.groupAdd = opts.NewListOpts(nil)
	o.dns = opts.NewListOpts(opts.ValidateIPAddress)
	o.dnsSearch = opts.NewListOpts(opts.ValidateDNSSearch)
	o.dnsOpts = opts.NewListOpts(nil)
	o.attach = opts.NewListOpts(validateStream)
	o.publish = opts.NewListOpts(nil)
	o.annotations = opts.NewMapOpts(nil, nil)
	o.blkioWeightDevice = opts.NewWeightdeviceOpt(opts.ValidateWeightDevice)
	o.deviceReadBps = opts.NewThrottledeviceOpt(opts.ValidateThrottleBpsDevice)
	o.deviceReadIOps = opts.NewThrottledeviceOpt(opts.ValidateThrottleIOpsDevice)
	o.deviceWriteBps = opts.NewThrottledeviceOpt(opts.ValidateThrottleBpsDevice)
	o.deviceWriteIOps = opts.NewThrottledeviceOpt(opts.ValidateThrottleIOpsDevice)
	o.deviceCgroupRules = opts.NewListOpts(validateDeviceCgroupRule)
	o.expose = opts.NewListOpts(nil)
	o.links = opts.NewListOpts(opts.ValidateLink)
	o.linkLocalIPs = opts.NewListOpts(nil)
	o.logOpts = opts.NewListOpts(nil)
	o.aliases = opts.NewListOpts(nil)
	o.storageOpts = opts.NewListOpts(nil)
	o.volumesFrom = opts.NewListOpts(nil)
	return o
}

func validateStream(s string) (string, error) {
	switch strings.ToLower(s) {
	case "stdin", "stdout", "stderr":
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("valid streams are STDIN, STDOUT and STDERR, not %q", s)
}

// deviceCgroupRule is docker's --device-cgroup-rule syntax: type
// major:minor access.
var deviceCgroupRule = regexp.MustCompile(`^[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}$`)

func validateDeviceCgroupRule(s string) (string, error) {
	if deviceCgroupRule.MatchString(s) {
		return s, nil
	}
	return s, fmt.Errorf("invalid device cgroup format '%s'", s)
}

// addFlags registers docker's create flags (run adds -d, --rm is shared).
func (o *runOptions) addFlags(fl *pflag.FlagSet, run bool) {
	o.flags = fl
	fl.SetInterspersed(false)
	fl.StringVar(&o.name, "name", "", "assign a name to the container")
	// -h is the host name, as in docker; help has no shorthand here.
	fl.Bool("help", false, "print usage")
	fl.StringVarP(&o.hostname, "hostname", "h", "", "container host name")
	fl.StringVar(&o.domainname, "domainname", "", "container NIS domain name")
	fl.StringVarP(&o.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	fl.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVar(&o.entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image")
	fl.StringVar(&o.stopSignal, "stop-signal", "", "signal to stop the container")
	fl.IntVar(&o.stopTimeout, "stop-timeout", 0, "timeout (in seconds) to stop a container")
	fl.StringVar(&o.runtime, "runtime", "", "runtime to use for this container")
	fl.Var(&o.networks, "network", "connect a container to a network (none, host)")
	fl.Var(&o.networks, "net", "connect a container to a network")
	_ = fl.MarkHidden("net")
	fl.StringVar(&o.platform, "platform", "", "set platform if server is multi-platform capable")
	fl.StringVar(&o.restart, "restart", "no", "restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped)")
	fl.StringVar(&o.pid, "pid", "", "PID namespace to use")
	fl.StringVar(&o.ipc, "ipc", "", "IPC mode to use")
	fl.StringVar(&o.uts, "uts", "", "UTS namespace to use")
	fl.StringVar(&o.cgroupns, "cgroupns", "", "cgroup namespace to use (host|private)")
	fl.StringVar(&o.pull, "pull", "missing", `pull image before running ("always", "missing", "never")`)
	fl.StringVar(&o.cpusetCPUs, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fl.VarP(&o.env, "env", "e", "set environment variables")
	fl.Var(&o.envFile, "env-file", "read in a file of environment variables")
	fl.VarP(&o.labels, "label", "l", "set meta data on a container")
	fl.Var(&o.labelFile, "label-file", "read in a line delimited file of labels")
	fl.VarP(&o.volumes, "volume", "v", "bind mount a volume")
	fl.Var(&o.tmpfs, "tmpfs", "mount a tmpfs directory")
	fl.Var(&o.mounts, "mount", "attach a filesystem mount to the container")
	fl.Var(&o.addHosts, "add-host", "add a custom host-to-IP mapping (host:ip)")
	fl.Var(&o.devices, "device", "add a host device to the container")
	fl.Var(o.sysctls, "sysctl", "sysctl options")
	fl.Var(&o.securityOpts, "security-opt", "security options")
	fl.Var(&o.capAdd, "cap-add", "add Linux capabilities")
	fl.Var(&o.capDrop, "cap-drop", "drop Linux capabilities")
	fl.Var(&o.groupAdd, "group-add", "add additional groups to join")
	fl.Var(&o.dns, "dns", "set custom DNS servers")
	fl.Var(&o.dnsSearch, "dns-search", "set custom DNS search domains")
	fl.Var(&o.dnsOpts, "dns-option", "set DNS options")
	fl.VarP(&o.attach, "attach", "a", "attach to STDIN, STDOUT or STDERR")
	fl.VarP(&o.publish, "publish", "p", "publish a container's port(s) to the host")
	fl.BoolVarP(&o.publishAll, "publish-all", "P", false, "publish all exposed ports to random ports")
	fl.Var(o.ulimits, "ulimit", "ulimit options")
	fl.Var(&o.memory, "memory", "memory limit")
	fl.Lookup("memory").Shorthand = "m"
	fl.Var(&o.memoryReservation, "memory-reservation", "memory soft limit")
	fl.Var(&o.memorySwap, "memory-swap", "swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	fl.Var(&o.shmSize, "shm-size", "size of /dev/shm")
	fl.Var(&o.cpus, "cpus", "number of CPUs")
	fl.Int64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fl.Int64Var(&o.cpuPeriod, "cpu-period", 0, "limit CPU CFS (Completely Fair Scheduler) period")
	fl.Int64Var(&o.cpuQuota, "cpu-quota", 0, "limit CPU CFS (Completely Fair Scheduler) quota")
	fl.Int64Var(&o.pidsLimit, "pids-limit", 0, "tune container pids limit (set -1 for unlimited)")
	fl.Uint16Var(&o.blkioWeight, "blkio-weight", 0, "block IO (relative weight), between 10 and 1000, or 0 to disable")
	fl.IntVar(&o.oomScoreAdj, "oom-score-adj", 0, "tune host's OOM preferences (-1000 to 1000)")
	fl.BoolVar(&o.oomKillDisable, "oom-kill-disable", false, "disable OOM Killer")
	fl.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-TTY")
	fl.BoolVarP(&o.interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	fl.BoolVar(&o.rm, "rm", false, "automatically remove the container and its associated anonymous volumes when it exits")
	fl.BoolVar(&o.readOnly, "read-only", false, "mount the container's root filesystem as read only")
	fl.BoolVar(&o.privileged, "privileged", false, "give extended privileges to this container")
	fl.BoolVar(&o.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	fl.StringVar(&o.healthCmd, "health-cmd", "", "command to run to check health")
	fl.DurationVar(&o.healthInterval, "health-interval", 0, "time between running the check (ms|s|m|h)")
	fl.DurationVar(&o.healthTimeout, "health-timeout", 0, "maximum time to allow one check to run (ms|s|m|h)")
	fl.DurationVar(&o.healthStartPeriod, "health-start-period", 0, "start period for the container to initialize before starting health-retries countdown (ms|s|m|h)")
	fl.DurationVar(&o.healthStartInterval, "health-start-interval", 0, "time between running the check during the start period (ms|s|m|h)")
	fl.IntVar(&o.healthRetries, "health-retries", 0, "consecutive failures needed to report unhealthy")
	fl.BoolVar(&o.noHealthcheck, "no-healthcheck", false, "disable any container-specified HEALTHCHECK")
	fl.Var(&o.dnsOpts, "dns-opt", "set DNS options")
	_ = fl.MarkHidden("dns-opt")

	fl.Var(o.annotations, "annotation", "add an annotation to the container (passed through to the OCI runtime)")
	fl.Var(&o.blkioWeightDevice, "blkio-weight-device", "block IO weight (relative device weight)")
	fl.StringVar(&o.cgroupParent, "cgroup-parent", "", "optional parent cgroup for the container")
	fl.StringVar(&o.cidfile, "cidfile", "", "write the container ID to the file")
	fl.Int64Var(&o.cpuCount, "cpu-count", 0, "CPU count (Windows only)")
	fl.Int64Var(&o.cpuPercent, "cpu-percent", 0, "CPU percent (Windows only)")
	fl.Int64Var(&o.cpuRtPeriod, "cpu-rt-period", 0, "limit CPU real-time period in microseconds")
	fl.Int64Var(&o.cpuRtRuntime, "cpu-rt-runtime", 0, "limit CPU real-time runtime in microseconds")
	fl.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	fl.Var(&o.deviceCgroupRules, "device-cgroup-rule", "add a rule to the cgroup allowed devices list")
	fl.Var(&o.deviceReadBps, "device-read-bps", "limit read rate (bytes per second) from a device")
	fl.Var(&o.deviceReadIOps, "device-read-iops", "limit read rate (IO per second) from a device")
	fl.Var(&o.deviceWriteBps, "device-write-bps", "limit write rate (bytes per second) to a device")
	fl.Var(&o.deviceWriteIOps, "device-write-iops", "limit write rate (IO per second) to a device")
	fl.BoolVar(&o.disableContentTrust, "disable-content-trust", true, "skip image verification")
	fl.Var(&o.expose, "expose", "expose a port or a range of ports")
	fl.Var(&o.gpus, "gpus", "GPU devices to add to the container ('all' to pass all GPUs)")
	fl.Var(&o.ioMaxBandwidth, "io-maxbandwidth", "maximum IO bandwidth limit for the system drive (Windows only)")
	fl.Uint64Var(&o.ioMaxIOps, "io-maxiops", 0, "maximum IOps limit for the system drive (Windows only)")
	fl.StringVar(&o.ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	fl.StringVar(&o.ip6, "ip6", "", "IPv6 address (e.g., 2001:db8::33)")
	fl.StringVar(&o.isolation, "isolation", "", "container isolation technology")
	fl.Var(&o.kernelMemory, "kernel-memory", "kernel memory limit")
	fl.Var(&o.links, "link", "add link to another container")
	fl.Var(&o.linkLocalIPs, "link-local-ip", "container IPv4/IPv6 link-local addresses")
	fl.StringVar(&o.logDriver, "log-driver", "", "logging driver for the container")
	fl.Var(&o.logOpts, "log-opt", "log driver options")
	fl.StringVar(&o.macAddress, "mac-address", "", "container MAC address (e.g., 92:d0:c6:0a:29:33)")
	fl.Int64Var(&o.memorySwappiness, "memory-swappiness", -1, "tune container memory swappiness (0 to 100)")
	fl.Var(&o.aliases, "network-alias", "add network-scoped alias for the container")
	fl.Var(&o.aliases, "net-alias", "add network-scoped alias for the container")
	_ = fl.MarkHidden("net-alias")
	fl.BoolVarP(&o.quiet, "quiet", "q", false, "suppress the pull output")
	fl.Var(&o.storageOpts, "storage-opt", "storage driver options for the container")
	fl.BoolVar(&o.useAPISocket, "use-api-socket", false, "bind mount Docker API socket and required auth")
	fl.StringVar(&o.userns, "userns", "", "user namespace to use")
	fl.StringVar(&o.volumeDriver, "volume-driver", "", "optional volume driver for the container")
	fl.Var(&o.volumesFrom, "volumes-from", "mount volumes from the specified container(s)")
	if run {
		fl.BoolVarP(&o.detach, "detach", "d", false, "run container in background and print container ID")
		fl.StringVar(&o.detachKeys, "detach-keys", "", "override the key sequence for detaching a container")
		fl.BoolVar(&o.sigProxy, "sig-proxy", true, "proxy received signals to the process")
	}
}

// createRequest is what toConfig produces: the API's create body.
type createRequest struct {
	config     *container.Config
	hostConfig *container.HostConfig
	networking *network.NetworkingConfig
	// warnings are printed before the container is created.
	warnings []string
}

// toConfig turns the flags, the image and the command into a create
// request, validating as docker's CLI does.
func (o *runOptions) toConfig(args []string) (*createRequest, error) {
	changed := func(name string) bool { return o.flags != nil && o.flags.Changed(name) }
	if o.publish.Len() > 0 || o.publishAll {
		return nil, errors.New("publishing ports (-p/--publish, -P) is not supported by berth yet; use --network host to reach the container's ports")
	}
	if len(args) == 0 {
		return nil, errors.New(`"run" requires at least 1 argument`)
	}
	img, cmd := args[0], args[1:]
	env, err := opts.ReadKVEnvStrings(o.envFile.GetSlice(), o.env.GetSlice())
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	labels, err := opts.ReadKVStrings(o.labelFile.GetSlice(), o.labels.GetSlice())
	if err != nil {
		return nil, fmt.Errorf("read label file: %w", err)
	}
	var entrypoint []string
	if o.entrypoint != "" {
		entrypoint = []string{o.entrypoint}
	} else if changed("entrypoint") {
		entrypoint = []string{""}
	}
	restart, err := parseRestart(o.restart)
	if err != nil {
		return nil, err
	}
	if o.rm && restart.Name != "" && restart.Name != container.RestartPolicyDisabled {
		return nil, errors.New("conflicting options: cannot specify both --restart and --rm")
	}

	// -v: host:ctr[:opts] and name:ctr[:opts] are binds; a lone path is an
	// anonymous volume.
	var binds []string
	volumes := map[string]struct{}{}
	for _, v := range o.volumes.GetSlice() {
		parts := strings.Split(v, ":")
		switch {
		case len(parts) == 1:
			if !path.IsAbs(v) {
				return nil, fmt.Errorf("invalid volume specification %q: the container path must be absolute", v)
			}
			volumes[path.Clean(v)] = struct{}{}
		case len(parts) <= 3:
			if parts[0] == "" || !path.IsAbs(parts[1]) {
				return nil, fmt.Errorf("invalid volume specification %q: want host-path-or-name:absolute-container-path[:options]", v)
			}
			binds = append(binds, v)
		default:
			return nil, fmt.Errorf("invalid volume specification %q: too many colons", v)
		}
	}
	tmpfs := map[string]string{}
	for _, t := range o.tmpfs.GetSlice() {
		dst, options, _ := strings.Cut(t, ":")
		if !path.IsAbs(dst) {
			return nil, fmt.Errorf("invalid tmpfs %q: the container path must be absolute", t)
		}
		tmpfs[dst] = options
	}
	var devices []container.DeviceMapping
	for _, d := range o.devices.GetSlice() {
		dm, err := parseDevice(d)
		if err != nil {
			return nil, err
		}
		devices = append(devices, dm)
	}
	secOpts, err := parseSecurityOpts(o.securityOpts.GetSlice())
	if err != nil {
		return nil, err
	}
	sysctls := o.sysctls.GetAll()
	var dns []netip.Addr
	for _, s := range o.dns.GetSlice() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid --dns %q: %w", s, err)
		}
		dns = append(dns, a)
	}

	var health *container.HealthConfig
	haveHealthOpts := o.healthCmd != "" || o.healthInterval != 0 || o.healthTimeout != 0 ||
		o.healthStartPeriod != 0 || o.healthRetries != 0 || o.healthStartInterval != 0
	if o.noHealthcheck {
		if haveHealthOpts {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		health = &container.HealthConfig{Test: []string{"NONE"}}
	} else if haveHealthOpts {
		for name, d := range map[string]time.Duration{"interval": o.healthInterval, "timeout": o.healthTimeout,
			"start-period": o.healthStartPeriod, "start-interval": o.healthStartInterval} {
			if d < 0 {
				return nil, fmt.Errorf("--health-%s cannot be negative", name)
			}
		}
		if o.healthRetries < 0 {
			return nil, errors.New("--health-retries cannot be negative")
		}
		health = &container.HealthConfig{Interval: o.healthInterval, Timeout: o.healthTimeout,
			StartPeriod: o.healthStartPeriod, StartInterval: o.healthStartInterval, Retries: o.healthRetries}
		if o.healthCmd != "" {
			health.Test = []string{"CMD-SHELL", o.healthCmd}
		}
	}

	if o.macAddress != "" {
		if _, err := net.ParseMAC(strings.TrimSpace(o.macAddress)); err != nil {
			return nil, fmt.Errorf("%s is not a valid mac address", o.macAddress)
		}
	}
	if s := o.memorySwappiness; s != -1 && (s < 0 || s > 100) {
		return nil, fmt.Errorf("invalid value: %d. Valid memory swappiness range is 0-100", s)
	}
	if !container.UsernsMode(o.userns).Valid() {
		return nil, errors.New("--userns: invalid USER mode")
	}
	if o.logDriver == "none" && o.logOpts.Len() > 0 {
		return nil, fmt.Errorf("invalid logging opts for driver %s", o.logDriver)
	}
	logOpts := opts.ConvertKVStringsToMap(splitLogOpts(o.logOpts.GetSlice()))
	storageOpts := map[string]string{}
	for _, so := range o.storageOpts.GetSlice() {
		k, v, ok := strings.Cut(so, "=")
		if !ok {
			return nil, fmt.Errorf("invalid storage option %q: want key=value", so)
		}
		storageOpts[k] = v
	}
	exposed := network.PortSet{}
	for _, e := range o.expose.GetSlice() {
		pr, err := network.ParsePortRange(e)
		if err != nil {
			return nil, fmt.Errorf("invalid range format for --expose: %w", err)
		}
		for p := range pr.All() {
			exposed[p] = struct{}{}
		}
	}
	if !o.disableContentTrust {
		return nil, errors.New("content trust (--disable-content-trust=false) is not supported by berth: images are verified by digest only")
	}
	var warnings []string
	if changed("kernel-memory") {
		warnings = append(warnings, "--kernel-memory is deprecated and no longer supported by the kernel: the limit is ignored")
	}
	endpoints, err := o.endpoints()
	if err != nil {
		return nil, err
	}

	attach := map[string]bool{}
	for _, s := range o.attach.GetSlice() {
		attach[s] = true
	}
	if o.detach && len(attach) > 0 {
		return nil, errors.New("conflicting options: cannot specify both --attach and --detach")
	}
	cfg := &container.Config{
		Hostname:    o.hostname,
		Domainname:  o.domainname,
		User:        o.user,
		Tty:         o.tty,
		OpenStdin:   o.interactive,
		Env:         env,
		Cmd:         cmd,
		Image:       img,
		Volumes:     volumes,
		WorkingDir:  o.workdir,
		Entrypoint:  entrypoint,
		Labels:      opts.ConvertKVStringsToMap(labels),
		StopSignal:  o.stopSignal,
		Healthcheck: health,
	}
	if len(exposed) > 0 {
		cfg.ExposedPorts = exposed
	}
	if !o.detach {
		if len(attach) == 0 {
			cfg.AttachStdout, cfg.AttachStderr = true, true
			cfg.AttachStdin = o.interactive
		} else {
			cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = attach["stdin"], attach["stdout"], attach["stderr"]
		}
		if cfg.AttachStdin {
			cfg.StdinOnce = true
		}
	}
	if changed("stop-timeout") {
		t := o.stopTimeout
		cfg.StopTimeout = &t
	}
	netMode := container.NetworkMode(o.networks.NetworkMode())
	if netMode.IsNone() {
		cfg.NetworkDisabled = true
	}
	hc := &container.HostConfig{
		Binds:           binds,
		NetworkMode:     netMode,
		RestartPolicy:   restart,
		AutoRemove:      o.rm,
		CapAdd:          o.capAdd.GetSlice(),
		CapDrop:         o.capDrop.GetSlice(),
		CgroupnsMode:    container.CgroupnsMode(o.cgroupns),
		DNS:             dns,
		DNSOptions:      o.dnsOpts.GetSlice(),
		DNSSearch:       o.dnsSearch.GetSlice(),
		ExtraHosts:      o.addHosts.GetSlice(),
		GroupAdd:        o.groupAdd.GetSlice(),
		IpcMode:         container.IpcMode(o.ipc),
		PidMode:         container.PidMode(o.pid),
		UTSMode:         container.UTSMode(o.uts),
		OomScoreAdj:     o.oomScoreAdj,
		Privileged:      o.privileged,
		ReadonlyRootfs:  o.readOnly,
		SecurityOpt:     secOpts,
		ShmSize:         o.shmSize.Value(),
		Runtime:         o.runtime,
		Mounts:          o.mounts.Value(),
		ContainerIDFile: o.cidfile,
		Links:           o.links.GetSlice(),
		VolumesFrom:     o.volumesFrom.GetSlice(),
		UsernsMode:      container.UsernsMode(o.userns),
		LogConfig:       container.LogConfig{Type: o.logDriver, Config: logOpts},
		VolumeDriver:    o.volumeDriver,
		Isolation:       container.Isolation(o.isolation),
		Annotations:     o.annotations.GetAll(),
		Resources: container.Resources{
			CgroupParent:         o.cgroupParent,
			MemorySwappiness:     &o.memorySwappiness,
			CPUCount:             o.cpuCount,
			CPUPercent:           o.cpuPercent,
			CpusetMems:           o.cpusetMems,
			CPURealtimePeriod:    o.cpuRtPeriod,
			CPURealtimeRuntime:   o.cpuRtRuntime,
			BlkioWeightDevice:    o.blkioWeightDevice.GetList(),
			BlkioDeviceReadBps:   o.deviceReadBps.GetList(),
			BlkioDeviceWriteBps:  o.deviceWriteBps.GetList(),
			BlkioDeviceReadIOps:  o.deviceReadIOps.GetList(),
			BlkioDeviceWriteIOps: o.deviceWriteIOps.GetList(),
			IOMaximumIOps:        o.ioMaxIOps,
			IOMaximumBandwidth:   uint64(o.ioMaxBandwidth),
			DeviceCgroupRules:    o.deviceCgroupRules.GetSlice(),
			DeviceRequests:       o.gpus.Value(),
			Memory:               o.memory.Value(),
			MemoryReservation:    o.memoryReservation.Value(),
			MemorySwap:           o.memorySwap.Value(),
			NanoCPUs:             o.cpus.Value(),
			CPUShares:            o.cpuShares,
			CPUPeriod:            o.cpuPeriod,
			CPUQuota:             o.cpuQuota,
			CpusetCpus:           o.cpusetCPUs,
			BlkioWeight:          o.blkioWeight,
			Devices:              devices,
			Ulimits:              o.ulimits.GetList(),
		},
	}
	if len(tmpfs) > 0 {
		hc.Tmpfs = tmpfs
	}
	if len(sysctls) > 0 {
		hc.Sysctls = sysctls
	}
	if len(storageOpts) > 0 {
		hc.StorageOpt = storageOpts
	}
	if changed("pids-limit") {
		p := o.pidsLimit
		hc.PidsLimit = &p
	}
	if changed("oom-kill-disable") {
		b := o.oomKillDisable
		hc.OomKillDisable = &b
	}
	if changed("init") {
		b := o.init
		hc.Init = &b
	}
	if o.tty {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			hc.ConsoleSize = [2]uint{uint(h), uint(w)}
		}
	}
	return &createRequest{config: cfg, hostConfig: hc, networking: &network.NetworkingConfig{EndpointsConfig: endpoints},
		warnings: warnings}, nil
}

// logOptKeys are the log options of docker's json-file and local drivers.
var logOptKeys = map[string]bool{"max-size": true, "max-file": true, "compress": true, "labels": true,
	"labels-regex": true, "env": true, "env-regex": true, "tag": true, "mode": true, "max-buffer-size": true}

// splitLogOpts takes --log-opt values one option each, as docker does, and
// also a comma-separated list of them (max-size=10m,max-file=3), which
// docker's daemon would reject as one malformed size: a value is split only
// when every piece is KEY=VALUE with a known key, so labels=a,b and env=A,B
// keep their commas.
func splitLogOpts(in []string) []string {
	var out []string
	for _, v := range in {
		pieces := strings.Split(v, ",")
		split := len(pieces) > 1
		for _, p := range pieces {
			k, _, ok := strings.Cut(p, "=")
			if !ok || !logOptKeys[k] {
				split = false
				break
			}
		}
		if split {
			out = append(out, pieces...)
		} else {
			out = append(out, v)
		}
	}
	return out
}

// endpoints builds the networking config as docker's CLI does: each
// --network (name or the long syntax name=...,alias=...,ip=...) is an
// endpoint; --ip, --ip6, --link-local-ip, --mac-address, --network-alias
// (and --link on a user-defined network) set the first one. The daemon
// decides whether it can honour them.
func (o *runOptions) endpoints() (map[string]*network.EndpointSettings, error) {
	nets := o.networks.Value()
	if len(nets) == 0 {
		// Without --network, docker always names the default endpoint.
		nets = []opts.NetworkAttachmentOpts{{Target: "default"}}
	}
	out := make(map[string]*network.EndpointSettings, len(nets))
	var userDefined, builtin bool
	for i, n := range nets {
		if container.NetworkMode(n.Target).IsUserDefined() {
			userDefined = true
		} else {
			builtin = true
		}
		if i == 0 {
			if err := o.applyEndpointFlags(&n); err != nil {
				return nil, err
			}
		}
		ep, err := endpointSettings(n)
		if err != nil {
			return nil, err
		}
		if _, dup := out[n.Target]; dup {
			return nil, fmt.Errorf("network %q is specified multiple times", n.Target)
		}
		// One network given without options: docker leaves it out.
		if o.networks.Value() != nil && i == 0 && len(nets) == 1 && reflect.ValueOf(*ep).IsZero() {
			continue
		}
		out[n.Target] = ep
	}
	if userDefined && builtin {
		return nil, errors.New("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
	}
	return out, nil
}

// applyEndpointFlags sets the single-network flags on the first network,
// refusing them where its long syntax already set the same thing.
func (o *runOptions) applyEndpointFlags(n *opts.NetworkAttachmentOpts) error {
	conflict := func(flag, what string) error {
		return fmt.Errorf("conflicting options: cannot specify both %s and per-network %s", flag, what)
	}
	if o.aliases.Len() > 0 {
		if len(n.Aliases) > 0 {
			return conflict("--network-alias", "alias")
		}
		n.Aliases = o.aliases.GetSlice()
	}
	if o.links.Len() > 0 && container.NetworkMode(n.Target).IsUserDefined() {
		if len(n.Links) > 0 {
			return conflict("--link", "links")
		}
		n.Links = o.links.GetSlice()
	}
	if o.ip != "" {
		if n.IPv4Address.IsValid() {
			return conflict("--ip", "IPv4 address")
		}
		a, err := netip.ParseAddr(strings.TrimSpace(o.ip))
		if err != nil || !a.Unmap().Is4() {
			return fmt.Errorf("invalid argument %q for \"--ip\" flag: not an IPv4 address", o.ip)
		}
		n.IPv4Address = a.Unmap()
	}
	if o.ip6 != "" {
		if n.IPv6Address.IsValid() {
			return conflict("--ip6", "IPv6 address")
		}
		a, err := netip.ParseAddr(strings.TrimSpace(o.ip6))
		if err != nil {
			return fmt.Errorf("invalid argument %q for \"--ip6\" flag: %w", o.ip6, err)
		}
		n.IPv6Address = a
	}
	if o.macAddress != "" {
		if n.MacAddress != "" {
			return conflict("--mac-address", "MAC address")
		}
		n.MacAddress = o.macAddress
	}
	if o.linkLocalIPs.Len() > 0 {
		if len(n.LinkLocalIPs) > 0 {
			return conflict("--link-local-ip", "link-local IP addresses")
		}
		for _, s := range o.linkLocalIPs.GetSlice() {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("invalid argument %q for \"--link-local-ip\" flag: %w", s, err)
			}
			n.LinkLocalIPs = append(n.LinkLocalIPs, a)
		}
	}
	return nil
}

// endpointSettings is the API's endpoint for one network attachment.
func endpointSettings(n opts.NetworkAttachmentOpts) (*network.EndpointSettings, error) {
	if strings.TrimSpace(n.Target) == "" {
		return nil, errors.New("no name set for network")
	}
	if !container.NetworkMode(n.Target).IsUserDefined() {
		if len(n.Aliases) > 0 {
			return nil, errors.New("network-scoped aliases are only supported for user-defined networks")
		}
		if len(n.Links) > 0 {
			return nil, errors.New("links are only supported for user-defined networks")
		}
	}
	ep := &network.EndpointSettings{GwPriority: n.GwPriority, Aliases: n.Aliases, Links: n.Links}
	if len(n.DriverOpts) > 0 {
		ep.DriverOpts = n.DriverOpts
	}
	if n.IPv4Address.IsValid() || n.IPv6Address.IsValid() || len(n.LinkLocalIPs) > 0 {
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: n.IPv4Address, IPv6Address: n.IPv6Address, LinkLocalIPs: n.LinkLocalIPs}
	}
	if n.MacAddress != "" {
		ma, err := net.ParseMAC(strings.TrimSpace(n.MacAddress))
		if err != nil {
			return nil, fmt.Errorf("%s is not a valid mac address", n.MacAddress)
		}
		ep.MacAddress = network.HardwareAddr(ma)
	}
	return ep, nil
}

// parseRestart parses --restart no|on-failure[:N]|always|unless-stopped.
func parseRestart(s string) (container.RestartPolicy, error) {
	p, err := opts.ParseRestartPolicy(s)
	if err != nil {
		return p, err
	}
	switch p.Name {
	case "", container.RestartPolicyDisabled, container.RestartPolicyOnFailure:
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if p.MaximumRetryCount != 0 {
			return p, errors.New("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
	default:
		return p, fmt.Errorf("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", p.Name)
	}
	return p, nil
}

// parseDevice parses --device HOST[:CONTAINER][:PERMISSIONS].
func parseDevice(s string) (container.DeviceMapping, error) {
	parts := strings.Split(s, ":")
	dm := container.DeviceMapping{CgroupPermissions: "rwm"}
	validPerms := func(p string) bool {
		if p == "" {
			return false
		}
		for _, c := range p {
			if !strings.ContainsRune("rwm", c) {
				return false
			}
		}
		return true
	}
	switch len(parts) {
	case 3:
		if !validPerms(parts[2]) {
			return dm, fmt.Errorf("invalid device %q: bad permissions %q (use r, w, m)", s, parts[2])
		}
		dm.CgroupPermissions = parts[2]
		dm.PathInContainer = parts[1]
	case 2:
		if validPerms(parts[1]) {
			dm.CgroupPermissions = parts[1]
		} else {
			dm.PathInContainer = parts[1]
		}
	case 1:
	default:
		return dm, fmt.Errorf("invalid device specification %q", s)
	}
	dm.PathOnHost = parts[0]
	if dm.PathInContainer == "" {
		dm.PathInContainer = dm.PathOnHost
	}
	if !path.IsAbs(dm.PathOnHost) || !path.IsAbs(dm.PathInContainer) {
		return dm, fmt.Errorf("invalid device %q: paths must be absolute", s)
	}
	return dm, nil
}

// parseSecurityOpts reads a seccomp profile file into the option, as
// docker's CLI does, so the daemon receives the profile itself.
func parseSecurityOpts(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			k, v, ok = strings.Cut(s, ":")
		}
		if s == "no-new-privileges" {
			out = append(out, s)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("invalid --security-opt %q: want key=value", s)
		}
		if k == "seccomp" && v != "unconfined" && v != "builtin" {
			b, err := os.ReadFile(v)
			if err != nil {
				return nil, fmt.Errorf("read seccomp profile %s: %w", v, err)
			}
			out = append(out, "seccomp="+string(b))
			continue
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// startError maps a daemon error on create or start to docker's exit
// codes: 127 for a command not found, 126 for one that cannot be run,
// 125 for anything else.
func startError(err error) error {
	msg := err.Error()
	code := 125
	switch {
	case strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") ||
		strings.Contains(msg, "not found in $PATH"):
		code = 127
	case strings.Contains(msg, "permission denied"):
		code = 126
	}
	return statusError{code: code, msg: "berth: " + msg}
}

// createContainer creates the container, pulling its image first when the
// daemon does not have it (progress on stderr, as docker does).
func (c *cli) createContainer(ctx context.Context, api *client.Client, o *runOptions, req *createRequest) (id string, err error) {
	for _, w := range req.warnings {
		fmt.Fprintln(c.errw, "WARNING:", w)
	}
	// --cidfile: refused when the file exists (another container may own
	// it); created now, removed again unless the ID was written.
	if path := req.hostConfig.ContainerIDFile; path != "" {
		// O_EXCL: never through a symlink planted there (a dangling one
		// would have a root-run client create the file it points to).
		// Not err: the deferred function reads the named result.
		f, cerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(cerr, os.ErrExist) {
			return "", errors.New("container ID file found, make sure the other container isn't running or delete " + path)
		}
		if cerr != nil {
			return "", fmt.Errorf("failed to create the container ID file: %w", cerr)
		}
		defer func() {
			if err == nil {
				if _, werr := f.WriteString(id); werr != nil {
					err = fmt.Errorf("failed to write the container ID (%s) to file: %w", id, werr)
				}
			}
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close the container ID file %s: %w", path, cerr)
			}
			if err != nil {
				_ = os.Remove(path)
			}
		}()
	}
	if err := o.checkServerOS(ctx, api); err != nil {
		return "", err
	}
	var creds map[string]registry.AuthConfig
	if o.useAPISocket {
		if creds, err = c.apiSocket(req); err != nil {
			return "", err
		}
	}
	create := func() (client.ContainerCreateResult, error) {
		opt := client.ContainerCreateOptions{Config: req.config, HostConfig: req.hostConfig,
			NetworkingConfig: req.networking, Name: o.name}
		if p, err := parsePlatform(o.platform); err != nil {
			return client.ContainerCreateResult{}, err
		} else if len(p) == 1 {
			opt.Platform = &p[0]
		}
		return api.ContainerCreate(ctx, opt)
	}
	pull := func() error {
		named, err := reference.ParseNormalizedNamed(req.config.Image)
		if err != nil {
			return fmt.Errorf("invalid reference format: %w", err)
		}
		named = reference.TagNameOnly(named)
		auth, err := encodedAuth(reference.Domain(named))
		if err != nil {
			return err
		}
		plats, err := parsePlatform(o.platform)
		if err != nil {
			return err
		}
		resp, err := api.ImagePull(ctx, named.String(), client.ImagePullOptions{RegistryAuth: auth, Platforms: plats})
		if err != nil {
			return err
		}
		defer resp.Close()
		errOut := &cli{out: c.errw}
		if o.quiet {
			errOut.out = io.Discard
		}
		return errOut.display(resp, nil)
	}
	switch o.pull {
	case "always":
		if err := pull(); err != nil {
			return "", err
		}
	case "missing", "never", "":
	default:
		return "", fmt.Errorf("invalid pull option %q: must be one of \"always\", \"missing\", \"never\"", o.pull)
	}
	res, err := create()
	if err != nil && cerrdefs.IsNotFound(err) && o.pull != "never" && strings.Contains(strings.ToLower(err.Error()), "image") {
		if !o.quiet {
			fmt.Fprintf(c.errw, "Unable to find image '%s' locally\n", req.config.Image)
		}
		if perr := pull(); perr != nil {
			return "", perr
		}
		res, err = create()
	}
	if err != nil {
		return "", err
	}
	if len(creds) > 0 {
		if err := copyAPIConfig(ctx, api, res.ID, creds); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("injecting docker config.json into container failed: %v", err))
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(c.errw, "WARNING:", w)
	}
	return res.ID, nil
}

// windowsOnlyFlags are docker's flags for a Windows daemon; docker's CLI
// refuses them before the request when the daemon runs another OS.
var windowsOnlyFlags = []string{"cpu-count", "cpu-percent", "io-maxbandwidth", "io-maxiops"}

// checkServerOS refuses the Windows-only flags given for a daemon that is
// not on Windows, with docker's message.
func (o *runOptions) checkServerOS(ctx context.Context, api *client.Client) error {
	var set []string
	for _, f := range windowsOnlyFlags {
		if o.flags != nil && o.flags.Changed(f) {
			set = append(set, f)
		}
	}
	if len(set) == 0 {
		return nil
	}
	ping, err := api.Ping(ctx, client.PingOptions{})
	if err != nil {
		return fmt.Errorf("ask the daemon its OS: %w", err)
	}
	if ping.OSType == "windows" {
		return nil
	}
	var errs []error
	for _, f := range set {
		errs = append(errs, fmt.Errorf("\"--%s\" is only supported on a Docker daemon running on windows, but the Docker daemon is running on %s", f, ping.OSType))
	}
	return errors.Join(errs...)
}

// apiConfigPath is where --use-api-socket puts the client's credentials
// in the container (docker's path; DOCKER_CONFIG points at its directory).
const apiConfigPath = "/run/secrets/docker/config.json"

// apiSocket adds what --use-api-socket asks for, as docker's CLI does: the
// daemon's socket bound at /var/run/docker.sock and, unless DOCKER_CONFIG
// is set for the container, the client's registry credentials (returned,
// copied in once the container exists).
func (c *cli) apiSocket(req *createRequest) (map[string]registry.AuthConfig, error) {
	host, _ := c.daemonHost()
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok && strings.HasPrefix(host, "/") {
		sock, ok = host, true
	}
	if !ok {
		return nil, fmt.Errorf("--use-api-socket needs the daemon on a unix socket, not %s", host)
	}
	req.hostConfig.Mounts = append(req.hostConfig.Mounts, mount.Mount{Type: mount.TypeBind, Source: sock,
		Target: "/var/run/docker.sock", BindOptions: &mount.BindOptions{}})
	for _, e := range req.config.Env {
		if strings.HasPrefix(e, "DOCKER_CONFIG=") {
			return nil, nil
		}
	}
	cf, err := loadConfig()
	if err != nil {
		return nil, fmt.Errorf("resolving credentials failed: %w", err)
	}
	all, err := cf.GetAllCredentials()
	if err != nil {
		return nil, fmt.Errorf("resolving credentials failed: %w", err)
	}
	creds := map[string]registry.AuthConfig{}
	for k, ac := range all {
		creds[k] = registry.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
			ServerAddress: ac.ServerAddress, IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
	}
	if len(creds) > 0 {
		req.config.Env = append(req.config.Env, "DOCKER_CONFIG="+path.Dir(apiConfigPath))
	}
	return creds, nil
}

// copyAPIConfig writes a config.json holding creds into the container at
// apiConfigPath.
func copyAPIConfig(ctx context.Context, api *client.Client, id string, creds map[string]registry.AuthConfig) error {
	type authEntry struct {
		Auth          string `json:"auth,omitempty"`
		IdentityToken string `json:"identitytoken,omitempty"`
		RegistryToken string `json:"registrytoken,omitempty"`
	}
	auths := map[string]authEntry{}
	for k, ac := range creds {
		e := authEntry{IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
		if ac.Username != "" || ac.Password != "" {
			e.Auth = base64.StdEncoding.EncodeToString([]byte(ac.Username + ":" + ac.Password))
		}
		auths[k] = e
	}
	data, err := json.MarshalIndent(map[string]any{"auths": auths}, "", "\t")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: apiConfigPath, Size: int64(len(data)), Mode: 0o600, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	_, err = api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf})
	return err
}

func (c *cli) createCommand() *cobra.Command {
	o := newRunOptions()
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req, err := o.toConfig(args)
			if err != nil {
				return runError(err)
			}
			api, err := c.client(ctx)
			if err != nil {
				return runError(err)
			}
			id, err := c.createContainer(ctx, api, o, req)
			if err != nil {
				return runError(err)
			}
			fmt.Fprintln(c.out, id)
			return nil
		},
	}
	o.addFlags(cmd.Flags(), false)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return runError(err) })
	return cmd
}

// runError is a failure of run or create before the container's process
// runs: docker's exit status 125, the message after the program's name.
func runError(err error) error {
	return statusError{code: 125, msg: "berth: " + err.Error()}
}

func (c *cli) runCommand() *cobra.Command {
	o := newRunOptions()
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd.Context(), o, args)
		},
	}
	o.addFlags(cmd.Flags(), true)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return runError(err) })
	return cmd
}

func (c *cli) run(ctx context.Context, o *runOptions, args []string) error {
	req, err := o.toConfig(args)
	if err != nil {
		return runError(err)
	}
	cfg := req.config
	if cfg.Tty && cfg.AttachStdin && !c.inIsTerminal() {
		return statusError{code: 1, msg: "the input device is not a TTY"}
	}
	keys, err := parseDetachKeys(o.detachKeys)
	if err != nil {
		return runError(err)
	}
	api, err := c.client(ctx)
	if err != nil {
		return runError(err)
	}
	id, err := c.createContainer(ctx, api, o, req)
	if err != nil {
		return runError(err)
	}
	if o.detach {
		if _, err := api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			return startError(err)
		}
		fmt.Fprintln(c.out, id)
		return nil
	}
	// The attached run outlives an interrupt: signals go to the container.
	sctx := ctx
	if o.sigProxy {
		sctx = context.WithoutCancel(ctx)
		stop := c.proxySignals(sctx, api, id)
		defer stop()
	}
	resp, err := api.ContainerAttach(sctx, id, client.ContainerAttachOptions{Stream: true,
		Stdin: cfg.AttachStdin, Stdout: cfg.AttachStdout, Stderr: cfg.AttachStderr, DetachKeys: o.detachKeys})
	if err != nil {
		return statusError{code: 125, msg: "berth: attach " + id + ": " + err.Error()}
	}
	defer resp.Close()
	cond := container.WaitConditionNextExit
	if o.rm {
		cond = container.WaitConditionRemoved
	}
	wait := api.ContainerWait(sctx, id, client.ContainerWaitOptions{Condition: cond})
	if _, err := api.ContainerStart(sctx, id, client.ContainerStartOptions{}); err != nil {
		if o.rm {
			_, _ = api.ContainerRemove(sctx, id, client.ContainerRemoveOptions{Force: true})
		}
		return startError(err)
	}
	var resize func()
	if cfg.Tty && c.outIsTerminal() {
		resize = c.monitorSize(sctx, func(h, w uint) error {
			_, err := api.ContainerResize(sctx, id, client.ContainerResizeOptions{Height: h, Width: w})
			return err
		})
		defer resize()
	}
	var stdin io.Reader
	if cfg.AttachStdin {
		stdin = c.in
	}
	var stdout, stderr io.Writer
	if cfg.AttachStdout {
		stdout = c.out
	}
	if cfg.AttachStderr {
		stderr = c.errw
	}
	detached, err := c.stream(sctx, resp.HijackedResponse, streamOptions{tty: cfg.Tty, stdin: stdin, stdout: stdout, stderr: stderr, detachKeys: keys})
	if err != nil {
		return err
	}
	if detached {
		return nil
	}
	return waitExit(ctx, wait)
}

// waitExit turns a wait result into the program's exit.
func waitExit(ctx context.Context, wait client.ContainerWaitResult) error {
	select {
	case res := <-wait.Result:
		if res.Error != nil && res.Error.Message != "" {
			return statusError{code: 125, msg: "berth: " + res.Error.Message}
		}
		if res.StatusCode != 0 {
			return statusError{code: int(res.StatusCode)}
		}
		return nil
	case err := <-wait.Error:
		return statusError{code: 125, msg: "berth: wait: " + err.Error()}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *cli) inIsTerminal() bool {
	f, ok := c.in.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (c *cli) outIsTerminal() bool {
	f, ok := c.out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// proxiedSignals are the signals an attached client passes on to the
// container (docker forwards all but those the terminal and runtime use).
var proxiedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGCONT, syscall.SIGTSTP}

// proxySignals sends the signals this process receives to the container
// until the returned function is called.
func (c *cli) proxySignals(ctx context.Context, api *client.Client, id string) func() {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, proxiedSignals...)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				sig, ok := s.(syscall.Signal)
				if !ok {
					continue
				}
				if _, err := api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: strconv.Itoa(int(sig))}); err != nil {
					fmt.Fprintf(c.errw, "berth: forward signal %d to %s: %v\n", int(sig), id, err)
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
