package image

import (
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/distribution/reference"
)

func TestParseReference(t *testing.T) {
	const dgst = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	tests := []struct {
		in, str, familiar string
		want              Reference
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest",
			Reference{Domain: "docker.io", Path: "library/busybox", Tag: "latest"}},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36",
			Reference{Domain: "docker.io", Path: "library/busybox", Tag: "1.36"}},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest",
			Reference{Domain: "docker.io", Path: "library/busybox", Tag: "latest"}},
		{"user/app:v1", "docker.io/user/app:v1", "user/app:v1",
			Reference{Domain: "docker.io", Path: "user/app", Tag: "v1"}},
		{"localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y",
			Reference{Domain: "localhost:5000", Path: "x", Tag: "y"}},
		{"localhost/x", "localhost/x:latest", "localhost/x:latest",
			Reference{Domain: "localhost", Path: "x", Tag: "latest"}},
		{"127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000/a/b/c:latest",
			Reference{Domain: "127.0.0.1:5000", Path: "a/b/c", Tag: "latest"}},
		{"[::1]:5000/x:t", "[::1]:5000/x:t", "[::1]:5000/x:t",
			Reference{Domain: "[::1]:5000", Path: "x", Tag: "t"}},
		{"busybox@" + dgst, "docker.io/library/busybox@" + dgst, "busybox@" + dgst,
			Reference{Domain: "docker.io", Path: "library/busybox", Digest: dgst}},
		{"busybox:1.36@" + dgst, "docker.io/library/busybox:1.36@" + dgst, "busybox:1.36@" + dgst,
			Reference{Domain: "docker.io", Path: "library/busybox", Tag: "1.36", Digest: dgst}},
		{"library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest",
			Reference{Domain: "docker.io", Path: "library/a/b", Tag: "latest"}},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest",
			Reference{Domain: "docker.io", Path: "library/busybox", Tag: "latest"}},
		{"quay.io/org/img:tag", "quay.io/org/img:tag", "quay.io/org/img:tag",
			Reference{Domain: "quay.io", Path: "org/img", Tag: "tag"}},
	}
	for _, tt := range tests {
		got, err := ParseReference(tt.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseReference(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.String() != tt.str {
			t.Errorf("ParseReference(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
		if got.Familiar() != tt.familiar {
			t.Errorf("ParseReference(%q).Familiar() = %q, want %q", tt.in, got.Familiar(), tt.familiar)
		}
		// The normalised form parses back to itself.
		again, err := ParseReference(got.String())
		if err != nil || again != got {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseReferenceInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"Busybox",            // upper case repository
		"busybox:",           // empty tag
		"busybox@sha256:123", // short digest
		"a/b:c:d",
		"ab8bc9f0ab9d3a0c7a9d6c0c6a9d5b0d1f6b3e2c1a0b9c8d7e6f5a4b3c2d1e0f", // 64-hex is reserved for IDs
		"busybox:" + string(make([]byte, 0)) + "tag with space",
	} {
		if r, err := ParseReference(in); err == nil {
			t.Errorf("ParseReference(%q) = %+v, want error", in, r)
		} else if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseReference(%q) error %v is not InvalidArgument", in, err)
		}
	}
}

func TestParseName(t *testing.T) {
	r, err := ParseName("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if r.Tag != "" || r.Digest != "" || r.Name() != "docker.io/library/busybox" || r.FamiliarName() != "busybox" {
		t.Errorf("ParseName(busybox) = %+v", r)
	}
	if s := r.String(); s != "docker.io/library/busybox" {
		t.Errorf("String() = %q", s)
	}
	tagged := r.WithTag("x")
	if tagged.Familiar() != "busybox:x" || tagged.Object() != "x" {
		t.Errorf("WithTag: %+v", tagged)
	}
	const dgst = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	byDigest := tagged.WithDigest(dgst)
	if byDigest.Tag != "" || byDigest.Object() != dgst {
		t.Errorf("WithDigest: %+v", byDigest)
	}
	if byDigest.Repository() != r {
		t.Errorf("Repository() = %+v, want %+v", byDigest.Repository(), r)
	}
}

// TestFamiliarAgreesWithDistribution checks String and Familiar against the
// distribution/reference library Docker itself uses.
func TestFamiliarAgreesWithDistribution(t *testing.T) {
	const dgst = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	for _, in := range []string{
		"busybox", "busybox:1", "library/busybox", "docker.io/library/busybox:x", "library/a/b",
		"user/app", "user/app/sub:t", "localhost/x", "localhost:5000/x:y", "example.com/a/b@" + dgst,
		"busybox:1@" + dgst, "[::1]:5000/x", "127.0.0.1:5000/library/busybox",
	} {
		named, err := reference.ParseNormalizedNamed(in)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseName(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.Familiar(), reference.FamiliarString(named); got != want {
			t.Errorf("Familiar(%q) = %q, want %q", in, got, want)
		}
		if got, want := r.String(), named.String(); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
