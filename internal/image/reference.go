// Package image owns what Berth knows about OCI and Docker images as data:
// image references with Docker's name normalisation, platforms and how they
// match, the media types of manifests, indexes, configs and layers, and
// decoding them with the checks a pull needs (choosing the manifest for a
// platform from an index). It does no I/O: the registry package fetches the
// bytes, the content package stores them, and the engine puts them together.
package image

import (
	"fmt"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
)

// DefaultDomain is the registry a reference without a domain names.
const DefaultDomain = "docker.io"

// DefaultTag is the tag a reference without a tag or digest gets.
const DefaultTag = "latest"

// Reference is a fully normalised image reference, as Docker normalises it:
// "busybox" is Domain "docker.io", Path "library/busybox", Tag "latest".
// A reference may carry a tag, a digest or both; with a digest, the digest
// names the content and the tag is informational.
type Reference struct {
	Domain string        // registry host[:port], "docker.io" for Docker Hub
	Path   string        // repository path within the registry, "library/busybox"
	Tag    string        // "" when the reference is by digest only
	Digest digest.Digest // "" when the reference is by tag only
}

// ParseReference parses s with Docker's normalisation and defaults the tag
// to "latest" when s has neither tag nor digest.
func ParseReference(s string) (Reference, error) {
	r, err := ParseName(s)
	if err != nil {
		return Reference{}, err
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r, nil
}

// ParseName parses s with Docker's normalisation but leaves Tag empty when s
// has none (for "all tags of a repository" and for reference filters).
func ParseName(s string) (Reference, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, errdefs.InvalidArgument(fmt.Errorf("parse image reference %q: %w", s, err))
	}
	r := Reference{Domain: reference.Domain(named), Path: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	return r, nil
}

// Name is the normalised repository name, "docker.io/library/busybox".
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// FamiliarName is the repository name as Docker shows it: "busybox",
// "user/app", "localhost:5000/x".
func (r Reference) FamiliarName() string {
	if r.Domain == DefaultDomain {
		// Official images are "library/<name>"; a nested path under library/
		// keeps its prefix, as Docker shows it.
		if rest, ok := strings.CutPrefix(r.Path, "library/"); ok && !strings.Contains(rest, "/") {
			return rest
		}
		return r.Path
	}
	return r.Name()
}

// String is the normalised reference, "docker.io/library/busybox:latest",
// with "@digest" appended when the reference has one.
func (r Reference) String() string { return r.format(r.Name()) }

// Familiar is the reference as Docker displays it: "busybox:latest",
// "localhost:5000/x:y", "busybox@sha256:...".
func (r Reference) Familiar() string { return r.format(r.FamiliarName()) }

func (r Reference) format(name string) string {
	s := name
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// IsZero reports whether r is the zero Reference.
func (r Reference) IsZero() bool { return r == Reference{} }

// WithTag returns r naming tag instead of its tag or digest.
func (r Reference) WithTag(tag string) Reference {
	return Reference{Domain: r.Domain, Path: r.Path, Tag: tag}
}

// WithDigest returns r naming d instead of its tag or digest.
func (r Reference) WithDigest(d digest.Digest) Reference {
	return Reference{Domain: r.Domain, Path: r.Path, Digest: d}
}

// Repository returns r without tag and digest.
func (r Reference) Repository() Reference { return Reference{Domain: r.Domain, Path: r.Path} }

// Object is what r names inside its repository: the digest when it has one,
// else the tag. This is the last element of a manifest URL.
func (r Reference) Object() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}
