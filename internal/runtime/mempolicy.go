package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// set_mempolicy(2) modes and flags.
var (
	mpolModes = map[specs.MemoryPolicyModeType]uintptr{
		specs.MpolDefault: 0, specs.MpolPreferred: 1, specs.MpolBind: 2, specs.MpolInterleave: 3,
		specs.MpolLocal: 4, specs.MpolPreferredMany: 5, specs.MpolWeightedInterleave: 6,
	}
	mpolFlags = map[specs.MemoryPolicyFlagType]uintptr{
		specs.MpolFStaticNodes: 1 << 15, specs.MpolFRelativeNodes: 1 << 14, specs.MpolFNumaBalancing: 1 << 13,
	}
)

// memPolicy is linux.memoryPolicy, parsed for set_mempolicy(2).
type memPolicy struct {
	mode  uintptr
	nodes []uint64 // node mask, 64 nodes a word
}

// parseMemPolicy checks linux.memoryPolicy; errors name the field.
func parseMemPolicy(p *specs.LinuxMemoryPolicy) (*memPolicy, error) {
	mode, ok := mpolModes[p.Mode]
	if !ok {
		return nil, errdefs.InvalidArgument(fmt.Errorf("memoryPolicy: unknown mode %q", p.Mode))
	}
	mp := &memPolicy{mode: mode}
	for _, f := range p.Flags {
		bit, ok := mpolFlags[f]
		if !ok {
			return nil, errdefs.InvalidArgument(fmt.Errorf("memoryPolicy: unknown flag %q", f))
		}
		mp.mode |= bit
	}
	if p.Nodes != "" {
		for _, part := range strings.Split(p.Nodes, ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.ParseUint(hi, 10, 16)
			}
			if err1 != nil || err2 != nil || b < a {
				return nil, errdefs.InvalidArgument(fmt.Errorf("memoryPolicy: invalid nodes %q", p.Nodes))
			}
			for n := a; n <= b; n++ {
				for uint64(len(mp.nodes)) <= n/64 {
					mp.nodes = append(mp.nodes, 0)
				}
				mp.nodes[n/64] |= 1 << (n % 64)
			}
		}
	}
	needNodes := p.Mode == specs.MpolBind || p.Mode == specs.MpolInterleave ||
		p.Mode == specs.MpolWeightedInterleave || p.Mode == specs.MpolPreferredMany
	if needNodes && len(mp.nodes) == 0 {
		return nil, errdefs.InvalidArgument(fmt.Errorf("memoryPolicy: mode %s needs nodes", p.Mode))
	}
	if (p.Mode == specs.MpolDefault || p.Mode == specs.MpolLocal) && len(mp.nodes) > 0 {
		return nil, errdefs.InvalidArgument(fmt.Errorf("memoryPolicy: mode %s takes no nodes", p.Mode))
	}
	return mp, nil
}

// apply sets the calling thread's memory policy, which execve keeps.
func (mp *memPolicy) apply() error {
	var mask uintptr
	if len(mp.nodes) > 0 {
		mask = uintptr(unsafe.Pointer(&mp.nodes[0]))
	}
	maxnode := uintptr(len(mp.nodes)*64 + 1)
	if _, _, errno := unix.Syscall(unix.SYS_SET_MEMPOLICY, mp.mode, mask, maxnode); errno != 0 {
		return fmt.Errorf("set memory policy: %w", errno)
	}
	return nil
}

// checkIntelRdt refuses linux.intelRdt: Berth does not manage resctrl
// groups, and most hosts (this one too) have no resctrl filesystem.
func checkIntelRdt(r *specs.LinuxIntelRdt) error {
	if r == nil {
		return nil
	}
	if _, err := os.Stat("/sys/fs/resctrl/schemata"); err != nil {
		return errdefs.FailedPrecondition(fmt.Errorf("linux.intelRdt: this host has no resctrl filesystem (Intel RDT is not available or /sys/fs/resctrl is not mounted)"))
	}
	return errdefs.NotImplemented(fmt.Errorf("linux.intelRdt: berth-runtime does not manage resctrl groups"))
}
