package seccomp

import (
	"encoding/json"
	"fmt"
	"net"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// SendListener hands the seccomp notification listener fd to the agent
// listening on the unix stream socket listenerPath: one connection carrying
// the container process state as JSON with the fd in SCM_RIGHTS (named
// "seccompFd" in state.Fds), then closed, as the runtime-spec requires. The
// caller fills state.Pid, state.Metadata (the profile's listenerMetadata)
// and state.State; Version defaults to the spec version Berth implements.
func SendListener(listenerPath string, fd int, state specs.ContainerProcessState) error {
	if fd < 0 {
		return fmt.Errorf("seccomp: send listener to %s: no listener fd", listenerPath)
	}
	if state.Version == "" {
		state.Version = specs.Version
	}
	state.Fds = []string{specs.SeccompFdName}
	payload, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("seccomp: encode container process state: %w", err)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: listenerPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("seccomp: connect to listener %s: %w", listenerPath, err)
	}
	defer conn.Close()
	n, _, err := conn.WriteMsgUnix(payload, unix.UnixRights(fd), nil)
	if err != nil {
		return fmt.Errorf("seccomp: send listener fd to %s: %w", listenerPath, err)
	}
	// A stream socket may take the payload in parts; the fd went with the
	// first one, which is what the spec asks.
	if n < len(payload) {
		if _, err := conn.Write(payload[n:]); err != nil {
			return fmt.Errorf("seccomp: send container process state to %s: %w", listenerPath, err)
		}
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("seccomp: close connection to %s: %w", listenerPath, err)
	}
	return nil
}
