package runtime

import (
	"fmt"

	"github.com/berth-project/berth/internal/runtime/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// applySeccomp loads the seccomp filter; a notify listener goes to
// linux.seccomp.listenerPath.
func applySeccomp(spec *specs.Spec, st specs.State) error {
	s := spec.Linux.Seccomp
	if s == nil {
		return nil
	}
	fd, err := seccomp.Load(s)
	if err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	if fd >= 0 {
		ps := specs.ContainerProcessState{
			Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: st.Pid,
			Metadata: s.ListenerMetadata, State: st,
		}
		if err := seccomp.SendListener(s.ListenerPath, fd, ps); err != nil {
			return fmt.Errorf("send seccomp listener to %s: %w", s.ListenerPath, err)
		}
	}
	return nil
}
