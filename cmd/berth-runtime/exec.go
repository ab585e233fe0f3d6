package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func cmdExec(g *globals, args []string) error {
	var o runtime.ExecOpts
	var processFile, cwd, user, apparmor, label string
	var env, gids, caps []string
	var tty, noNewPrivs, ignorePaused bool
	f := newFlags("exec")
	f.str(&processFile, "", "process", "p")
	f.str(&o.ConsoleSocket, "", "console-socket")
	f.str(&o.PidFile, "", "pid-file")
	f.str(&cwd, "", "cwd")
	f.str(&user, "", "user", "u")
	f.str(&apparmor, "", "apparmor")
	f.str(&label, "", "process-label")
	f.list(&env, "env", "e")
	f.list(&gids, "additional-gids", "g")
	f.list(&caps, "cap", "c")
	f.boolean(&tty, "tty", "t")
	f.boolean(&o.Detach, "detach", "d")
	f.boolean(&noNewPrivs, "no-new-privs")
	f.boolean(&ignorePaused, "ignore-paused")
	f.integer(&o.PreserveFDs, "preserve-fds")
	pos, err := f.parseUntilArgs(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("exec: usage: berth-runtime %s", usages["exec"])
	}
	c, err := runtime.Load(g.root, pos[0])
	if err != nil {
		return err
	}
	var p *specs.Process
	if processFile != "" {
		data, err := os.ReadFile(processFile)
		if err != nil {
			return fmt.Errorf("exec: read --process %s: %w", processFile, err)
		}
		p = new(specs.Process)
		if err := json.Unmarshal(data, p); err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("exec: parse --process %s: %w", processFile, err))
		}
	} else {
		if len(pos) < 2 {
			return fmt.Errorf("exec: no command given: usage: berth-runtime %s", usages["exec"])
		}
		// The container's own process is the template, as in runc.
		base := *c.Spec().Process
		p = &base
		p.Args = pos[1:]
		p.Terminal = tty
		p.Env = append(append([]string(nil), p.Env...), env...)
		if cwd != "" {
			p.Cwd = cwd
		}
		if user != "" {
			if err := parseUser(user, &p.User); err != nil {
				return err
			}
		}
		for _, gid := range gids {
			n, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return errdefs.InvalidArgument(fmt.Errorf("exec: invalid --additional-gids %q", gid))
			}
			p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
		}
		if len(caps) > 0 {
			p.Capabilities = withCaps(p.Capabilities, caps)
		}
		if noNewPrivs {
			p.NoNewPrivileges = true
		}
		if apparmor != "" {
			p.ApparmorProfile = apparmor
		}
		if label != "" {
			p.SelinuxLabel = label
		}
	}
	if p.Terminal && o.Detach && o.ConsoleSocket == "" {
		return errdefs.InvalidArgument(fmt.Errorf("exec: --tty with --detach needs --console-socket"))
	}
	o.Process = p
	code, err := c.Exec(ctx(), o)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

// parseUser reads uid[:gid].
func parseUser(s string, u *specs.User) error {
	uid, gid, hasGID := strings.Cut(s, ":")
	n, err := strconv.ParseUint(uid, 10, 32)
	if err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("exec: invalid --user %q: want uid[:gid]", s))
	}
	u.UID = uint32(n)
	if hasGID {
		n, err := strconv.ParseUint(gid, 10, 32)
		if err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("exec: invalid --user %q: want uid[:gid]", s))
		}
		u.GID = uint32(n)
	}
	return nil
}

// withCaps adds capabilities to every set, as runc's --cap does.
func withCaps(c *specs.LinuxCapabilities, add []string) *specs.LinuxCapabilities {
	n := &specs.LinuxCapabilities{}
	if c != nil {
		*n = *c
	}
	for _, set := range []*[]string{&n.Bounding, &n.Effective, &n.Permitted, &n.Inheritable, &n.Ambient} {
		*set = append(append([]string(nil), *set...), add...)
	}
	return n
}
