package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// moveRoot is the --no-pivot path (for roots pivot_root cannot leave, such
// as an initramfs): it detaches every mount that is neither the rootfs, inside
// it, nor one of its ancestors, so host filesystems do not stay reachable in
// the namespace, then moves the rootfs onto "/" and chroots into it.
func moveRoot(rootfs string) error {
	rootfs = filepath.Clean(rootfs)
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("no-pivot: read mountinfo: %w", err)
	}
	var detach []string
	for _, i := range infos {
		mp := i.Mountpoint
		if mp == rootfs || strings.HasPrefix(mp, rootfs+"/") || mp == "/" || strings.HasPrefix(rootfs, mp+"/") {
			continue
		}
		detach = append(detach, mp)
	}
	// Deepest first, so a parent is never detached under a child.
	sort.Slice(detach, func(a, b int) bool { return len(detach[a]) > len(detach[b]) })
	for _, mp := range detach {
		if err := unix.Mount("", mp, "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("no-pivot: make %s rslave: %w", mp, err)
		}
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			switch {
			case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
				// Already gone with a parent detached before it.
			case errors.Is(err, unix.EPERM):
				// Locked by a less privileged namespace: cover it instead.
				if err := unix.Mount("tmpfs", mp, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0k"); err != nil {
					return fmt.Errorf("no-pivot: cover %s: %w", mp, err)
				}
			default:
				return fmt.Errorf("no-pivot: detach %s: %w", mp, err)
			}
		}
	}
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("no-pivot: chdir %s: %w", rootfs, err)
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("no-pivot: move %s onto /: %w", rootfs, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("no-pivot: chroot %s: %w", rootfs, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("no-pivot: chdir /: %w", err)
	}
	return nil
}
