package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
	"github.com/berth-project/berth/internal/specgen"
)

// CreateOptions is a container-create request.
type CreateOptions struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
}

// ContainerCreate creates a container from its image: the record, a
// writable snapshot over the image's layers and the hostname, hosts and
// resolv.conf files. It returns the new container's ID.
func (e *Engine) ContainerCreate(ctx context.Context, opts CreateOptions) (string, error) {
	cs, err := e.ctrs()
	if err != nil {
		return "", err
	}
	if opts.Config == nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("config cannot be empty in order to create a container"))
	}
	hc := opts.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	if err := validateHostConfig(hc); err != nil {
		return "", err
	}
	if err := specgen.CheckResources(hc.Resources, cs.host); err != nil {
		return "", errdefs.InvalidArgument(err)
	}
	// Recorded as Docker records them: the default log driver by name, and
	// "not set" as null where the docker CLI sends its unset values.
	if hc.LogConfig.Type == "" {
		hc.LogConfig.Type = "json-file"
	}
	if p := hc.MemorySwappiness; p != nil && *p == -1 {
		hc.MemorySwappiness = nil
	}
	if p := hc.PidsLimit; p != nil && *p == 0 {
		hc.PidsLimit = nil
	}
	rt := hc.Runtime
	if rt == "" {
		rt = cs.cfg.DefaultRuntime
	}
	if _, ok := cs.cfg.Runtimes[rt]; !ok {
		return "", errdefs.InvalidArgument(fmt.Errorf("unknown or invalid runtime name: %s", rt))
	}
	hc.Runtime = rt
	// As Docker records them at create: the defaults of the /dev/shm size,
	// IPC and cgroup namespace modes, and the masked and read-only paths
	// the container gets, unless it is privileged or the request names its
	// own.
	specgen.FillHostConfigDefaults(hc, cs.host)
	if !hc.Privileged {
		if hc.MaskedPaths == nil {
			hc.MaskedPaths = specgen.DefaultMaskedPaths(cs.host)
		}
		if hc.ReadonlyPaths == nil {
			hc.ReadonlyPaths = specgen.DefaultReadonlyPaths()
		}
	}

	release := e.hold()
	defer release()
	imgID, err := e.resolveID(opts.Config.Image)
	if err != nil {
		return "", err
	}
	irec, err := e.meta.GetImage(imgID)
	if err != nil {
		return "", fmt.Errorf("read image %s: %w", imgID, err)
	}
	li, err := e.load(ctx, irec)
	if err != nil {
		return "", err
	}
	merged, err := specgen.Merge(li.config, *opts.Config)
	if err != nil {
		return "", errdefs.InvalidArgument(err)
	}
	argv, err := specgen.Command(merged)
	if err != nil {
		return "", errdefs.InvalidArgument(err)
	}

	id := cs.newContainerID()
	if len(cs.stateDir(id)) > maxSocketPath {
		return "", errdefs.InvalidArgument(fmt.Errorf("exec root %s is too long for the shim's sockets", cs.cfg.ExecRoot))
	}
	name, err := cs.reserveName(opts.Name, id)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			cs.releaseName(name)
		}
	}()
	// merged.Volumes holds the image's VOLUMEs and the request's own
	// anonymous volumes (docker run -v /path).
	mounts, err := e.planMounts(hc, merged.Volumes)
	if err != nil {
		return "", err
	}
	defer func() {
		if !ok {
			e.dropAnonymous(mounts)
		}
	}()
	if merged.Hostname == "" && !hc.NetworkMode.IsHost() {
		merged.Hostname = id[:12]
	}
	dir := filepath.Join(e.cfg.DataRoot, "containers", id)
	if err := os.Mkdir(dir, 0o710); err != nil {
		return "", fmt.Errorf("create container directory %s: %w", dir, err)
	}
	key := "container-" + id
	cleanup := func() {
		_ = e.snaps.Remove(context.WithoutCancel(ctx), key)
		os.RemoveAll(dir)
	}
	var top digest.Digest
	if chains := chainIDs(li.config.RootFS.DiffIDs); len(chains) > 0 {
		top = chains[len(chains)-1]
	}
	if _, err := e.snaps.Prepare(ctx, key, top); err != nil {
		cleanup()
		return "", fmt.Errorf("prepare root filesystem of container %s: %w", id, err)
	}
	if err := e.writeDockerenv(ctx, key); err != nil {
		cleanup()
		return "", fmt.Errorf("root filesystem of container %s: %w", id, err)
	}
	if err := writeNetworkFiles(dir, merged.Hostname, merged.Domainname, hc); err != nil {
		cleanup()
		return "", err
	}
	c := &ctr{
		dir: dir,
		rec: ctrRecord{
			ID: id, Name: name, Created: time.Now().UTC(),
			Path: argv[0], Args: argv[1:],
			Config: &merged, HostConfig: hc, Image: imgID, Runtime: rt,
			State:  ctrState{Status: StateCreated},
			Mounts: mounts,
		},
		exitCh: make(chan struct{}), removedCh: make(chan struct{}),
	}
	if err := c.save(); err != nil {
		cleanup()
		return "", err
	}
	cs.mu.Lock()
	cs.byID[id] = c
	cs.mu.Unlock()
	ok = true
	e.emit("container", "create", id, c.attributes())
	return id, nil
}

// writeDockerenv creates /.dockerenv, an empty file of mode 0755 as
// Docker's, in the writable layer of the snapshot key: programs test for it
// to know they run in a container. The layer is the engine's own and new,
// the file is created there without following any link and must not exist.
func (e *Engine) writeDockerenv(ctx context.Context, key string) error {
	paths, err := e.snaps.Paths(ctx, key)
	if err != nil {
		return fmt.Errorf("find writable layer: %w", err)
	}
	if len(paths) == 0 {
		return fmt.Errorf("find writable layer of snapshot %s: none", key)
	}
	upper := paths[0]
	dfd, err := unix.Open(upper, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open writable layer %s: %w", upper, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, ".dockerenv", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o755)
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Join(upper, ".dockerenv"), err)
	}
	defer unix.Close(fd)
	// The mode as asked, whatever the engine's umask.
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fmt.Errorf("set mode of %s: %w", filepath.Join(upper, ".dockerenv"), err)
	}
	return nil
}

// validateHostConfig checks the parts of a HostConfig the engine itself
// acts on; specgen checks the rest when the spec is generated.
func validateHostConfig(hc *container.HostConfig) error {
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return errdefs.InvalidArgument(err)
	}
	if hc.AutoRemove && !hc.RestartPolicy.IsNone() {
		return errdefs.InvalidArgument(fmt.Errorf("can't create 'AutoRemove' container with restart policy"))
	}
	if lt := hc.LogConfig.Type; lt != "" && lt != "json-file" && lt != "none" {
		return errdefs.InvalidArgument(fmt.Errorf("logging driver %q is not supported (json-file, none)", lt))
	}
	switch nm := string(hc.NetworkMode); nm {
	case "", "default", "none", "host", "bridge":
	default:
		return errdefs.InvalidArgument(fmt.Errorf("network mode %q is not supported (none, host)", nm))
	}
	return nil
}

// newContainerID returns a new ID whose first 16 characters no other
// container's start with (they may name its shim state directory).
func (cs *containers) newContainerID() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for {
		id := newID()
		clash := false
		for other := range cs.byID {
			if other[:16] == id[:16] {
				clash = true
			}
		}
		if !clash {
			return id
		}
	}
}

// reserveName validates (or invents) a name and reserves it for id.
func (cs *containers) reserveName(name, id string) (string, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if name == "" {
		for i := 0; ; i++ {
			n := "/" + randomName()
			if i > 10 {
				n += fmt.Sprintf("%d", i)
			}
			if _, taken := cs.names[n]; !taken {
				cs.names[n] = id
				return n, nil
			}
		}
	}
	if !validName.MatchString(name) {
		return "", errdefs.InvalidArgument(fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if other, taken := cs.names[name]; taken {
		return "", errdefs.Conflict(fmt.Errorf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", name, other))
	}
	cs.names[name] = id
	return name, nil
}

func (cs *containers) releaseName(name string) {
	cs.mu.Lock()
	delete(cs.names, name)
	cs.mu.Unlock()
}

const defaultHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// writeNetworkFiles writes the container's hostname, hosts and resolv.conf.
func writeNetworkFiles(dir, hostname, domain string, hc *container.HostConfig) error {
	hn := hostname
	if hc.NetworkMode.IsHost() {
		hn, _ = os.Hostname()
	}
	if err := writeFileAtomic(filepath.Join(dir, "hostname"), []byte(hn+"\n"), 0o644); err != nil {
		return err
	}
	var hosts strings.Builder
	if hc.NetworkMode.IsHost() {
		data, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return fmt.Errorf("read host /etc/hosts: %w", err)
		}
		hosts.Write(data)
	} else {
		hosts.WriteString(defaultHosts)
	}
	for _, eh := range hc.ExtraHosts {
		n, ip, ok := strings.Cut(eh, ":")
		if !ok {
			if n, ip, ok = strings.Cut(eh, "="); !ok {
				return errdefs.InvalidArgument(fmt.Errorf("invalid extra host %q: want name:ip", eh))
			}
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", strings.Trim(ip, "[]"), n)
	}
	if err := writeFileAtomic(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		return err
	}
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read host /etc/resolv.conf: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, "resolv.conf"), []byte(resolvConf(string(host), hc)), 0o644)
}

// resolvConf derives a container's resolv.conf from the host's as Docker
// does: loopback nameservers cannot be reached from the container's network
// and are dropped (Google's public servers stand in when none remain); with
// the host's network the file is kept. --dns, --dns-search and --dns-option
// replace the corresponding lines.
func resolvConf(host string, hc *container.HostConfig) string {
	var ns, search, options, other []string
	for _, line := range strings.Split(host, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 {
				continue
			}
			if !hc.NetworkMode.IsHost() && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
				continue
			}
			ns = append(ns, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			options = append(options, f[1:]...)
		default:
			other = append(other, line)
		}
	}
	if len(hc.DNS) > 0 {
		ns = nil
		for _, a := range hc.DNS {
			ns = append(ns, a.String())
		}
	}
	if len(ns) == 0 && !hc.NetworkMode.IsHost() {
		ns = []string{"8.8.8.8", "8.8.4.4"}
	}
	if len(hc.DNSSearch) > 0 {
		search = hc.DNSSearch
		if len(search) == 1 && search[0] == "." {
			search = nil
		}
	}
	if len(hc.DNSOptions) > 0 {
		options = hc.DNSOptions
	}
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	for _, l := range other {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// ContainerStart starts a created or stopped container.
func (e *Engine) ContainerStart(ctx context.Context, ref string) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.waitAttachReservations(5 * time.Second)
	err = cs.start(ctx, c, true)
	if err != nil && !errors.Is(err, ErrNotModified) {
		c.mu.Lock()
		autoRemove := c.rec.HostConfig.AutoRemove && !c.running()
		c.mu.Unlock()
		if autoRemove {
			// As Docker: a --rm container that cannot start is removed
			// (the client waits for that).
			if rerr := cs.remove(context.WithoutCancel(ctx), c, true, true); rerr != nil {
				cs.log.Warn("remove container that failed to start", "id", c.rec.ID, "err", rerr)
			}
		}
	}
	return err
}

// start runs the container through a new shim. byUser resets the restart
// count and the manual stop, as a client's start does.
func (cs *containers) start(ctx context.Context, c *ctr, byUser bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing || c.rec.State.Status == StateRemoving {
		return errdefs.Conflict(fmt.Errorf("container %s is marked for removal and cannot be started", c.rec.ID))
	}
	if c.rec.State.Status == StatePaused {
		return errdefs.Conflict(errors.New("cannot start a paused container, try unpause instead"))
	}
	if c.running() {
		return ErrNotModified
	}
	if c.restartTimer != nil {
		c.restartTimer.Stop()
		c.restartTimer = nil
	}
	if byUser {
		c.rec.RestartCount = 0
		c.rec.ManuallyStopped = false
	}
	cl, err := cs.spawn(ctx, c)
	if err != nil {
		c.rec.State.Error = err.Error()
		c.rec.State.ExitCode = 128
		if c.rec.State.Status == StateRestarting {
			c.rec.State.Status = StateExited
		}
		_ = c.save()
		return err
	}
	// Let waiting attach clients in before the process runs, so they miss
	// no output.
	if len(c.attachers) > 0 {
		ready := make(chan struct{}, len(c.attachers))
		for _, a := range c.attachers {
			a(cl, func() { ready <- struct{}{} })
		}
		n := len(c.attachers)
		c.attachers = nil
		timeout := time.After(10 * time.Second)
	wait:
		for i := 0; i < n; i++ {
			select {
			case <-ready:
			case <-timeout:
				break wait
			}
		}
	}
	if err := cl.Start(ctx); err != nil {
		_, _ = cl.Delete(context.WithoutCancel(ctx), true)
		cl.Close()
		cs.unmountRootfs(c)
		c.rec.State.Error = err.Error()
		c.rec.State.ExitCode = 128
		c.rec.State.Status = StateExited
		_ = c.save()
		return fmt.Errorf("start container %s: %w", c.rec.ID, err)
	}
	c.shim = cl
	c.rec.State = ctrState{Status: StateRunning, Pid: cl.Pid(), StartedAt: time.Now().UTC()}
	c.rec.HasBeenStarted = true
	cs.startHealth(c)
	if err := c.save(); err != nil {
		cs.log.Warn("save container state", "id", c.rec.ID, "err", err)
	}
	c.monitorDone = make(chan struct{})
	go cs.monitor(c, cl, c.monitorDone)
	cs.e.emit("container", "start", c.rec.ID, c.attributesLocked())
	return nil
}

// spawn mounts the root filesystem, writes the bundle and starts a shim
// that creates the container. The caller holds c.mu.
func (cs *containers) spawn(ctx context.Context, c *ctr) (*shim.Client, error) {
	id := c.rec.ID
	if cs.cfg.ShimBinary == "" {
		return nil, errdefs.Unavailable(fmt.Errorf("start container %s: berth-shim not found next to berthd or on PATH", id))
	}
	irec, err := cs.e.meta.GetImage(c.rec.Image)
	if err != nil {
		return nil, fmt.Errorf("read image %s of container %s: %w", c.rec.Image, id, err)
	}
	li, err := cs.e.load(ctx, irec)
	if err != nil {
		return nil, err
	}
	if err := cs.mountRootfs(ctx, c); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			cs.unmountRootfs(c)
		}
	}()
	vols, err := cs.e.containerVolumes(ctx, c)
	if err != nil {
		return nil, err
	}
	spec, err := specgen.Generate(specgen.Input{
		ID: id, Image: li.config, Config: c.rec.Config, HostConfig: c.rec.HostConfig,
		Rootfs:      c.rootfs(),
		CgroupsPath: cs.cgroupsPath(c),
		Files: specgen.NetworkFiles{
			Hostname:   filepath.Join(c.dir, "hostname"),
			Hosts:      filepath.Join(c.dir, "hosts"),
			ResolvConf: filepath.Join(c.dir, "resolv.conf"),
		},
		Volumes:  vols,
		InitPath: cs.cfg.InitPath,
		Devices:  statDevices,
		Host:     cs.host,
	})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode spec of container %s: %w", id, err)
	}
	// Regenerated at every start: no sync needed.
	if err := replaceFile(filepath.Join(c.bundle(), "config.json"), data, 0o600, false); err != nil {
		return nil, err
	}
	stateDir := cs.stateDir(id)
	if err := os.RemoveAll(stateDir); err != nil {
		return nil, fmt.Errorf("clear shim state %s: %w", stateDir, err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create shim state %s: %w", stateDir, err)
	}
	hc := c.rec.HostConfig
	maxSize, maxFiles := int64(0), 1
	if v := hc.LogConfig.Config["max-size"]; v != "" {
		if maxSize, err = units.RAMInBytes(v); err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid log max-size %q: %w", v, err))
		}
	}
	if v := hc.LogConfig.Config["max-file"]; v != "" {
		if _, err := fmt.Sscanf(v, "%d", &maxFiles); err != nil || maxFiles < 1 {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid log max-file %q", v))
		}
	}
	cl, err := shim.Spawn(ctx, shim.Opts{
		ID: id, Bundle: c.bundle(), StateDir: stateDir,
		ShimBinary:  cs.cfg.ShimBinary,
		Runtime:     cs.cfg.Runtimes[c.rec.Runtime],
		RuntimeRoot: filepath.Join(cs.cfg.ExecRoot, "runtime", c.rec.Runtime),
		RuntimeArgs: cs.cfg.RuntimeArgs[c.rec.Runtime],
		LogPath:     c.logFile(), LogMaxSize: maxSize, LogMaxFiles: maxFiles,
		OpenStdin: c.rec.Config.OpenStdin, StdinOnce: c.rec.Config.StdinOnce && !c.rec.Config.Tty,
		ConsoleHeight: uint16(hc.ConsoleSize[0]), ConsoleWidth: uint16(hc.ConsoleSize[1]),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create task for container %s (runtime %s): %w", id, c.rec.Runtime, err)
	}
	ok = true
	return cl, nil
}

// statDevices describes a host device node for --device.
func statDevices(p string) ([]specgen.HostDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return nil, fmt.Errorf("stat device %s: %w", p, err)
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFDIR:
		var out []specgen.HostDevice
		err := filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if ds, err := statDevices(path); err == nil {
				out = append(out, ds...)
			}
			return nil
		})
		return out, err
	default:
		return nil, errdefs.InvalidArgument(fmt.Errorf("%s is not a device node", p))
	}
	return []specgen.HostDevice{{
		Path: p, Type: typ,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: os.FileMode(st.Mode & 0o777), UID: st.Uid, GID: st.Gid,
	}}, nil
}

// mountRootfs mounts the container's snapshot on bundle/rootfs.
func (cs *containers) mountRootfs(ctx context.Context, c *ctr) error {
	mounts, err := cs.e.snaps.Mounts(ctx, c.snapKey())
	if err != nil {
		return fmt.Errorf("root filesystem of container %s: %w", c.rec.ID, err)
	}
	rootfs := c.rootfs()
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", rootfs, err)
	}
	cs.unmountRootfs(c) // a mount left by a crash
	for _, m := range mounts {
		if err := m.Mount(rootfs); err != nil {
			cs.unmountRootfs(c)
			return fmt.Errorf("mount root filesystem of container %s on %s: %w", c.rec.ID, rootfs, err)
		}
	}
	return nil
}

// unmountRootfs unmounts everything on bundle/rootfs.
func (cs *containers) unmountRootfs(c *ctr) {
	for range 8 {
		if err := unix.Unmount(c.rootfs(), unix.MNT_DETACH); err != nil {
			if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				cs.log.Warn("unmount root filesystem", "id", c.rec.ID, "err", err)
			}
			return
		}
	}
}

// monitor waits for the container's exit and cleans up after it.
func (cs *containers) monitor(c *ctr, cl *shim.Client, done chan struct{}) {
	defer close(done)
	ctx := context.Background()
	es, err := cl.Wait(ctx)
	if err != nil {
		cs.log.Warn("wait for container", "id", c.rec.ID, "err", err)
		es = shim.ExitStatus{Code: 255, ExitedAt: time.Now()}
	}
	if _, err := cl.Delete(ctx, true); err != nil && !errdefs.IsNotFound(err) {
		cs.log.Debug("delete exited container in its shim", "id", c.rec.ID, "err", err)
		if errors.Is(err, errdefs.ErrUnavailable) {
			// The shim is gone (killed): delete what it left in the
			// runtime, the container's processes included.
			if err := shim.Cleanup(ctx, cl.StateDir()); err != nil {
				cs.log.Warn("delete container left by its shim", "id", c.rec.ID, "err", err)
			}
		} else {
			_ = cl.Shutdown(ctx)
		}
	}
	cl.Close()
	cs.unmountRootfs(c)
	cs.finishExit(c, es)

	c.mu.Lock()
	removing := c.removing
	autoRemove := c.rec.HostConfig.AutoRemove
	restart := !removing && cs.shouldRestart(c, false)
	if restart {
		cs.scheduleRestart(c)
	}
	c.mu.Unlock()
	if autoRemove && !removing {
		if err := cs.remove(ctx, c, true, true); err != nil {
			cs.log.Warn("auto-remove container", "id", c.rec.ID, "err", err)
		}
	}
}

// finishExit records an exit as the shim reported it, emits "die" and
// wakes the waiters. An OOM kill the shim counted in the container's memory cgroup
// sets OOMKilled and is announced with an "oom" event, as Docker does.
func (cs *containers) finishExit(c *ctr, es shim.ExitStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := es.ExitedAt
	if at.IsZero() {
		at = time.Now()
	}
	c.rec.State.Status = StateExited
	c.rec.State.Pid = 0
	c.rec.State.ExitCode = es.Code
	c.rec.State.FinishedAt = at.UTC()
	c.rec.State.OOMKilled = es.OOMKilled
	if es.OOMKilled {
		cs.e.emit("container", "oom", c.rec.ID, c.attributesLocked())
	}
	// Announced before the waiters wake, so what they do next (stop's
	// "stop" event, a removal's "destroy") follows it.
	cs.e.emit("container", "die", c.rec.ID, c.attributesLocked("exitCode", fmt.Sprint(es.Code)))
	c.shim = nil
	cs.stopHealth(c)
	if err := c.save(); err != nil {
		cs.log.Warn("save container state", "id", c.rec.ID, "err", err)
	}
	close(c.exitCh)
	c.exitCh = make(chan struct{})
}

// shouldRestart applies the restart policy to an exited container. The
// caller holds c.mu, except at daemon start.
func (cs *containers) shouldRestart(c *ctr, daemonStart bool) bool {
	rp := c.rec.HostConfig.RestartPolicy
	switch {
	case rp.IsAlways():
		return daemonStart || !c.rec.ManuallyStopped
	case rp.IsUnlessStopped():
		return !c.rec.ManuallyStopped
	case rp.IsOnFailure():
		if c.rec.ManuallyStopped || c.rec.State.ExitCode == 0 {
			return false
		}
		return rp.MaximumRetryCount == 0 || c.rec.RestartCount < rp.MaximumRetryCount
	}
	return false
}

// scheduleRestart restarts the container after a back-off that doubles from
// 100ms with each restart (up to a minute), as Docker's, and starts over
// once a run lasted 10 seconds. The caller holds c.mu.
func (cs *containers) scheduleRestart(c *ctr) {
	ran := c.rec.State.FinishedAt.Sub(c.rec.State.StartedAt)
	delay := 100 * time.Millisecond
	if ran < 10*time.Second {
		for i := 0; i < c.rec.RestartCount && delay < time.Minute; i++ {
			delay *= 2
		}
	}
	delay = min(delay, time.Minute)
	c.rec.RestartCount++
	c.rec.State.Status = StateRestarting
	_ = c.save()
	c.restartTimer = time.AfterFunc(delay, func() {
		if err := cs.start(context.Background(), c, false); err != nil && !errors.Is(err, ErrNotModified) {
			cs.log.Warn("restart container", "id", c.rec.ID, "err", err)
			c.mu.Lock()
			if c.rec.State.Status == StateRestarting {
				c.rec.State.Status = StateExited
				_ = c.save()
			}
			c.mu.Unlock()
		}
	})
}

// ContainerStop stops a container: its stop signal (or sig), then SIGKILL
// after timeout seconds (nil: the container's StopTimeout, else 10; -1
// waits for ever).
func (e *Engine) ContainerStop(ctx context.Context, ref, sig string, timeout *int) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	return cs.stop(ctx, c, sig, timeout)
}

func (cs *containers) stop(ctx context.Context, c *ctr, sigName string, timeout *int) error {
	c.mu.Lock()
	if c.restartTimer != nil {
		c.restartTimer.Stop()
		c.restartTimer = nil
		if c.rec.State.Status == StateRestarting {
			c.rec.State.Status = StateExited
		}
	}
	if !c.running() {
		c.rec.ManuallyStopped = true
		_ = c.save()
		c.mu.Unlock()
		return ErrNotModified
	}
	c.rec.ManuallyStopped = true
	_ = c.save()
	cl, exitCh, paused := c.shim, c.exitCh, c.rec.State.Status == StatePaused
	cfg := c.rec.Config
	c.mu.Unlock()

	sig := syscall.SIGTERM
	if sigName == "" {
		sigName = cfg.StopSignal
	}
	if sigName != "" {
		s, err := specgen.ParseSignal(sigName)
		if err != nil {
			return errdefs.InvalidArgument(err)
		}
		sig = syscall.Signal(s)
	}
	secs := 10
	if cfg.StopTimeout != nil {
		secs = *cfg.StopTimeout
	}
	if timeout != nil {
		secs = *timeout
	}
	if err := cs.stopWait(ctx, c, cl, exitCh, paused, sig, secs); err != nil {
		return err
	}
	cs.e.emit("container", "stop", c.rec.ID, c.attributes())
	return nil
}

// stopWait sends sig, waits up to secs seconds (-1: for ever) for the exit,
// then kills the container and waits for its exit. Each signal is announced
// with a "kill" event, as Docker's.
func (cs *containers) stopWait(ctx context.Context, c *ctr, cl *shim.Client, exitCh chan struct{}, paused bool, sig syscall.Signal, secs int) error {
	cs.signal(ctx, c, cl, sig, false)
	if paused {
		_ = cl.Resume(ctx)
	}
	if secs >= 0 || secs == -1 {
		var after <-chan time.Time
		if secs >= 0 {
			t := time.NewTimer(time.Duration(secs) * time.Second)
			defer t.Stop()
			after = t.C
		}
		select {
		case <-exitCh:
			return nil
		case <-after:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cs.signal(ctx, c, cl, syscall.SIGKILL, true)
	select {
	case <-exitCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signal sends sig to the container's init (all its processes with all)
// and emits the "kill" event; a failure is only logged, as the caller
// waits for the exit either way.
func (cs *containers) signal(ctx context.Context, c *ctr, cl *shim.Client, sig syscall.Signal, all bool) {
	if err := cl.Kill(ctx, sig, all); err != nil {
		cs.log.Debug("signal container", "id", c.rec.ID, "signal", int(sig), "err", err)
		return
	}
	cs.e.emit("container", "kill", c.rec.ID, c.attributes("signal", fmt.Sprint(int(sig))))
}

// ContainerKill sends a signal (default SIGKILL) to the container's init.
func (e *Engine) ContainerKill(ctx context.Context, ref, sigName string) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if sigName != "" {
		s, err := specgen.ParseSignal(sigName)
		if err != nil {
			return errdefs.InvalidArgument(err)
		}
		sig = syscall.Signal(s)
	}
	c.mu.Lock()
	if c.rec.State.Status == StateRestarting && (sig == syscall.SIGKILL || sig == syscall.SIGTERM) {
		// Between two runs of a restart policy there is no process to
		// signal: as Docker, end the restart loop instead.
		if c.restartTimer != nil {
			c.restartTimer.Stop()
			c.restartTimer = nil
		}
		c.rec.State.Status = StateExited
		c.rec.ManuallyStopped = true
		_ = c.save()
		c.mu.Unlock()
		return nil
	}
	if !c.running() {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("cannot kill container: %s: container %s is not running", strings.TrimPrefix(c.rec.Name, "/"), c.rec.ID))
	}
	stopSig := syscall.SIGTERM
	if s, err := specgen.ParseSignal(c.rec.Config.StopSignal); err == nil && c.rec.Config.StopSignal != "" {
		stopSig = syscall.Signal(s)
	}
	if sig == syscall.SIGKILL || sig == stopSig {
		c.rec.ManuallyStopped = true
		_ = c.save()
	}
	cl, exitCh, paused := c.shim, c.exitCh, c.rec.State.Status == StatePaused
	c.mu.Unlock()
	if err := cl.Kill(ctx, sig, sig == syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill container %s: %w", c.rec.ID, err)
	}
	e.emit("container", "kill", c.rec.ID, c.attributes("signal", fmt.Sprint(int(sig))))
	if paused && sig == syscall.SIGKILL {
		// A frozen process cannot die: thaw it, as Docker does, so the
		// pending SIGKILL is delivered.
		if err := cl.Resume(ctx); err != nil {
			cs.log.Debug("resume killed container", "id", c.rec.ID, "err", err)
		}
	}
	if sig == syscall.SIGKILL {
		select {
		case <-exitCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ContainerRestart stops (if running) and starts a container.
func (e *Engine) ContainerRestart(ctx context.Context, ref, sig string, timeout *int) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if err := cs.stop(ctx, c, sig, timeout); err != nil && !errors.Is(err, ErrNotModified) {
		return err
	}
	c.mu.Lock()
	done := c.monitorDone
	c.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := cs.start(ctx, c, true); err != nil && !errors.Is(err, ErrNotModified) {
		return err
	}
	e.emit("container", "restart", c.rec.ID, c.attributes())
	return nil
}

// The wait conditions of POST /containers/{id}/wait.
const (
	WaitNotRunning = "not-running"
	WaitNextExit   = "next-exit"
	WaitRemoved    = "removed"
)

// ContainerWaitChan returns a channel that yields the container's exit
// code once condition is met. It fails at once for an unknown container or
// condition, so an API handler can answer with an error before it commits
// to a 200.
func (e *Engine) ContainerWaitChan(ctx context.Context, ref, condition string) (<-chan int, error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	switch condition {
	case "", WaitNotRunning, WaitNextExit, WaitRemoved:
	default:
		return nil, errdefs.InvalidArgument(fmt.Errorf("invalid condition: %q", condition))
	}
	c.mu.Lock()
	exitCh, removedCh := c.exitCh, c.removedCh
	immediate := (condition == "" || condition == WaitNotRunning) && !c.running() && c.rec.State.Status != StateRestarting
	c.mu.Unlock()
	out := make(chan int, 1)
	code := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.rec.State.ExitCode
	}
	if immediate {
		out <- code()
		return out, nil
	}
	go func() {
		var ch <-chan struct{} = exitCh
		if condition == WaitRemoved {
			ch = removedCh
		}
		select {
		case <-ch:
			out <- code()
		case <-ctx.Done():
		}
		close(out)
	}()
	return out, nil
}

// ContainerRemove removes a container, with force also a running one (it
// is killed), with volumes also its anonymous volumes.
func (e *Engine) ContainerRemove(ctx context.Context, ref string, force, volumes bool) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	return cs.remove(ctx, c, force, volumes)
}

func (cs *containers) remove(ctx context.Context, c *ctr, force, volumes bool) error {
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("removal of container %s is already in progress", c.rec.ID))
	}
	if c.running() && !force {
		what := "running"
		if c.rec.State.Status == StatePaused {
			what = "paused"
		}
		c.mu.Unlock()
		return errdefs.Conflict(fmt.Errorf("cannot remove container %q: container is %s: stop the container before removing or force remove", c.rec.Name, what))
	}
	c.removing = true
	if c.restartTimer != nil {
		c.restartTimer.Stop()
		c.restartTimer = nil
	}
	cl, done := c.shim, c.monitorDone
	if cl != nil && c.running() {
		c.mu.Unlock()
		_ = cl.Resume(ctx)
		cs.signal(ctx, c, cl, syscall.SIGKILL, true)
		if done != nil {
			select {
			case <-done:
			case <-ctx.Done():
				c.mu.Lock()
				c.removing = false
				c.mu.Unlock()
				return ctx.Err()
			}
		}
		c.mu.Lock()
	}
	c.rec.State.Status = StateRemoving
	_ = c.save()
	c.mu.Unlock()

	cs.unmountRootfs(c)
	if err := cs.e.snaps.Remove(ctx, c.snapKey()); err != nil && !errdefs.IsNotFound(err) {
		c.mu.Lock()
		c.removing = false
		c.rec.State.Status = StateDead
		_ = c.save()
		c.mu.Unlock()
		return fmt.Errorf("remove root filesystem of container %s: %w", c.rec.ID, err)
	}
	os.RemoveAll(cs.stateDir(c.rec.ID))
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove container directory %s: %w", c.dir, err)
	}
	cs.mu.Lock()
	delete(cs.byID, c.rec.ID)
	if cs.names[c.rec.Name] == c.rec.ID {
		delete(cs.names, c.rec.Name)
	}
	for id := range c.execs {
		delete(cs.execs, id)
	}
	cs.mu.Unlock()
	if volumes {
		cs.e.removeAnonymousVolumes(ctx, c)
	}
	close(c.removedCh)
	cs.e.emit("container", "destroy", c.rec.ID, c.attributes())
	return nil
}

// ContainerRename gives a container a new name.
func (e *Engine) ContainerRename(ctx context.Context, ref, newName string) error {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if newName == "" {
		return errdefs.InvalidArgument(fmt.Errorf("neither old nor new names may be empty"))
	}
	c.mu.Lock()
	same := strings.TrimPrefix(c.rec.Name, "/") == strings.TrimPrefix(newName, "/")
	c.mu.Unlock()
	if same {
		return errdefs.InvalidArgument(errors.New("Renaming a container with the same name as its current name"))
	}
	// Docker's words: the new name with its slash, after this prefix
	// (compose and scripts match on it).
	name, err := cs.reserveName("/"+strings.TrimPrefix(newName, "/"), c.rec.ID)
	if err != nil {
		return fmt.Errorf("Error when allocating new name: %w", err)
	}
	c.mu.Lock()
	old := c.rec.Name
	c.rec.Name = name
	err = c.save()
	if err != nil {
		c.rec.Name = old
	}
	c.mu.Unlock()
	if err != nil {
		cs.releaseName(name)
		return err
	}
	cs.releaseName(old)
	e.emit("container", "rename", c.rec.ID, c.attributes("oldName", old))
	return nil
}

// ContainerPause freezes a running container.
func (e *Engine) ContainerPause(ctx context.Context, ref string) error {
	return e.pauseResume(ctx, ref, true)
}

// ContainerUnpause thaws a paused container.
func (e *Engine) ContainerUnpause(ctx context.Context, ref string) error {
	return e.pauseResume(ctx, ref, false)
}

func (e *Engine) pauseResume(ctx context.Context, ref string, pause bool) error {
	_, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running() {
		if !pause {
			// Docker's words for unpausing a stopped container.
			return errdefs.Conflict(fmt.Errorf("container %s is not paused", c.rec.ID))
		}
		return errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	if pause {
		if c.rec.State.Status == StatePaused {
			return errdefs.Conflict(fmt.Errorf("container %s is already paused", c.rec.ID))
		}
		if err := c.shim.Pause(ctx); err != nil {
			return fmt.Errorf("pause container %s: %w", c.rec.ID, err)
		}
		c.rec.State.Status = StatePaused
		e.emit("container", "pause", c.rec.ID, c.attributesLocked())
	} else {
		if c.rec.State.Status != StatePaused {
			return errdefs.Conflict(fmt.Errorf("container %s is not paused", c.rec.ID))
		}
		if err := c.shim.Resume(ctx); err != nil {
			return fmt.Errorf("unpause container %s: %w", c.rec.ID, err)
		}
		c.rec.State.Status = StateRunning
		e.emit("container", "unpause", c.rec.ID, c.attributesLocked())
	}
	return c.save()
}

// ContainerResize sets the size of the container's terminal.
func (e *Engine) ContainerResize(ctx context.Context, ref string, height, width uint16) error {
	_, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cl := c.shim
	c.mu.Unlock()
	if cl == nil {
		return errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	if err := cl.Resize(ctx, height, width); err != nil {
		return err
	}
	e.emit("container", "resize", c.rec.ID, c.attributes("height", fmt.Sprint(height), "width", fmt.Sprint(width)))
	return nil
}

// ContainersShutdown stops the engine's restart timers and health checks;
// the containers themselves keep running under their shims.
func (e *Engine) ContainersShutdown() {
	cs, err := e.ctrs()
	if err != nil {
		return
	}
	for _, c := range cs.list() {
		c.mu.Lock()
		if c.restartTimer != nil {
			c.restartTimer.Stop()
		}
		cs.stopHealth(c)
		c.mu.Unlock()
	}
	stores.Delete(e)
}

// ContainerPrune removes stopped containers; filters: until, label.
func (e *Engine) ContainerPrune(ctx context.Context, filters map[string][]string) (container.PruneReport, error) {
	cs, err := e.ctrs()
	if err != nil {
		return container.PruneReport{}, err
	}
	rep := container.PruneReport{ContainersDeleted: []string{}}
	var until time.Time
	for _, v := range filters["until"] {
		t, err := parseTimestamp(v)
		if err != nil {
			return rep, errdefs.InvalidArgument(fmt.Errorf("invalid filter 'until=%s': %w", v, err))
		}
		until = t
	}
	for k := range filters {
		if k != "until" && k != "label" && k != "label!" {
			return rep, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	for _, c := range cs.list() {
		c.mu.Lock()
		skip := c.running() || c.rec.State.Status == StateRestarting || c.removing ||
			(!until.IsZero() && !c.rec.Created.Before(until)) ||
			(len(filters["label"]) > 0 && !matchLabels(c.rec.Config.Labels, filters["label"])) ||
			(len(filters["label!"]) > 0 && matchAnyLabel(c.rec.Config.Labels, filters["label!"]))
		c.mu.Unlock()
		if skip {
			continue
		}
		size, _ := e.snaps.Usage(ctx, c.snapKey())
		if err := cs.remove(ctx, c, false, false); err != nil {
			if errdefs.IsConflict(err) {
				continue
			}
			return rep, err
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, c.rec.ID)
		rep.SpaceReclaimed += uint64(size)
	}
	return rep, nil
}
