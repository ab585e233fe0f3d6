package cgroups

import (
	"fmt"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
)

// The freezer states FreezerState reports.
const (
	Thawed   = "THAWED"
	Frozen   = "FROZEN"
	Freezing = "FREEZING"
)

// freezerDir returns the directory whose freezer drives the container: the
// v1 freezer hierarchy when mounted, else the unified hierarchy's
// cgroup.freeze.
func (m *Manager) freezerDir() (dir string, v2 bool, err error) {
	if d := m.paths["freezer"]; d != "" {
		return d, false, nil
	}
	if d := m.paths[""]; d != "" {
		return d, true, nil
	}
	return "", false, errdefs.Unavailable(fmt.Errorf("no freezer: the v1 freezer controller is not mounted and there is no unified hierarchy"))
}

// Freeze pauses every process in the cgroup and waits until all are frozen.
func (m *Manager) Freeze() error {
	if err := m.setFrozen(true); err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	return nil
}

// Thaw resumes every process in the cgroup and waits until all run again.
func (m *Manager) Thaw() error {
	if err := m.setFrozen(false); err != nil {
		return fmt.Errorf("thaw cgroup: %w", err)
	}
	return nil
}

// freezeTimeout bounds the wait for the kernel to reach a freezer state; a
// task in an uninterruptible sleep can hold a cgroup in FREEZING.
const freezeTimeout = 10 * time.Second

func (m *Manager) setFrozen(frozen bool) error {
	dir, v2, err := m.freezerDir()
	if err != nil {
		return err
	}
	want, write := Thawed, Thawed
	if frozen {
		want, write = Frozen, Frozen
	}
	if v2 {
		write = "0"
		if frozen {
			write = "1"
		}
		if err := writeFile(dir, "cgroup.freeze", write); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(freezeTimeout)
	delay := time.Millisecond
	for {
		// v1: writing FROZEN again makes the kernel retry tasks that
		// were busy on the previous attempt.
		if !v2 {
			if err := writeFile(dir, "freezer.state", write); err != nil {
				return err
			}
		}
		state, err := freezerState(dir, v2)
		if err != nil {
			return err
		}
		if state == want {
			return nil
		}
		if time.Now().After(deadline) {
			if frozen {
				// Leave no half-frozen container behind.
				_ = m.setFrozen(false)
			}
			return fmt.Errorf("cgroup %s still %s after %s", dir, state, freezeTimeout)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// FreezerState returns "THAWED", "FROZEN" or "FREEZING" (frozen requested,
// not every process stopped yet).
func (m *Manager) FreezerState() (string, error) {
	dir, v2, err := m.freezerDir()
	if err != nil {
		return "", fmt.Errorf("read freezer state: %w", err)
	}
	s, err := freezerState(dir, v2)
	if err != nil {
		return "", fmt.Errorf("read freezer state: %w", err)
	}
	return s, nil
}

func freezerState(dir string, v2 bool) (string, error) {
	if !v2 {
		s, err := readFile(dir, "freezer.state")
		if err != nil {
			if isNotExist(err) {
				err = errdefs.NotFound(err)
			}
			return "", err
		}
		switch s {
		case Thawed, Frozen, Freezing:
			return s, nil
		}
		return "", fmt.Errorf("%s/freezer.state: unknown state %q", dir, s)
	}
	want, err := readFile(dir, "cgroup.freeze")
	if err != nil {
		if isNotExist(err) {
			err = errdefs.NotFound(err)
		}
		return "", err
	}
	if want != "1" {
		return Thawed, nil
	}
	events, err := readFile(dir, "cgroup.events")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(events, "\n") {
		if line == "frozen 1" {
			return Frozen, nil
		}
	}
	return Freezing, nil
}
