package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-project/berth/internal/errdefs"
)

// attributes are the event attributes of a container: its name, image and
// labels, plus extra key/value pairs. The caller need not hold c.mu for
// fields that never change; name and labels are read under it.
func (c *ctr) attributes(extra ...string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attributesLocked(extra...)
}

func (c *ctr) attributesLocked(extra ...string) map[string]string {
	a := map[string]string{"name": strings.TrimPrefix(c.rec.Name, "/"), "image": c.rec.Config.Image}
	for k, v := range c.rec.Config.Labels {
		a[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		a[extra[i]] = extra[i+1]
	}
	return a
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ContainerInspect returns what `docker inspect` shows of a container;
// with size also the sizes of its writable layer and root filesystem.
func (e *Engine) ContainerInspect(ctx context.Context, ref string, size bool) (container.InspectResponse, error) {
	_, c, err := e.lookup(ref)
	if err != nil {
		return container.InspectResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec
	st := r.State
	resp := container.InspectResponse{
		ID:      r.ID,
		Created: timeString(r.Created),
		Path:    r.Path,
		Args:    r.Args,
		State: &container.State{
			Status:     container.ContainerState(st.Status),
			Running:    st.Status == StateRunning || st.Status == StatePaused,
			Paused:     st.Status == StatePaused,
			Restarting: st.Status == StateRestarting,
			OOMKilled:  st.OOMKilled,
			Dead:       st.Status == StateDead,
			Pid:        st.Pid,
			ExitCode:   st.ExitCode,
			Error:      st.Error,
			StartedAt:  timeString(st.StartedAt),
			FinishedAt: timeString(st.FinishedAt),
			Health:     copyHealth(st.Health),
		},
		Image:          r.Image.String(),
		ResolvConfPath: filepath.Join(c.dir, "resolv.conf"),
		HostnamePath:   filepath.Join(c.dir, "hostname"),
		HostsPath:      filepath.Join(c.dir, "hosts"),
		LogPath:        c.logFile(),
		Name:           r.Name,
		RestartCount:   r.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		HostConfig:     r.HostConfig,
		Config:         r.Config,
		Mounts:         c.mountPoints(),
		ExecIDs:        c.execIDs(),
		NetworkSettings: &container.NetworkSettings{
			SandboxKey: "",
			Ports:      network.PortMap{},
			Networks:   map[string]*network.EndpointSettings{},
		},
	}
	if mode := string(r.HostConfig.NetworkMode); mode == "none" || mode == "host" {
		resp.NetworkSettings.Networks[mode] = &network.EndpointSettings{}
	}
	if paths, err := e.snaps.Paths(ctx, c.snapKey()); err == nil && len(paths) > 0 {
		dd := map[string]string{"UpperDir": paths[0], "MergedDir": c.rootfs()}
		if len(paths) > 1 {
			dd["LowerDir"] = strings.Join(paths[1:], ":")
		}
		dd["WorkDir"] = filepath.Join(filepath.Dir(paths[0]), "work")
		resp.GraphDriver = &storage.DriverData{Name: "overlay2", Data: dd}
	}
	if size {
		rw, _ := e.snaps.Usage(ctx, c.snapKey())
		resp.SizeRw = &rw
		rootfs := rw + e.imageSize(ctx, r.Image.String())
		resp.SizeRootFs = &rootfs
	}
	return resp, nil
}

// imageSize is the size of an image's layers, 0 when unknown.
func (e *Engine) imageSize(ctx context.Context, id string) int64 {
	d, err := digest.Parse(id)
	if err != nil {
		return 0
	}
	rec, err := e.meta.GetImage(d)
	if err != nil {
		return 0
	}
	var n int64
	for _, s := range rec.LayerSizes {
		n += s
	}
	return n
}

// statusString is the Status column of `docker ps`.
func statusString(st ctrState, now time.Time) string {
	switch st.Status {
	case StateCreated:
		return "Created"
	case StateRunning, StatePaused:
		s := "Up " + units.HumanDuration(now.Sub(st.StartedAt))
		if st.Status == StatePaused {
			// As Docker's: a paused container's status leaves out its health.
			return s + " (Paused)"
		}
		if st.Health != nil {
			switch st.Health.Status {
			case container.Starting:
				s += " (health: starting)"
			default:
				s += " (" + string(st.Health.Status) + ")"
			}
		}
		return s
	case StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
	case StateRemoving:
		return "Removal In Progress"
	case StateDead:
		return "Dead"
	}
	if st.FinishedAt.IsZero() {
		return fmt.Sprintf("Exited (%d)", st.ExitCode)
	}
	return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
}

// ContainerListOptions are the parameters of GET /containers/json.
type ContainerListOptions struct {
	All     bool
	Size    bool
	Limit   int
	Filters map[string][]string
}

// ContainerList lists containers, newest first, as `docker ps` does.
func (e *Engine) ContainerList(ctx context.Context, opts ContainerListOptions) ([]container.Summary, error) {
	cs, err := e.ctrs()
	if err != nil {
		return nil, err
	}
	if opts.Limit > 0 {
		opts.All = true // as Docker: `ps -n N` and `ps -l` list stopped containers too
	}
	for k := range opts.Filters {
		switch k {
		case "status", "name", "id", "label", "ancestor", "exited", "before", "since", "health", "volume", "network", "is-task", "expose", "publish":
		default:
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	for _, s := range opts.Filters["status"] {
		switch s {
		case StateCreated, StateRunning, StatePaused, StateRestarting, StateRemoving, StateExited, StateDead:
		default:
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid filter 'status=%s'", s))
		}
	}
	var ancestors map[string]bool
	if want := opts.Filters["ancestor"]; len(want) > 0 {
		ancestors = map[string]bool{}
		for _, a := range want {
			if id, err := e.resolveID(a); err == nil {
				ancestors[id.String()] = true
			}
		}
	}
	all := cs.list()
	// before/since name containers: keep those created before/after them.
	var before, since time.Time
	for _, key := range []string{"before", "since"} {
		for _, ref := range opts.Filters[key] {
			o, err := cs.get(ref)
			if err != nil {
				return nil, err
			}
			o.mu.Lock()
			t := o.rec.Created
			o.mu.Unlock()
			if key == "before" {
				before = t
			} else {
				since = t
			}
		}
	}
	now := time.Now()
	var out []container.Summary
	for _, c := range all {
		c.mu.Lock()
		r := c.rec
		sum, keep := c.summary(opts, ancestors, before, since, now)
		c.mu.Unlock()
		if !keep {
			continue
		}
		if opts.Size {
			sum.SizeRw, _ = e.snaps.Usage(ctx, "container-"+r.ID)
			sum.SizeRootFs = sum.SizeRw + e.imageSize(ctx, r.Image.String())
		}
		out = append(out, sum)
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	if out == nil {
		out = []container.Summary{}
	}
	return out, nil
}

// summary renders c for the list when it passes the filters. The caller
// holds c.mu.
func (c *ctr) summary(opts ContainerListOptions, ancestors map[string]bool, before, since time.Time, now time.Time) (container.Summary, bool) {
	r := c.rec
	f := opts.Filters
	running := c.running()
	if !opts.All && !running && len(f["status"]) == 0 && len(f["exited"]) == 0 {
		return container.Summary{}, false
	}
	if !anyOf(f["status"], func(s string) bool { return s == r.State.Status }) {
		return container.Summary{}, false
	}
	if !anyOf(f["exited"], func(s string) bool { return r.State.Status == StateExited && s == fmt.Sprint(r.State.ExitCode) }) {
		return container.Summary{}, false
	}
	name := strings.TrimPrefix(r.Name, "/")
	if !anyOf(f["name"], func(s string) bool { return strings.Contains(name, strings.TrimPrefix(s, "/")) }) {
		return container.Summary{}, false
	}
	if !anyOf(f["id"], func(s string) bool { return strings.HasPrefix(r.ID, s) }) {
		return container.Summary{}, false
	}
	if len(f["label"]) > 0 && !matchLabels(r.Config.Labels, f["label"]) {
		return container.Summary{}, false
	}
	if ancestors != nil && !ancestors[r.Image.String()] {
		return container.Summary{}, false
	}
	if !before.IsZero() && !r.Created.Before(before) {
		return container.Summary{}, false
	}
	if !since.IsZero() && !r.Created.After(since) {
		return container.Summary{}, false
	}
	health := string(container.NoHealthcheck)
	if r.State.Health != nil {
		health = string(r.State.Health.Status)
	}
	if !anyOf(f["health"], func(s string) bool { return s == health }) {
		return container.Summary{}, false
	}
	mounts := c.mountPoints()
	if !anyOf(f["volume"], func(v string) bool { return mountedAt(mounts, v) }) {
		return container.Summary{}, false
	}
	networkMode := string(r.HostConfig.NetworkMode)
	if networkMode == "" {
		networkMode = "none"
	}
	if !anyOf(f["network"], func(n string) bool { return n == networkMode }) {
		return container.Summary{}, false
	}
	if !anyOf(f["expose"], func(s string) bool { return portInRange(r.Config.ExposedPorts, s) }) {
		return container.Summary{}, false
	}
	published := network.PortSet{}
	for p := range r.HostConfig.PortBindings {
		published[p] = struct{}{}
	}
	if !anyOf(f["publish"], func(s string) bool { return portInRange(published, s) }) {
		return container.Summary{}, false
	}
	// No container is a swarm task.
	if !anyOf(f["is-task"], func(s string) bool { return s == "false" || s == "0" }) {
		return container.Summary{}, false
	}
	cmd := summaryCommand(r.Path, r.Args)
	labels := r.Config.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	sum := container.Summary{
		ID: r.ID, Names: []string{r.Name}, Image: r.Config.Image, ImageID: r.Image.String(),
		Command: cmd, Created: r.Created.Unix(), Ports: []container.PortSummary{},
		Labels: labels, State: container.ContainerState(r.State.Status),
		Status:          statusString(r.State, now),
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}},
		Mounts:          mounts,
	}
	if networkMode == "none" || networkMode == "host" {
		// As inspect: the container is on Docker's predefined network of
		// that name, which ps shows in its NETWORKS column.
		sum.NetworkSettings.Networks[networkMode] = &network.EndpointSettings{}
	}
	sum.HostConfig.NetworkMode = networkMode
	if r.State.Health != nil {
		sum.Health = &container.HealthSummary{Status: r.State.Health.Status, FailingStreak: r.State.Health.FailingStreak}
	}
	return sum, true
}

// summaryCommand is the COMMAND docker ps shows: the path and its
// arguments, an argument holding a space in single quotes, as Docker's.
func summaryCommand(path string, args []string) string {
	cmd := path
	for _, a := range args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		cmd += " " + a
	}
	return cmd
}

// mountedAt says whether a mount is at dst or mounts the volume (by name)
// or the host path (a bind's source) v, as Docker's volume filter.
func mountedAt(mounts []container.MountPoint, v string) bool {
	for _, m := range mounts {
		if m.Destination == v || (m.Name != "" && m.Name == v) || (m.Name == "" && m.Source == v) {
			return true
		}
	}
	return false
}

// portInRange says whether ports holds a port of the filter value spec:
// a port or range with an optional protocol (tcp when left out), as
// Docker's expose and publish filters.
func portInRange(ports network.PortSet, spec string) bool {
	pr, err := network.ParsePortRange(spec)
	if err != nil {
		return false
	}
	for p := range ports {
		if p.Proto() == pr.Proto() && p.Num() >= pr.Start() && p.Num() <= pr.End() {
			return true
		}
	}
	return false
}

func anyOf(vals []string, ok func(string) bool) bool {
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		if ok(v) {
			return true
		}
	}
	return false
}

// copyHealth copies a health status deeply: the record's own is changed by
// the health checks once the container's lock is released.
func copyHealth(h *container.Health) *container.Health {
	if h == nil {
		return nil
	}
	out := *h
	out.Log = make([]*container.HealthcheckResult, 0, len(h.Log))
	for _, r := range h.Log {
		if r != nil {
			cp := *r
			out.Log = append(out.Log, &cp)
		}
	}
	return &out
}
