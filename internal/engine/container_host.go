package engine

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/specgen"
)

// ownCapabilities reads berthd's bounding and effective capability sets
// from /proc/self/status. ok is false when they cannot be read.
func ownCapabilities() (bounding, effective uint64, ok bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	var found int
	for _, line := range strings.Split(string(status), "\n") {
		key, val, _ := strings.Cut(line, ":")
		var dst *uint64
		switch key {
		case "CapBnd":
			dst = &bounding
		case "CapEff":
			dst = &effective
		default:
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return 0, 0, false
		}
		*dst = v
		found++
	}
	return bounding, effective, found == 2
}

// grantableCapabilities are the capabilities in berthd's bounding set,
// those a privileged container (or --cap-add ALL) can be given, as Docker
// gives what its own environment allows. Nil when the set cannot be read.
func grantableCapabilities(bounding uint64) []string {
	var caps []string
	for _, c := range capability.ListKnown() {
		if bounding&(1<<uint(c)) != 0 {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return caps
}

// privilegedDeviceSkips are the /dev entries a privileged container does
// not get from the host, as runc's and Docker's host device lists.
var privilegedDeviceSkips = map[string]bool{
	"/dev/pts": true, "/dev/shm": true, "/dev/fd": true, "/dev/mqueue": true,
	"/dev/.lxc": true, "/dev/.lxd-mounts": true, "/dev/.udev": true, "/dev/console": true,
}

// hostDevices lists the host's device nodes under /dev (symbolic links
// are not followed) for privileged containers.
func hostDevices() []specgen.HostDevice {
	var out []specgen.HostDevice
	_ = filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if privilegedDeviceSkips[p] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || d.Type()&fs.ModeDevice == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil
		}
		typ := "c"
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil
		}
		out = append(out, specgen.HostDevice{
			Path: p, Type: typ,
			Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: os.FileMode(st.Mode & 0o777), UID: st.Uid, GID: st.Gid,
		})
		return nil
	})
	return out
}
