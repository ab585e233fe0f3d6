package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
)

// Bounds on a tag listing: a registry answering without end (pages that
// never stop, or one enormous page) is an error, not a hang.
const (
	maxTagsPageSize = 4 << 20
	maxTagsPages    = 1000
	maxTags         = 100000
)

// Tags lists the tags of ref's repository (GET /v2/<name>/tags/list),
// following the registry's pagination (the Link header's rel="next" URL,
// which must stay on the registry's host). Authentication, mirrors and
// retries are those of a pull. Tags come in the registry's order, each once.
func (c *Client) Tags(ctx context.Context, ref image.Reference) ([]string, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	var tags []string
	err := c.pullEach(ctx, ref, func(ep endpoint) error {
		t, err := c.tagsAt(ctx, ep, ref)
		tags = t
		return err
	})
	if err != nil {
		return nil, err
	}
	return tags, nil
}

func (c *Client) tagsAt(ctx context.Context, ep endpoint, ref image.Reference) ([]string, error) {
	repo := ref.FamiliarName()
	rt, err := c.transport(ctx, ep.reg, pullScope(ref.Path))
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	hc := &http.Client{Transport: rt, CheckRedirect: sameHostRedirect(ep.reg)}
	next := "https://" + ep.reg.RegistryStr() + "/v2/" + ref.Path + "/tags/list"
	var tags []string
	seen := map[string]bool{}
	visited := map[string]bool{}
	for page := 0; next != ""; page++ {
		if page >= maxTagsPages {
			return nil, errdefs.InvalidArgument(fmt.Errorf("list tags of %s: registry %s sent more than %d pages", repo, ep.reg.RegistryStr(), maxTagsPages))
		}
		if visited[next] {
			return nil, errdefs.InvalidArgument(fmt.Errorf("list tags of %s: registry %s sent page %s twice", repo, ep.reg.RegistryStr(), next))
		}
		visited[next] = true
		var pageTags []string
		var link string
		u := next
		err := c.retry(ctx, "list tags of "+repo, func() error {
			var err error
			pageTags, link, err = c.tagsPage(ctx, hc, ep.reg, repo, u)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, t := range pageTags {
			if !seen[t] {
				seen[t] = true
				tags = append(tags, t)
			}
		}
		if len(tags) > maxTags {
			return nil, errdefs.InvalidArgument(fmt.Errorf("list tags of %s: registry %s lists more than %d tags", repo, ep.reg.RegistryStr(), maxTags))
		}
		if next, err = nextPage(ep.reg, u, link); err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", repo, err)
		}
	}
	return tags, nil
}

// tagsPage GETs one page of a tag listing and returns its tags and the
// response's Link header.
func (c *Client) tagsPage(ctx context.Context, hc *http.Client, reg name.Registry, repo, u string) ([]string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", fmt.Errorf("list tags of %s: %w", repo, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", classify(fmt.Errorf("list tags of %s from %s: %w", repo, reg.RegistryStr(), err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", errdefs.NotFound(fmt.Errorf("list tags of %s: repository unknown to %s", repo, reg.RegistryStr()))
	}
	if err := checkResponse(resp, fmt.Sprintf("list tags of %s from %s", repo, reg.RegistryStr()), http.StatusOK); err != nil {
		return nil, "", err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTagsPageSize+1))
	if err != nil {
		return nil, "", classify(fmt.Errorf("list tags of %s from %s: %w", repo, reg.RegistryStr(), err))
	}
	if len(data) > maxTagsPageSize {
		return nil, "", errdefs.InvalidArgument(fmt.Errorf("list tags of %s from %s: a page is larger than %d bytes", repo, reg.RegistryStr(), maxTagsPageSize))
	}
	var body struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, "", errdefs.InvalidArgument(fmt.Errorf("list tags of %s from %s: decode answer: %w", repo, reg.RegistryStr(), err))
	}
	for _, t := range body.Tags {
		if !validTag(t) {
			return nil, "", errdefs.InvalidArgument(fmt.Errorf("list tags of %s from %s: invalid tag %q", repo, reg.RegistryStr(), t))
		}
	}
	return body.Tags, resp.Header.Get("Link"), nil
}

// validTag reports whether t is a tag as the distribution spec defines it:
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
		case (r == '.' || r == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// nextPage returns the absolute URL of the rel="next" link in link (a Link
// header, RFC 8288), resolved against the page's URL cur; "" when there is
// none. A next page on another host is refused: the registry's credentials
// must not travel elsewhere.
func nextPage(reg name.Registry, cur, link string) (string, error) {
	if link == "" {
		return "", nil
	}
	for _, part := range strings.Split(link, ",") {
		part = strings.TrimSpace(part)
		if !strings.HasPrefix(part, "<") {
			continue
		}
		end := strings.Index(part, ">")
		if end < 0 {
			continue
		}
		target, params := part[1:end], part[end+1:]
		isNext := false
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "rel") {
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
					if strings.EqualFold(rel, "next") {
						isNext = true
					}
				}
			}
		}
		if !isNext {
			continue
		}
		base, err := url.Parse(cur)
		if err != nil {
			return "", err
		}
		ref, err := url.Parse(target)
		if err != nil {
			return "", errdefs.InvalidArgument(fmt.Errorf("registry %s sent a next page link %q: %w", reg.RegistryStr(), target, err))
		}
		u := base.ResolveReference(ref)
		if u.Host != reg.RegistryStr() || (u.Scheme != "http" && u.Scheme != "https") {
			return "", errdefs.InvalidArgument(fmt.Errorf("registry %s sent a next page link to %s: only its own host is followed", reg.RegistryStr(), u.Redacted()))
		}
		return u.String(), nil
	}
	return "", nil
}

// sameHostRedirect refuses redirects of a tag listing to another host.
func sameHostRedirect(reg name.Registry) func(req *http.Request, via []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return fmt.Errorf("stopped after 10 redirects")
		}
		if req.URL.Host != reg.RegistryStr() {
			return fmt.Errorf("registry %s redirected a tag listing to %s: refused", reg.RegistryStr(), req.URL.Host)
		}
		return nil
	}
}
