// Package mount owns the Mount type and the parsing of fstab-style mount
// options. It is the contract between the snapshotters, which describe the
// mounts a container's root filesystem needs, and the runtime, which performs
// them: both speak Mount, and only this package turns option strings into
// mount(2) flags, propagation changes and mount_setattr(2) attributes.
//
// Mounts are made with the file-descriptor based mount API (fsopen, fsmount,
// open_tree, mount_setattr, move_mount; Linux 5.12 or later): the new mount is
// configured completely while it is still detached and then attached to the
// target in one step. A target given as /proc/self/fd/N is used as the file
// descriptor N itself, so a target resolved safely inside a container's root
// filesystem stays exactly that inode, and flags and propagation are applied
// to the new mount rather than to whatever a path names afterwards.
package mount

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"golang.org/x/sys/unix"
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

type flagOpt struct {
	clear bool
	flag  uintptr
}

// flagOptions are the options that set or clear mount(2) flags.
var flagOptions = map[string]flagOpt{
	"defaults":      {false, 0},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"suid":          {true, unix.MS_NOSUID},
	"nosuid":        {false, unix.MS_NOSUID},
	"dev":           {true, unix.MS_NODEV},
	"nodev":         {false, unix.MS_NODEV},
	"exec":          {true, unix.MS_NOEXEC},
	"noexec":        {false, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"remount":       {false, unix.MS_REMOUNT},
	"mand":          {false, unix.MS_MANDLOCK},
	"nomand":        {true, unix.MS_MANDLOCK},
	"atime":         {true, unix.MS_NOATIME},
	"noatime":       {false, unix.MS_NOATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"silent":        {false, unix.MS_SILENT},
	"loud":          {true, unix.MS_SILENT},
	"iversion":      {false, unix.MS_I_VERSION},
	"noiversion":    {true, unix.MS_I_VERSION},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
}

// propagationOptions are the options that change mount propagation.
var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_REC | unix.MS_PRIVATE,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_REC | unix.MS_SHARED,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_REC | unix.MS_SLAVE,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_REC | unix.MS_UNBINDABLE,
}

type recAttr struct{ set, clr uint64 }

// recursiveOptions are the runtime-spec's recursive options, applied with
// mount_setattr(AT_RECURSIVE). All the access-time variants reset the whole
// atime field, as mount_setattr(2) requires.
var recursiveOptions = map[string]recAttr{
	"rro":            {unix.MOUNT_ATTR_RDONLY, 0},
	"rrw":            {0, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":        {unix.MOUNT_ATTR_NOSUID, 0},
	"rsuid":          {0, unix.MOUNT_ATTR_NOSUID},
	"rnodev":         {unix.MOUNT_ATTR_NODEV, 0},
	"rdev":           {0, unix.MOUNT_ATTR_NODEV},
	"rnoexec":        {unix.MOUNT_ATTR_NOEXEC, 0},
	"rexec":          {0, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":    {unix.MOUNT_ATTR_NODIRATIME, 0},
	"rdiratime":      {0, unix.MOUNT_ATTR_NODIRATIME},
	"rnoatime":       {unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME},
	"ratime":         {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
	"rrelatime":      {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
	"rnorelatime":    {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
	"rstrictatime":   {unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME},
	"rnostrictatime": {unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
	"rnosymfollow":   {unix.MOUNT_ATTR_NOSYMFOLLOW, 0},
	"rsymfollow":     {0, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// Parse splits fstab-style options into mount(2) flags, propagation flags,
// the bind/rbind request, recursive mount_setattr attributes and the
// remaining filesystem data. Options starting with "x-" are for user space
// and are dropped; "tmpcopyup" is dropped here and honoured by Mount.
// "idmap" and "ridmap" are refused: idmapped mounts need the user namespace
// mappings, which a Mount does not carry.
func Parse(options []string) (Options, error) {
	var o Options
	var data []string
	for _, opt := range options {
		if f, ok := flagOptions[opt]; ok {
			if f.clear {
				o.Flags &^= f.flag
			} else {
				o.Flags |= f.flag
			}
			if f.flag&unix.MS_BIND != 0 {
				o.Bind = true
				if f.flag&unix.MS_REC != 0 {
					o.Recursive = true
				}
			}
			// An explicit atime choice replaces the others, as mount(8) does.
			switch opt {
			case "noatime":
				o.Flags &^= unix.MS_RELATIME | unix.MS_STRICTATIME
			case "relatime":
				o.Flags &^= unix.MS_NOATIME | unix.MS_STRICTATIME
			case "strictatime":
				o.Flags &^= unix.MS_NOATIME | unix.MS_RELATIME
			}
			continue
		}
		if p, ok := propagationOptions[opt]; ok {
			o.Propagation = append(o.Propagation, p)
			continue
		}
		if r, ok := recursiveOptions[opt]; ok {
			if r.clr&unix.MOUNT_ATTR__ATIME != 0 {
				o.RecAttrSet &^= unix.MOUNT_ATTR__ATIME
			}
			o.RecAttrSet = o.RecAttrSet&^r.clr | r.set
			o.RecAttrClr = o.RecAttrClr&^r.set | r.clr
			continue
		}
		name, _, _ := strings.Cut(opt, "=")
		switch {
		case opt == "":
			continue
		case strings.HasPrefix(opt, "x-"), opt == "tmpcopyup", opt == "notmpcopyup":
			continue
		case name == "idmap" || name == "ridmap":
			return Options{}, errdefs.NotImplemented(fmt.Errorf("mount option %q: idmapped mounts are not supported", opt))
		}
		data = append(data, opt)
	}
	o.Data = strings.Join(data, ",")
	return o, nil
}

// TmpCopyUp reports whether options ask for a tmpfs to be filled with the
// contents of the directory it covers.
func TmpCopyUp(options []string) bool {
	up := false
	for _, o := range options {
		switch o {
		case "tmpcopyup":
			up = true
		case "notmpcopyup":
			up = false
		}
	}
	return up
}

// mountAttrs are the MOUNT_ATTR_* equivalents of the per-mount MS_* flags.
var mountAttrs = []struct {
	ms   uintptr
	attr uint64
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	{unix.MS_NOSYMFOLLOW, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// perMountFlags are the flags a bind mount can change (the others belong to
// the superblock the bind shares with its source).
const perMountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	unix.MS_NODIRATIME | unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_NOSYMFOLLOW

// allAttrs is every per-mount attribute Mount manages.
const allAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV |
	unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODIRATIME | unix.MOUNT_ATTR_NOSYMFOLLOW | unix.MOUNT_ATTR__ATIME

// attrsOf converts per-mount MS_* flags to MOUNT_ATTR_* bits (atime included).
func attrsOf(flags uintptr) uint64 {
	var a uint64
	for _, m := range mountAttrs {
		if flags&m.ms != 0 {
			a |= m.attr
		}
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		a |= unix.MOUNT_ATTR_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		a |= unix.MOUNT_ATTR_STRICTATIME
	default:
		a |= unix.MOUNT_ATTR_RELATIME
	}
	return a
}

// sbFlagNames are the superblock flags fsconfig(2) takes by name.
var sbFlagNames = []struct {
	ms   uintptr
	name string
}{
	{unix.MS_RDONLY, "ro"},
	{unix.MS_SYNCHRONOUS, "sync"},
	{unix.MS_DIRSYNC, "dirsync"},
	{unix.MS_LAZYTIME, "lazytime"},
}

// fdOf returns N when path is /proc/self/fd/N or /proc/thread-self/fd/N.
func fdOf(path string) (int, bool) {
	for _, p := range []string{"/proc/self/fd/", "/proc/thread-self/fd/"} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
				return n, true
			}
		}
	}
	return -1, false
}

// IsBind reports whether m is a bind mount: by option or by type.
func (m Mount) IsBind(o Options) bool {
	return o.Bind || m.Type == "bind" || m.Type == "rbind"
}

// Mount mounts m on target. target is an already-resolved safe path or
// /proc/self/fd/N naming an O_PATH descriptor of the target, which is then
// used directly. A bind source may likewise be /proc/self/fd/N. The mount
// is created detached with all its flags, attached to target, and then its
// propagation and recursive attributes are set; with "remount" the mount at
// target is changed in place with mount(2).
func (m Mount) Mount(target string) error {
	o, err := Parse(m.Options)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Source, target, err)
	}
	if o.Flags&unix.MS_REMOUNT != 0 {
		return m.remount(o, target)
	}
	bind := m.IsBind(o)
	if m.Type == "rbind" {
		o.Recursive = true
	}
	copyUp := TmpCopyUp(m.Options)
	if copyUp && (bind || m.Type != "tmpfs") {
		return errdefs.InvalidArgument(fmt.Errorf("mount %s on %s: tmpcopyup is only valid for tmpfs", m.Source, target))
	}

	var mfd int
	switch {
	case bind:
		mfd, err = cloneTree(m.Source, o)
	case copyUp:
		// Filled while detached, so created writable and made read-only
		// (per mount) afterwards.
		rw := o
		rw.Flags &^= unix.MS_RDONLY
		mfd, err = newFS(m.Type, m.Source, rw)
	default:
		mfd, err = newFS(m.Type, m.Source, o)
	}
	if err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", m.Source, m.Type, target, err)
	}
	defer unix.Close(mfd)

	tfd, closeTarget, err := openTarget(target)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Source, target, err)
	}
	defer closeTarget()

	if copyUp {
		if err := copyTree(tfd, mfd); err != nil {
			return fmt.Errorf("mount %s on %s: tmpcopyup: %w", m.Source, target, err)
		}
		if o.Flags&unix.MS_RDONLY != 0 {
			attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
			if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
				return fmt.Errorf("mount %s on %s: make read-only after tmpcopyup: %w", m.Source, target, err)
			}
		}
	}
	if err := unix.MoveMount(mfd, "", tfd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s on %s: attach (move_mount): %w", m.Source, target, err)
	}
	if err := SetPropagation(mfd, o.Propagation); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Source, target, err)
	}
	if o.RecAttrSet != 0 || o.RecAttrClr != 0 {
		attr := unix.MountAttr{Attr_set: o.RecAttrSet, Attr_clr: o.RecAttrClr}
		if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("mount %s on %s: set recursive attributes (mount_setattr): %w", m.Source, target, err)
		}
	}
	return nil
}

// SetPropagation applies propagation changes (MS_SHARED, MS_REC|MS_SLAVE,
// ...) in order to the mount that the descriptor fd is the root of.
func SetPropagation(fd int, propagation []uintptr) error {
	for _, p := range propagation {
		flags := uint(unix.AT_EMPTY_PATH)
		if p&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		attr := unix.MountAttr{Propagation: uint64(p &^ unix.MS_REC)}
		if err := unix.MountSetattr(fd, "", flags, &attr); err != nil {
			return fmt.Errorf("set propagation %s: %w", PropagationName(p), err)
		}
	}
	return nil
}

// PropagationName names a propagation flag as an option ("rslave", ...).
func PropagationName(p uintptr) string {
	for name, v := range propagationOptions {
		if v == p {
			return name
		}
	}
	return fmt.Sprintf("%#x", p)
}

// PropagationFlag returns the propagation flag for an option such as
// "rslave", and whether it is one.
func PropagationFlag(name string) (uintptr, bool) {
	p, ok := propagationOptions[name]
	return p, ok
}

// openTarget returns a descriptor for target: N itself for /proc/self/fd/N,
// else a new O_PATH descriptor.
func openTarget(target string) (int, func(), error) {
	if n, ok := fdOf(target); ok {
		return n, func() {}, nil
	}
	fd, err := unix.Open(target, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("open target: %w", err)
	}
	return fd, func() { unix.Close(fd) }, nil
}

// cloneTree makes a detached copy of the mount (tree, for rbind) at source
// and applies the per-mount flags of o to its top mount.
func cloneTree(source string, o Options) (int, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if o.Recursive {
		flags |= unix.AT_RECURSIVE
	}
	var fd int
	var err error
	if n, ok := fdOf(source); ok {
		fd, err = unix.OpenTree(n, "", flags|unix.AT_EMPTY_PATH)
	} else {
		fd, err = unix.OpenTree(unix.AT_FDCWD, source, flags)
	}
	if err != nil {
		return -1, fmt.Errorf("clone source (open_tree): %w", err)
	}
	// As runc does, a bind without per-mount flags keeps its source's.
	if o.Flags&perMountFlags == 0 {
		return fd, nil
	}
	set := attrsOf(o.Flags)
	// Like a bind remount, the flags not asked for are cleared; the atime
	// field is always reset so that its new value applies.
	attr := unix.MountAttr{Attr_set: set, Attr_clr: allAttrs&^set | unix.MOUNT_ATTR__ATIME}
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr)
	if errors.Is(err, unix.EPERM) {
		// Flags locked by a less privileged mount namespace cannot be
		// cleared; keep them and only add the requested ones.
		attr = unix.MountAttr{Attr_set: set &^ unix.MOUNT_ATTR__ATIME}
		err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set bind mount flags (mount_setattr): %w", err)
	}
	return fd, nil
}

// newFS creates a detached mount of a new filesystem instance.
func newFS(fstype, source string, o Options) (int, error) {
	if fstype == "" || fstype == "none" {
		return -1, errdefs.InvalidArgument(errors.New("no filesystem type"))
	}
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	defer unix.Close(fsfd)
	if source != "" {
		if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
			return -1, fmt.Errorf("fsconfig source=%s: %w%s", source, err, fsLog(fsfd))
		}
	}
	for _, f := range sbFlagNames {
		if o.Flags&f.ms != 0 {
			if err := unix.FsconfigSetFlag(fsfd, f.name); err != nil {
				return -1, fmt.Errorf("fsconfig %s: %w%s", f.name, err, fsLog(fsfd))
			}
		}
	}
	if o.Data != "" {
		for _, opt := range strings.Split(o.Data, ",") {
			key, value, hasValue := strings.Cut(opt, "=")
			if hasValue {
				err = unix.FsconfigSetString(fsfd, key, value)
			} else {
				err = unix.FsconfigSetFlag(fsfd, key)
			}
			if err != nil {
				return -1, fmt.Errorf("fsconfig %s: %w%s", opt, err, fsLog(fsfd))
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create %s filesystem: %w%s", fstype, err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrsOf(o.Flags)))
	if err != nil {
		return -1, fmt.Errorf("fsmount %s: %w%s", fstype, err, fsLog(fsfd))
	}
	return mfd, nil
}

// fsLog drains the kernel's messages about a filesystem context.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 16 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// remount changes the mount at target in place.
func (m Mount) remount(o Options, target string) error {
	flags := o.Flags
	if m.IsBind(o) {
		flags |= unix.MS_BIND
	}
	if err := unix.Mount("", target, "", flags&^unix.MS_REC, o.Data); err != nil {
		return fmt.Errorf("remount %s: %w", target, err)
	}
	for _, p := range o.Propagation {
		if err := unix.Mount("", target, "", p, ""); err != nil {
			return fmt.Errorf("remount %s: set propagation %s: %w", target, PropagationName(p), err)
		}
	}
	if o.RecAttrSet != 0 || o.RecAttrClr != 0 {
		attr := unix.MountAttr{Attr_set: o.RecAttrSet, Attr_clr: o.RecAttrClr}
		if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("remount %s: set recursive attributes (mount_setattr): %w", target, err)
		}
	}
	return nil
}

// Unmount unmounts target with umount2(2) flags, retrying on EINTR.
func Unmount(target string, flags int) error {
	for {
		err := unix.Unmount(target, flags)
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ENOENT) {
			return errdefs.NotFound(fmt.Errorf("unmount %s: %w", target, err))
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}
