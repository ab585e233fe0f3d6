package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ParseMemory parses a memory size as runc's `update` does: "-1" is no
// limit; anything else is a number of bytes with an optional binary unit
// (k, m, g, t, p, each 1024 times the last, with optional "i" and "b":
// "512", "100m", "1.5g", "64MiB").
func ParseMemory(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	v, err := units.RAMInBytes(s)
	if err != nil {
		return 0, errdefs.InvalidArgument(fmt.Errorf("invalid memory size %q: %w", s, err))
	}
	if v < 0 {
		return 0, errdefs.InvalidArgument(fmt.Errorf("invalid memory size %q: negative", s))
	}
	return v, nil
}

// Update changes the resource limits of a container that is not stopped,
// as runc's `update` does: the fields r sets (memory limit, reservation,
// swap and checkBeforeUpdate; every CPU field; the block I/O weight; the
// pids limit; unified entries) are merged into the container's recorded
// resources, the merged values are written to its cgroup, and the merged
// configuration is saved so that later reads see it. Fields of r that
// runc's update does not change (devices, throttles, hugepages, network,
// rdma) are ignored. If the cgroup refuses a value, the previous values are
// written back and nothing is saved.
func (c *Container) Update(r *specs.LinuxResources) error {
	unlock, err := lockDir(c.dir)
	if err != nil {
		return fmt.Errorf("update %s: lock: %w", c.s.ID, err)
	}
	defer unlock()
	if err := c.reloadState(); err != nil {
		return fmt.Errorf("update %s: %w", c.s.ID, err)
	}
	if st := c.Status(); st == StatusStopped {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot update container %s: it is stopped", c.s.ID))
	}
	if len(c.s.CgroupPaths) == 0 {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot update container %s: it has no cgroup", c.s.ID))
	}
	if c.s.Spec.Linux == nil {
		c.s.Spec.Linux = &specs.Linux{}
	}
	old := c.s.Spec.Linux.Resources
	merged, err := MergeResources(old, r)
	if err != nil {
		return fmt.Errorf("update %s: %w", c.s.ID, err)
	}
	cg := cgroups.Load(c.s.CgroupPaths)
	if err := cg.Set(updatable(merged, r.Unified)); err != nil {
		// Put back what was there, as far as the cgroup takes it.
		if old != nil {
			_ = cg.Set(updatable(old, nil))
		}
		return fmt.Errorf("update %s: %w", c.s.ID, err)
	}
	c.s.Spec.Linux.Resources = merged
	if err := c.save(); err != nil {
		return fmt.Errorf("update %s: %w", c.s.ID, err)
	}
	return nil
}

// reloadState re-reads the state file, so that an operation holding the lock
// works on the latest saved state.
func (c *Container) reloadState() error {
	data, err := os.ReadFile(filepath.Join(c.dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errdefs.NotFound(fmt.Errorf("container %s does not exist", c.s.ID))
		}
		return fmt.Errorf("read state: %w", err)
	}
	var s saved
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("parse state: %w", err)
	}
	c.s = s
	return nil
}

// MergeResources returns a copy of old (which may be nil) with the fields r
// sets replaced, following runc's update: memory limit, reservation, swap
// and checkBeforeUpdate; every CPU field (cpus and mems when not empty);
// the block I/O weight; the pids limit; and the unified entries r names. A
// memory limit of -1 with no swap given lifts the swap limit too.
func MergeResources(old, r *specs.LinuxResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if old != nil {
		data, err := json.Marshal(old)
		if err != nil {
			return nil, fmt.Errorf("copy resources: %w", err)
		}
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("copy resources: %w", err)
		}
	}
	if r == nil {
		return out, nil
	}
	if m := r.Memory; m != nil {
		if out.Memory == nil {
			out.Memory = &specs.LinuxMemory{}
		}
		mergeField(&out.Memory.Limit, m.Limit)
		mergeField(&out.Memory.Reservation, m.Reservation)
		mergeField(&out.Memory.Swap, m.Swap)
		mergeField(&out.Memory.CheckBeforeUpdate, m.CheckBeforeUpdate)
		if m.Limit != nil && *m.Limit == -1 && m.Swap == nil {
			unlimited := int64(-1)
			out.Memory.Swap = &unlimited
		}
	}
	if cpu := r.CPU; cpu != nil {
		if out.CPU == nil {
			out.CPU = &specs.LinuxCPU{}
		}
		mergeField(&out.CPU.Shares, cpu.Shares)
		mergeField(&out.CPU.Quota, cpu.Quota)
		mergeField(&out.CPU.Burst, cpu.Burst)
		mergeField(&out.CPU.Period, cpu.Period)
		mergeField(&out.CPU.RealtimeRuntime, cpu.RealtimeRuntime)
		mergeField(&out.CPU.RealtimePeriod, cpu.RealtimePeriod)
		mergeField(&out.CPU.Idle, cpu.Idle)
		if cpu.Cpus != "" {
			out.CPU.Cpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			out.CPU.Mems = cpu.Mems
		}
	}
	if b := r.BlockIO; b != nil && b.Weight != nil {
		if out.BlockIO == nil {
			out.BlockIO = &specs.LinuxBlockIO{}
		}
		mergeField(&out.BlockIO.Weight, b.Weight)
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		out.Pids = &specs.LinuxPids{Limit: pointerTo(*p.Limit)}
	}
	if len(r.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		for k, v := range r.Unified {
			out.Unified[k] = v
		}
	}
	return out, nil
}

// mergeField replaces *dst with a copy of *v when v is given.
func mergeField[T any](dst **T, v *T) {
	if v != nil {
		*dst = pointerTo(*v)
	}
}

func pointerTo[T any](v T) *T { return &v }

// updatable is the part of r that update writes to the cgroup: the memory
// limits it changes (with the current ones that the kernel checks them
// against), CPU, the block I/O weight, pids, and the unified entries given
// in this update.
func updatable(r *specs.LinuxResources, unified map[string]string) *specs.LinuxResources {
	out := &specs.LinuxResources{CPU: r.CPU, Pids: r.Pids, Unified: unified}
	if m := r.Memory; m != nil {
		out.Memory = &specs.LinuxMemory{Limit: m.Limit, Reservation: m.Reservation, Swap: m.Swap, CheckBeforeUpdate: m.CheckBeforeUpdate}
	}
	if r.BlockIO != nil && r.BlockIO.Weight != nil {
		out.BlockIO = &specs.LinuxBlockIO{Weight: r.BlockIO.Weight}
	}
	return out
}
