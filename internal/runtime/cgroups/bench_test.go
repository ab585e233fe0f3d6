package cgroups

import (
	"testing"

	"github.com/berth-project/berth/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BenchmarkNew measures hierarchy discovery and path resolution.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New("/berth-bench", "ctr", false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLifecycle measures what a container start and delete cost in
// cgroup work: create the cgroup in every hierarchy, write a typical set of
// limits with the default device rules, remove it.
func BenchmarkLifecycle(b *testing.B) {
	testutil.RequiresRoot(b)
	limit, pids, quota, period := int64(256<<20), int64(1024), int64(50000), uint64(100000)
	r := &specs.LinuxResources{
		Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, DefaultDevices...),
		Memory:  &specs.LinuxMemory{Limit: &limit},
		CPU:     &specs.LinuxCPU{Shares: u64(512), Quota: &quota, Period: &period},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	name := uniqueName(b)
	for b.Loop() {
		m, err := New("/"+name, "ctr", false)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Apply(-1); err != nil {
			b.Fatal(err)
		}
		if err := m.Set(r); err != nil {
			b.Fatal(err)
		}
		if err := m.Destroy(); err != nil {
			b.Fatal(err)
		}
	}
}
