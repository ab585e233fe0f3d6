package registry

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func apiURL(reg name.Registry, repo, kind, object string) string {
	return "https://" + reg.RegistryStr() + "/v2/" + repo + "/" + kind + "/" + object
}

// pullEach runs fn against each endpoint ref can be pulled from (mirrors, then
// the registry), returning at the first success. A mirror's failure only
// moves on to the next endpoint; the registry's own error is returned.
func (c *Client) pullEach(ctx context.Context, ref image.Reference, fn func(ep endpoint) error) error {
	eps, err := c.endpoints(ref, true)
	if err != nil {
		return err
	}
	var errs []error
	for _, ep := range eps {
		err := fn(ep)
		if err == nil {
			return nil
		}
		if !ep.mirror || ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("mirror %s: %w", ep.reg.RegistryStr(), err))
	}
	return errors.Join(errs...)
}

func checkRef(ref image.Reference) error {
	if ref.Domain == "" || ref.Path == "" {
		return errdefs.InvalidArgument(fmt.Errorf("reference %q has no repository", ref.String()))
	}
	return nil
}

// Resolve finds the manifest or index ref names: its media type, digest and
// size. It asks with HEAD and falls back to GET when the registry's HEAD
// answer does not say enough. For a reference by digest, the registry's
// answer must agree with the digest.
func (c *Client) Resolve(ctx context.Context, ref image.Reference) (ocispec.Descriptor, error) {
	if err := checkRef(ref); err != nil {
		return ocispec.Descriptor{}, err
	}
	if ref.Tag == "" && ref.Digest == "" {
		return ocispec.Descriptor{}, errdefs.InvalidArgument(fmt.Errorf("resolve %s: reference has neither tag nor digest", ref.String()))
	}
	var desc ocispec.Descriptor
	err := c.pullEach(ctx, ref, func(ep endpoint) error {
		return c.retry(ctx, "resolve "+ref.String(), func() error {
			d, err := c.resolveAt(ctx, ep, ref)
			desc = d
			return err
		})
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

func (c *Client) resolveAt(ctx context.Context, ep endpoint, ref image.Reference) (ocispec.Descriptor, error) {
	rt, err := c.transport(ctx, ep.reg, pullScope(ref.Path))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref.String(), err)
	}
	hc := &http.Client{Transport: rt}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, apiURL(ep.reg, ref.Path, "manifests", ref.Object()), nil)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref.String(), err)
	}
	req.Header.Set("Accept", strings.Join(image.ManifestMediaTypes, ", "))
	resp, err := hc.Do(req)
	if err != nil {
		return ocispec.Descriptor{}, classify(fmt.Errorf("resolve %s: %w", ref.String(), err))
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		mt := contentType(resp.Header)
		hdr := resp.Header.Get("Docker-Content-Digest")
		if (image.IsManifest(mt) || image.IsIndex(mt)) && resp.ContentLength > 0 && (hdr != "" || ref.Digest != "") {
			d := ref.Digest
			if d == "" {
				if d, err = digest.Parse(hdr); err != nil {
					return ocispec.Descriptor{}, errdefs.InvalidArgument(fmt.Errorf("resolve %s: registry sent Docker-Content-Digest %q: %w", ref.String(), hdr, err))
				}
			} else if hdr != "" && hdr != ref.Digest.String() {
				return ocispec.Descriptor{}, errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("resolve %s: registry %s says the manifest's digest is %s", ref.String(), ep.reg.RegistryStr(), hdr))
			}
			return ocispec.Descriptor{MediaType: mt, Digest: d, Size: resp.ContentLength}, nil
		}
	case resp.StatusCode == http.StatusNotFound:
		return ocispec.Descriptor{}, errdefs.NotFound(fmt.Errorf("resolve %s: manifest unknown to %s", ref.String(), ep.reg.RegistryStr()))
	case resp.StatusCode != http.StatusMethodNotAllowed:
		return ocispec.Descriptor{}, checkResponse(resp, "resolve "+ref.String())
	}
	// HEAD did not tell enough (no digest or size, or HEAD is not allowed):
	// GET the manifest and describe what came.
	data, mt, hdr, err := c.getManifest(ctx, hc, ep.reg, ref.Path, ref.Object(), "")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref.String(), err)
	}
	desc := ocispec.Descriptor{MediaType: mt, Size: int64(len(data))}
	switch {
	case ref.Digest != "":
		desc.Digest = ref.Digest
	case hdr != "":
		d, err := digest.Parse(hdr)
		if err != nil {
			return ocispec.Descriptor{}, errdefs.InvalidArgument(fmt.Errorf("resolve %s: registry sent Docker-Content-Digest %q: %w", ref.String(), hdr, err))
		}
		desc.Digest = d
	default:
		desc.Digest = digest.FromBytes(data)
	}
	if err := image.Verify(desc, data); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: manifest from %s: %w", ref.String(), ep.reg.RegistryStr(), err)
	}
	return desc, nil
}

// contentType returns the media type of a response, without parameters.
func contentType(h http.Header) string {
	ct := h.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	return ct
}

// getManifest GETs a manifest, bounded by image.MaxManifestSize, and returns
// it with its media type (from Content-Type, or from the document when the
// registry says something generic) and the registry's digest header.
func (c *Client) getManifest(ctx context.Context, hc *http.Client, reg name.Registry, repo, object, want string) ([]byte, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL(reg, repo, "manifests", object), nil)
	if err != nil {
		return nil, "", "", err
	}
	accept := image.ManifestMediaTypes
	if want != "" {
		accept = append([]string{want}, accept...)
	}
	req.Header.Set("Accept", strings.Join(accept, ", "))
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", "", classify(fmt.Errorf("fetch manifest %s from %s: %w", object, reg.RegistryStr(), err))
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, fmt.Sprintf("fetch manifest %s from %s", object, reg.RegistryStr()), http.StatusOK); err != nil {
		return nil, "", "", err
	}
	if resp.ContentLength > image.MaxManifestSize {
		return nil, "", "", errdefs.InvalidArgument(fmt.Errorf("fetch manifest %s from %s: %d bytes is more than the %d a manifest may have", object, reg.RegistryStr(), resp.ContentLength, image.MaxManifestSize))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, image.MaxManifestSize+1))
	if err != nil {
		return nil, "", "", classify(fmt.Errorf("fetch manifest %s from %s: %w", object, reg.RegistryStr(), err))
	}
	if len(data) > image.MaxManifestSize {
		return nil, "", "", errdefs.InvalidArgument(fmt.Errorf("fetch manifest %s from %s: more than the %d bytes a manifest may have", object, reg.RegistryStr(), image.MaxManifestSize))
	}
	mt := contentType(resp.Header)
	if !image.IsManifest(mt) && !image.IsIndex(mt) {
		if mt, err = image.DetectMediaType(data); err != nil {
			return nil, "", "", fmt.Errorf("fetch manifest %s from %s: %w", object, reg.RegistryStr(), err)
		}
	}
	return data, mt, resp.Header.Get("Docker-Content-Digest"), nil
}

// FetchManifest returns the manifest or index desc describes (by
// desc.Digest, or by ref's tag when desc has no digest), verified against
// desc's digest (or ref's) and size. A mismatch is an errdefs.ErrDataLoss
// error naming the manifest's digest.
func (c *Client) FetchManifest(ctx context.Context, ref image.Reference, desc ocispec.Descriptor) ([]byte, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	object := ref.Object()
	want := ocispec.Descriptor{Digest: ref.Digest, Size: desc.Size}
	if desc.Digest != "" {
		object, want.Digest = desc.Digest.String(), desc.Digest
	}
	if object == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("fetch manifest of %s: neither a digest nor a tag", ref.String()))
	}
	var data []byte
	err := c.pullEach(ctx, ref, func(ep endpoint) error {
		return c.retry(ctx, "fetch manifest "+object, func() error {
			rt, err := c.transport(ctx, ep.reg, pullScope(ref.Path))
			if err != nil {
				return fmt.Errorf("fetch manifest %s of %s: %w", object, ref.String(), err)
			}
			d, _, _, err := c.getManifest(ctx, &http.Client{Transport: rt}, ep.reg, ref.Path, object, desc.MediaType)
			if err != nil {
				return err
			}
			if err := image.Verify(want, d); err != nil {
				return fmt.Errorf("fetch manifest %s of %s from %s: %w", object, ref.String(), ep.reg.RegistryStr(), err)
			}
			data = d
			return nil
		})
	})
	return data, err
}

// BlobExists reports whether the registry has the blob desc in ref's
// repository (HEAD). A blob of another size under that digest is an error.
func (c *Client) BlobExists(ctx context.Context, ref image.Reference, desc ocispec.Descriptor) (bool, error) {
	if err := checkRef(ref); err != nil {
		return false, err
	}
	reg, err := c.registry(registryHost(ref.Domain))
	if err != nil {
		return false, err
	}
	var ok bool
	err = c.retry(ctx, "check blob "+desc.Digest.String(), func() error {
		rt, err := c.transport(ctx, reg, pullScope(ref.Path))
		if err != nil {
			return err
		}
		ok, err = c.blobExistsAt(ctx, rt, reg, ref.Path, desc)
		return err
	})
	return ok, err
}

func (c *Client) blobExistsAt(ctx context.Context, rt http.RoundTripper, reg name.Registry, repo string, desc ocispec.Descriptor) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, apiURL(reg, repo, "blobs", desc.Digest.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return false, classify(fmt.Errorf("check blob %s in %s/%s: %w", desc.Digest, reg.RegistryStr(), repo, err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if desc.Size > 0 && resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
			return false, errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("check blob %s in %s/%s: registry has %d bytes, want %d", desc.Digest, reg.RegistryStr(), repo, resp.ContentLength, desc.Size))
		}
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, checkResponse(resp, fmt.Sprintf("check blob %s in %s/%s", desc.Digest, reg.RegistryStr(), repo))
}

// FetchBlob returns a reader of the blob desc from offset on (an HTTP Range
// request; when the registry ignores Range, the first offset bytes are
// skipped). The reader resumes by itself, from where it got to, when the
// connection breaks, within the client's retry budget; it fails with an
// errdefs.ErrDataLoss error naming the digest when the blob is longer than
// desc.Size or, read from offset 0, does not match desc.Digest (unless
// WithBlobVerification(false)). A desc.Size below zero means the size is
// unknown.
func (c *Client) FetchBlob(ctx context.Context, ref image.Reference, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("fetch blob %q: %w", desc.Digest, err))
	}
	if offset < 0 || (desc.Size >= 0 && offset > desc.Size) {
		return nil, errdefs.InvalidArgument(fmt.Errorf("fetch blob %s: offset %d outside its %d bytes", desc.Digest, offset, desc.Size))
	}
	br := &blobReader{c: c, ctx: ctx, ref: ref, desc: desc, pos: offset, reported: offset}
	if offset == 0 && !c.noBlobVerify && desc.Digest.Algorithm().Available() {
		br.h = desc.Digest.Algorithm().Hash()
	}
	if desc.Size >= 0 && offset == desc.Size {
		br.body = io.NopCloser(strings.NewReader(""))
		return br, nil
	}
	err := c.pullEach(ctx, ref, func(ep endpoint) error {
		return c.retry(ctx, "fetch blob "+desc.Digest.String(), func() error {
			body, err := c.openBlob(ctx, ep, ref, desc, offset)
			if err != nil {
				return err
			}
			br.ep, br.body = ep, body
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return br, nil
}

// openBlob GETs a blob from offset on.
func (c *Client) openBlob(ctx context.Context, ep endpoint, ref image.Reference, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	what := fmt.Sprintf("fetch blob %s from %s/%s", desc.Digest, ep.reg.RegistryStr(), ref.Path)
	rt, err := c.transport(ctx, ep.reg, pullScope(ref.Path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL(ep.reg, ref.Path, "blobs", desc.Digest.String()), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if offset > 0 {
		rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if desc.Size > 0 {
			rng += strconv.FormatInt(desc.Size-1, 10)
		}
		req.Header.Set("Range", rng)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, classify(fmt.Errorf("%s: %w", what, err))
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: asked for bytes from %d, registry answered Content-Range %q", what, offset, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	case http.StatusOK:
		if desc.Size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
			resp.Body.Close()
			return nil, errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("%s: registry sends %d bytes, want %d", what, resp.ContentLength, desc.Size))
		}
		if offset > 0 {
			// The registry ignored Range: skip what we already have.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				return nil, classify(fmt.Errorf("%s: skipping to offset %d: %w", what, offset, err))
			}
		}
		return resp.Body, nil
	}
	defer resp.Body.Close()
	return nil, checkResponse(resp, what)
}

// contentRangeStart parses the first byte position of "bytes a-b/n".
func contentRangeStart(s string) (int64, error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, fmt.Errorf("not a byte range: %q", s)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("not a byte range: %q", s)
	}
	return strconv.ParseInt(first, 10, 64)
}

// blobReader reads a blob, resuming after transient failures and verifying
// its size (and digest, when read from the start).
type blobReader struct {
	c        *Client
	ctx      context.Context
	ref      image.Reference
	desc     ocispec.Descriptor
	ep       endpoint
	body     io.ReadCloser
	pos      int64
	h        hash.Hash
	resumes  int
	reported int64
	err      error
}

func (r *blobReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.desc.Size >= 0 {
			// Read at most one byte past the end, to notice a longer blob.
			if rem := r.desc.Size - r.pos + 1; int64(len(p)) > rem {
				p = p[:rem]
			}
		}
		n, err := r.body.Read(p)
		if r.desc.Size >= 0 && r.pos+int64(n) > r.desc.Size {
			n = int(r.desc.Size - r.pos)
			r.err = errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("fetch blob %s of %s: registry sends more than its %d bytes", r.desc.Digest, r.ref.String(), r.desc.Size))
			err = r.err
		}
		r.advance(p[:n])
		if err == io.EOF {
			if r.desc.Size >= 0 && r.pos < r.desc.Size {
				err = io.ErrUnexpectedEOF
			} else {
				return n, r.finish()
			}
		}
		if err == nil {
			return n, nil
		}
		if r.err == nil && transient(err) && r.resumes < r.c.retries && r.ctx.Err() == nil {
			if rerr := r.resume(err); rerr == nil {
				if n > 0 {
					return n, nil
				}
				continue
			} else {
				err = rerr
			}
		}
		if r.err == nil {
			r.err = classify(fmt.Errorf("fetch blob %s of %s at byte %d: %w", r.desc.Digest, r.ref.String(), r.pos, err))
		}
		return n, r.err
	}
}

func (r *blobReader) advance(b []byte) {
	if len(b) == 0 {
		return
	}
	r.pos += int64(len(b))
	if r.h != nil {
		r.h.Write(b)
	}
	if r.pos-r.reported >= progressStep {
		r.reported = r.pos
		r.c.emit(r.ctx, Progress{Action: ActionDownload, Ref: r.ref, Digest: r.desc.Digest, Current: r.pos, Total: r.desc.Size})
	}
}

// finish checks the digest at the end of a blob read from its start.
func (r *blobReader) finish() error {
	if r.h != nil {
		if got := digest.NewDigest(r.desc.Digest.Algorithm(), r.h); got != r.desc.Digest {
			r.err = errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("fetch blob %s of %s: content has digest %s", r.desc.Digest, r.ref.String(), got))
			return r.err
		}
	}
	if r.reported != r.pos {
		r.reported = r.pos
		r.c.emit(r.ctx, Progress{Action: ActionDownload, Ref: r.ref, Digest: r.desc.Digest, Current: r.pos, Total: r.desc.Size})
	}
	r.c.emit(r.ctx, Progress{Action: ActionComplete, Ref: r.ref, Digest: r.desc.Digest, Current: r.pos, Total: r.desc.Size})
	r.err = io.EOF
	return io.EOF
}

// resume reopens the blob at r.pos after the transient error cause.
func (r *blobReader) resume(cause error) error {
	r.body.Close()
	delay := r.c.backoff
	for {
		r.resumes++
		what := fmt.Sprintf("fetch blob %s at byte %d", r.desc.Digest, r.pos)
		r.c.emit(r.ctx, Progress{Action: ActionRetry, Ref: r.ref, Digest: r.desc.Digest, Object: what, Attempt: r.resumes, Err: cause})
		if err := sleep(r.ctx, delay); err != nil {
			return err
		}
		body, err := r.c.openBlob(r.ctx, r.ep, r.ref, r.desc, r.pos)
		if err == nil {
			r.body = body
			return nil
		}
		if !transient(err) || r.resumes >= r.c.retries {
			r.body = io.NopCloser(strings.NewReader(""))
			return err
		}
		cause = err
		delay *= 2
		if delay > maxBackoff {
			delay = maxBackoff
		}
	}
}

func (r *blobReader) Close() error {
	if r.body == nil {
		return nil
	}
	return r.body.Close()
}
