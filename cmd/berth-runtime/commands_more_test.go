package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func parseUpdate(t *testing.T, stdin string, args ...string) (*specs.LinuxResources, []string, error) {
	t.Helper()
	var u updateFlags
	pos, err := newUpdateFlags(&u).parse(args)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	r, err := resourcesFromFlags(&u, strings.NewReader(stdin), func(err error) { warnings = append(warnings, err.Error()) })
	if err == nil && (len(pos) != 1 || pos[0] != "c1") {
		t.Fatalf("positional arguments %v", pos)
	}
	return r, warnings, err
}

func TestUpdateFlagsAsRunc(t *testing.T) {
	r, warnings, err := parseUpdate(t, "", "--memory", "100m", "--memory-swap=-1", "--memory-reservation", "1g",
		"--cpu-share", "512", "--cpu-quota", "-1", "--cpu-period", "100000", "--cpu-rt-period", "1000000",
		"--cpu-rt-runtime", "950000", "--cpuset-cpus", "0-1", "--cpuset-mems", "0", "--pids-limit", "20",
		"--blkio-weight", "300", "--kernel-memory", "10m", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if *r.Memory.Limit != 100<<20 || *r.Memory.Swap != -1 || *r.Memory.Reservation != 1<<30 {
		t.Errorf("memory %+v", r.Memory)
	}
	c := r.CPU
	if *c.Shares != 512 || *c.Quota != -1 || *c.Period != 100000 || *c.RealtimePeriod != 1000000 ||
		*c.RealtimeRuntime != 950000 || c.Cpus != "0-1" || c.Mems != "0" || c.Burst != nil || c.Idle != nil {
		t.Errorf("cpu %+v", c)
	}
	if *r.Pids.Limit != 20 || *r.BlockIO.Weight != 300 {
		t.Errorf("pids %v blkio %v", *r.Pids.Limit, *r.BlockIO.Weight)
	}
	if r.Memory.Kernel != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "--kernel-memory is ignored") {
		t.Errorf("kernel memory %v, warnings %q", r.Memory.Kernel, warnings)
	}
	// --cpu-shares is accepted as an alias of runc's --cpu-share.
	r, _, err = parseUpdate(t, "", "c1", "--cpu-shares", "2")
	if err != nil || *r.CPU.Shares != 2 {
		t.Fatalf("--cpu-shares: %v", err)
	}
}

func TestUpdateFlagsUnsetStayUnset(t *testing.T) {
	r, _, err := parseUpdate(t, "", "--pids-limit", "0", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Memory.Limit != nil || r.Memory.Swap != nil || r.CPU.Shares != nil || r.CPU.Quota != nil ||
		r.Pids.Limit != nil || r.BlockIO.Weight != nil || r.CPU.Cpus != "" {
		t.Fatalf("resources %+v", r)
	}
}

func TestUpdateFlagsRefuseBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--memory", "12x"}, {"--cpu-share", "-5"}, {"--cpu-quota", "q"}, {"--pids-limit", "many"},
		{"--blkio-weight", "70000"}, {"--cpu-idle", "x"},
	} {
		_, _, err := parseUpdate(t, "", append(args, "c1")...)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: err = %v, want one naming the flag", args, err)
		}
	}
}

func TestUpdateResourcesJSONIgnoresOtherFlags(t *testing.T) {
	js := `{"memory":{"limit":1048576,"checkBeforeUpdate":true},"cpu":{"quota":5000,"cpus":"1"},"pids":{"limit":9},"blockIO":{"weight":20}}`
	r, _, err := parseUpdate(t, js, "-r", "-", "--memory", "5g", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if *r.Memory.Limit != 1048576 || !*r.Memory.CheckBeforeUpdate || *r.CPU.Quota != 5000 || r.CPU.Cpus != "1" ||
		*r.Pids.Limit != 9 || *r.BlockIO.Weight != 20 {
		t.Fatalf("resources %+v", r)
	}
	file := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(file, []byte(`{"memory":{"limit":2097152}}`), 0o600)
	r, _, err = parseUpdate(t, "", "--resources", file, "c1")
	if err != nil || *r.Memory.Limit != 2097152 {
		t.Fatalf("from file: %v", err)
	}
	if _, _, err := parseUpdate(t, "{not json", "-r", "-", "c1"); err == nil || !strings.Contains(err.Error(), "parse resources") {
		t.Fatalf("bad JSON: %v", err)
	}
}
