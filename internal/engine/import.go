package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/archive"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/metadata"
)

// ImportOptions are the options of Import.
type ImportOptions struct {
	// Ref names the new image (optional).
	Ref string
	// Changes are Dockerfile instructions applied to the config (CMD,
	// ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
	// WORKDIR).
	Changes []string
	// Message is the history comment.
	Message string
	// Platform of the image; empty means the host's.
	Platform string
}

// Import makes a one-layer image from a root file system tarball
// (uncompressed, gzip or zstd) read from r. It returns the image ID.
func (e *Engine) Import(ctx context.Context, r io.Reader, opts ImportOptions) (digest.Digest, error) {
	var ref image.Reference
	if opts.Ref != "" {
		var err error
		if ref, err = image.ParseReference(opts.Ref); err != nil {
			return "", err
		}
		if ref.Digest != "" {
			return "", errdefs.InvalidArgument(fmt.Errorf("import: cannot name an image with a digest reference: %s", opts.Ref))
		}
	}
	plat := image.HostPlatform()
	if opts.Platform != "" {
		var err error
		if plat, err = image.ParsePlatform(opts.Platform); err != nil {
			return "", err
		}
	}
	now := time.Now().UTC()
	cfg := dockerspec.DockerOCIImage{}
	cfg.Created = &now
	cfg.Platform = plat
	for _, c := range opts.Changes {
		if err := applyChange(&cfg.Config, c); err != nil {
			return "", err
		}
	}

	// The layer is stored uncompressed: its digest is its diff ID.
	tmp := filepath.Join(e.cfg.DataRoot, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(tmp, "import-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	br := bufio.NewReader(r)
	comp, err := archive.DetectCompression(br)
	if err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("import: %w", err))
	}
	dr, err := archive.Decompress(br, comp)
	if err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("import: %w", err))
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), dr)
	dr.Close()
	if err != nil {
		return "", fmt.Errorf("import: read root file system tarball: %w", err)
	}
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: n}

	defer e.hold()()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if err := e.content.WriteBlob(ctx, layer, f); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", fmt.Errorf("import: store layer %s: %w", diffID, err)
	}
	comment := opts.Message
	if comment == "" {
		comment = "Imported from -"
	}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}
	cfg.History = []ocispec.History{{Created: &now, Comment: comment}}
	id, err := e.storeImage(ctx, cfg, []ocispec.Descriptor{layer}, ref)
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	return id, nil
}

// storeImage records an image made here (import, commit) whose layers are
// already in the content store: it writes the config and manifest blobs,
// unpacks the layers, registers the image and gives it name, if any. The
// caller holds e.hold().
func (e *Engine) storeImage(ctx context.Context, cfg dockerspec.DockerOCIImage, layers []ocispec.Descriptor, name image.Reference) (digest.Digest, error) {
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgData), Size: int64(len(cfgData))}
	mf := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: layers}
	mf.SchemaVersion = 2
	mfData, err := json.Marshal(mf)
	if err != nil {
		return "", err
	}
	mfDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mfData), Size: int64(len(mfData))}
	for _, b := range []struct {
		d    ocispec.Descriptor
		data []byte
	}{{cfgDesc, cfgData}, {mfDesc, mfData}} {
		if err := e.content.WriteBlob(ctx, b.d, bytes.NewReader(b.data)); err != nil && !errdefs.IsAlreadyExists(err) {
			return "", fmt.Errorf("store %s: %w", b.d.Digest, err)
		}
	}
	sizes, err := e.unpackAll(ctx, mf.Layers, cfg.RootFS.DiffIDs, nil)
	if err != nil {
		return "", err
	}
	rec := metadata.Image{ID: cfgDesc.Digest, Target: mfDesc, Manifest: mfDesc, LayerSizes: sizes}
	if err := e.registerImage(rec, image.Reference{}); err != nil {
		return "", err
	}
	if !name.IsZero() {
		e.nameLock.Lock()
		_, err := e.meta.SetName(name.String(), rec.ID)
		e.nameLock.Unlock()
		if err != nil {
			return "", err
		}
	}
	return rec.ID, nil
}

// MaxImportDownload bounds the size of a root file system tarball fetched
// by ImportURL: a server sending more is cut off with an error.
var MaxImportDownload int64 = 16 << 30

// ImportURL downloads a root file system tarball from src, an http or https
// URL (one without a scheme is taken as http, as Docker does), and imports
// it as Import does from a request body. Progress sees Docker's lines:
// "Downloading from <URL>", then "Importing" with the bytes received. The
// history comment defaults to "Imported from <src>". The download is bounded
// by MaxImportDownload; redirects may go only to http or https URLs.
func (e *Engine) ImportURL(ctx context.Context, src string, opts ImportOptions, progress ProgressFunc) (digest.Digest, error) {
	u, err := importURL(src)
	if err != nil {
		return "", err
	}
	if opts.Message == "" {
		opts.Message = "Imported from " + src
	}
	where := u.Redacted()
	hc := &http.Client{
		Transport: importTransport(),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return fmt.Errorf("stopped after 10 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s refused: only http and https URLs are followed", req.URL.Redacted())
			}
			return nil
		},
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("import from %s: %w", where, err))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", errdefs.Unavailable(fmt.Errorf("import from %s: download: %w", where, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("import from %s: download: the server answered %s", where, resp.Status)
		if resp.StatusCode == http.StatusNotFound {
			return "", errdefs.NotFound(err)
		}
		return "", err
	}
	if resp.ContentLength > MaxImportDownload {
		return "", errdefs.InvalidArgument(fmt.Errorf("import from %s: the tarball's %d bytes are more than the %d allowed", where, resp.ContentLength, MaxImportDownload))
	}
	progress = progress.serialized()
	progress.send(jsonstream.Message{Status: "Downloading from " + where})
	report := throttled(progress, "", "Importing")
	total := resp.ContentLength
	if total < 0 {
		total = 0
	}
	body := &boundedReader{r: resp.Body, max: MaxImportDownload, what: where}
	id, err := e.Import(ctx, &countingReader{r: body, fn: func(n int64) { report(n, total) }}, opts)
	if err != nil {
		if body.err != nil {
			return "", errdefs.InvalidArgument(body.err)
		}
		return "", fmt.Errorf("import from %s: %w", where, err)
	}
	return id, nil
}

// importURL checks that src is an http or https URL with a host.
func importURL(src string) (*url.URL, error) {
	if !strings.Contains(src, "://") {
		src = "http://" + src
	}
	u, err := url.Parse(src)
	if err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("import from %q: %w", src, err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("import from %s: only http and https URLs are supported (or - for the request body)", u.Redacted()))
	}
	if u.Host == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("import from %s: the URL has no host", u.Redacted()))
	}
	return u, nil
}

// importTransport is the HTTP transport of ImportURL: the environment's
// proxy settings, bounded waits for a connection and for the answer's
// headers (the body may take as long as the request's context allows).
func importTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ForceAttemptHTTP2:     true,
	}
}

// boundedReader fails once more than max bytes came from r.
type boundedReader struct {
	r    io.Reader
	max  int64
	n    int64
	what string
	err  error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if rest := b.max + 1 - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		b.err = fmt.Errorf("import from %s: the tarball is larger than the %d bytes allowed", b.what, b.max)
		return 0, b.err
	}
	return n, err
}

// applyChange applies one Dockerfile instruction of docker import --change.
func applyChange(c *dockerspec.DockerOCIImageConfig, change string) error {
	instr, rest, _ := strings.Cut(strings.TrimSpace(change), " ")
	rest = strings.TrimSpace(rest)
	bad := func(why string) error {
		return errdefs.InvalidArgument(fmt.Errorf("invalid change %q: %s", change, why))
	}
	cmdForm := func() []string {
		var args []string
		if strings.HasPrefix(rest, "[") && json.Unmarshal([]byte(rest), &args) == nil {
			return args
		}
		return []string{"/bin/sh", "-c", rest}
	}
	// keyValues keeps the pairs in the order given, as Docker applies them.
	keyValues := func() ([][2]string, error) {
		if !strings.Contains(rest, "=") {
			k, v, ok := strings.Cut(rest, " ")
			if !ok {
				return nil, bad("expected KEY VALUE or KEY=VALUE")
			}
			return [][2]string{{k, strings.TrimSpace(v)}}, nil
		}
		var out [][2]string
		for _, w := range splitWords(rest) {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				return nil, bad("expected KEY=VALUE")
			}
			out = append(out, [2]string{k, v})
		}
		return out, nil
	}
	switch strings.ToUpper(instr) {
	case "CMD":
		c.Cmd = cmdForm()
	case "ENTRYPOINT":
		c.Entrypoint = cmdForm()
	case "ENV":
		kv, err := keyValues()
		if err != nil {
			return err
		}
		for _, p := range kv {
			k, v := p[0], p[1]
			replaced := false
			for i, e := range c.Env {
				if strings.HasPrefix(e, k+"=") {
					c.Env[i], replaced = k+"="+v, true
				}
			}
			if !replaced {
				c.Env = append(c.Env, k+"="+v)
			}
		}
	case "LABEL":
		kv, err := keyValues()
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, p := range kv {
			c.Labels[p[0]] = p[1]
		}
	case "EXPOSE":
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range strings.Fields(rest) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			c.ExposedPorts[p] = struct{}{}
		}
	case "VOLUME":
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		var vols []string
		if !strings.HasPrefix(rest, "[") || json.Unmarshal([]byte(rest), &vols) != nil {
			vols = strings.Fields(rest)
		}
		for _, v := range vols {
			c.Volumes[v] = struct{}{}
		}
	case "WORKDIR":
		c.WorkingDir = rest
	case "USER":
		c.User = rest
	case "STOPSIGNAL":
		c.StopSignal = rest
	case "ONBUILD":
		c.OnBuild = append(c.OnBuild, rest)
	default:
		return bad(fmt.Sprintf("%s is not a supported instruction", instr))
	}
	return nil
}

// splitWords splits on spaces outside double quotes, removing the quotes.
func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
