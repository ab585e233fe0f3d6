package runtime

import (
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/runtime/rootfs"
)

// setupConsole gives the container a terminal and binds it on
// /dev/console.
func setupConsole(socketFD int, size *specs.Box) error {
	slavePath, err := openConsole(socketFD, size)
	if err != nil {
		return err
	}
	return rootfs.BindConsole(slavePath)
}

// openConsole makes a terminal for the process, as runc does: it opens a
// new pty in the container's devpts, sends the master to the console socket
// (SCM_RIGHTS, with the pty's name as the message), and makes the slave the
// standard streams and the controlling terminal, sized as process.consoleSize
// asks. It returns the slave's path.
func openConsole(socketFD int, size *specs.Box) (string, error) {
	if socketFD < 0 {
		return "", fmt.Errorf("console: no console socket")
	}
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("console: open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return "", fmt.Errorf("console: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return "", fmt.Errorf("console: pty number: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("console: open %s: %w", slavePath, err)
	}
	defer unix.Close(slave)
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(slave, unix.TIOCSWINSZ, ws); err != nil {
			return "", fmt.Errorf("console: set size %dx%d: %w", size.Width, size.Height, err)
		}
	}
	rights := unix.UnixRights(master)
	if err := unix.Sendmsg(socketFD, []byte(slavePath), rights, nil, 0); err != nil {
		return "", fmt.Errorf("console: send pty master to console socket: %w", err)
	}
	unix.Close(socketFD)
	for _, fd := range []int{0, 1, 2} {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return "", fmt.Errorf("console: dup pty to fd %d: %w", fd, err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return "", fmt.Errorf("console: set controlling terminal: %w", err)
	}
	return slavePath, nil
}

// Personality domains the runtime spec names.
var personalities = map[specs.LinuxPersonalityDomain]uintptr{
	specs.PerLinux:   0x0000,
	specs.PerLinux32: 0x0008,
}

// setPersonality applies linux.personality.
func setPersonality(p *specs.LinuxPersonality) error {
	dom, ok := personalities[p.Domain]
	if !ok {
		return fmt.Errorf("personality: unknown domain %q", p.Domain)
	}
	if len(p.Flags) > 0 {
		return fmt.Errorf("personality: flags %v are not supported", p.Flags)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, dom, 0, 0); errno != 0 {
		return fmt.Errorf("personality %s: %w", p.Domain, errno)
	}
	return nil
}
