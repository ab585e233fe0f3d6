package specgen

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities is Docker's capability set for a container that is
// not privileged.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// knownCapabilities are the names of every capability Berth knows.
func knownCapabilities() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// Capabilities is the capability set for a container: all the host's
// grantable capabilities when privileged, else Docker's defaults changed by
// capAdd and capDrop. Names may be given with or without CAP_ and in any
// case; "ALL" in capAdd adds every grantable capability except those
// dropped, "ALL" in capDrop starts from none.
func Capabilities(hostCaps, capAdd, capDrop []string, privileged bool) ([]string, error) {
	if hostCaps == nil {
		hostCaps = knownCapabilities()
	}
	if privileged {
		return slices.Clone(hostCaps), nil
	}
	if len(capAdd) == 0 && len(capDrop) == 0 {
		return DefaultCapabilities(), nil
	}
	drop, err := normalizeCaps(capDrop, hostCaps)
	if err != nil {
		return nil, err
	}
	add, err := normalizeCaps(capAdd, hostCaps)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case slices.Contains(add, "ALL"):
		for _, c := range hostCaps {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drop, "ALL"):
		caps = add
	default:
		for _, c := range DefaultCapabilities() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		caps = append(caps, add...)
	}
	var out []string
	for _, c := range caps {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func normalizeCaps(in, hostCaps []string) ([]string, error) {
	known := knownCapabilities()
	var out []string
	for _, c := range in {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "ALL" {
			out = append(out, c)
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(known, c) {
			return nil, invalid("unknown capability: %q", c)
		}
		if !slices.Contains(hostCaps, c) {
			return nil, invalid("capability not supported by your kernel or not available in the current environment: %q", c)
		}
		out = append(out, c)
	}
	return out, nil
}

func setCapabilities(s *specs.Spec, in *Input, hc *container.HostConfig) error {
	caps, err := Capabilities(in.Host.Capabilities, hc.CapAdd, hc.CapDrop, hc.Privileged)
	if err != nil {
		return err
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	return nil
}

// SecurityOpts are the parsed --security-opt values.
type SecurityOpts struct {
	NoNewPrivileges bool
	// SeccompProfile is "" (the default profile), "unconfined", "builtin"
	// or a profile's JSON.
	SeccompProfile  string
	AppArmorProfile string
	// WritableCgroups asks for a writable /sys/fs/cgroup.
	WritableCgroups *bool
	// LabelDisable is label=disable; SELinux labels are never set by Berth.
	LabelDisable bool
}

// Seccomp profile names with a meaning of their own.
const (
	SeccompUnconfined = "unconfined"
	SeccompBuiltin    = "builtin"
)

// ParseSecurityOpts parses --security-opt values as Docker does:
// no-new-privileges[=bool], seccomp=unconfined|builtin|<profile JSON>,
// apparmor=<profile>, label=disable|user:|role:|type:|level:|filetype:...,
// writable-cgroups[=bool]; "key:value" is accepted for "key=value".
func ParseSecurityOpts(opts []string) (SecurityOpts, error) {
	var so SecurityOpts
	for _, opt := range opts {
		switch opt {
		case "no-new-privileges":
			so.NoNewPrivileges = true
			continue
		case "writable-cgroups":
			t := true
			so.WritableCgroups = &t
			continue
		case "disable":
			so.LabelDisable = true
			continue
		}
		var k, v string
		var ok bool
		if strings.Contains(opt, "=") {
			k, v, ok = strings.Cut(opt, "=")
		} else if strings.Contains(opt, ":") {
			k, v, ok = strings.Cut(opt, ":")
		}
		if !ok {
			return so, invalid("invalid --security-opt 1: %q", opt)
		}
		switch k {
		case "label":
			if err := checkLabelOpt(v); err != nil {
				return so, err
			}
			if v == "disable" {
				so.LabelDisable = true
			}
		case "apparmor":
			so.AppArmorProfile = v
		case "seccomp":
			so.SeccompProfile = v
		case "no-new-privileges":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
			so.NoNewPrivileges = b
		case "writable-cgroups":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return so, invalid("invalid --security-opt 2: %q", opt)
			}
			so.WritableCgroups = &b
		default:
			return so, invalid("invalid --security-opt 2: %q", opt)
		}
	}
	return so, nil
}

func checkLabelOpt(v string) error {
	if v == "disable" || v == "nested" {
		return nil
	}
	k, _, ok := strings.Cut(v, ":")
	switch {
	case ok && (k == "user" || k == "role" || k == "type" || k == "level" || k == "filetype"):
		return nil
	}
	return invalid("bad label option %q, valid options 'disable' or 'user, role, level, type, filetype' followed by ':' and a value", v)
}

// setSeccomp applies the seccomp profile for the capabilities already in
// s: none for privileged containers or seccomp=unconfined, the given JSON
// profile, else Docker's default profile.
func setSeccomp(s *specs.Spec, hc *container.HostConfig, so SecurityOpts) error {
	if so.SeccompProfile == SeccompUnconfined || hc.Privileged {
		return nil
	}
	var err error
	switch so.SeccompProfile {
	case "", SeccompBuiltin:
		s.Linux.Seccomp, err = seccomp.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("default seccomp profile: %w", err)
		}
	default:
		s.Linux.Seccomp, err = seccomp.LoadProfile(so.SeccompProfile, s)
		if err != nil {
			return errdefs.InvalidArgument(fmt.Errorf("seccomp profile from --security-opt: %w", err))
		}
	}
	return nil
}

// setAppArmor sets the AppArmor profile on a host that enforces AppArmor:
// the requested one, "unconfined" for privileged containers, else the
// host's default. A profile asked for on a host without AppArmor is an
// error rather than a silent no-op.
func setAppArmor(s *specs.Spec, in *Input, hc *container.HostConfig, so SecurityOpts) error {
	if !in.Host.AppArmor {
		if so.AppArmorProfile != "" && so.AppArmorProfile != "unconfined" {
			return errdefs.FailedPrecondition(fmt.Errorf("apparmor profile %q requested, but AppArmor is not enabled on this host", so.AppArmorProfile))
		}
		return nil
	}
	switch {
	case so.AppArmorProfile != "":
		s.Process.ApparmorProfile = so.AppArmorProfile
	case hc.Privileged:
		s.Process.ApparmorProfile = "unconfined"
	default:
		s.Process.ApparmorProfile = in.Host.AppArmorProfile
	}
	return nil
}
