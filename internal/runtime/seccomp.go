package runtime

import (
	"fmt"

	"github.com/berth-project/berth/internal/runtime/seccomp"
	"golang.org/x/sys/unix"
)

// loadSeccomp loads the compiled seccomp program. A notify descriptor goes
// to the runtime, which passes it to the listener on the host: the
// listener's path means nothing inside the container.
func (in *initProc) loadSeccomp(prog *seccomp.Program) error {
	fd, err := prog.Load()
	if err != nil {
		return err
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := in.ch.send(message{Type: msgSeccomp, FD: fd}); err != nil {
		return fmt.Errorf("send seccomp listener: %w", err)
	}
	var m message
	if err := in.ch.recv(&m); err != nil || m.Type != msgAck {
		return fmt.Errorf("wait for the seccomp listener hand-over: %v", err)
	}
	return nil
}
