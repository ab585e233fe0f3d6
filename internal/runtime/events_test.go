package runtime

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/berth-project/berth/internal/runtime/cgroups"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]uint16{
		"": nil, "0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7\n": {0, 1, 4, 6, 7},
	} {
		got, err := ParseCPUList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"a", "3-1", "1-", "70000"} {
		if _, err := ParseCPUList(in); err == nil {
			t.Errorf("ParseCPUList(%q) accepted", in)
		}
	}
}

// The stats event has runc's JSON names, which containerd's go-runc and
// Podman decode.
func TestStatsEventJSONShape(t *testing.T) {
	cs := &cgroups.Stats{
		CPU: cgroups.CPUStats{Usage: cgroups.CPUUsage{Total: 30, Percpu: []uint64{10, 20}, Kernel: 5, User: 25},
			Throttling: cgroups.Throttling{Periods: 4, ThrottledPeriods: 2, ThrottledTime: 99}},
		Memory: cgroups.MemoryStats{Cache: 7, Usage: cgroups.MemoryEntry{Limit: 100, Usage: 50, Max: 60, Failcnt: 1},
			Swap: cgroups.MemoryEntry{Limit: 200, Usage: 55}, Raw: map[string]uint64{"rss": 3}},
		Pids:    cgroups.PidsStats{Current: 2, Limit: 10},
		Blkio:   cgroups.BlkioStats{IoServiceBytesRecursive: []cgroups.BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}}},
		Hugetlb: map[string]cgroups.HugetlbStats{"2MB": {Usage: 1, Max: 2, Failcnt: 3}},
	}
	data, err := json.Marshal(Event{Type: "stats", ID: "c1", Data: convertStats(cs)})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var v any = got
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"type"}, "stats"},
		{[]string{"id"}, "c1"},
		{[]string{"data", "cpu", "usage", "total"}, 30.0},
		{[]string{"data", "cpu", "usage", "kernel"}, 5.0},
		{[]string{"data", "cpu", "usage", "user"}, 25.0},
		{[]string{"data", "cpu", "throttling", "periods"}, 4.0},
		{[]string{"data", "cpu", "throttling", "throttledPeriods"}, 2.0},
		{[]string{"data", "cpu", "throttling", "throttledTime"}, 99.0},
		{[]string{"data", "memory", "cache"}, 7.0},
		{[]string{"data", "memory", "usage", "limit"}, 100.0},
		{[]string{"data", "memory", "usage", "max"}, 60.0},
		{[]string{"data", "memory", "usage", "failcnt"}, 1.0},
		{[]string{"data", "memory", "swap", "usage"}, 55.0},
		{[]string{"data", "memory", "raw", "rss"}, 3.0},
		{[]string{"data", "pids", "current"}, 2.0},
		{[]string{"data", "pids", "limit"}, 10.0},
		{[]string{"data", "hugetlb", "2MB", "max"}, 2.0},
		{[]string{"data", "hugetlb", "2MB", "failcnt"}, 3.0},
	} {
		if v := get(c.path...); v != c.want {
			t.Errorf("%v = %v, want %v (in %s)", c.path, v, c.want, data)
		}
	}
	entries, _ := get("data", "blkio", "ioServiceBytesRecursive").([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["op"] != "Read" || entries[0].(map[string]any)["value"] != 4096.0 {
		t.Errorf("blkio entries %v", entries)
	}
	for _, k := range []string{"cpuset", "intel_rdt", "network_interfaces"} {
		if _, ok := got["data"].(map[string]any)[k]; !ok {
			t.Errorf("no %q in %s", k, data)
		}
	}
	if data, _ := json.Marshal(Event{Type: "oom", ID: "c1"}); string(data) != `{"type":"oom","id":"c1"}` {
		t.Errorf("oom event %s", data)
	}
}
