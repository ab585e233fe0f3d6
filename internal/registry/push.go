package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PushBlob makes the blob desc available in ref's repository. It does
// nothing when the registry has it already (HEAD), tries to mount it from
// each of mountFrom on the same registry, and otherwise uploads what open
// returns (in one PUT, or in chunks with WithChunkSize); the registry
// verifies the digest. mounted reports whether no upload was needed (the blob
// existed or was mounted). A failed upload is retried from the start, calling
// open again, within the retry budget.
func (c *Client) PushBlob(ctx context.Context, ref image.Reference, desc ocispec.Descriptor, open func() (io.ReadCloser, error), mountFrom []image.Reference) (mounted bool, err error) {
	if err := checkRef(ref); err != nil {
		return false, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return false, errdefs.InvalidArgument(fmt.Errorf("push blob %q: %w", desc.Digest, err))
	}
	reg, err := c.registry(registryHost(ref.Domain))
	if err != nil {
		return false, err
	}
	what := fmt.Sprintf("push blob %s to %s", desc.Digest, ref.Name())
	err = c.retry(ctx, what, func() error {
		var err error
		mounted, err = c.pushBlob(ctx, reg, ref, desc, open, mountFrom)
		return err
	})
	return mounted, err
}

func (c *Client) pushBlob(ctx context.Context, reg name.Registry, ref image.Reference, desc ocispec.Descriptor, open func() (io.ReadCloser, error), mountFrom []image.Reference) (bool, error) {
	what := fmt.Sprintf("push blob %s to %s", desc.Digest, ref.Name())
	var sources []image.Reference
	scopes := []string{pushScope(ref.Path)}
	for _, m := range mountFrom {
		if m.Domain == ref.Domain && m.Path != ref.Path {
			sources = append(sources, m)
			scopes = append(scopes, pullScope(m.Path))
		}
	}
	rt, err := c.transport(ctx, reg, scopes...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	hc := &http.Client{Transport: rt}
	exists, err := c.blobExistsAt(ctx, rt, reg, ref.Path, desc)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	if exists {
		c.emit(ctx, Progress{Action: ActionExists, Ref: ref, Digest: desc.Digest, Current: desc.Size, Total: desc.Size})
		return true, nil
	}

	uploads := "https://" + reg.RegistryStr() + "/v2/" + ref.Path + "/blobs/uploads/"
	var location string
	for i, src := range sources {
		q := url.Values{"mount": {desc.Digest.String()}, "from": {src.Path}}
		resp, err := c.send(ctx, hc, http.MethodPost, uploads+"?"+q.Encode(), nil, 0, nil)
		if err != nil {
			return false, fmt.Errorf("%s: mount from %s: %w", what, src.Name(), err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated:
			c.emit(ctx, Progress{Action: ActionMounted, Ref: ref, Digest: desc.Digest, From: src, Current: desc.Size, Total: desc.Size})
			return true, nil
		case http.StatusAccepted:
			// Not mounted; the registry opened an upload session instead.
			loc, err := uploadLocation(resp)
			if err != nil {
				return false, fmt.Errorf("%s: mount from %s: %w", what, src.Name(), err)
			}
			if i < len(sources)-1 {
				c.cancelUpload(ctx, hc, loc)
				continue
			}
			location = loc
		default:
			return false, checkResponse(resp, fmt.Sprintf("%s: mount from %s", what, src.Name()))
		}
	}
	if location == "" {
		resp, err := c.send(ctx, hc, http.MethodPost, uploads, nil, 0, nil)
		if err != nil {
			return false, fmt.Errorf("%s: start upload: %w", what, err)
		}
		resp.Body.Close()
		if err := checkResponse(resp, what+": start upload", http.StatusAccepted); err != nil {
			return false, err
		}
		if location, err = uploadLocation(resp); err != nil {
			return false, fmt.Errorf("%s: start upload: %w", what, err)
		}
	}

	rc, err := open()
	if err != nil {
		c.cancelUpload(ctx, hc, location)
		return false, fmt.Errorf("%s: open: %w", what, err)
	}
	defer rc.Close()
	body := &countingReader{r: rc, c: c, ctx: ctx, ev: Progress{Action: ActionUpload, Ref: ref, Digest: desc.Digest, Total: desc.Size}}

	if c.chunkSize > 0 && desc.Size > c.chunkSize {
		for off := int64(0); off < desc.Size; off += c.chunkSize {
			n := min(c.chunkSize, desc.Size-off)
			hdr := http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Content-Range": {strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10)},
			}
			resp, err := c.send(ctx, hc, http.MethodPatch, location, io.LimitReader(body, n), n, hdr)
			if err != nil {
				return false, fmt.Errorf("%s: upload bytes %d-%d: %w", what, off, off+n-1, err)
			}
			resp.Body.Close()
			if err := checkResponse(resp, fmt.Sprintf("%s: upload bytes %d-%d", what, off, off+n-1), http.StatusAccepted, http.StatusNoContent); err != nil {
				return false, err
			}
			if body.ev.Current != off+n {
				return false, fmt.Errorf("%s: the blob's content ended at byte %d, want %d bytes", what, body.ev.Current, desc.Size)
			}
			if location, err = uploadLocation(resp); err != nil {
				return false, fmt.Errorf("%s: upload bytes %d-%d: %w", what, off, off+n-1, err)
			}
		}
		return false, c.commitUpload(ctx, hc, ref, what, location, desc, nil, 0)
	}
	return false, c.commitUpload(ctx, hc, ref, what, location, desc, body, desc.Size)
}

// commitUpload finishes an upload session with PUT ?digest=, sending body
// (size bytes) with it when given, and checks the registry's answer.
func (c *Client) commitUpload(ctx context.Context, hc *http.Client, ref image.Reference, what, location string, desc ocispec.Descriptor, body io.Reader, size int64) error {
	u, err := url.Parse(location)
	if err != nil {
		return fmt.Errorf("%s: upload location %q: %w", what, location, err)
	}
	q := u.Query()
	q.Set("digest", desc.Digest.String())
	u.RawQuery = q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err := c.send(ctx, hc, http.MethodPut, u.String(), body, size, hdr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if err := checkResponse(resp, what, http.StatusCreated); err != nil {
		return err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != desc.Digest.String() {
		return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("%s: registry stored it as %s", what, got))
	}
	c.emit(ctx, Progress{Action: ActionComplete, Ref: ref, Digest: desc.Digest, Current: desc.Size, Total: desc.Size})
	return nil
}

func (c *Client) cancelUpload(ctx context.Context, hc *http.Client, location string) {
	if resp, err := c.send(ctx, hc, http.MethodDelete, location, nil, 0, nil); err == nil {
		resp.Body.Close()
	}
}

// send makes one request; body, when not nil, has exactly size bytes.
func (c *Client) send(ctx context.Context, hc *http.Client, method, u string, body io.Reader, size int64, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, classify(err)
	}
	return resp, nil
}

// uploadLocation resolves an upload session's Location against the request URL.
func uploadLocation(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("registry answered %d without a Location", resp.StatusCode)
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upload location %q: %w", loc, err)
	}
	return u.String(), nil
}

// PushManifest uploads a manifest or index under ref's tag (or, for a
// reference without a tag, under desc's digest). data must match desc; the
// registry's answer must agree with desc's digest.
func (c *Client) PushManifest(ctx context.Context, ref image.Reference, desc ocispec.Descriptor, data []byte) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	if err := image.Verify(desc, data); err != nil {
		return fmt.Errorf("push manifest %s to %s: %w", desc.Digest, ref.Name(), err)
	}
	if !image.IsManifest(desc.MediaType) && !image.IsIndex(desc.MediaType) {
		return errdefs.InvalidArgument(fmt.Errorf("push manifest %s to %s: media type %q is not a manifest or index", desc.Digest, ref.Name(), desc.MediaType))
	}
	object := ref.Tag
	if object == "" {
		object = desc.Digest.String()
	}
	reg, err := c.registry(registryHost(ref.Domain))
	if err != nil {
		return err
	}
	what := fmt.Sprintf("push manifest %s to %s:%s", desc.Digest, ref.Name(), object)
	return c.retry(ctx, what, func() error {
		rt, err := c.transport(ctx, reg, pushScope(ref.Path))
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		resp, err := c.send(ctx, &http.Client{Transport: rt}, http.MethodPut, apiURL(reg, ref.Path, "manifests", object),
			bytes.NewReader(data), int64(len(data)), http.Header{"Content-Type": {desc.MediaType}})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		defer resp.Body.Close()
		if err := checkResponse(resp, what, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
			return err
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != desc.Digest.String() {
			return errdefs.With(errdefs.ErrDataLoss, fmt.Errorf("%s: registry stored it as %s", what, got))
		}
		return nil
	})
}
