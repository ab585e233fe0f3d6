package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/specgen"
)

// cgroupPaths maps each cgroup v1 controller (and "" for v2) of a process
// to its cgroup directory under /sys/fs/cgroup.
func cgroupPaths(pid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("read cgroups of pid %d: %w", pid, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = filepath.Join("/sys/fs/cgroup/unified", parts[2])
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				out[""] = filepath.Join("/sys/fs/cgroup", parts[2])
			}
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			ctrl = strings.TrimPrefix(ctrl, "name=")
			out[ctrl] = filepath.Join("/sys/fs/cgroup", parts[1], parts[2])
		}
	}
	return out, nil
}

// runningInit returns the pid of a running container's init.
func (cs *containers) runningInit(ref string) (*ctr, int, error) {
	c, err := cs.get(ref)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running() || c.rec.State.Pid == 0 {
		return c, 0, errdefs.Conflict(fmt.Errorf("container %s is not running", c.rec.ID))
	}
	return c, c.rec.State.Pid, nil
}

// containerPids lists the processes in the container's cgroup.
func containerPids(pid int) (map[int]bool, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return nil, err
	}
	for _, ctrl := range []string{"pids", "memory", "cpu", "freezer", ""} {
		p, ok := paths[ctrl]
		if !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			continue
		}
		out := map[int]bool{}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out[n] = true
			}
		}
		return out, nil
	}
	return map[int]bool{pid: true}, nil
}

// ContainerTop runs ps on the host with psArgs (default -ef) and keeps the
// rows of the container's processes, as Docker does.
func (e *Engine) ContainerTop(ctx context.Context, ref, psArgs string) (container.TopResponse, error) {
	cs, err := e.ctrs()
	if err != nil {
		return container.TopResponse{}, err
	}
	c, pid, err := cs.runningInit(ref)
	if err != nil {
		return container.TopResponse{}, err
	}
	pids, err := containerPids(pid)
	if err != nil {
		return container.TopResponse{}, err
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	args := strings.Fields(psArgs)
	out, err := exec.CommandContext(ctx, "ps", args...).Output()
	if err != nil {
		// As Docker: the first line of ps's complaint says what was
		// wrong with the options.
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if first, _, _ := bytes.Cut(bytes.TrimSpace(ee.Stderr), []byte("\n")); len(first) > 0 {
				return container.TopResponse{}, errdefs.InvalidArgument(fmt.Errorf("ps: %s", first))
			}
		}
		return container.TopResponse{}, errdefs.InvalidArgument(fmt.Errorf("ps %s: %w", psArgs, err))
	}
	top, err := parsePS(out, pids)
	if err == nil {
		e.emit("container", "top", c.rec.ID, c.attributes())
	}
	return top, err
}

// parsePS keeps the rows of ps output whose PID column is in pids; the
// last column (the command) may hold spaces.
func parsePS(out []byte, pids map[int]bool) (container.TopResponse, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 {
		return container.TopResponse{}, fmt.Errorf("ps printed nothing")
	}
	titles := strings.Fields(lines[0])
	pidCol := -1
	for i, t := range titles {
		if t == "PID" {
			pidCol = i
		}
	}
	if pidCol < 0 {
		return container.TopResponse{}, errdefs.InvalidArgument(fmt.Errorf("couldn't find PID field in ps output"))
	}
	resp := container.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) <= pidCol {
			continue
		}
		p, err := strconv.Atoi(f[pidCol])
		if err != nil || !pids[p] {
			continue
		}
		if len(f) > len(titles) {
			f = append(f[:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		}
		resp.Processes = append(resp.Processes, f)
	}
	return resp, nil
}

func readUint(path string) uint64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return v
}

func readKV(path string) map[string]uint64 {
	out := map[string]uint64{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// systemCPUUsage is the host's CPU time in nanoseconds from /proc/stat.
func systemCPUUsage() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[0] == "cpu" {
			var total uint64
			for _, v := range fields[1:8] {
				n, _ := strconv.ParseUint(v, 10, 64)
				total += n
			}
			return total * (uint64(time.Second) / 100) // USER_HZ is 100
		}
	}
	return 0
}

// sampleStats reads one stats sample from the container's cgroups.
func sampleStats(pid int) (container.StatsResponse, error) {
	paths, err := cgroupPaths(pid)
	if err != nil {
		return container.StatsResponse{}, err
	}
	s := container.StatsResponse{Read: time.Now().UTC(), OSType: "linux"}
	s.CPUStats.SystemUsage = systemCPUUsage()
	s.CPUStats.OnlineCPUs = uint32(numCPU())
	if v2, ok := paths[""]; ok && paths["memory"] == "" {
		cpu := readKV(filepath.Join(v2, "cpu.stat"))
		s.CPUStats.CPUUsage.TotalUsage = cpu["usage_usec"] * 1000
		s.CPUStats.CPUUsage.UsageInUsermode = cpu["user_usec"] * 1000
		s.CPUStats.CPUUsage.UsageInKernelmode = cpu["system_usec"] * 1000
		s.CPUStats.ThrottlingData = container.ThrottlingData{Periods: cpu["nr_periods"], ThrottledPeriods: cpu["nr_throttled"], ThrottledTime: cpu["throttled_usec"] * 1000}
		s.MemoryStats.Usage = readUint(filepath.Join(v2, "memory.current"))
		s.MemoryStats.Limit = readUint(filepath.Join(v2, "memory.max"))
		s.MemoryStats.Stats = readKV(filepath.Join(v2, "memory.stat"))
		s.PidsStats.Current = readUint(filepath.Join(v2, "pids.current"))
		s.PidsStats.Limit = readUint(filepath.Join(v2, "pids.max"))
	} else {
		if p := paths["cpuacct"]; p != "" {
			s.CPUStats.CPUUsage.TotalUsage = readUint(filepath.Join(p, "cpuacct.usage"))
			if data, err := os.ReadFile(filepath.Join(p, "cpuacct.usage_percpu")); err == nil {
				for _, f := range strings.Fields(string(data)) {
					v, _ := strconv.ParseUint(f, 10, 64)
					s.CPUStats.CPUUsage.PercpuUsage = append(s.CPUStats.CPUUsage.PercpuUsage, v)
				}
			}
			st := readKV(filepath.Join(p, "cpuacct.stat"))
			s.CPUStats.CPUUsage.UsageInUsermode = st["user"] * (uint64(time.Second) / 100)
			s.CPUStats.CPUUsage.UsageInKernelmode = st["system"] * (uint64(time.Second) / 100)
		}
		if p := paths["cpu"]; p != "" {
			st := readKV(filepath.Join(p, "cpu.stat"))
			s.CPUStats.ThrottlingData = container.ThrottlingData{Periods: st["nr_periods"], ThrottledPeriods: st["nr_throttled"], ThrottledTime: st["throttled_time"]}
		}
		if p := paths["memory"]; p != "" {
			s.MemoryStats.Usage = readUint(filepath.Join(p, "memory.usage_in_bytes"))
			s.MemoryStats.MaxUsage = readUint(filepath.Join(p, "memory.max_usage_in_bytes"))
			s.MemoryStats.Failcnt = readUint(filepath.Join(p, "memory.failcnt"))
			s.MemoryStats.Limit = readUint(filepath.Join(p, "memory.limit_in_bytes"))
			s.MemoryStats.Stats = readKV(filepath.Join(p, "memory.stat"))
		}
		if p := paths["pids"]; p != "" {
			s.PidsStats.Current = readUint(filepath.Join(p, "pids.current"))
			s.PidsStats.Limit = readUint(filepath.Join(p, "pids.max"))
		}
		if p := paths["blkio"]; p != "" {
			s.BlkioStats.IoServiceBytesRecursive = readBlkio(filepath.Join(p, "blkio.throttle.io_service_bytes"))
			s.BlkioStats.IoServicedRecursive = readBlkio(filepath.Join(p, "blkio.throttle.io_serviced"))
		}
	}
	// A limit as high as the host's memory (or "max") is no limit: Docker
	// then shows the host's total.
	if total := hostMemory(); total > 0 && (s.MemoryStats.Limit == 0 || s.MemoryStats.Limit > total) {
		s.MemoryStats.Limit = total
	}
	return s, nil
}

// readBlkio parses a blkio throttle file ("major:minor Op value" lines).
func readBlkio(path string) []container.BlkioStatEntry {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []container.BlkioStatEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		var maj, min uint64
		if _, err := fmt.Sscanf(f[0], "%d:%d", &maj, &min); err != nil {
			continue
		}
		v, _ := strconv.ParseUint(f[2], 10, 64)
		out = append(out, container.BlkioStatEntry{Major: maj, Minor: min, Op: f[1], Value: v})
	}
	return out
}

// ContainerStats sends stats samples of the container to send: one when
// !stream (with the previous sample a second earlier unless oneShot), or
// one a second until ctx is done or the container stops.
func (e *Engine) ContainerStats(ctx context.Context, ref string, stream, oneShot bool, send func(container.StatsResponse) error) error {
	_, c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	var prev container.StatsResponse
	first := true
	for {
		c.mu.Lock()
		pid, running, name, id := c.rec.State.Pid, c.running(), c.rec.Name, c.rec.ID
		c.mu.Unlock()
		var s container.StatsResponse
		if running && pid > 0 {
			if s, err = sampleStats(pid); err != nil {
				running = false
			}
		}
		if !running {
			// Docker sends zeroed stats for a stopped container.
			s = container.StatsResponse{Read: time.Now().UTC(), OSType: "linux"}
		}
		s.ID, s.Name = id, name
		if !first {
			s.PreRead, s.PreCPUStats = prev.Read, prev.CPUStats
		}
		if !stream && first && !oneShot && running {
			prev, first = s, false
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if err := send(s); err != nil {
			return err
		}
		if !stream {
			return nil
		}
		prev, first = s, false
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil
		}
	}
}

// ContainerUpdate changes a container's resources (applied to a running
// one by its shim, with `runtime update`) and restart policy.
func (e *Engine) ContainerUpdate(ctx context.Context, ref string, upd container.UpdateConfig) ([]string, error) {
	cs, c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hc := *c.rec.HostConfig
	mergeResources(&hc.Resources, upd.Resources)
	// As Docker, the limits a create would refuse are refused here too,
	// for a stopped container as for a running one.
	if err := specgen.CheckResources(hc.Resources, cs.host); err != nil {
		return nil, err
	}
	if upd.RestartPolicy.Name != "" {
		if hc.AutoRemove && !upd.RestartPolicy.IsNone() {
			return nil, errdefs.InvalidArgument(fmt.Errorf("Restart policy cannot be updated because AutoRemove is enabled for the container"))
		}
		hc.RestartPolicy = upd.RestartPolicy
	}
	if err := validateHostConfig(&hc); err != nil {
		return nil, err
	}
	if c.running() {
		irec, err := e.meta.GetImage(c.rec.Image)
		if err != nil {
			return nil, err
		}
		li, err := e.load(ctx, irec)
		if err != nil {
			return nil, err
		}
		spec, err := specgen.Generate(specgen.Input{
			ID: c.rec.ID, Image: li.config, Config: c.rec.Config, HostConfig: &hc,
			Rootfs: c.rootfs(), CgroupsPath: cs.cgroupsPath(c), Devices: statDevices, Host: cs.host,
		})
		if err != nil {
			return nil, err
		}
		if spec.Linux != nil && spec.Linux.Resources != nil {
			if c.shim == nil {
				return nil, errdefs.Unavailable(fmt.Errorf("update resources of container %s: its shim is not connected", c.rec.ID))
			}
			res := *spec.Linux.Resources
			res.Devices = nil // device rules are not updated
			if err := c.shim.Update(ctx, &res); err != nil {
				return nil, fmt.Errorf("update resources of container %s with %s: %w", c.rec.ID, c.rec.Runtime, err)
			}
		}
	}
	c.rec.HostConfig = &hc
	if err := c.save(); err != nil {
		return nil, err
	}
	e.emit("container", "update", c.rec.ID, c.attributesLocked())
	return []string{}, nil
}

// mergeResources sets in dst the resources upd sets (non-zero fields).
func mergeResources(dst *container.Resources, upd container.Resources) {
	if upd.BlkioWeight != 0 {
		dst.BlkioWeight = upd.BlkioWeight
	}
	if upd.CPUShares != 0 {
		dst.CPUShares = upd.CPUShares
	}
	if upd.CPUPeriod != 0 {
		dst.CPUPeriod = upd.CPUPeriod
	}
	if upd.CPUQuota != 0 {
		dst.CPUQuota = upd.CPUQuota
	}
	if upd.NanoCPUs != 0 {
		dst.NanoCPUs = upd.NanoCPUs
		dst.CPUPeriod, dst.CPUQuota = 0, 0
	}
	if upd.CpusetCpus != "" {
		dst.CpusetCpus = upd.CpusetCpus
	}
	if upd.CpusetMems != "" {
		dst.CpusetMems = upd.CpusetMems
	}
	if upd.Memory != 0 {
		dst.Memory = upd.Memory
		if upd.MemorySwap == 0 && dst.MemorySwap > 0 && dst.MemorySwap < upd.Memory {
			dst.MemorySwap = 0
		}
	}
	if upd.MemorySwap != 0 {
		dst.MemorySwap = upd.MemorySwap
	}
	if upd.MemoryReservation != 0 {
		dst.MemoryReservation = upd.MemoryReservation
	}
	if upd.PidsLimit != nil {
		dst.PidsLimit = upd.PidsLimit
	}
}

// hostMemory is the host's total RAM in bytes.
func hostMemory() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}
