package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime"
	"github.com/berth-project/berth/internal/runtime/bundle"
	"github.com/berth-project/berth/internal/runtime/process"
	"github.com/berth-project/berth/internal/runtime/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

func createFlags(name string, o *runtime.CreateOpts) *flags {
	f := newFlags(name)
	f.str(&o.Bundle, "", "bundle", "b")
	f.str(&o.PidFile, "", "pid-file")
	f.str(&o.ConsoleSocket, "", "console-socket")
	f.boolean(&o.NoPivot, "no-pivot")
	f.boolean(&o.NoNewKeyring, "no-new-keyring")
	f.integer(&o.PreserveFDs, "preserve-fds")
	return f
}

func cmdCreate(g *globals, args []string) error {
	var o runtime.CreateOpts
	pos, err := createFlags("create", &o).parse(args)
	if err != nil {
		return err
	}
	id, err := needID("create", pos, 0)
	if err != nil {
		return err
	}
	o.SystemdCgroup = g.systemdCgroup
	_, err = runtime.Create(ctx(), g.root, id, o)
	return err
}

func cmdRun(g *globals, args []string) error {
	var o runtime.CreateOpts
	var detach bool
	f := createFlags("run", &o)
	f.boolean(&detach, "detach", "d")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("run", pos, 0)
	if err != nil {
		return err
	}
	o.SystemdCgroup = g.systemdCgroup
	code, err := runtime.Run(ctx(), g.root, id, o, detach, g.warn)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

func load(g *globals, cmd string, args []string, extra int) (*runtime.Container, []string, error) {
	pos, err := newFlags(cmd).parse(args)
	if err != nil {
		return nil, nil, err
	}
	id, err := needID(cmd, pos, extra)
	if err != nil {
		return nil, nil, err
	}
	c, err := runtime.Load(g.root, id)
	return c, pos[1:], err
}

func cmdStart(g *globals, args []string) error {
	c, _, err := load(g, "start", args, 0)
	if err != nil {
		return err
	}
	return c.Start(ctx(), g.warn)
}

func cmdPause(g *globals, args []string) error {
	c, _, err := load(g, "pause", args, 0)
	if err != nil {
		return err
	}
	return c.Pause()
}

func cmdResume(g *globals, args []string) error {
	c, _, err := load(g, "resume", args, 0)
	if err != nil {
		return err
	}
	return c.Resume()
}

// stateOut is what `state` and `list --format json` print: the spec's state
// plus what runc adds, which containerd and Podman read.
type stateOut struct {
	specs.State
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
	Owner   string    `json:"owner"`
}

func describe(c *runtime.Container) stateOut {
	return stateOut{State: c.State(), Rootfs: bundle.RootfsPath(c.Bundle(), c.Spec()), Created: c.Created(), Owner: c.Owner()}
}

func cmdState(g *globals, args []string) error {
	c, _, err := load(g, "state", args, 0)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(describe(c), "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(data))
	return nil
}

func cmdKill(g *globals, args []string) error {
	var all bool
	f := newFlags("kill")
	f.boolean(&all, "all", "a")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("kill", pos, 1)
	if err != nil {
		return err
	}
	name := "SIGTERM"
	if len(pos) == 2 {
		name = pos[1]
	}
	sig, err := runtime.ParseSignal(name)
	if err != nil {
		return err
	}
	c, err := runtime.Load(g.root, id)
	if err != nil {
		return err
	}
	return c.Kill(sig, all)
}

func cmdDelete(g *globals, args []string) error {
	var force bool
	f := newFlags("delete")
	f.boolean(&force, "force", "f")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	id, err := needID("delete", pos, 0)
	if err != nil {
		return err
	}
	c, err := runtime.Load(g.root, id)
	if err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil // as runc: nothing left to delete
		}
		return err
	}
	return c.Delete(ctx(), force, g.warn)
}

func cmdList(g *globals, args []string) error {
	var quiet bool
	format := "table"
	f := newFlags("list")
	f.boolean(&quiet, "quiet", "q")
	f.str(&format, "table", "format", "f")
	if _, err := f.parse(args); err != nil {
		return err
	}
	cs, err := runtime.List(g.root)
	if err != nil {
		return err
	}
	switch {
	case quiet:
		for _, c := range cs {
			fmt.Println(c.ID())
		}
	case format == "json":
		out := make([]stateOut, 0, len(cs))
		for _, c := range cs {
			out = append(out, describe(c))
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	case format == "table":
		w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
		fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
		for _, c := range cs {
			d := describe(c)
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.Pid, d.Status, d.Bundle, d.Created.Format(time.RFC3339Nano), d.Owner)
		}
		return w.Flush()
	default:
		return fmt.Errorf("list: invalid --format %q: want table or json", format)
	}
	return nil
}

func cmdSpec(g *globals, args []string) error {
	var dir string
	var rootless bool
	f := newFlags("spec")
	f.str(&dir, "", "bundle", "b")
	f.boolean(&rootless, "rootless")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if dir == "" {
		dir = "."
	}
	path := filepath.Join(dir, bundle.ConfigName)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("spec: %s already exists: remove it first", path)
	}
	return bundle.Write(dir, bundle.Default(rootless))
}

func cmdFeatures(g *globals, args []string) error {
	yes, no := true, false
	ft := features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  mountOptions,
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"},
			Capabilities: process.KnownCapabilities(),
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &no},
			Seccomp:      seccomp.Features(),
			Apparmor:     &features.Apparmor{Enabled: &yes},
			Selinux:      &features.Selinux{Enabled: &yes},
			IntelRdt:     &features.IntelRdt{Enabled: &no},
			MemoryPolicy: &features.MemoryPolicy{
				Modes: []string{"MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"},
				Flags: []string{"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"},
			},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
		},
		Annotations: map[string]string{
			"org.opencontainers.runtime-spec.features.berth.version": version,
		},
	}
	data, err := json.MarshalIndent(ft, "", "    ")
	if err != nil {
		return err
	}
	fmt.Println(string(data))
	return nil
}

// mountOptions are the mount options berth-runtime understands.
var mountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "lazytime",
	"mand", "noatime", "nodev", "nodiratime", "noexec", "nolazytime", "nomand", "norelatime",
	"nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime",
	"relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime",
	"rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw",
	"rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared",
	"slave", "strictatime", "suid", "symfollow", "sync", "unbindable",
}
