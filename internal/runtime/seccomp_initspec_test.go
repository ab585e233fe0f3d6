package runtime

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The init gets the spec without the seccomp profile, and the caller's spec
// keeps it.
func TestInitSpecDropsSeccompOnly(t *testing.T) {
	s := &specs.Spec{
		Hostname: "h",
		Linux: &specs.Linux{
			Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			Sysctl:  map[string]string{"net.ipv4.ip_forward": "1"},
		},
	}
	got := initSpec(s)
	if got.Linux.Seccomp != nil {
		t.Fatal("the init's spec still has the seccomp profile")
	}
	if s.Linux.Seccomp == nil {
		t.Fatal("the caller's spec lost its seccomp profile")
	}
	if got.Hostname != "h" || got.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Fatalf("the init's spec lost other fields: %+v", got)
	}
	if plain := (&specs.Spec{Linux: &specs.Linux{}}); initSpec(plain) != plain {
		t.Fatal("a spec without seccomp is copied needlessly")
	}
}
