package runtime

import (
	"encoding/json"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseMemoryAsRunc(t *testing.T) {
	for in, want := range map[string]int64{
		"-1": -1, "0": 0, "1024": 1024, "100m": 100 << 20, "100M": 100 << 20, "1g": 1 << 30,
		"64MiB": 64 << 20, "2kb": 2048, "1.5g": 3 << 29, "10 k": 10 << 10,
	} {
		got, err := ParseMemory(in)
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "12x", "-2", "-5m", "1..5m"} {
		if v, err := ParseMemory(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseMemory(%q) = %d, %v; want an invalid argument", in, v, err)
		}
	}
}

func TestMergeResourcesKeepsWhatIsNotGiven(t *testing.T) {
	old := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: pointerTo[int64](100 << 20), Swap: pointerTo[int64](200 << 20), Swappiness: pointerTo[uint64](10)},
		CPU:     &specs.LinuxCPU{Shares: pointerTo[uint64](1024), Quota: pointerTo[int64](20000), Period: pointerTo[uint64](100000), Cpus: "0-1"},
		Pids:    &specs.LinuxPids{Limit: pointerTo[int64](50)},
		BlockIO: &specs.LinuxBlockIO{Weight: pointerTo[uint16](300)},
		Unified: map[string]string{"memory.high": "max"},
	}
	before, _ := json.Marshal(old)
	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: pointerTo[int64](150 << 20), CheckBeforeUpdate: pointerTo(true)},
		CPU:     &specs.LinuxCPU{Quota: pointerTo[int64](50000), Mems: "0"},
		Pids:    &specs.LinuxPids{},
		BlockIO: &specs.LinuxBlockIO{},
		Unified: map[string]string{"cpu.idle": "1"},
		// Not changed by update, as in runc.
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
	}
	got, err := MergeResources(old, r)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(old); string(after) != string(before) {
		t.Fatalf("MergeResources changed its input:\n%s\n%s", before, after)
	}
	m := got.Memory
	if *m.Limit != 150<<20 || *m.Swap != 200<<20 || *m.Swappiness != 10 || !*m.CheckBeforeUpdate {
		t.Errorf("memory %+v", m)
	}
	c := got.CPU
	if *c.Shares != 1024 || *c.Quota != 50000 || *c.Period != 100000 || c.Cpus != "0-1" || c.Mems != "0" {
		t.Errorf("cpu %+v", c)
	}
	if *got.Pids.Limit != 50 || *got.BlockIO.Weight != 300 || len(got.Devices) != 1 || got.HugepageLimits != nil {
		t.Errorf("merged %+v", got)
	}
	if got.Unified["memory.high"] != "max" || got.Unified["cpu.idle"] != "1" {
		t.Errorf("unified %v", got.Unified)
	}
}

func TestMergeResourcesFromNothing(t *testing.T) {
	got, err := MergeResources(nil, &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: pointerTo[int64](-1)},
		Pids:    &specs.LinuxPids{Limit: pointerTo[int64](7)},
		BlockIO: &specs.LinuxBlockIO{Weight: pointerTo[uint16](500)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// An unlimited memory limit with no swap given lifts swap too (runc).
	if *got.Memory.Limit != -1 || got.Memory.Swap == nil || *got.Memory.Swap != -1 {
		t.Errorf("memory %+v", got.Memory)
	}
	if *got.Pids.Limit != 7 || *got.BlockIO.Weight != 500 || got.CPU != nil {
		t.Errorf("merged %+v", got)
	}
}

func TestUpdatableWritesOnlyWhatUpdateChanges(t *testing.T) {
	r := &specs.LinuxResources{
		Devices:        []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
		Memory:         &specs.LinuxMemory{Limit: pointerTo[int64](1 << 20), Kernel: pointerTo[int64](5), Swappiness: pointerTo[uint64](3)},
		BlockIO:        &specs.LinuxBlockIO{Weight: pointerTo[uint16](10), ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1}}},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
		Unified:        map[string]string{"a": "b"},
	}
	u := updatable(r, nil)
	if u.Devices != nil || u.HugepageLimits != nil || u.Unified != nil || u.Memory.Kernel != nil || u.Memory.Swappiness != nil ||
		*u.Memory.Limit != 1<<20 || len(u.BlockIO.ThrottleReadBpsDevice) != 0 || *u.BlockIO.Weight != 10 {
		t.Fatalf("updatable: %+v", u)
	}
}
