package testutil

// Test images: every image Berth's image tests pull is built here from
// files the machine already has (Debian's busybox-static, or a directory
// made by scripts/make-debian-rootfs.sh) and pushed to a registry the test
// started. Each builder returns a go-containerregistry image or index; the
// Push* helpers push them and return the manifest digest.

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FixtureTime is the modification time of every file in the layers built
// from in-memory entries and of every fixture's creation date, so the
// fixtures' digests are the same on every run of the same machine.
var FixtureTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Busybox image config values the tests check after a pull.
const (
	BusyboxWorkingDir  = "/home"
	BusyboxStopSignal  = "SIGQUIT"
	BusyboxLabelKey    = "org.berth.test"
	BusyboxLabelValue  = "busybox"
	BusyboxExposedPort = "8080/tcp"
	BusyboxPathEnv     = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	BusyboxUser        = "0:0"
)

// BusyboxHealthcheck is the busybox image's health check.
var BusyboxHealthcheck = v1.HealthConfig{
	Test:     []string{"CMD-SHELL", "true"},
	Interval: 30 * time.Second,
	Timeout:  5 * time.Second,
	Retries:  3,
}

// PlatformMarkerPath is the file each image of the multi-platform index
// carries; its content is the image's architecture (amd64 or arm64).
const PlatformMarkerPath = "etc/berth-platform"

// MultiLayerExpect describes the root filesystem the multi-layer image
// unpacks to: Present maps paths (relative to the root) to file contents, or
// to "/" for directories; Absent lists what whiteouts and the opaque
// directory removed.
var MultiLayerExpect = struct {
	Present map[string]string
	Absent  []string
}{
	Present: map[string]string{
		"data/keep.txt":      "keep\n",
		"data/dir":           "/",
		"data/dir/b.txt":     "b\n",
		"opq":                "/",
		"opq/new.txt":        "new\n",
		"layer3.txt":         "third\n",
		"bin/busybox":        "", // content not compared
		"etc/berth-multi.md": "multi-layer fixture\n",
	},
	Absent: []string{
		"data/a.txt", // .wh.a.txt in layer 3
		"data/gone",  // .wh.gone removes a whole directory
		"data/gone/g.txt",
		"opq/old1.txt", // opq/ is opaque in layer 3
		"opq/sub",
		"opq/sub/x.txt",
	},
}

// Entry is one member of a layer tar built in memory.
type Entry struct {
	Name     string // path inside the layer, without a leading slash
	Type     byte   // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, ...
	Body     string // file content
	Linkname string // symlink or hardlink target
	Mode     int64  // permission bits; 0644 for files, 0755 for directories when zero

	Uid, Gid           int
	Devmajor, Devminor int64
	Xattrs             map[string]string // stored as SCHILY.xattr.<name> PAX records
}

// LayerTar returns an uncompressed layer tar holding entries in order.
func LayerTar(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.Name,
			Typeflag: e.Type,
			Linkname: e.Linkname,
			Mode:     e.Mode,
			ModTime:  FixtureTime,
			Format:   tar.FormatPAX,
			Uid:      e.Uid,
			Gid:      e.Gid,
			Devmajor: e.Devmajor,
			Devminor: e.Devminor,
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		switch h.Typeflag {
		case tar.TypeReg:
			h.Size = int64(len(e.Body))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		case tar.TypeDir:
			if h.Mode == 0 {
				h.Mode = 0o755
			}
			if !strings.HasSuffix(h.Name, "/") {
				h.Name += "/"
			}
		case tar.TypeSymlink:
			h.Mode = 0o777
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", e.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.Body); err != nil {
				return nil, fmt.Errorf("write tar entry %s: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// DirTar writes a tar of the tree at dir to w, in lexical order, keeping
// owners, modes, symlinks, hardlinks and device nodes. With fixedTime set,
// every entry's modification time is FixtureTime.
func DirTar(w io.Writer, dir string, fixedTime bool) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("readlink %s: %w", p, err)
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("tar header for %s: %w", p, err)
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.Format = tar.FormatPAX
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if fixedTime {
			h.ModTime = FixtureTime
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, seen := links[key]; seen {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[key] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write tar header %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("copy %s into tar: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// Layer compressions the fixtures use.
const (
	Gzip         = "gzip"
	Zstd         = "zstd"
	Uncompressed = "none"
)

// NewLayer makes a layer from an uncompressed tar, compressed as comp, with
// Docker media types when docker is set and OCI ones otherwise (zstd and
// uncompressed layers are OCI only).
func NewLayer(tarBytes []byte, comp string, docker bool) (v1.Layer, error) {
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil }
	switch comp {
	case Gzip:
		mt := types.OCILayer
		if docker {
			mt = types.DockerLayer
		}
		return tarball.LayerFromOpener(opener, tarball.WithMediaType(mt), tarball.WithCompressedCaching)
	case Zstd:
		return tarball.LayerFromOpener(opener, tarball.WithCompression(compression.ZStd),
			tarball.WithMediaType(types.OCILayerZStd), tarball.WithCompressedCaching)
	case Uncompressed:
		return static.NewLayer(tarBytes, types.OCIUncompressedLayer), nil
	}
	return nil, fmt.Errorf("new layer: unknown compression %q", comp)
}

var (
	busyboxTarOnce sync.Once
	busyboxTar     []byte
	busyboxTarErr  error
)

// BusyboxTar returns the uncompressed tar of a busybox root filesystem
// (MakeBusyboxRootfs), built once per process.
func BusyboxTar() ([]byte, error) {
	busyboxTarOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-busybox-layer-")
		if err != nil {
			busyboxTarErr = err
			return
		}
		defer os.RemoveAll(dir)
		if err := MakeBusyboxRootfs(dir); err != nil {
			busyboxTarErr = fmt.Errorf("make busybox rootfs: %w", err)
			return
		}
		var buf bytes.Buffer
		if err := DirTar(&buf, dir, true); err != nil {
			busyboxTarErr = err
			return
		}
		busyboxTar = buf.Bytes()
	})
	return busyboxTar, busyboxTarErr
}

// newImage starts an image with the given manifest style, config fields,
// platform and layers, each with a history entry.
func newImage(docker bool, cfg v1.Config, platform v1.Platform, layers []v1.Layer, comments []string) (v1.Image, error) {
	var img v1.Image = empty.Image
	if docker {
		img = mutate.MediaType(img, types.DockerManifestSchema2)
		img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	} else {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, History: v1.History{
			Created:   v1.Time{Time: FixtureTime},
			CreatedBy: "berth-testutil: " + comments[i],
			Comment:   comments[i],
		}}
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = platform.Architecture
	cf.OS = platform.OS
	cf.Variant = platform.Variant
	cf.Created = v1.Time{Time: FixtureTime}
	cf.Author = "Berth tests"
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// BusyboxConfig is the runtime config of the busybox fixture.
func BusyboxConfig() v1.Config {
	hc := BusyboxHealthcheck
	return v1.Config{
		Cmd:          []string{"sh"},
		Env:          []string{BusyboxPathEnv, "BERTH_FIXTURE=busybox"},
		Labels:       map[string]string{BusyboxLabelKey: BusyboxLabelValue},
		ExposedPorts: map[string]struct{}{BusyboxExposedPort: {}},
		Volumes:      map[string]struct{}{"/data": {}},
		WorkingDir:   BusyboxWorkingDir,
		StopSignal:   BusyboxStopSignal,
		User:         BusyboxUser,
		Healthcheck:  &hc,
	}
}

// hostPlatform is linux on the architecture Go was built for.
func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// BusyboxImageWith builds the busybox fixture (one layer, Docker v2 schema 2
// media types when docker is set) with its layer compressed as comp.
func BusyboxImageWith(comp string, docker bool) (v1.Image, error) {
	tb, err := BusyboxTar()
	if err != nil {
		return nil, err
	}
	l, err := NewLayer(tb, comp, docker)
	if err != nil {
		return nil, err
	}
	return newImage(docker, BusyboxConfig(), hostPlatform(), []v1.Layer{l}, []string{"busybox-static rootfs"})
}

// BusyboxImage is the busybox fixture: a Docker v2 schema 2 image with one
// gzip layer and the config of BusyboxConfig.
func BusyboxImage() (v1.Image, error) { return BusyboxImageWith(Gzip, true) }

// ZstdImage is the busybox fixture as an OCI image with a zstd layer.
func ZstdImage() (v1.Image, error) { return BusyboxImageWith(Zstd, false) }

// UncompressedImage is the busybox fixture as an OCI image with an
// uncompressed layer.
func UncompressedImage() (v1.Image, error) { return BusyboxImageWith(Uncompressed, false) }

// MultiLayerImage is an OCI image of four gzip layers: busybox, a layer of
// files and directories, a layer of whiteouts (.wh.a.txt, .wh.gone) and an
// opaque directory (opq/.wh..wh..opq) with a new file, and a last small
// layer. It unpacks to MultiLayerExpect.
func MultiLayerImage() (v1.Image, error) {
	bb, err := BusyboxTar()
	if err != nil {
		return nil, err
	}
	l2, err := LayerTar(
		Entry{Name: "data", Type: tar.TypeDir},
		Entry{Name: "data/a.txt", Body: "a\n"},
		Entry{Name: "data/keep.txt", Body: "keep\n"},
		Entry{Name: "data/dir", Type: tar.TypeDir},
		Entry{Name: "data/dir/b.txt", Body: "b\n"},
		Entry{Name: "data/gone", Type: tar.TypeDir},
		Entry{Name: "data/gone/g.txt", Body: "g\n"},
		Entry{Name: "opq", Type: tar.TypeDir},
		Entry{Name: "opq/old1.txt", Body: "old1\n"},
		Entry{Name: "opq/sub", Type: tar.TypeDir},
		Entry{Name: "opq/sub/x.txt", Body: "x\n"},
		Entry{Name: "etc/berth-multi.md", Body: "multi-layer fixture\n"},
	)
	if err != nil {
		return nil, err
	}
	l3, err := LayerTar(
		Entry{Name: "data", Type: tar.TypeDir},
		Entry{Name: "data/.wh.a.txt"},
		Entry{Name: "data/.wh.gone"},
		Entry{Name: "opq", Type: tar.TypeDir},
		Entry{Name: "opq/.wh..wh..opq"},
		Entry{Name: "opq/new.txt", Body: "new\n"},
	)
	if err != nil {
		return nil, err
	}
	l4, err := LayerTar(Entry{Name: "layer3.txt", Body: "third\n"})
	if err != nil {
		return nil, err
	}
	var layers []v1.Layer
	for _, tb := range [][]byte{bb, l2, l3, l4} {
		l, err := NewLayer(tb, Gzip, false)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	cfg := BusyboxConfig()
	cfg.Labels = map[string]string{BusyboxLabelKey: "multi-layer"}
	return newImage(false, cfg, hostPlatform(), layers,
		[]string{"busybox-static rootfs", "files and directories", "whiteouts and opaque dir", "last file"})
}

// PlatformImage is one image of the multi-platform index: busybox plus a
// layer with PlatformMarkerPath holding arch. The busybox binary is the
// host's whatever arch says; the image is for pull tests, not for running.
func PlatformImage(arch, variant string, docker bool) (v1.Image, error) {
	bb, err := BusyboxTar()
	if err != nil {
		return nil, err
	}
	marker, err := LayerTar(Entry{Name: "etc", Type: tar.TypeDir}, Entry{Name: PlatformMarkerPath, Body: arch + "\n"})
	if err != nil {
		return nil, err
	}
	var layers []v1.Layer
	for _, tb := range [][]byte{bb, marker} {
		l, err := NewLayer(tb, Gzip, docker)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	cfg := BusyboxConfig()
	cfg.Labels = map[string]string{BusyboxLabelKey: "platform-" + arch}
	return newImage(docker, cfg, v1.Platform{OS: "linux", Architecture: arch, Variant: variant}, layers,
		[]string{"busybox-static rootfs", "platform marker " + arch})
}

// MultiPlatformIndex is an index of linux/amd64 and linux/arm64/v8 images
// (PlatformImage): an OCI image index of OCI manifests, or with docker set a
// Docker manifest list of Docker v2 schema 2 manifests.
func MultiPlatformIndex(docker bool) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = empty.Index
	if docker {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	} else {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
		img, err := PlatformImage(p.Architecture, p.Variant, docker)
		if err != nil {
			return nil, fmt.Errorf("platform image %s: %w", p.Architecture, err)
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

// Escape kinds for EvilImage.
const (
	EscapeDotDot   = "dotdot"   // a file named ../../../<target>
	EscapeAbsolute = "absolute" // a file named /<target>
	EscapeSymlink  = "symlink"  // a symlink to target's directory, then a file written through it
	EscapeHardlink = "hardlink" // a hardlink to /etc/shadow (and to target) from inside the layer
)

// EvilImage is an OCI image whose second layer tries to write target, an
// absolute host path that must stay absent (or for EscapeHardlink, a file
// whose link count must not change), by the given escape kind. A correct
// extractor either rejects the layer or keeps every write inside the
// snapshot.
func EvilImage(kind, target string) (v1.Image, error) {
	if !filepath.IsAbs(target) {
		return nil, fmt.Errorf("evil image: target %q is not absolute", target)
	}
	rel := strings.TrimPrefix(path.Clean(target), "/")
	var entries []Entry
	switch kind {
	case EscapeDotDot:
		entries = []Entry{{Name: strings.Repeat("../", 16) + rel, Body: "escaped\n"}}
	case EscapeAbsolute:
		entries = []Entry{{Name: "/" + rel, Body: "escaped\n"}}
	case EscapeSymlink:
		entries = []Entry{
			{Name: "escape", Type: tar.TypeSymlink, Linkname: path.Dir(target)},
			{Name: "escape/" + path.Base(target), Body: "escaped\n"},
		}
	case EscapeHardlink:
		entries = []Entry{
			{Name: "shadow", Type: tar.TypeLink, Linkname: "/etc/shadow"},
			{Name: "linked", Type: tar.TypeLink, Linkname: strings.Repeat("../", 16) + rel},
		}
	default:
		return nil, fmt.Errorf("evil image: unknown escape kind %q", kind)
	}
	bb, err := BusyboxTar()
	if err != nil {
		return nil, err
	}
	evil, err := LayerTar(entries...)
	if err != nil {
		return nil, err
	}
	var layers []v1.Layer
	for _, tb := range [][]byte{bb, evil} {
		l, err := NewLayer(tb, Gzip, false)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return newImage(false, BusyboxConfig(), hostPlatform(), layers, []string{"busybox-static rootfs", "escape " + kind})
}

// DirImage makes a one-layer Docker image from the root filesystem in dir
// (for example a debootstrap tree), running cmd. The layer tar is streamed
// from the directory; it is gzipped once and kept in memory.
func DirImage(dir string, cmd ...string) (v1.Image, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("dir image: %w", err)
	}
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(DirTar(pw, dir, false)) }()
		return pr, nil
	}
	l, err := tarball.LayerFromOpener(opener, tarball.WithMediaType(types.DockerLayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	cfg := v1.Config{Cmd: cmd, Env: []string{BusyboxPathEnv}}
	return newImage(true, cfg, hostPlatform(), []v1.Layer{l}, []string{"root filesystem of " + filepath.Base(dir)})
}

// Pushable is what PushFixture pushes: a v1.Image or a v1.ImageIndex.
type Pushable = remote.Taggable

// Push pushes an image or index to ref ("host:port/repo:tag" or
// "host:port/repo@sha256:..."), over plain HTTP unless the options bring a
// TLS transport, and returns the manifest digest.
func Push(ctx context.Context, ref string, obj Pushable, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("parse reference %s: %w", ref, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	var d v1.Hash
	switch o := obj.(type) {
	case v1.ImageIndex:
		if err := remote.WriteIndex(r, o, opts...); err != nil {
			return "", fmt.Errorf("push index %s: %w", ref, err)
		}
		d, err = o.Digest()
	case v1.Image:
		if err := remote.Write(r, o, opts...); err != nil {
			return "", fmt.Errorf("push image %s: %w", ref, err)
		}
		d, err = o.Digest()
	default:
		return "", fmt.Errorf("push %s: %T is neither an image nor an index", ref, obj)
	}
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", ref, err)
	}
	return d.String(), nil
}

// PushFixture pushes obj to registry/repo (repo may carry a :tag) and fails
// t on error. It returns the manifest digest.
func PushFixture(t testing.TB, registry, repo string, obj Pushable, opts ...remote.Option) string {
	t.Helper()
	d, err := Push(context.Background(), registry+"/"+repo, obj, opts...)
	if err != nil {
		t.Fatalf("push fixture: %v", err)
	}
	return d
}

func mustBuild[T any](t testing.TB, what string, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("build %s fixture: %v", what, err)
	}
	return v
}

// PushBusybox pushes BusyboxImage to registry/repo and returns its digest.
func PushBusybox(t testing.TB, registry, repo string, opts ...remote.Option) string {
	t.Helper()
	img, err := BusyboxImage()
	return PushFixture(t, registry, repo, mustBuild(t, "busybox", img, err), opts...)
}

// PushMultiLayer pushes MultiLayerImage to registry/repo and returns its digest.
func PushMultiLayer(t testing.TB, registry, repo string, opts ...remote.Option) string {
	t.Helper()
	img, err := MultiLayerImage()
	return PushFixture(t, registry, repo, mustBuild(t, "multi-layer", img, err), opts...)
}

// PushZstd pushes ZstdImage to registry/repo and returns its digest.
func PushZstd(t testing.TB, registry, repo string, opts ...remote.Option) string {
	t.Helper()
	img, err := ZstdImage()
	return PushFixture(t, registry, repo, mustBuild(t, "zstd", img, err), opts...)
}

// PushMultiPlatform pushes MultiPlatformIndex(docker) to registry/repo and
// returns the index digest.
func PushMultiPlatform(t testing.TB, registry, repo string, docker bool, opts ...remote.Option) string {
	t.Helper()
	idx, err := MultiPlatformIndex(docker)
	return PushFixture(t, registry, repo, mustBuild(t, "multi-platform", idx, err), opts...)
}

// PushEvil pushes EvilImage(kind, target) to registry/repo and returns its digest.
func PushEvil(t testing.TB, registry, repo, kind, target string, opts ...remote.Option) string {
	t.Helper()
	img, err := EvilImage(kind, target)
	return PushFixture(t, registry, repo, mustBuild(t, "evil "+kind, img, err), opts...)
}

// LayerDigests lists the compressed digests of an image's layers in order.
func LayerDigests(img v1.Image) ([]string, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		out[i] = d.String()
	}
	return out, nil
}

// DiffIDs lists the uncompressed digests (the config's rootfs.diff_ids) of
// an image's layers in order.
func DiffIDs(img v1.Image) ([]string, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(cf.RootFS.DiffIDs))
	for i, d := range cf.RootFS.DiffIDs {
		out[i] = d.String()
	}
	return out, nil
}

// CheckMultiLayerRootfs compares the unpacked root filesystem at root (all
// layers merged) with MultiLayerExpect and returns every difference.
func CheckMultiLayerRootfs(root string) []string {
	var problems []string
	for _, p := range sortedKeys(MultiLayerExpect.Present) {
		want := MultiLayerExpect.Present[p]
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s missing: %v", p, err))
			continue
		}
		switch {
		case want == "/":
			if !fi.IsDir() {
				problems = append(problems, fmt.Sprintf("%s is %v, want a directory", p, fi.Mode()))
			}
		case want != "":
			got, err := os.ReadFile(filepath.Join(root, p))
			if err != nil || string(got) != want {
				problems = append(problems, fmt.Sprintf("%s holds %q (%v), want %q", p, got, err, want))
			}
		}
	}
	for _, p := range MultiLayerExpect.Absent {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			problems = append(problems, p+" exists, want it removed by a whiteout")
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, "opq"))
	if err == nil && len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		problems = append(problems, fmt.Sprintf("opq holds %v, want only new.txt (opaque directory)", names))
	}
	return problems
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SpecialFilesImage is an OCI image of busybox plus a layer of entries an
// unpacker must reproduce exactly: a character device, a FIFO, a setuid
// file and a sticky directory with other owners, an extended attribute, a
// hardlink and a relative symlink. CheckSpecialFiles checks its snapshot.
func SpecialFilesImage() (v1.Image, error) {
	bb, err := BusyboxTar()
	if err != nil {
		return nil, err
	}
	special, err := LayerTar(
		Entry{Name: "special", Type: tar.TypeDir},
		Entry{Name: "special/null", Type: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		Entry{Name: "special/fifo", Type: tar.TypeFifo, Mode: 0o600},
		Entry{Name: "special/suid", Body: "#!/bin/sh\n", Mode: 0o4755, Uid: 1000, Gid: 1001},
		Entry{Name: "special/sticky", Type: tar.TypeDir, Mode: 0o1777, Uid: 65534, Gid: 65534},
		Entry{Name: "special/xattr", Body: "x\n", Xattrs: map[string]string{"user.berth": "fixture"}},
		Entry{Name: "special/hard", Type: tar.TypeLink, Linkname: "special/suid"},
		Entry{Name: "special/rel", Type: tar.TypeSymlink, Linkname: "../special/xattr"},
	)
	if err != nil {
		return nil, err
	}
	var layers []v1.Layer
	for _, tb := range [][]byte{bb, special} {
		l, err := NewLayer(tb, Gzip, false)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return newImage(false, BusyboxConfig(), hostPlatform(), layers, []string{"busybox-static rootfs", "special files"})
}

// CheckSpecialFiles checks the unpacked special-files layer at dir (the
// snapshot of SpecialFilesImage's second layer) and returns every
// difference. Device nodes are expected only when running as root.
func CheckSpecialFiles(dir string) []string {
	var problems []string
	st := func(name string) *syscall.Stat_t {
		var s syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, name), &s); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		return &s
	}
	if s := st("special/null"); s != nil && os.Geteuid() == 0 {
		if s.Mode&syscall.S_IFMT != syscall.S_IFCHR || s.Rdev != uint64(1<<8|3) || s.Mode&0o777 != 0o666 {
			problems = append(problems, fmt.Sprintf("special/null: mode %o rdev %d, want a 0666 character device 1:3", s.Mode, s.Rdev))
		}
	}
	if s := st("special/fifo"); s != nil && (s.Mode&syscall.S_IFMT != syscall.S_IFIFO || s.Mode&0o777 != 0o600) {
		problems = append(problems, fmt.Sprintf("special/fifo: mode %o, want a 0600 FIFO", s.Mode))
	}
	if s := st("special/suid"); s != nil {
		if s.Mode&0o7777 != 0o4755 || s.Uid != 1000 || s.Gid != 1001 {
			problems = append(problems, fmt.Sprintf("special/suid: mode %o owner %d:%d, want 4755 1000:1001", s.Mode&0o7777, s.Uid, s.Gid))
		}
		if s.Nlink != 2 {
			problems = append(problems, fmt.Sprintf("special/suid: %d links, want 2 (special/hard)", s.Nlink))
		}
		if h := st("special/hard"); h != nil && h.Ino != s.Ino {
			problems = append(problems, "special/hard is not a hardlink of special/suid")
		}
		if s.Mtim.Sec != FixtureTime.Unix() {
			problems = append(problems, fmt.Sprintf("special/suid: mtime %d, want %d", s.Mtim.Sec, FixtureTime.Unix()))
		}
	}
	if s := st("special/sticky"); s != nil && (s.Mode&0o7777 != 0o1777 || s.Uid != 65534 || s.Gid != 65534) {
		problems = append(problems, fmt.Sprintf("special/sticky: mode %o owner %d:%d, want 1777 65534:65534", s.Mode&0o7777, s.Uid, s.Gid))
	}
	buf := make([]byte, 64)
	if n, err := syscall.Getxattr(filepath.Join(dir, "special/xattr"), "user.berth", buf); err != nil || string(buf[:n]) != "fixture" {
		problems = append(problems, fmt.Sprintf("special/xattr: user.berth = %q (%v), want fixture", buf[:max(n, 0)], err))
	}
	if l, err := os.Readlink(filepath.Join(dir, "special/rel")); err != nil || l != "../special/xattr" {
		problems = append(problems, fmt.Sprintf("special/rel: link %q (%v), want ../special/xattr", l, err))
	}
	return problems
}
