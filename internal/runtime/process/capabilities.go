package process

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// capName is the runtime-spec spelling of c: "CAP_" and the upper-case name.
func capName(c capability.Cap) string {
	return "CAP_" + strings.ToUpper(c.String())
}

// knownCaps maps every capability name the library knows to its number.
func knownCaps() map[string]capability.Cap {
	m := make(map[string]capability.Cap)
	for _, c := range capability.ListKnown() {
		m[capName(c)] = c
	}
	return m
}

// KnownCapabilities lists, sorted by number, every capability name that both
// this kernel and the capability library know ("CAP_CHOWN", ...). When the
// kernel's last capability cannot be read it lists what the library knows.
func KnownCapabilities() []string {
	caps, err := capability.ListSupported()
	if err != nil {
		caps = capability.ListKnown()
	}
	sort.Slice(caps, func(i, j int) bool { return caps[i] < caps[j] })
	names := make([]string, 0, len(caps))
	for _, c := range caps {
		names = append(names, capName(c))
	}
	return names
}

// GrantableCapabilities lists, sorted by number, the capabilities this
// runtime can give a container that shares its user namespace: those in its
// own bounding set. This is what "all capabilities" means on this host (a
// privileged container); Validate refuses any other.
func GrantableCapabilities() ([]string, error) {
	own, err := ownCaps()
	if err != nil {
		return nil, err
	}
	var names []string
	for i := 0; i < 64; i++ {
		if own.bounding&(1<<uint(i)) != 0 {
			names = append(names, capName(capability.Cap(i)))
		}
	}
	return names, nil
}

// capSets is a process's five capability sets, parsed into bit masks.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// parseCapList turns the names of one set into a mask. Unknown names, and
// names this kernel does not support, are errors naming the set and the name.
func parseCapList(set string, names []string, known map[string]capability.Cap, last capability.Cap) (uint64, error) {
	var mask uint64
	for _, n := range names {
		c, ok := known[n]
		if !ok {
			return 0, errdefs.InvalidArgument(fmt.Errorf("process.capabilities.%s: unknown capability %q", set, n))
		}
		if c > last {
			return 0, errdefs.InvalidArgument(fmt.Errorf("process.capabilities.%s: capability %s is not supported by this kernel (last capability is %s)", set, n, capName(last)))
		}
		mask |= 1 << uint(c)
	}
	return mask, nil
}

// parseCaps parses all five sets of lc.
func parseCaps(lc *specs.LinuxCapabilities) (capSets, error) {
	var s capSets
	last, err := capability.LastCap()
	if err != nil {
		return s, fmt.Errorf("read the kernel's last capability: %w", err)
	}
	known := knownCaps()
	for _, f := range []struct {
		set   string
		names []string
		dst   *uint64
	}{
		{"bounding", lc.Bounding, &s.bounding},
		{"effective", lc.Effective, &s.effective},
		{"permitted", lc.Permitted, &s.permitted},
		{"inheritable", lc.Inheritable, &s.inheritable},
		{"ambient", lc.Ambient, &s.ambient},
	} {
		if *f.dst, err = parseCapList(f.set, f.names, known, last); err != nil {
			return s, err
		}
	}
	return s, nil
}

// maskNames lists the capability names of the bits set in mask.
func maskNames(mask uint64) string {
	var names []string
	for i := 0; i < 64; i++ {
		if mask&(1<<uint(i)) != 0 {
			names = append(names, capName(capability.Cap(i)))
		}
	}
	return strings.Join(names, ", ")
}

// validateCaps checks the sets of lc against each other and, unless
// fullBounding, against the runtime's own bounding set: a capability the
// runtime cannot hold cannot be given to the container either. fullBounding
// is for a container in a new user namespace, whose process starts with a
// full bounding set in that namespace.
func validateCaps(lc *specs.LinuxCapabilities, fullBounding bool) error {
	if lc == nil {
		return nil
	}
	s, err := parseCaps(lc)
	if err != nil {
		return err
	}
	if !fullBounding {
		own, err := ownCaps()
		if err != nil {
			return err
		}
		for _, f := range []struct {
			set  string
			mask uint64
		}{
			{"bounding", s.bounding}, {"effective", s.effective}, {"permitted", s.permitted},
			{"inheritable", s.inheritable}, {"ambient", s.ambient},
		} {
			if missing := f.mask &^ own.bounding; missing != 0 {
				return errdefs.FailedPrecondition(fmt.Errorf("process.capabilities.%s: %s not in the runtime's own bounding set (CapBnd %016x), so the container cannot be given it", f.set, plural(missing), own.bounding))
			}
		}
	}
	if extra := s.effective &^ s.permitted; extra != 0 {
		return errdefs.InvalidArgument(fmt.Errorf("process.capabilities: effective %s not in the permitted set (the kernel requires effective to be a subset of permitted)", plural(extra)))
	}
	if extra := s.ambient &^ (s.permitted & s.inheritable); extra != 0 {
		return errdefs.InvalidArgument(fmt.Errorf("process.capabilities: ambient %s not in both the permitted and inheritable sets (the kernel requires that to raise an ambient capability)", plural(extra)))
	}
	return nil
}

// plural names the capabilities in mask followed by "is" or "are".
func plural(mask uint64) string {
	n := 0
	for m := mask; m != 0; m &= m - 1 {
		n++
	}
	if n == 1 {
		return maskNames(mask) + " is"
	}
	return maskNames(mask) + " are"
}

// ownCaps reads the calling thread's capability sets.
func ownCaps() (capSets, error) {
	var s capSets
	c, err := capability.NewPid2(0)
	if err != nil {
		return s, fmt.Errorf("read the runtime's capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return s, fmt.Errorf("read the runtime's capabilities: %w", err)
	}
	last, err := capability.LastCap()
	if err != nil {
		return s, fmt.Errorf("read the kernel's last capability: %w", err)
	}
	for i := capability.Cap(0); i <= last; i++ {
		bit := uint64(1) << uint(i)
		if c.Get(capability.BOUNDING, i) {
			s.bounding |= bit
		}
		if c.Get(capability.EFFECTIVE, i) {
			s.effective |= bit
		}
		if c.Get(capability.PERMITTED, i) {
			s.permitted |= bit
		}
		if c.Get(capability.INHERITABLE, i) {
			s.inheritable |= bit
		}
		if c.Get(capability.AMBIENT, i) {
			s.ambient |= bit
		}
	}
	return s, nil
}

// hasEffective reports whether the calling thread has c in its effective set.
func hasEffective(c capability.Cap) (bool, error) {
	own, err := ownCaps()
	if err != nil {
		return false, err
	}
	return own.effective&(1<<uint(c)) != 0, nil
}

// dropBounding lowers every capability of the calling thread's bounding set
// that is not in keep. It needs CAP_SETPCAP, so it runs before the uid change.
func dropBounding(keep uint64) error {
	last, err := capability.LastCap()
	if err != nil {
		return fmt.Errorf("read the kernel's last capability: %w", err)
	}
	for i := capability.Cap(0); i <= last; i++ {
		if keep&(1<<uint(i)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from the bounding set: %w", capName(i), err)
		}
	}
	return nil
}

// setCaps sets the calling thread's effective, permitted and inheritable sets
// to exactly those of s, then its ambient set.
func setCaps(s capSets) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	c.Clear(capability.CAPS)
	for i := capability.Cap(0); i < 64; i++ {
		bit := uint64(1) << uint(i)
		if s.effective&bit != 0 {
			c.Set(capability.EFFECTIVE, i)
		}
		if s.permitted&bit != 0 {
			c.Set(capability.PERMITTED, i)
		}
		if s.inheritable&bit != 0 {
			c.Set(capability.INHERITABLE, i)
		}
	}
	if err := c.Apply(capability.CAPS); err != nil {
		if own, oerr := ownCaps(); oerr == nil && errors.Is(err, unix.EPERM) {
			if missing := (s.permitted | s.effective) &^ own.permitted; missing != 0 {
				return fmt.Errorf("capset: %s not held by this process (CapPrm %016x): %w", plural(missing), own.permitted, err)
			}
			if missing := s.inheritable &^ (own.inheritable | own.bounding); missing != 0 {
				return fmt.Errorf("capset: inheritable %s outside the bounding set (CapBnd %016x): %w", plural(missing), own.bounding, err)
			}
		}
		return fmt.Errorf("capset effective [%s] permitted [%s] inheritable [%s]: %w",
			maskNames(s.effective), maskNames(s.permitted), maskNames(s.inheritable), err)
	}
	if err := capability.ResetAmbient(); err != nil && !(errors.Is(err, unix.EINVAL) && s.ambient == 0) {
		return fmt.Errorf("clear the ambient capability set: %w", err)
	}
	for i := capability.Cap(0); i < 64; i++ {
		if s.ambient&(1<<uint(i)) == 0 {
			continue
		}
		if err := capability.SetAmbient(true, i); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("raise ambient capability %s: %w (it must be in both the permitted and inheritable sets)", capName(i), err)
			}
			return fmt.Errorf("raise ambient capability %s: %w", capName(i), err)
		}
	}
	return nil
}
