package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/sys/capability"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
	"github.com/berth-project/berth/internal/specgen"
)

// ContainerConfig configures how the engine runs containers.
type ContainerConfig struct {
	// ExecRoot holds run-time state: shim state directories under
	// containers/<id> and runtime roots under runtime/<name>.
	ExecRoot string
	// ShimBinary is the berth-shim executable.
	ShimBinary string
	// Runtimes maps runtime names to executables (a path or a name looked
	// up in PATH). "berth-runtime", "runc" and "crun" are always known.
	Runtimes map[string]string
	// DefaultRuntime is the runtime of containers that name none
	// (default "berth-runtime").
	DefaultRuntime string
	// InitPath is the init binary bound into containers run with --init.
	InitPath string
	// DefaultInit runs containers that do not say otherwise under the
	// init (dockerd's --init).
	DefaultInit bool
	// RuntimeArgs are extra global flags per runtime name (daemon.json
	// "runtimeArgs").
	RuntimeArgs map[string][]string
	// CgroupParent is the cgroup under which containers that name no
	// --cgroup-parent get theirs (dockerd's --cgroup-parent; default
	// DefaultCgroupParent).
	CgroupParent string
}

// DefaultCgroupParent is the parent cgroup of containers when neither the
// daemon nor the container names one (dockerd's is /docker).
const DefaultCgroupParent = "/berth"

// cgroupsPath is the cgroup of container c with the cgroupfs layout Docker
// uses: its --cgroup-parent, else the daemon's, then the container's ID. A
// relative parent is relative to the runtime's own cgroup, as in runc.
func (cs *containers) cgroupsPath(c *ctr) string {
	parent := ""
	if c.rec.HostConfig != nil {
		parent = c.rec.HostConfig.CgroupParent
	}
	if parent == "" {
		parent = cs.cfg.CgroupParent
	}
	if parent == "" {
		parent = DefaultCgroupParent
	}
	return filepath.Join(parent, c.rec.ID)
}

// ErrNotModified says a start or stop found the container already in the
// wanted state (Docker answers 304).
var ErrNotModified = errors.New("container already in the requested state")

// The container states, as Docker names them.
const (
	StateCreated    = "created"
	StateRunning    = "running"
	StatePaused     = "paused"
	StateRestarting = "restarting"
	StateRemoving   = "removing"
	StateExited     = "exited"
	StateDead       = "dead"
)

// ctrState is the persisted state of a container.
type ctrState struct {
	Status     string
	Pid        int
	ExitCode   int
	Error      string
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	Health     *container.Health `json:",omitempty"`
}

// ctrRecord is a container as persisted in config.v2.json.
type ctrRecord struct {
	ID           string
	Name         string // with the leading slash
	Created      time.Time
	Path         string
	Args         []string
	Config       *container.Config
	HostConfig   *container.HostConfig `json:"-"` // in hostconfig.json
	Image        digest.Digest
	Runtime      string
	State        ctrState
	RestartCount int
	// ManuallyStopped: a stop or kill by a client, which suspends the
	// restart policy (unless-stopped also across daemon restarts).
	ManuallyStopped bool
	HasBeenStarted  bool
	// Mounts are the container's binds, volumes and tmpfs mounts.
	Mounts []ctrMount
}

// ctr is a container in memory.
type ctr struct {
	mu  sync.Mutex
	rec ctrRecord
	dir string // <data-root>/containers/<id>

	shim *shim.Client
	// exitCh is closed (and replaced) at each exit; removedCh when the
	// container is removed.
	exitCh    chan struct{}
	removedCh chan struct{}
	// attachers are attach requests waiting for the next start;
	// pendingAttach counts those reserved but not yet registered.
	attachers     []func(*shim.Client, func())
	pendingAttach atomic.Int32
	// restartTimer is a pending restart by the restart policy.
	restartTimer *time.Timer
	// removing: a delete is under way.
	removing bool
	// monitorDone is closed when the monitor of the current run ended.
	monitorDone chan struct{}
	execs       map[string]*execRecord
	healthStop  chan struct{}
	// savedHostConfig is the hostconfig.json last written: most saves
	// change only the state, and hostconfig.json is rewritten (and
	// synced) only when it differs.
	savedHostConfig []byte
}

// containers is the engine's container store.
type containers struct {
	e    *Engine
	cfg  ContainerConfig
	host specgen.Host
	log  *slog.Logger

	mu    sync.Mutex
	byID  map[string]*ctr
	names map[string]string // name (with slash) -> id
	execs map[string]*execRecord
}

// stores ties an engine to its container store: the store is optional (an
// image-only engine has none), so it lives beside the engine rather than in it.
var stores sync.Map // *Engine -> *containers

func (e *Engine) ctrs() (*containers, error) {
	v, ok := stores.Load(e)
	if !ok {
		return nil, errdefs.Unavailable(fmt.Errorf("containers are not enabled in this engine"))
	}
	return v.(*containers), nil
}

// lookup finds a container by ID, ID prefix or name.
func (e *Engine) lookup(ref string) (*containers, *ctr, error) {
	cs, err := e.ctrs()
	if err != nil {
		return nil, nil, err
	}
	c, err := cs.get(ref)
	if err != nil {
		return nil, nil, err
	}
	return cs, c, nil
}

// EnableContainers turns on the engine's containers: it loads the
// containers under <data-root>/containers, reconnects to the shims of those
// that were running (live restore), records the exit of those that ended
// meanwhile, and applies their restart policies.
func (e *Engine) EnableContainers(ctx context.Context, cfg ContainerConfig) error {
	if cfg.ExecRoot == "" {
		return errdefs.InvalidArgument(fmt.Errorf("containers: exec root is required"))
	}
	if cfg.ShimBinary == "" {
		// Without a shim containers can be created and inspected; starting
		// one fails naming the missing binary.
		cfg.ShimBinary, _ = exec.LookPath("berth-shim")
	}
	if cfg.DefaultRuntime == "" {
		cfg.DefaultRuntime = "berth-runtime"
	}
	rt := map[string]string{"berth-runtime": "berth-runtime", "runc": "runc", "crun": "crun"}
	for k, v := range cfg.Runtimes {
		rt[k] = v
	}
	cfg.Runtimes = rt
	if _, ok := rt[cfg.DefaultRuntime]; !ok {
		return errdefs.InvalidArgument(fmt.Errorf("default runtime %q is not a configured runtime", cfg.DefaultRuntime))
	}
	for _, d := range []string{filepath.Join(e.cfg.DataRoot, "containers"), filepath.Join(cfg.ExecRoot, "containers")} {
		if err := os.MkdirAll(d, 0o710); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	host := hostFacts()
	host.Init = cfg.DefaultInit
	cs := &containers{e: e, cfg: cfg, host: host, log: e.log, byID: map[string]*ctr{}, names: map[string]string{}}
	if _, loaded := stores.LoadOrStore(e, cs); loaded {
		return errdefs.Conflict(fmt.Errorf("containers already enabled"))
	}
	if err := cs.restore(ctx); err != nil {
		stores.Delete(e)
		return err
	}
	return nil
}

// RuntimeSettings is what `docker info` shows of how containers run.
type RuntimeSettings struct {
	// Runtimes maps each runtime name to its executable.
	Runtimes       map[string]string
	DefaultRuntime string
	// InitPath is the init binary (empty: none found); DefaultInit says
	// containers run under it unless they say otherwise.
	InitPath    string
	DefaultInit bool
}

// RuntimeSettings reports the runtimes and the init the engine runs
// containers with (zero before EnableContainers).
func (e *Engine) RuntimeSettings() RuntimeSettings {
	cs, err := e.ctrs()
	if err != nil {
		return RuntimeSettings{}
	}
	return RuntimeSettings{
		Runtimes:       maps.Clone(cs.cfg.Runtimes),
		DefaultRuntime: cs.cfg.DefaultRuntime,
		InitPath:       cs.cfg.InitPath,
		DefaultInit:    cs.cfg.DefaultInit,
	}
}

// hostFacts gathers what specgen needs to know about this host.
func hostFacts() specgen.Host {
	h := specgen.Host{HardRlimits: map[string]uint64{}, CanRaiseRlimits: true, PrivilegedDevices: hostDevices()}
	if bnd, eff, ok := ownCapabilities(); ok {
		h.Capabilities = grantableCapabilities(bnd)
		h.CanRaiseRlimits = eff&(1<<uint(capability.CAP_SYS_RESOURCE)) != 0
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil {
		h.CgroupV2 = st.Type == unix.CGROUP2_SUPER_MAGIC
	}
	h.Hostname, _ = os.Hostname()
	h.NumCPU = numCPU()
	for name, res := range map[string]int{"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC} {
		var rl unix.Rlimit
		if err := unix.Getrlimit(res, &rl); err == nil {
			h.HardRlimits[name] = rl.Max
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		var major, minor int
		fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
		h.RecursiveReadOnly = major > 5 || (major == 5 && minor >= 12)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil && !h.CgroupV2 {
		h.NoSwapLimit = true
	}
	return h
}

func numCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		return set.Count()
	}
	return 1
}

// validName is Docker's container name rule.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// randomName makes a Docker-style adjective_noun name.
func randomName() string {
	adj := []string{"brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "merry", "nifty", "quirky", "serene", "tender", "upbeat", "vibrant", "wizardly", "zealous"}
	noun := []string{"albatross", "beacon", "capstan", "dinghy", "ensign", "frigate", "galley", "harbor", "jetty", "keel", "lighthouse", "mooring", "anchor", "pier", "quay", "rudder", "schooner", "tide"}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return adj[int(b[0])%len(adj)] + "_" + noun[int(b[1])%len(noun)]
}

// get finds a container by full ID, name or unambiguous ID prefix.
func (cs *containers) get(ref string) (*ctr, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.byID[ref]; ok {
		return c, nil
	}
	name := ref
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if id, ok := cs.names[name]; ok {
		return cs.byID[id], nil
	}
	if ref != "" && isHexPrefix(ref) {
		var found []*ctr
		for id, c := range cs.byID {
			if strings.HasPrefix(id, ref) {
				found = append(found, c)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			return nil, errdefs.InvalidArgument(fmt.Errorf("multiple IDs found with provided prefix: %s", ref))
		}
	}
	return nil, errdefs.NotFound(fmt.Errorf("No such container: %s", ref))
}

func (cs *containers) list() []*ctr {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]*ctr, 0, len(cs.byID))
	for _, c := range cs.byID {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Created.After(out[j].rec.Created) })
	return out
}

// save writes the container's record atomically. The caller holds c.mu.
func (c *ctr) save() error {
	if err := writeJSONFile(filepath.Join(c.dir, "config.v2.json"), c.rec); err != nil {
		return err
	}
	path := filepath.Join(c.dir, "hostconfig.json")
	hc, err := json.Marshal(c.rec.HostConfig)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if bytes.Equal(hc, c.savedHostConfig) {
		return nil
	}
	if err := writeFileAtomic(path, hc, 0o600); err != nil {
		return err
	}
	c.savedHostConfig = hc
	return nil
}

// writeJSONFile replaces path with v's JSON through a synced temporary file.
func writeJSONFile(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, data, 0o600)
}

// writeFileAtomic replaces path with data through a synced temporary
// file, so a crash leaves the old content or the new, never a torn file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, true)
}

// replaceFile is writeFileAtomic, syncing the data only with sync: files
// regenerated at every start need the atomic rename (no reader sees a
// torn file) but not durability.
func replaceFile(path string, data []byte, mode os.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (c *ctr) logPath() string { return filepath.Join(c.dir, c.rec.ID+"-json.log") }
func (c *ctr) bundle() string  { return filepath.Join(c.dir, "bundle") }
func (c *ctr) rootfs() string  { return filepath.Join(c.dir, "bundle", "rootfs") }
func (c *ctr) snapKey() string { return "container-" + c.rec.ID }

// maxSocketPath is the longest unix socket path; the shim's longest socket
// name in its state directory is "shim.sock.tmp".
const maxSocketPath = 107 - len("/shim.sock.tmp")

// stateDir is the shim's state directory: <exec-root>/containers/<id>, or
// under a long exec root <exec-root>/containers/<first 16 of id> so the
// shim's sockets fit (create keeps those prefixes unique).
func (cs *containers) stateDir(id string) string {
	dir := filepath.Join(cs.cfg.ExecRoot, "containers", id)
	if len(dir) > maxSocketPath {
		dir = filepath.Join(cs.cfg.ExecRoot, "containers", id[:16])
	}
	return dir
}

// running reports whether the container has a live process. The caller
// holds c.mu.
func (c *ctr) running() bool {
	s := c.rec.State.Status
	return s == StateRunning || s == StatePaused
}

// restore loads every container record and reconnects to live shims.
func (cs *containers) restore(ctx context.Context) error {
	root := filepath.Join(cs.e.cfg.DataRoot, "containers")
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("read %s: %w", root, err)
	}
	// toStart are restarts the policy asks for now; pending are restarts
	// already scheduled and counted before berthd stopped.
	var toStart, pending []*ctr
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		dir := filepath.Join(root, ent.Name())
		c, err := loadCtr(dir)
		if err != nil {
			cs.log.Warn("skip unreadable container", "dir", dir, "err", err)
			continue
		}
		cs.byID[c.rec.ID] = c
		cs.names[c.rec.Name] = c.rec.ID
		if c.rec.State.Status == StateRemoving {
			// A removal interrupted by a daemon stop: finish it.
			go func() {
				if err := cs.remove(context.Background(), c, true, false); err != nil {
					cs.log.Warn("finish interrupted removal", "id", c.rec.ID, "err", err)
				}
			}()
			continue
		}
		if c.rec.State.Status == StateRestarting {
			if cl, err := shim.Connect(ctx, cs.stateDir(c.rec.ID)); err == nil {
				// berthd stopped in the middle of the restart itself:
				// the new run is treated as any other live container.
				cl.Close()
				c.rec.State.Status = StateRunning
			} else {
				// A restart the policy had scheduled (and counted) when
				// berthd stopped: carry it out, without counting it again.
				c.rec.State.Status = StateExited
				_ = c.save()
				pending = append(pending, c)
				continue
			}
		}
		if c.running() {
			cl, err := shim.Connect(ctx, cs.stateDir(c.rec.ID))
			if err == nil {
				st, serr := cl.State(ctx)
				if serr == nil && (st.Status == "running" || st.Status == "paused") {
					c.shim = cl
					c.rec.State.Pid = cl.Pid()
					if st.Status == "paused" {
						c.rec.State.Status = StatePaused
					} else {
						c.rec.State.Status = StateRunning
					}
					prev := c.rec.State.Health
					cs.startHealth(c)
					if prev != nil && c.rec.State.Health != nil {
						c.rec.State.Health = prev // checks go on from the last status
					}
					_ = c.save()
					c.monitorDone = make(chan struct{})
					go cs.monitor(c, cl, c.monitorDone)
					cs.log.Info("reconnected to container", "id", c.rec.ID, "pid", c.rec.State.Pid)
					continue
				}
				if serr == nil && st.Status == "created" {
					// Never started (berthd stopped mid-start): drop it.
					_, _ = cl.Delete(ctx, true)
					cl.Close()
					cs.unmountRootfs(c)
					cs.finishExit(c, shim.ExitStatus{Code: 128, ExitedAt: time.Now()})
					continue
				}
				// The shim is up but its container ended while berthd
				// was down: record the exit now, so the first inspect
				// already reports it.
				es, werr := cl.Wait(ctx)
				if werr != nil {
					es = shim.ExitStatus{Code: 255, ExitedAt: time.Now()}
				}
				if _, err := cl.Delete(ctx, true); err != nil {
					_ = cl.Shutdown(ctx)
				}
				cl.Close()
				cs.unmountRootfs(c)
				cs.finishExit(c, es)
				if cs.shouldRestart(c, true) {
					toStart = append(toStart, c)
				}
				continue
			}
			// The shim is gone: take the exit status it recorded, and
			// delete what it left in the runtime (state, cgroups, and
			// any process of a container that outlived it).
			es, err := shim.ReadExit(cs.stateDir(c.rec.ID))
			if err != nil {
				es = shim.ExitStatus{Code: 255, ExitedAt: time.Now()}
				c.rec.State.Error = "berth-shim exited without recording the container's exit status"
			}
			if err := shim.Cleanup(ctx, cs.stateDir(c.rec.ID)); err != nil {
				cs.log.Warn("delete container left by its shim", "id", c.rec.ID, "err", err)
			}
			cs.unmountRootfs(c)
			cs.finishExit(c, es)
			if cs.shouldRestart(c, true) {
				toStart = append(toStart, c)
			}
			continue
		}
		if c.rec.State.Status == StateExited && cs.shouldRestart(c, true) && c.rec.HasBeenStarted {
			toStart = append(toStart, c)
		}
	}
	for _, c := range toStart {
		// A restart by the policy, as one while berthd runs.
		c.rec.RestartCount++
	}
	for _, c := range append(toStart, pending...) {
		go func() {
			if err := cs.start(context.Background(), c, false); err != nil && !errors.Is(err, ErrNotModified) {
				cs.log.Warn("restart container at daemon start", "id", c.rec.ID, "err", err)
			}
		}()
	}
	return nil
}

func loadCtr(dir string) (*ctr, error) {
	var rec ctrRecord
	data, err := os.ReadFile(filepath.Join(dir, "config.v2.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode %s/config.v2.json: %w", dir, err)
	}
	rec.HostConfig = &container.HostConfig{}
	if data, err := os.ReadFile(filepath.Join(dir, "hostconfig.json")); err == nil {
		if err := json.Unmarshal(data, rec.HostConfig); err != nil {
			return nil, fmt.Errorf("decode %s/hostconfig.json: %w", dir, err)
		}
	}
	if rec.ID == "" || filepath.Base(dir) != rec.ID {
		return nil, fmt.Errorf("record in %s names container %q", dir, rec.ID)
	}
	return &ctr{rec: rec, dir: dir, exitCh: make(chan struct{}), removedCh: make(chan struct{})}, nil
}

// ContainersUsingImage returns the IDs of the containers created from the
// image id (image removal refuses to remove it from under them, as Docker).
func (e *Engine) ContainersUsingImage(id digest.Digest) []string {
	cs, err := e.ctrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range cs.list() {
		c.mu.Lock()
		if c.rec.Image == id {
			out = append(out, c.rec.ID)
		}
		c.mu.Unlock()
	}
	return out
}
