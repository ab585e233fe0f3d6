// Package cgroups owns a container's control groups for berth-runtime: it
// finds the host's cgroup hierarchies (v1, v2 or hybrid) from
// /proc/self/mountinfo, creates the container's cgroup in each of them, moves
// the container's process in, writes its resource limits, freezes and thaws
// it, lists its processes and removes the cgroup again. It writes the
// cgroup files directly over golang.org/x/sys/unix because it runs on every
// container's start path and must stay small and fast.
package cgroups

import (
	"fmt"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Manager owns one container's cgroup in every hierarchy of the host.
type Manager struct {
	paths map[string]string
}

// New resolves the cgroup for container id.
func New(path, id string, systemd bool) (*Manager, error) {
	return nil, errdefs.NotImplemented(fmt.Errorf("cgroups: new %q", id))
}

// Load reattaches to a cgroup from the paths a previous Paths() returned.
func Load(paths map[string]string) *Manager {
	m := &Manager{paths: map[string]string{}}
	for k, v := range paths {
		m.paths[k] = v
	}
	return m
}

// Paths returns controller name -> absolute cgroup directory ("" key for the
// v2 unified hierarchy).
func (m *Manager) Paths() map[string]string {
	out := make(map[string]string, len(m.paths))
	for k, v := range m.paths {
		out[k] = v
	}
	return out
}

// Apply creates the cgroup in every hierarchy and moves pid into it.
func (m *Manager) Apply(pid int) error { return errdefs.NotImplemented(fmt.Errorf("cgroups: apply")) }

// Set writes resources. nil r is a no-op.
func (m *Manager) Set(r *specs.LinuxResources) error {
	return errdefs.NotImplemented(fmt.Errorf("cgroups: set"))
}

// Pids lists every process in the cgroup (and below).
func (m *Manager) Pids() ([]int, error) { return nil, errdefs.NotImplemented(fmt.Errorf("cgroups: pids")) }

// Freeze pauses every process in the cgroup.
func (m *Manager) Freeze() error { return errdefs.NotImplemented(fmt.Errorf("cgroups: freeze")) }

// Thaw resumes every process in the cgroup.
func (m *Manager) Thaw() error { return errdefs.NotImplemented(fmt.Errorf("cgroups: thaw")) }

// FreezerState returns "THAWED", "FROZEN" or "FREEZING".
func (m *Manager) FreezerState() (string, error) {
	return "", errdefs.NotImplemented(fmt.Errorf("cgroups: freezer state"))
}

// Destroy removes the cgroup directories in every hierarchy.
func (m *Manager) Destroy() error { return errdefs.NotImplemented(fmt.Errorf("cgroups: destroy")) }

// DefaultDevices is the device-cgroup allow list runtimes add after the
// spec's rules.
var DefaultDevices []specs.LinuxDeviceCgroup
