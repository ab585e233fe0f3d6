package image

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func plat(os, arch, variant string) ocispec.Platform {
	return ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in   string
		want ocispec.Platform
		str  string
	}{
		{"linux/amd64", plat("linux", "amd64", ""), "linux/amd64"},
		{"linux/x86_64", plat("linux", "amd64", ""), "linux/amd64"},
		{"Linux/AMD64", plat("linux", "amd64", ""), "linux/amd64"},
		{"linux/arm64", plat("linux", "arm64", ""), "linux/arm64"},
		{"linux/arm64/v8", plat("linux", "arm64", ""), "linux/arm64"},
		{"linux/aarch64", plat("linux", "arm64", ""), "linux/arm64"},
		{"linux/arm", plat("linux", "arm", "v7"), "linux/arm/v7"},
		{"linux/arm/v6", plat("linux", "arm", "v6"), "linux/arm/v6"},
		{"linux/arm/7", plat("linux", "arm", "v7"), "linux/arm/v7"},
		{"linux/armhf", plat("linux", "arm", "v7"), "linux/arm/v7"},
		{"linux/armel", plat("linux", "arm", "v6"), "linux/arm/v6"},
		{"linux/i386", plat("linux", "386", ""), "linux/386"},
		{"linux/s390x", plat("linux", "s390x", ""), "linux/s390x"},
		{"windows/amd64", plat("windows", "amd64", ""), "windows/amd64"},
		{"s390x", plat(runtime.GOOS, "s390x", ""), runtime.GOOS + "/s390x"},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if err != nil {
			t.Errorf("ParsePlatform(%q): %v", tt.in, err)
			continue
		}
		if got.OS != tt.want.OS || got.Architecture != tt.want.Architecture || got.Variant != tt.want.Variant {
			t.Errorf("ParsePlatform(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if s := FormatPlatform(got); s != tt.str {
			t.Errorf("FormatPlatform(ParsePlatform(%q)) = %q, want %q", tt.in, s, tt.str)
		}
	}
	host, err := ParsePlatform("linux")
	if err != nil || host.OS != "linux" || host.Architecture != HostPlatform().Architecture {
		t.Errorf("ParsePlatform(linux) = %+v, %v", host, err)
	}
	for _, in := range []string{"", "linux/", "/amd64", "linux/amd64/v8/x", "nosuchos/amd64", "linux/am d64"} {
		if p, err := ParsePlatform(in); err == nil {
			t.Errorf("ParsePlatform(%q) = %+v, want error", in, p)
		}
	}
}

func TestHostPlatform(t *testing.T) {
	p := HostPlatform()
	if p.OS != runtime.GOOS {
		t.Errorf("HostPlatform().OS = %q, want %q", p.OS, runtime.GOOS)
	}
	if want := Normalize(plat(runtime.GOOS, runtime.GOARCH, "")).Architecture; p.Architecture != want {
		t.Errorf("HostPlatform().Architecture = %q, want %q", p.Architecture, want)
	}
	if !Match(p, p) {
		t.Errorf("host platform %+v does not match itself", p)
	}
}

func TestArmVariant(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"processor\t: 0\nCPU architecture: 7\n":       "v7",
		"processor\t: 0\nCPU architecture: 6\n":       "v6",
		"processor\t: 0\nCPU architecture: AArch64\n": "v7",
		"processor\t: 0\n":                            "v7",
	} {
		path := filepath.Join(dir, "cpuinfo")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := armVariant(path); got != want {
			t.Errorf("armVariant(%q) = %q, want %q", content, got, want)
		}
	}
	if got := armVariant(filepath.Join(dir, "missing")); got != "v7" {
		t.Errorf("armVariant(missing) = %q, want v7", got)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		want, have ocispec.Platform
		ok         bool
	}{
		{plat("linux", "amd64", ""), plat("linux", "amd64", ""), true},
		{plat("linux", "amd64", ""), plat("linux", "x86_64", ""), true},
		{plat("linux", "amd64", ""), plat("linux", "arm64", ""), false},
		{plat("linux", "amd64", ""), plat("windows", "amd64", ""), false},
		{plat("linux", "amd64", ""), plat("linux", "amd64", "v3"), false},
		{plat("linux", "amd64", "v3"), plat("linux", "amd64", "v2"), true},
		{plat("linux", "amd64", "v3"), plat("linux", "amd64", ""), true},
		{plat("linux", "arm64", ""), plat("linux", "arm64", "v8"), true},
		{plat("linux", "arm64", "v8"), plat("linux", "arm64", ""), true},
		{plat("linux", "arm", "v7"), plat("linux", "arm", "v6"), true},
		{plat("linux", "arm", "v7"), plat("linux", "arm", ""), true},
		{plat("linux", "arm", ""), plat("linux", "arm", "v7"), true},
		{plat("linux", "arm", "v6"), plat("linux", "arm", "v7"), false},
		{plat("linux", "arm", "v7"), plat("linux", "arm64", ""), false},
		{plat("linux", "riscv64", ""), plat("linux", "riscv64", "weird"), false},
	}
	for _, tt := range tests {
		if got := Match(tt.want, tt.have); got != tt.ok {
			t.Errorf("Match(%s, %s) = %v, want %v", FormatPlatform(tt.want), FormatPlatform(tt.have), got, tt.ok)
		}
	}
}
