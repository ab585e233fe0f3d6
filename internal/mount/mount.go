// Package mount owns the Mount type and the parsing of fstab-style mount
// options. It is the contract between the snapshotters, which describe the
// mounts a container's root filesystem needs, and the runtime, which performs
// them: both speak Mount, and only this package turns option strings into
// mount(2) flags, propagation changes and mount_setattr(2) attributes.
package mount

import (
	"fmt"

	"github.com/berth-project/berth/internal/errdefs"
)

// Mount is one filesystem mount: what to mount (Source, of filesystem Type),
// where (Target) and with which fstab-style Options.
type Mount struct {
	Type    string
	Source  string
	Target  string
	Options []string
}

// Options is the result of parsing a mount's option strings.
type Options struct {
	// Flags are the mount(2) flags (MS_RDONLY, MS_NOSUID, MS_BIND, ...).
	Flags uintptr
	// Propagation lists propagation changes (MS_PRIVATE, MS_REC|MS_SLAVE,
	// ...) in the order given; each needs its own mount(2) call.
	Propagation []uintptr
	// Bind is set for bind and rbind; Recursive for rbind.
	Bind, Recursive bool
	// Data is the comma-joined filesystem-specific options.
	Data string
	// RecAttrSet and RecAttrClr are MOUNT_ATTR_* bits to set and clear
	// recursively with mount_setattr(2) (the rro, rnosuid, ... options).
	RecAttrSet, RecAttrClr uint64
}

// Parse splits options into mount flags, propagation flags, bind and data.
func Parse(options []string) (Options, error) {
	return Options{}, errdefs.NotImplemented(fmt.Errorf("parse mount options %q", options))
}

// Mount mounts m on target.
func (m Mount) Mount(target string) error {
	return errdefs.NotImplemented(fmt.Errorf("mount %s on %s", m.Source, target))
}

// Unmount unmounts target with umount2 flags.
func Unmount(target string, flags int) error {
	return errdefs.NotImplemented(fmt.Errorf("unmount %s", target))
}
