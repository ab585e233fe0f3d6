package image

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/berth-project/berth/internal/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// HostPlatform is the platform this host runs natively, normalised; on 32-bit
// ARM the variant comes from /proc/cpuinfo ("CPU architecture").
func HostPlatform() ocispec.Platform {
	return Normalize(ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH, Variant: hostVariant()})
}

var hostVariant = sync.OnceValue(func() string {
	if runtime.GOARCH != "arm" {
		return ""
	}
	return armVariant("/proc/cpuinfo")
})

// armVariant reads the ARM architecture version from a cpuinfo file; v7 when
// it cannot tell.
func armVariant(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "v7"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "CPU architecture" {
			continue
		}
		v = strings.TrimSpace(v)
		// "7", "8", "AArch64" (a 32-bit process on a 64-bit kernel).
		if n, err := strconv.Atoi(v); err == nil && n >= 5 && n <= 7 {
			return "v" + v
		}
		return "v7"
	}
	return "v7"
}

var knownOS = map[string]bool{
	"linux": true, "windows": true, "darwin": true, "freebsd": true, "netbsd": true,
	"openbsd": true, "solaris": true, "illumos": true, "aix": true, "android": true,
	"dragonfly": true, "plan9": true, "ios": true, "js": true, "wasip1": true,
}

// ParsePlatform parses "os", "os/arch", "os/arch/variant" or a bare
// architecture ("arm64", which gets the host's OS), normalising aliases
// (x86_64 is amd64, aarch64 is arm64, armhf is arm/v7) and default variants.
func ParsePlatform(s string) (ocispec.Platform, error) {
	bad := func(why string) (ocispec.Platform, error) {
		return ocispec.Platform{}, errdefs.InvalidArgument(fmt.Errorf("parse platform %q: %s", s, why))
	}
	if s == "" {
		return bad("empty")
	}
	parts := strings.Split(strings.ToLower(s), "/")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t\n:@") {
			return bad("want os[/arch[/variant]]")
		}
	}
	var p ocispec.Platform
	switch len(parts) {
	case 1:
		if knownOS[parts[0]] {
			p.OS = parts[0]
			p.Architecture = runtime.GOARCH
			if p.OS == runtime.GOOS {
				p.Variant = hostVariant()
			}
		} else {
			p.OS = runtime.GOOS
			p.Architecture = parts[0]
		}
	case 2:
		p.OS, p.Architecture = parts[0], parts[1]
	case 3:
		p.OS, p.Architecture, p.Variant = parts[0], parts[1], parts[2]
	default:
		return bad("too many elements, want os[/arch[/variant]]")
	}
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	if !knownOS[p.OS] {
		return bad(fmt.Sprintf("unknown operating system %q", p.OS))
	}
	return Normalize(p), nil
}

// FormatPlatform writes p as "os/arch[/variant]".
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize maps architecture aliases and variant spellings to their
// canonical form: arm64 with variant v8 (its default) has no variant, arm
// without a variant is arm/v7, variants are "v<n>".
func Normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" || variant == "1" {
			variant = ""
		}
	case "i386", "i686", "386":
		arch = "386"
	case "aarch64", "arm64":
		arch = "arm64"
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm":
		if variant == "" {
			variant = "v7"
		}
	}
	if variant != "" && variant[0] >= '0' && variant[0] <= '9' {
		variant = "v" + variant
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// defaultVariant is the variant an architecture has when none is given.
func defaultVariant(arch string) string {
	switch arch {
	case "amd64":
		return "v1"
	case "arm64":
		return "v8"
	case "arm":
		return "v7"
	}
	return ""
}

// variantLevel returns n for variant "v<n>" (defaulted per architecture).
func variantLevel(arch, variant string) (int, bool) {
	if variant == "" {
		variant = defaultVariant(arch)
	}
	if !strings.HasPrefix(variant, "v") {
		return 0, false
	}
	n, err := strconv.ParseFloat(variant[1:], 64)
	if err != nil {
		return 0, false
	}
	return int(n * 10), true
}

// Match reports whether an image built for have runs on want: same OS and
// architecture, and a variant no newer than want's (arm/v7 runs arm/v6;
// arm64 is arm64/v8).
func Match(want, have ocispec.Platform) bool {
	want, have = Normalize(want), Normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	if want.Variant == have.Variant {
		return true
	}
	w, okw := variantLevel(want.Architecture, want.Variant)
	h, okh := variantLevel(have.Architecture, have.Variant)
	return okw && okh && h <= w
}

// matchRank orders matching platforms: lower is better (exact variant first,
// then the newest compatible variant).
func matchRank(want, have ocispec.Platform) int {
	want, have = Normalize(want), Normalize(have)
	if want.Variant == have.Variant {
		return 0
	}
	w, _ := variantLevel(want.Architecture, want.Variant)
	h, _ := variantLevel(have.Architecture, have.Variant)
	return 1 + w - h
}
