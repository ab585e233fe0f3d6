package process

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// rlimitTypes maps the runtime-spec rlimit names to the kernel's resources.
var rlimitTypes = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// limitString prints an rlimit value, "unlimited" for RLIM_INFINITY.
func limitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// validateRlimits checks the names, duplicates and soft <= hard, and that the
// runtime can set each hard limit: raising a hard limit above the runtime's
// own needs CAP_SYS_RESOURCE in the initial user namespace, and RLIMIT_NOFILE
// can never exceed fs.nr_open.
func validateRlimits(rls []specs.POSIXRlimit) error {
	if len(rls) == 0 {
		return nil
	}
	sysResource, err := hasEffective(capability.CAP_SYS_RESOURCE)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(rls))
	for _, rl := range rls {
		res, ok := rlimitTypes[rl.Type]
		if !ok {
			return errdefs.InvalidArgument(fmt.Errorf("process.rlimits: unknown rlimit type %q", rl.Type))
		}
		if seen[rl.Type] {
			return errdefs.InvalidArgument(fmt.Errorf("process.rlimits: %s appears more than once", rl.Type))
		}
		seen[rl.Type] = true
		if rl.Soft > rl.Hard {
			return errdefs.InvalidArgument(fmt.Errorf("process.rlimits: %s soft limit %s is above its hard limit %s", rl.Type, limitString(rl.Soft), limitString(rl.Hard)))
		}
		if res == unix.RLIMIT_NOFILE {
			nrOpen, err := readNrOpen()
			if err != nil {
				return err
			}
			if rl.Hard > nrOpen {
				return errdefs.InvalidArgument(fmt.Errorf("process.rlimits: RLIMIT_NOFILE hard limit %s (soft %s) is above the kernel's fs.nr_open %d", limitString(rl.Hard), limitString(rl.Soft), nrOpen))
			}
		}
		var host unix.Rlimit
		if err := unix.Prlimit(0, res, nil, &host); err != nil {
			return fmt.Errorf("getrlimit %s: %w", rl.Type, err)
		}
		if rl.Hard > host.Max && !sysResource {
			return errdefs.FailedPrecondition(fmt.Errorf("process.rlimits: %s hard limit %s (soft %s) is above the host's hard limit %s, and raising it needs CAP_SYS_RESOURCE, which this runtime lacks",
				rl.Type, limitString(rl.Hard), limitString(rl.Soft), limitString(host.Max)))
		}
	}
	return nil
}

// readNrOpen reads the kernel's ceiling for RLIMIT_NOFILE.
func readNrOpen() (uint64, error) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, fmt.Errorf("read fs.nr_open: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse fs.nr_open %q: %w", b, err)
	}
	return n, nil
}

// applyRlimits sets each rlimit on the calling process. It goes through
// prlimit(2) as wrapped by x/sys, which also tells the Go runtime not to
// restore its own original RLIMIT_NOFILE at execve.
func applyRlimits(rls []specs.POSIXRlimit) error {
	for _, rl := range rls {
		res, ok := rlimitTypes[rl.Type]
		if !ok {
			return errdefs.InvalidArgument(fmt.Errorf("process.rlimits: unknown rlimit type %q", rl.Type))
		}
		lim := unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := unix.Prlimit(0, res, &lim, nil); err != nil {
			var cur unix.Rlimit
			if errors.Is(err, unix.EPERM) && unix.Prlimit(0, res, nil, &cur) == nil && rl.Hard > cur.Max {
				return fmt.Errorf("setrlimit %s soft %s hard %s: %w (the current hard limit is %s; raising it needs CAP_SYS_RESOURCE)",
					rl.Type, limitString(rl.Soft), limitString(rl.Hard), err, limitString(cur.Max))
			}
			return fmt.Errorf("setrlimit %s soft %s hard %s: %w", rl.Type, limitString(rl.Soft), limitString(rl.Hard), err)
		}
	}
	return nil
}
