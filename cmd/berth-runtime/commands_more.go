package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cmdPs is runc's `ps [--format table|json] ID [ps options]`: flags end at
// the container ID, and whatever follows it goes to the host's ps.
func cmdPs(g *globals, args []string) error {
	format := "table"
	f := newFlags("ps")
	f.str(&format, "table", "format", "f")
	if err := f.fs.Parse(args); err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	rest := f.fs.Args()
	if len(rest) < 1 {
		return fmt.Errorf("ps: usage: berth-runtime %s", usages["ps"])
	}
	if format != "table" && format != "json" {
		return errdefs.InvalidArgument(fmt.Errorf("ps: invalid --format %q: want table or json", format))
	}
	c, err := runtime.Load(g.root, rest[0])
	if err != nil {
		return err
	}
	pids, err := c.Processes()
	if err != nil {
		return err
	}
	if format == "json" {
		return json.NewEncoder(os.Stdout).Encode(pids)
	}
	out, err := runtime.PsTable(ctx(), pids, rest[1:])
	if err != nil {
		return fmt.Errorf("ps %s: %w", c.ID(), err)
	}
	_, err = io.WriteString(os.Stdout, out)
	return err
}

// updateFlags are `update`'s flags as given; "" is "not given".
type updateFlags struct {
	resources                                     string
	memory, reservation, swap                     string
	kernel, kernelTCP                             string
	shares, quota, period, burst                  string
	rtPeriod, rtRuntime, idle                     string
	cpus, mems                                    string
	pids, blkioWeight, l3CacheSchema, memBwSchema string
}

func newUpdateFlags(u *updateFlags) *flags {
	f := newFlags("update")
	f.str(&u.resources, "", "resources", "r")
	f.str(&u.memory, "", "memory")
	f.str(&u.reservation, "", "memory-reservation")
	f.str(&u.swap, "", "memory-swap")
	f.str(&u.kernel, "", "kernel-memory")
	f.str(&u.kernelTCP, "", "kernel-memory-tcp")
	f.str(&u.shares, "", "cpu-share", "cpu-shares")
	f.str(&u.quota, "", "cpu-quota")
	f.str(&u.period, "", "cpu-period")
	f.str(&u.burst, "", "cpu-burst")
	f.str(&u.rtPeriod, "", "cpu-rt-period")
	f.str(&u.rtRuntime, "", "cpu-rt-runtime")
	f.str(&u.idle, "", "cpu-idle")
	f.str(&u.cpus, "", "cpuset-cpus")
	f.str(&u.mems, "", "cpuset-mems")
	f.str(&u.pids, "", "pids-limit")
	f.str(&u.blkioWeight, "", "blkio-weight")
	f.str(&u.l3CacheSchema, "", "l3-cache-schema")
	f.str(&u.memBwSchema, "", "mem-bw-schema")
	return f
}

// resourcesFromFlags builds the resources an update asks for, as runc: from
// the JSON file (or standard input for "-") when --resources is given, and
// then every other resource flag is ignored; else from the flags. warn
// hears about flags runc ignores.
func resourcesFromFlags(u *updateFlags, stdin io.Reader, warn func(error)) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{}, CPU: &specs.LinuxCPU{}, BlockIO: &specs.LinuxBlockIO{}, Pids: &specs.LinuxPids{}}
	if u.resources != "" {
		in := stdin
		if u.resources != "-" {
			f, err := os.Open(u.resources)
			if err != nil {
				return nil, fmt.Errorf("update: open resources: %w", err)
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(in).Decode(r); err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("update: parse resources %s: %w", u.resources, err))
		}
		return r, nil
	}
	if u.blkioWeight != "" {
		w, err := strconv.ParseUint(u.blkioWeight, 10, 16)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid value for blkio-weight: %w", err))
		}
		if w != 0 {
			v := uint16(w)
			r.BlockIO.Weight = &v
		}
	}
	r.CPU.Cpus, r.CPU.Mems = u.cpus, u.mems
	if u.idle != "" {
		v, err := strconv.ParseInt(u.idle, 10, 64)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid value for cpu-idle: %w", err))
		}
		r.CPU.Idle = &v
	}
	for _, p := range []struct {
		name, val string
		dst       **uint64
	}{
		{"cpu-burst", u.burst, &r.CPU.Burst},
		{"cpu-period", u.period, &r.CPU.Period},
		{"cpu-rt-period", u.rtPeriod, &r.CPU.RealtimePeriod},
		{"cpu-share", u.shares, &r.CPU.Shares},
	} {
		if p.val != "" {
			v, err := strconv.ParseUint(p.val, 10, 64)
			if err != nil {
				return nil, errdefs.InvalidArgument(fmt.Errorf("invalid value for %s: %w", p.name, err))
			}
			*p.dst = &v
		}
	}
	for _, p := range []struct {
		name, val string
		dst       **int64
	}{
		{"cpu-quota", u.quota, &r.CPU.Quota},
		{"cpu-rt-runtime", u.rtRuntime, &r.CPU.RealtimeRuntime},
	} {
		if p.val != "" {
			v, err := strconv.ParseInt(p.val, 10, 64)
			if err != nil {
				return nil, errdefs.InvalidArgument(fmt.Errorf("invalid value for %s: %w", p.name, err))
			}
			*p.dst = &v
		}
	}
	for _, p := range []struct {
		name, val string
		dst       **int64
	}{
		{"memory", u.memory, &r.Memory.Limit},
		{"memory-swap", u.swap, &r.Memory.Swap},
		{"memory-reservation", u.reservation, &r.Memory.Reservation},
	} {
		if p.val != "" {
			v, err := runtime.ParseMemory(p.val)
			if err != nil {
				return nil, fmt.Errorf("invalid value for %s: %w", p.name, err)
			}
			*p.dst = &v
		}
	}
	for _, p := range []struct{ name, val string }{{"kernel-memory", u.kernel}, {"kernel-memory-tcp", u.kernelTCP}} {
		if p.val != "" {
			warn(fmt.Errorf("setting --%s is ignored: kernel memory limits are obsolete", p.name))
		}
	}
	if u.pids != "" {
		v, err := strconv.ParseInt(u.pids, 10, 64)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("invalid value for pids-limit: %w", err))
		}
		// As runc: 0 leaves the limit as it is; a negative one lifts it.
		if v != 0 {
			r.Pids.Limit = &v
		}
	}
	return r, nil
}

func cmdUpdate(g *globals, args []string) error {
	var u updateFlags
	pos, err := newUpdateFlags(&u).parse(args)
	if err != nil {
		return err
	}
	id, err := needID("update", pos, 0)
	if err != nil {
		return err
	}
	c, err := runtime.Load(g.root, id)
	if err != nil {
		return err
	}
	r, err := resourcesFromFlags(&u, os.Stdin, g.warn)
	if err != nil {
		return err
	}
	if u.l3CacheSchema != "" || u.memBwSchema != "" {
		return errdefs.NotImplemented(fmt.Errorf("update %s: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by berth-runtime", id))
	}
	return c.Update(r)
}

func cmdEvents(g *globals, args []string) error {
	var stats bool
	f := newFlags("events")
	f.boolean(&stats, "stats")
	interval := 5 * time.Second
	f.fs.DurationVar(&interval, "interval", 5*time.Second, "")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("events", pos, 0)
	if err != nil {
		return err
	}
	c, err := runtime.Load(g.root, id)
	if err != nil {
		return err
	}
	if interval <= 0 {
		return errdefs.InvalidArgument(errors.New("events: duration interval must be greater than 0"))
	}
	enc := json.NewEncoder(os.Stdout)
	if stats {
		if c.Status() == runtime.StatusStopped {
			return errdefs.FailedPrecondition(fmt.Errorf("container with id %s is not running", id))
		}
		s, err := c.Stats()
		if err != nil {
			return err
		}
		return enc.Encode(runtime.Event{Type: "stats", ID: id, Data: s})
	}
	return c.Events(ctx(), interval, func(e runtime.Event) error { return enc.Encode(e) }, g.warn)
}

func cmdCheckpoint(g *globals, args []string) error {
	var o runtime.CheckpointOpts
	var ignored bool
	f := newFlags("checkpoint")
	f.str(&o.ImagePath, "", "image-path")
	f.str(&o.WorkPath, "", "work-path")
	f.str(&o.ParentPath, "", "parent-path")
	f.str(&o.PageServer, "", "page-server")
	f.str(&o.ManageCgroupsMode, "", "manage-cgroups-mode")
	f.boolean(&o.LeaveRunning, "leave-running")
	f.boolean(&o.TCPEstablished, "tcp-established")
	f.boolean(&o.ExtUnixSk, "ext-unix-sk")
	f.boolean(&o.ShellJob, "shell-job")
	f.boolean(&o.FileLocks, "file-locks")
	f.boolean(&o.PreDump, "pre-dump")
	f.boolean(&o.AutoDedup, "auto-dedup")
	f.boolean(&o.LazyPages, "lazy-pages")
	f.boolean(&ignored, "tcp-skip-in-flight", "link-remap")
	f.integer(&o.StatusFd, "status-fd")
	f.list(&o.EmptyNS, "empty-ns")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("checkpoint", pos, 0)
	if err != nil {
		return err
	}
	c, err := runtime.Load(g.root, id)
	if err != nil {
		return err
	}
	return c.Checkpoint(ctx(), g.criu, o)
}

func cmdRestore(g *globals, args []string) error {
	var o runtime.RestoreOpts
	f := newFlags("restore")
	f.str(&o.Bundle, "", "bundle", "b")
	f.str(&o.PidFile, "", "pid-file")
	f.str(&o.ConsoleSocket, "", "console-socket")
	f.str(&o.ImagePath, "", "image-path")
	f.str(&o.WorkPath, "", "work-path")
	f.str(&o.ManageCgroupsMode, "", "manage-cgroups-mode")
	f.str(&o.LSMProfile, "", "lsm-profile")
	f.str(&o.LSMMountContext, "", "lsm-mount-context")
	f.boolean(&o.Detach, "detach", "d")
	f.boolean(&o.TCPEstablished, "tcp-established")
	f.boolean(&o.ExtUnixSk, "ext-unix-sk")
	f.boolean(&o.ShellJob, "shell-job")
	f.boolean(&o.FileLocks, "file-locks")
	f.boolean(&o.NoSubreaper, "no-subreaper")
	f.boolean(&o.NoPivot, "no-pivot")
	f.boolean(&o.AutoDedup, "auto-dedup")
	f.boolean(&o.LazyPages, "lazy-pages")
	f.list(&o.EmptyNS, "empty-ns")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("restore", pos, 0)
	if err != nil {
		return err
	}
	o.SystemdCgroup = g.systemdCgroup
	code, err := runtime.Restore(ctx(), g.root, id, g.criu, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}
