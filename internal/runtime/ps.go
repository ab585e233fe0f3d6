package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/cgroups"
)

// Processes returns the host PIDs of every process in the container's
// cgroup, sorted, as `ps --format json` prints them. A stopped container
// whose cgroup is gone has none; like runc, a stopped container is not an
// error, since processes it left behind may still be in its cgroup.
func (c *Container) Processes() ([]int, error) {
	if len(c.s.CgroupPaths) == 0 {
		return nil, errdefs.FailedPrecondition(fmt.Errorf("list processes of %s: the container has no cgroup", c.s.ID))
	}
	pids, err := cgroups.Load(c.s.CgroupPaths).Pids()
	if err != nil {
		if errdefs.IsNotFound(err) && !c.alive() {
			return []int{}, nil
		}
		return nil, fmt.Errorf("list processes of %s: %w", c.s.ID, err)
	}
	if pids == nil {
		pids = []int{}
	}
	return pids, nil
}

// DefaultPsArgs are the options `ps` runs the host's ps with when none are
// given.
var DefaultPsArgs = []string{"-ef"}

// PsTable runs the host's ps with args (DefaultPsArgs when empty) and keeps
// its header and the rows whose PID column holds one of pids, as runc's
// `ps` does. Empty arguments are dropped: containerd's go-runc passes its
// ps options as one argument, empty when there are none.
func PsTable(ctx context.Context, pids []int, args []string) (string, error) {
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "" })
	if len(args) == 0 {
		args = DefaultPsArgs
	}
	cmd := exec.CommandContext(ctx, "ps", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", errdefs.Unavailable(fmt.Errorf("run ps %s: %w (install procps)", strings.Join(args, " "), err))
		}
		return "", fmt.Errorf("run ps %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return FilterPs(out.String(), pids)
}

// FilterPs keeps the header line of ps output and the rows of pids. The PID
// column is found by its "PID" title in the header; ps must print one.
func FilterPs(output string, pids []int) (string, error) {
	lines := strings.Split(output, "\n")
	col := slices.Index(strings.Fields(lines[0]), "PID")
	if col < 0 {
		return "", errdefs.InvalidArgument(fmt.Errorf("filter ps output: no PID column in its header %q (give ps an option list that prints the PID)", lines[0]))
	}
	var b strings.Builder
	b.WriteString(lines[0])
	b.WriteByte('\n')
	for _, line := range lines[1:] {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if col >= len(f) {
			return "", fmt.Errorf("filter ps output: row %q has no PID column %d", line, col+1)
		}
		pid, err := strconv.Atoi(f[col])
		if err != nil {
			return "", fmt.Errorf("filter ps output: parse PID %q of row %q: %w", f[col], line, err)
		}
		if slices.Contains(pids, pid) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}
