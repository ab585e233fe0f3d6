// Package rootfs builds a container's filesystem view for berth-runtime: it
// performs the spec's mounts inside the root filesystem, populates /dev,
// pivots into the root and then masks and write-protects paths. Every path it
// touches inside the root filesystem is resolved there safely, so no symlink
// or swapped directory in a container image can redirect a mount to the host.
package rootfs

import (
	"fmt"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Config describes the root filesystem to set up.
type Config struct {
	Spec        *specs.Spec
	Rootfs      string            // absolute host path of the root filesystem
	NoPivot     bool              // MS_MOVE + chroot instead of pivot_root
	CgroupPaths map[string]string // controller -> host cgroup dir of this container ("" = v2 unified)
	CgroupNS    bool              // the container has its own cgroup namespace
	Console     bool              // process.terminal: /dev/console is bound later by BindConsole
}

// Prepare performs the mounts and creates /dev content, before Pivot.
func Prepare(c *Config) error {
	return errdefs.NotImplemented(fmt.Errorf("prepare rootfs %s", c.Rootfs))
}

// Pivot makes the rootfs the root and changes directory to "/".
func Pivot(c *Config) error {
	return errdefs.NotImplemented(fmt.Errorf("pivot into %s", c.Rootfs))
}

// BindConsole bind-mounts the pty slave at slavePath onto /dev/console.
func BindConsole(slavePath string) error {
	return errdefs.NotImplemented(fmt.Errorf("bind console %s", slavePath))
}

// Finalize masks and write-protects paths after Pivot.
func Finalize(c *Config) error {
	return errdefs.NotImplemented(fmt.Errorf("finalize rootfs %s", c.Rootfs))
}
