package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Rootless reports whether the runtime runs without the privileges of the
// initial user namespace: as a user other than root, or as root inside a user
// namespace (a container of its own, a rootless engine). Then it can write
// only the ID maps the kernel lets an unprivileged process write (or have
// newuidmap/newgidmap write them), and cgroups only where they were
// delegated.
func Rootless() bool {
	return os.Geteuid() != 0 || inUserNS()
}

// inUserNS reports whether this process is in a user namespace other than
// the initial one, whose uid_map is the single identity line of all IDs.
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return !isInitialUIDMap(string(b))
}

func isInitialUIDMap(m string) bool {
	f := strings.Fields(m)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// DefaultStateRoot is the state directory when --root is not given:
// DefaultRoot for root in the initial user namespace; otherwise, as runc does
// with /run/user/<uid>/runc, a directory of the user's own,
// $XDG_RUNTIME_DIR/berth-runtime (or /run/user/<uid>/berth-runtime when
// XDG_RUNTIME_DIR is not set).
func DefaultStateRoot() string {
	if !Rootless() {
		return DefaultRoot
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "berth-runtime")
	}
	if os.Geteuid() == 0 {
		// root of a user namespace without a runtime directory
		return DefaultRoot
	}
	return filepath.Join("/run/user", strconv.Itoa(os.Geteuid()), "berth-runtime")
}

// writeIDMaps writes the ID maps of the user namespace process pid has just
// created; the runtime is still in the parent user namespace. Privileged, it
// writes them itself and leaves setgroups(2) allowed. Unprivileged, the
// kernel lets it map only its own effective uid and gid, and the gid map only
// after setgroups(2) is denied for the namespace (so that a user cannot drop
// a group that denies it access): for that single self-mapping it denies
// setgroups and writes the maps itself, as runc does; any other mapping (the
// ranges of /etc/subuid and /etc/subgid) is handed to newuidmap and
// newgidmap, which check it against those files.
func writeIDMaps(pid int, l *specs.Linux) error {
	if len(l.UIDMappings) == 0 && len(l.GIDMappings) == 0 {
		return nil
	}
	rootless := Rootless()
	if rootless && isSelfMapping(l.GIDMappings, os.Getegid()) {
		if err := writeProcFile(pid, "setgroups", "deny"); err != nil {
			return err
		}
	}
	if err := writeIDMap(pid, "uid_map", l.UIDMappings, rootless); err != nil {
		return err
	}
	return writeIDMap(pid, "gid_map", l.GIDMappings, rootless)
}

// isSelfMapping reports whether maps is the single mapping of one container
// ID onto id, the only gid map an unprivileged process may write itself.
func isSelfMapping(maps []specs.LinuxIDMapping, id int) bool {
	return len(maps) == 1 && maps[0].Size == 1 && int64(maps[0].HostID) == int64(id)
}

// formatIDMap renders maps in the format of /proc/<pid>/uid_map.
func formatIDMap(maps []specs.LinuxIDMapping) string {
	var b strings.Builder
	for _, m := range maps {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// writeIDMap writes one map (name is uid_map or gid_map). Unprivileged, a
// write the kernel refuses goes through newuidmap or newgidmap.
func writeIDMap(pid int, name string, maps []specs.LinuxIDMapping, rootless bool) error {
	if len(maps) == 0 {
		return nil
	}
	err := writeProcFile(pid, name, formatIDMap(maps))
	if err == nil || !rootless || !errors.Is(err, unix.EPERM) {
		return err
	}
	// The setuid helpers of the uidmap package write what an
	// unprivileged user may not, within /etc/subuid and /etc/subgid.
	tool := "newuidmap"
	if name == "gid_map" {
		tool = "newgidmap"
	}
	if terr := runIDMapTool(tool, pid, maps); terr != nil {
		return errdefs.FailedPrecondition(fmt.Errorf("%w; unprivileged, only the single mapping of one's own ID can be written directly, and %v", err, terr))
	}
	return nil
}

// runIDMapTool runs newuidmap or newgidmap for pid with maps.
func runIDMapTool(tool string, pid int, maps []specs.LinuxIDMapping) error {
	path, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("%s is not installed (Debian package uidmap) to map ranges of /etc/subuid and /etc/subgid: %w", tool, err)
	}
	args := []string{strconv.Itoa(pid)}
	for _, m := range maps {
		args = append(args, strconv.FormatUint(uint64(m.ContainerID), 10),
			strconv.FormatUint(uint64(m.HostID), 10), strconv.FormatUint(uint64(m.Size), 10))
	}
	cmd := exec.Command(path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// writeProcFile writes one of the ID map files of pid.
func writeProcFile(pid int, name, content string) error {
	path := "/proc/" + strconv.Itoa(pid) + "/" + name
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	// The kernel takes a map in one write only.
	if _, err := f.Write([]byte(content)); err != nil {
		return fmt.Errorf("write %s %q: %w", path, strings.TrimSpace(content), err)
	}
	return nil
}

// hostID maps a container ID to the host through maps (identity without maps).
func hostID(maps []specs.LinuxIDMapping, id uint32) int {
	for _, m := range maps {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return int(id)
}

// cgroupPermissionError reports whether err is the kernel refusing an
// unprivileged process access to a cgroup it was not delegated.
func cgroupPermissionError(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
}

// resourcesRequested reports whether r asks for any cgroup limit beyond the
// device rules, which an unprivileged runtime cannot enforce and runc ignores
// when rootless.
func resourcesRequested(r *specs.LinuxResources) bool {
	if r == nil {
		return false
	}
	rest := *r
	rest.Devices = nil
	return !isZeroResources(&rest)
}

func isZeroResources(r *specs.LinuxResources) bool {
	return r.Memory == nil && r.CPU == nil && r.Pids == nil && r.BlockIO == nil &&
		len(r.HugepageLimits) == 0 && r.Network == nil && len(r.Rdma) == 0 && len(r.Unified) == 0
}
