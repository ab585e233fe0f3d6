package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/runtime/bundle"
)

// CheckpointOpts are the options of `checkpoint`, named as runc's flags.
type CheckpointOpts struct {
	ImagePath         string // where criu writes the images (default ./checkpoint)
	WorkPath          string // criu's logs and work files (default: ImagePath)
	ParentPath        string // a previous pre-dump, relative to ImagePath
	LeaveRunning      bool
	TCPEstablished    bool
	ExtUnixSk         bool
	ShellJob          bool
	FileLocks         bool
	PreDump           bool
	AutoDedup         bool
	LazyPages         bool
	ManageCgroupsMode string
	EmptyNS           []string
	PageServer        string
	StatusFd          int
}

// RestoreOpts are the options of `restore`, named as runc's flags.
type RestoreOpts struct {
	CreateOpts
	ImagePath         string
	WorkPath          string
	Detach            bool
	TCPEstablished    bool
	ExtUnixSk         bool
	ShellJob          bool
	FileLocks         bool
	NoSubreaper       bool
	AutoDedup         bool
	LazyPages         bool
	ManageCgroupsMode string
	EmptyNS           []string
	LSMProfile        string
	LSMMountContext   string
}

// DefaultCriu is the criu binary looked up in PATH when none is named.
const DefaultCriu = "criu"

// FindCriu resolves the criu binary: a path, or a name looked up in PATH.
// A missing binary is an Unavailable error that names it.
func FindCriu(criu string) (string, error) {
	if criu == "" {
		criu = DefaultCriu
	}
	p, err := exec.LookPath(criu)
	if err != nil {
		return "", errdefs.Unavailable(fmt.Errorf("criu binary %q not found (%w): checkpoint and restore need CRIU; install it (Debian: apt-get install criu) or name it with --criu", criu, err))
	}
	return p, nil
}

// CheckCriu runs `criu check`, which probes the kernel features criu needs,
// and turns a failure into an Unavailable error quoting criu's own
// complaint, so that the user learns why checkpointing cannot work on this
// host rather than a failed dump half-way through.
func CheckCriu(ctx context.Context, criu string) error {
	cmd := exec.CommandContext(ctx, criu, "check")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	// criu 3.x exits 0 even when kernel feature detection fails: judge
	// by its "Error" lines too.
	var errs []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, "Error") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	if err == nil && len(errs) == 0 {
		return nil
	}
	why := strings.Join(errs, "; ")
	if why == "" {
		why = text
	}
	if err != nil {
		why = fmt.Sprintf("%v: %s", err, why)
	}
	return errdefs.Unavailable(fmt.Errorf("%s check failed, so criu cannot checkpoint or restore on this host (kernel %s): %s", criu, kernelRelease(), why))
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}

// Checkpoint dumps a running or paused container with criu, as runc's
// `checkpoint`. It finds criu and makes sure it can work on this host
// first; when criu is missing or cannot work here, the error names the
// binary and criu's own reason. berth-runtime does not yet drive a dump
// through criu: with a working criu the call fails as NotImplemented
// rather than leave a partial image behind.
func (c *Container) Checkpoint(ctx context.Context, criu string, o CheckpointOpts) error {
	if st := c.Status(); st != StatusRunning && st != StatusPaused {
		return errdefs.FailedPrecondition(fmt.Errorf("cannot checkpoint container %s: it is %s, not running", c.s.ID, st))
	}
	if err := checkCheckpointOpts(o); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.s.ID, err)
	}
	path, err := FindCriu(criu)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.s.ID, err)
	}
	if err := CheckCriu(ctx, path); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.s.ID, err)
	}
	return errdefs.NotImplemented(fmt.Errorf("checkpoint %s: berth-runtime cannot drive criu %s to dump a container yet", c.s.ID, path))
}

// checkCheckpointOpts refuses option values runc refuses too.
func checkCheckpointOpts(o CheckpointOpts) error {
	switch o.ManageCgroupsMode {
	case "", "soft", "full", "strict", "ignore":
	default:
		return errdefs.InvalidArgument(fmt.Errorf("invalid --manage-cgroups-mode %q: want soft, full, strict or ignore", o.ManageCgroupsMode))
	}
	for _, ns := range o.EmptyNS {
		if ns != "network" {
			return errdefs.InvalidArgument(fmt.Errorf("invalid --empty-ns %q: only network can be left empty", ns))
		}
	}
	if o.PreDump && o.LeaveRunning {
		return errdefs.InvalidArgument(errors.New("--pre-dump leaves the container running already; drop --leave-running"))
	}
	return nil
}

// Restore creates container id from the bundle and the images a checkpoint
// wrote, as runc's `restore`. It checks the ID, the bundle and the image
// directory, finds criu and makes sure it works on this host; when criu is
// missing or cannot work here, the error names the binary and criu's own
// reason. berth-runtime does not yet drive a restore through criu: with a
// working criu the call fails as NotImplemented.
func Restore(ctx context.Context, root, id, criu string, o RestoreOpts) (int, error) {
	if err := checkID(id); err != nil {
		return -1, err
	}
	if _, err := os.Stat(filepath.Join(root, id, stateFile)); err == nil {
		return -1, errdefs.AlreadyExists(fmt.Errorf("restore %s: container with id %s exists already", id, id))
	}
	switch o.ManageCgroupsMode {
	case "", "soft", "full", "strict", "ignore":
	default:
		return -1, errdefs.InvalidArgument(fmt.Errorf("restore %s: invalid --manage-cgroups-mode %q: want soft, full, strict or ignore", id, o.ManageCgroupsMode))
	}
	dir := o.Bundle
	if dir == "" {
		dir = "."
	}
	if _, _, err := bundle.Load(dir); err != nil {
		return -1, fmt.Errorf("restore %s: %w", id, err)
	}
	images := o.ImagePath
	if images == "" {
		images = "checkpoint"
	}
	if fi, err := os.Stat(images); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return -1, errdefs.InvalidArgument(fmt.Errorf("restore %s: checkpoint image directory %s: %w", id, images, err))
	}
	path, err := FindCriu(criu)
	if err != nil {
		return -1, fmt.Errorf("restore %s: %w", id, err)
	}
	if err := CheckCriu(ctx, path); err != nil {
		return -1, fmt.Errorf("restore %s: %w", id, err)
	}
	return -1, errdefs.NotImplemented(fmt.Errorf("restore %s: berth-runtime cannot drive criu %s to restore a container yet", id, path))
}
