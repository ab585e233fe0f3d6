package specgen

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MountPoint is one mount a create request asks for, from HostConfig.Binds
// (-v), HostConfig.Mounts (--mount) or HostConfig.Tmpfs (--tmpfs).
type MountPoint struct {
	Type mount.Type // bind, volume or tmpfs
	// Source is the host path of a bind, the name of a volume (empty for an
	// anonymous one); empty for tmpfs.
	Source      string
	Destination string
	ReadOnly    bool
	// Propagation is the bind propagation (binds default to rprivate).
	Propagation mount.Propagation
	// NonRecursive binds without the submounts below Source.
	NonRecursive bool
	// ReadOnlyNonRecursive makes only the top mount read-only, not the
	// submounts below it; ReadOnlyForceRecursive fails rather than fall
	// back to that when the runtime cannot make a mount read-only
	// recursively.
	ReadOnlyNonRecursive   bool
	ReadOnlyForceRecursive bool
	// NoCopy asks the engine not to copy the image's content into a new volume.
	NoCopy bool
	// Subpath is the path inside a volume to mount (the engine resolves it).
	Subpath string
	// Data are tmpfs options ("size=64m,mode=1777").
	Data string
}

var (
	volumeName      = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	propagationMode = map[string]bool{"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true}
)

// ParseMounts parses the mounts a create request asks for, checking them as
// Docker does: absolute destinations other than "/", each used once; -v
// modes drawn from rw|ro, z|Z, one propagation, nocopy and the consistency
// words; bind sources absolute; volume names [a-zA-Z0-9][a-zA-Z0-9_.-]*.
// The engine uses it to know which volumes to create. The order is the one
// Docker gathers them in: binds and volumes, then --tmpfs, then --mount
// tmpfs.
func ParseMounts(hc *container.HostConfig) ([]MountPoint, error) {
	var out []MountPoint
	for _, b := range hc.Binds {
		mp, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		out = append(out, mp)
	}
	var tmpfsMounts []MountPoint
	for _, m := range hc.Mounts {
		mp, err := parseMountSpec(m)
		if err != nil {
			return nil, err
		}
		if mp.Type == mount.TypeTmpfs {
			tmpfsMounts = append(tmpfsMounts, mp)
			continue
		}
		out = append(out, mp)
	}
	dests := make([]string, 0, len(hc.Tmpfs))
	for d := range hc.Tmpfs {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		if !strings.HasPrefix(d, "/") {
			// Docker's words for --tmpfs.
			return nil, invalid("invalid mount path: '%s' mount path must be absolute", d)
		}
		if err := checkDestination("tmpfs", d); err != nil {
			return nil, err
		}
		out = append(out, MountPoint{Type: mount.TypeTmpfs, Destination: path.Clean(d), Data: hc.Tmpfs[d]})
	}
	out = append(out, tmpfsMounts...)
	seen := map[string]bool{}
	for _, mp := range out {
		if seen[mp.Destination] {
			return nil, invalid("duplicate mount point: %s", mp.Destination)
		}
		seen[mp.Destination] = true
	}
	return out, nil
}

func checkDestination(typ, d string) error {
	if !strings.HasPrefix(d, "/") {
		return invalid("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute", typ, d)
	}
	if path.Clean(d) == "/" {
		return invalid("invalid specification: destination can't be '/'")
	}
	return nil
}

// parseBind parses one -v value: [source:]destination[:mode].
func parseBind(spec string) (MountPoint, error) {
	parts := strings.Split(spec, ":")
	var src, dst, mode string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, mode = parts[0], parts[1], parts[2]
	default:
		return MountPoint{}, invalid("invalid volume specification: '%s'", spec)
	}
	if dst == "" {
		return MountPoint{}, invalid("invalid volume specification: '%s'", spec)
	}
	mp := MountPoint{Type: mount.TypeVolume, Source: src, Destination: dst}
	if strings.HasPrefix(src, "/") {
		mp.Type = mount.TypeBind
		mp.Source = path.Clean(src)
	} else if src != "" && !volumeName.MatchString(src) {
		return MountPoint{}, invalid("%q includes invalid characters for a local volume name, only %q are allowed. If you intended to pass a host directory, use absolute path", src, "[a-zA-Z0-9][a-zA-Z0-9_.-]")
	}
	if err := checkDestination(string(mp.Type), dst); err != nil {
		return MountPoint{}, fmt.Errorf("invalid volume specification: '%s': %w", spec, err)
	}
	mp.Destination = path.Clean(dst)
	var rw, label, prop, nocopy, consistency int
	if mode != "" {
		for _, o := range strings.Split(mode, ",") {
			switch {
			case o == "rw":
				rw++
			case o == "ro":
				rw++
				mp.ReadOnly = true
			case o == "z" || o == "Z":
				label++
			case propagationMode[o]:
				prop++
				mp.Propagation = mount.Propagation(o)
			case o == "nocopy":
				nocopy++
				mp.NoCopy = true
			case o == "consistent" || o == "cached" || o == "delegated" || o == "default":
				consistency++
			default:
				return MountPoint{}, invalid("invalid mode: %v", mode)
			}
		}
	}
	if rw > 1 || label > 1 || prop > 1 || nocopy > 1 || consistency > 1 {
		return MountPoint{}, invalid("invalid mode: %v", mode)
	}
	if mp.Type == mount.TypeBind {
		if nocopy > 0 {
			return MountPoint{}, invalid("invalid mode: %v: nocopy is for volumes", mode)
		}
		if mp.Propagation == "" {
			mp.Propagation = mount.PropagationRPrivate
		}
	} else if prop > 0 {
		return MountPoint{}, invalid("invalid mode: %v: propagation is for binds", mode)
	}
	return mp, nil
}

// parseMountSpec checks one --mount value.
func parseMountSpec(m mount.Mount) (MountPoint, error) {
	if err := checkDestination(string(m.Type), m.Target); err != nil {
		return MountPoint{}, err
	}
	mp := MountPoint{Type: m.Type, Source: m.Source, Destination: path.Clean(m.Target), ReadOnly: m.ReadOnly}
	extra := func(field string) error {
		return invalid("invalid mount config for type %q: field %s must not be specified", m.Type, field)
	}
	switch m.Type {
	case mount.TypeBind:
		if m.VolumeOptions != nil {
			return MountPoint{}, extra("VolumeOptions")
		}
		if m.TmpfsOptions != nil {
			return MountPoint{}, extra("TmpfsOptions")
		}
		if m.Source == "" {
			return MountPoint{}, invalid("invalid mount config for type %q: field Source must not be empty", m.Type)
		}
		if !strings.HasPrefix(m.Source, "/") {
			return MountPoint{}, invalid("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute", m.Type, m.Source)
		}
		mp.Source = path.Clean(m.Source)
		mp.Propagation = mount.PropagationRPrivate
		if o := m.BindOptions; o != nil {
			if o.Propagation != "" {
				if !propagationMode[string(o.Propagation)] {
					return MountPoint{}, invalid("invalid mount config for type %q: invalid propagation mode %q", m.Type, o.Propagation)
				}
				mp.Propagation = o.Propagation
			}
			mp.NonRecursive = o.NonRecursive
			mp.ReadOnlyNonRecursive, mp.ReadOnlyForceRecursive = o.ReadOnlyNonRecursive, o.ReadOnlyForceRecursive
			if (o.ReadOnlyNonRecursive || o.ReadOnlyForceRecursive) && !m.ReadOnly {
				return MountPoint{}, invalid("invalid mount config for type %q: options ReadOnlyNonRecursive and ReadOnlyForceRecursive require ReadOnly", m.Type)
			}
			if o.ReadOnlyNonRecursive && o.ReadOnlyForceRecursive {
				return MountPoint{}, invalid("invalid mount config for type %q: options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive", m.Type)
			}
		}
	case mount.TypeVolume:
		if m.BindOptions != nil {
			return MountPoint{}, extra("BindOptions")
		}
		if m.TmpfsOptions != nil {
			return MountPoint{}, extra("TmpfsOptions")
		}
		if m.Source != "" && !volumeName.MatchString(m.Source) {
			return MountPoint{}, invalid("%q includes invalid characters for a local volume name, only %q are allowed", m.Source, "[a-zA-Z0-9][a-zA-Z0-9_.-]")
		}
		if o := m.VolumeOptions; o != nil {
			mp.NoCopy = o.NoCopy
			if o.Subpath != "" {
				if path.IsAbs(o.Subpath) || slices.Contains(strings.Split(o.Subpath, "/"), "..") {
					return MountPoint{}, invalid("invalid mount config for type %q: subpath %q must be relative and must not climb out with ..", m.Type, o.Subpath)
				}
				mp.Subpath = path.Clean(o.Subpath)
			}
		}
	case mount.TypeTmpfs:
		if m.BindOptions != nil {
			return MountPoint{}, extra("BindOptions")
		}
		if m.VolumeOptions != nil {
			return MountPoint{}, extra("VolumeOptions")
		}
		if m.Source != "" {
			return MountPoint{}, extra("Source")
		}
		data, err := tmpfsData(m.TmpfsOptions, m.ReadOnly)
		if err != nil {
			return MountPoint{}, err
		}
		mp.Data = data
	case "":
		return MountPoint{}, invalid("invalid mount config: mount type must be specified")
	case "npipe", "cluster", "image":
		return MountPoint{}, errdefs.NotImplemented(fmt.Errorf("mount type %q for %s is not supported by Berth", m.Type, m.Target))
	default:
		return MountPoint{}, invalid("invalid mount config for type %q: mount type unknown", m.Type)
	}
	return mp, nil
}

// tmpfsData turns --mount tmpfs options into mount data as Docker does: the
// size in the largest whole unit of k, m or g, the mode in octal.
func tmpfsData(o *mount.TmpfsOptions, readOnly bool) (string, error) {
	var opts []string
	if readOnly {
		opts = append(opts, "ro")
	}
	if o != nil {
		if o.SizeBytes < 0 {
			return "", invalid("invalid tmpfs size %d: must not be negative", o.SizeBytes)
		}
		if o.Mode != 0 {
			opts = append(opts, "mode="+strconv.FormatUint(unixMode(o.Mode), 8))
		}
		if o.SizeBytes != 0 {
			size, suffix := o.SizeBytes, ""
			for _, u := range []string{"k", "m", "g"} {
				if size%1024 != 0 {
					break
				}
				size /= 1024
				suffix = u
			}
			opts = append(opts, fmt.Sprintf("size=%d%s", size, suffix))
		}
		for _, kv := range o.Options {
			switch len(kv) {
			case 1:
				opts = append(opts, kv[0])
			case 2:
				opts = append(opts, kv[0]+"="+kv[1])
			default:
				return "", invalid("invalid tmpfs option %q", kv)
			}
		}
	}
	return strings.Join(opts, ","), nil
}

// tmpfsFlags are the flag options a tmpfs mount accepts, with the key of
// the setting each one changes (the two words of a pair share one).
var tmpfsFlags = map[string]string{
	"ro": "ro", "rw": "ro", "exec": "exec", "noexec": "exec", "suid": "suid", "nosuid": "suid",
	"dev": "dev", "nodev": "dev", "sync": "sync", "async": "sync", "dirsync": "dirsync",
	"mand": "mand", "nomand": "mand", "atime": "atime", "noatime": "atime",
	"diratime": "diratime", "nodiratime": "diratime", "relatime": "relatime", "norelatime": "relatime",
	"strictatime": "strictatime", "nostrictatime": "strictatime",
	"private": "propagation", "rprivate": "propagation", "shared": "propagation", "rshared": "propagation",
	"slave": "propagation", "rslave": "propagation", "unbindable": "propagation", "runbindable": "propagation",
	"tmpcopyup": "tmpcopyup",
}

var tmpfsDataKeys = map[string]bool{"size": true, "mode": true, "uid": true, "gid": true, "nr_inodes": true, "nr_blocks": true, "mpol": true}

// mergeTmpfsOptions keeps the last of each setting, in order, as Docker's
// MergeTmpfsOptions does.
func mergeTmpfsOptions(opts []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for i := len(opts) - 1; i >= 0; i-- {
		o := opts[i]
		if o == "defaults" || o == "" {
			continue
		}
		key, isFlag := tmpfsFlags[o]
		if !isFlag {
			k, _, ok := strings.Cut(o, "=")
			if !ok || !tmpfsDataKeys[k] {
				return nil, invalid("invalid tmpfs option %q", o)
			}
			key = "=" + k
		}
		if !seen[key] {
			seen[key] = true
			out = append([]string{o}, out...)
		}
	}
	return out, nil
}

// setMounts completes s.Mounts as Docker does: the defaults less those a
// requested mount replaces (everything below /dev when /dev is replaced,
// /dev/shm with IPC mode none), /dev/shm sized, then the requested mounts
// sorted by depth; read-only rootfs and privileged adjustments last.
func setMounts(s *specs.Spec, in *Input, hc *container.HostConfig, so SecurityOpts) error {
	mps, err := ParseMounts(hc)
	if err != nil {
		return err
	}
	vols := map[string]Mount{}
	for _, v := range in.Volumes {
		vols[path.Clean(v.Destination)] = v
	}
	var user, tmpfs []specs.Mount
	netFiles := map[string]string{"/etc/resolv.conf": in.Files.ResolvConf, "/etc/hostname": in.Files.Hostname, "/etc/hosts": in.Files.Hosts}
	netWritable := map[string]bool{}
	used := map[string]bool{}
	for _, mp := range mps {
		var m specs.Mount
		switch mp.Type {
		case mount.TypeTmpfs:
			opts, err := mergeTmpfsOptions(append([]string{"noexec", "nosuid", "nodev", "rprivate"}, strings.Split(mp.Data, ",")...))
			if err != nil {
				return fmt.Errorf("tmpfs on %s: %w", mp.Destination, err)
			}
			tmpfs = append(tmpfs, specs.Mount{Destination: mp.Destination, Source: "tmpfs", Type: "tmpfs", Options: opts})
			continue
		case mount.TypeVolume:
			v, ok := vols[mp.Destination]
			if !ok || v.Source == "" {
				return errdefs.FailedPrecondition(fmt.Errorf("volume %q for %s was not resolved by the engine", mp.Source, mp.Destination))
			}
			used[mp.Destination] = true
			if m, err = bindMount(v.Source, mp, in.Host.RecursiveReadOnly); err != nil {
				return err
			}
		default:
			if m, err = bindMount(mp.Source, mp, in.Host.RecursiveReadOnly); err != nil {
				return err
			}
		}
		if _, isNet := netFiles[m.Destination]; isNet && m.Type == "bind" {
			netFiles[m.Destination] = m.Source
			netWritable[m.Destination] = !mp.ReadOnly
			continue
		}
		user = append(user, m)
	}
	for _, v := range in.Volumes {
		d := path.Clean(v.Destination)
		if used[d] {
			continue
		}
		if err := checkDestination("volume", d); err != nil {
			return err
		}
		opts := v.Options
		if len(opts) == 0 {
			opts = []string{"rbind"}
		}
		typ := v.Type
		if typ == "" || typ == string(mount.TypeVolume) {
			typ = "bind"
		}
		user = append(user, specs.Mount{Destination: d, Source: v.Source, Type: typ, Options: slices.Clone(opts)})
	}
	for _, d := range []string{"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"} {
		src := netFiles[d]
		if src == "" {
			continue
		}
		w, ok := netWritable[d]
		if !ok {
			w = !hc.ReadonlyRootfs
		}
		opts := []string{"rbind"}
		if !w {
			opts = append(opts, roOption(in.Host.RecursiveReadOnly))
		}
		user = append(user, specs.Mount{Destination: d, Source: src, Type: "bind", Options: append(opts, "rprivate")})
	}
	if !hc.IpcMode.IsPrivate() && !hc.IpcMode.IsNone() {
		shm := in.ShmPath
		if shm == "" && hc.IpcMode.IsHost() {
			shm = "/dev/shm"
		}
		if shm == "" {
			return errdefs.FailedPrecondition(fmt.Errorf("IPC mode %s: the engine gave no /dev/shm path", hc.IpcMode))
		}
		user = append(user, specs.Mount{Destination: "/dev/shm", Source: shm, Type: "bind", Options: []string{"rbind", "rprivate"}})
	}
	user = append(user, tmpfs...)
	sort.SliceStable(user, func(i, j int) bool { return depth(user[i].Destination) < depth(user[j].Destination) })
	for i := 1; i < len(user); i++ {
		for j := 0; j < i; j++ {
			if user[i].Destination == user[j].Destination {
				return invalid("duplicate mount point: %s", user[i].Destination)
			}
		}
	}

	userDest := map[string]bool{}
	for _, m := range user {
		userDest[m.Destination] = true
	}
	defaults := s.Mounts[:0]
	for _, m := range s.Mounts {
		if userDest[m.Destination] || (userDest["/dev"] && strings.HasPrefix(m.Destination, "/dev/")) {
			continue
		}
		if m.Destination == "/dev/shm" {
			if hc.IpcMode.IsNone() {
				continue
			}
			m.Options = append(m.Options, "size="+strconv.FormatInt(hc.ShmSize, 10))
		}
		defaults = append(defaults, m)
	}
	s.Mounts = append(defaults, user...)

	if hc.ReadonlyRootfs {
		for i, m := range s.Mounts {
			switch m.Destination {
			case "/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev":
				continue
			}
			if !userDest[m.Destination] && !slices.Contains(m.Options, "ro") {
				s.Mounts[i].Options = append(s.Mounts[i].Options, "ro")
			}
		}
	}
	if hc.Privileged {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/sys" {
				clearReadOnly(&s.Mounts[i])
			}
		}
		s.Linux.ReadonlyPaths = nil
		s.Linux.MaskedPaths = nil
	}
	writable := hc.Privileged
	if so.WritableCgroups != nil {
		writable = *so.WritableCgroups
	}
	for i := range s.Mounts {
		if s.Mounts[i].Type == "cgroup" {
			if writable {
				clearReadOnly(&s.Mounts[i])
			} else if !slices.Contains(s.Mounts[i].Options, "ro") {
				s.Mounts[i].Options = append(s.Mounts[i].Options, "ro")
			}
		}
	}
	return nil
}

// bindMount is the spec mount of a bind or volume. A read-only one is made
// read-only recursively ("rro") where the runtime and kernel can, as Docker
// does, unless asked otherwise.
func bindMount(src string, mp MountPoint, rro bool) (specs.Mount, error) {
	opts := []string{"rbind"}
	if mp.NonRecursive {
		opts[0] = "bind"
	}
	if mp.ReadOnly {
		switch {
		case mp.ReadOnlyNonRecursive:
			opts = append(opts, "ro")
		case rro:
			opts = append(opts, "rro")
		case mp.ReadOnlyForceRecursive:
			return specs.Mount{}, errdefs.FailedPrecondition(fmt.Errorf("mount %s: recursive read-only mounts are not supported here (they need Linux 5.12)", mp.Destination))
		default:
			opts = append(opts, "ro")
		}
	}
	if mp.Propagation != "" {
		opts = append(opts, string(mp.Propagation))
	}
	return specs.Mount{Destination: mp.Destination, Source: src, Type: "bind", Options: opts}, nil
}

func roOption(rro bool) string {
	if rro {
		return "rro"
	}
	return "ro"
}

func depth(p string) int {
	return len(strings.Split(path.Clean(p), "/"))
}

func clearReadOnly(m *specs.Mount) {
	var opts []string
	for _, o := range m.Options {
		if o != "ro" {
			opts = append(opts, o)
		}
	}
	m.Options = opts
}

// unixMode is the mode_t value of m's permission and special bits.
func unixMode(m os.FileMode) uint64 {
	v := uint64(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}
