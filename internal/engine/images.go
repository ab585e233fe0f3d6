package engine

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/storage"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
)

// ListOptions are the options of Images.
type ListOptions struct {
	All     bool
	Digests bool
	// Filters: dangling, label, reference, before, since, until.
	Filters map[string][]string
}

func (li *localImage) created() time.Time {
	if li.config.Created != nil {
		return *li.config.Created
	}
	return li.rec.Created
}

func (li *localImage) size() int64 {
	var n int64
	for _, s := range li.rec.LayerSizes {
		n += s
	}
	return n
}

type imageView struct {
	*localImage
	tags, digests []string
}

// views loads every image with its names.
func (e *Engine) views(ctx context.Context) ([]imageView, error) {
	recs, err := e.meta.Images()
	if err != nil {
		return nil, err
	}
	names, err := e.meta.Names()
	if err != nil {
		return nil, err
	}
	byID := map[digest.Digest][]string{}
	for n, id := range names {
		byID[id] = append(byID[id], n)
	}
	out := make([]imageView, 0, len(recs))
	for _, rec := range recs {
		li, err := e.load(ctx, rec)
		if err != nil {
			e.log.Warn("skip unreadable image", "id", rec.ID, "err", err)
			continue
		}
		tags, digests := splitNames(byID[rec.ID])
		out = append(out, imageView{localImage: li, tags: tags, digests: digests})
	}
	return out, nil
}

func (e *Engine) view(ctx context.Context, name string) (imageView, error) {
	id, err := e.resolveID(name)
	if err != nil {
		return imageView{}, err
	}
	rec, err := e.meta.GetImage(id)
	if err != nil {
		return imageView{}, err
	}
	li, err := e.load(ctx, rec)
	if err != nil {
		return imageView{}, err
	}
	names, err := e.meta.NamesOf(id)
	if err != nil {
		return imageView{}, err
	}
	tags, digests := splitNames(names)
	return imageView{localImage: li, tags: tags, digests: digests}, nil
}

// filterSet is a parsed set of image filters.
type filterSet struct {
	dangling      *bool
	labels        []string
	refs          []string
	before, since *time.Time
	until         *time.Time
}

func (e *Engine) parseFilters(ctx context.Context, f map[string][]string) (filterSet, error) {
	var fs filterSet
	for k, vs := range f {
		switch k {
		case "dangling":
			for _, v := range vs {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fs, errdefs.InvalidArgument(fmt.Errorf("invalid filter 'dangling=%s'", v))
				}
				fs.dangling = &b
			}
		case "label":
			fs.labels = append(fs.labels, vs...)
		case "reference":
			fs.refs = append(fs.refs, vs...)
		case "before", "since":
			for _, v := range vs {
				iv, err := e.view(ctx, v)
				if err != nil {
					return fs, err
				}
				t := iv.created()
				if k == "before" {
					fs.before = &t
				} else {
					fs.since = &t
				}
			}
		case "until":
			for _, v := range vs {
				t, err := parseTimestamp(v)
				if err != nil {
					return fs, errdefs.InvalidArgument(fmt.Errorf("invalid filter 'until=%s': %w", v, err))
				}
				fs.until = &t
			}
		default:
			return fs, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	return fs, nil
}

// parseTimestamp reads a Unix timestamp, an RFC 3339 time or a duration ago.
func parseTimestamp(v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	if sec, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(int64(sec), 0), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a timestamp or duration")
}

func matchLabels(labels map[string]string, want []string) bool {
	for _, l := range want {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := labels[k]
		if !ok || hasV && got != v {
			return false
		}
	}
	return true
}

// matchReference applies Docker's reference filter to one name: a pattern
// matches the familiar reference ("busybox:latest") or the familiar name
// ("busybox").
func matchReference(name string, patterns []string) bool {
	ref, err := image.ParseName(name)
	if err != nil {
		return false
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, ref.Familiar()); ok {
			return true
		}
		if ok, _ := path.Match(p, ref.FamiliarName()); ok {
			return true
		}
	}
	return false
}

// filterNames keeps the names matching the reference patterns.
func filterNames(names, patterns []string) []string {
	out := []string{}
	for _, n := range names {
		if matchReference(n, patterns) {
			out = append(out, n)
		}
	}
	return out
}

func (fs filterSet) match(v imageView) bool {
	dangling := len(v.tags) == 0
	if fs.dangling != nil && *fs.dangling != dangling {
		return false
	}
	if len(fs.labels) > 0 && !matchLabels(v.config.Config.Labels, fs.labels) {
		return false
	}
	if len(fs.refs) > 0 && len(filterNames(v.tags, fs.refs))+len(filterNames(v.digests, fs.refs)) == 0 {
		return false
	}
	c := v.created()
	if fs.before != nil && !c.Before(*fs.before) {
		return false
	}
	if fs.since != nil && !c.After(*fs.since) {
		return false
	}
	if fs.until != nil && !c.Before(*fs.until) {
		return false
	}
	return true
}

// Images lists images as GET /images/json does, newest first.
func (e *Engine) Images(ctx context.Context, opts ListOptions) ([]imagetypes.Summary, error) {
	fs, err := e.parseFilters(ctx, opts.Filters)
	if err != nil {
		return nil, err
	}
	views, err := e.views(ctx)
	if err != nil {
		return nil, err
	}
	out := []imagetypes.Summary{}
	for _, v := range views {
		if !fs.match(v) {
			continue
		}
		labels := v.config.Config.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		tags, digests := v.tags, v.digests
		if len(fs.refs) > 0 {
			// As Docker: only the names the filter matched are listed.
			tags, digests = filterNames(tags, fs.refs), filterNames(digests, fs.refs)
		}
		desc := v.rec.Target
		out = append(out, imagetypes.Summary{
			ID:          v.rec.ID.String(),
			Created:     v.created().Unix(),
			Labels:      labels,
			RepoTags:    tags,
			RepoDigests: digests,
			Size:        v.size(),
			SharedSize:  -1,
			Containers:  -1,
			Descriptor:  &desc,
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Inspect answers GET /images/{name}/json.
func (e *Engine) Inspect(ctx context.Context, name string) (imagetypes.InspectResponse, error) {
	v, err := e.view(ctx, name)
	if err != nil {
		return imagetypes.InspectResponse{}, err
	}
	cfg := v.config.Config
	layers := make([]string, len(v.config.RootFS.DiffIDs))
	for i, d := range v.config.RootFS.DiffIDs {
		layers[i] = d.String()
	}
	comment := ""
	if h := v.config.History; len(h) > 0 {
		comment = h[len(h)-1].Comment
	}
	created := ""
	if v.config.Created != nil {
		created = v.config.Created.UTC().Format(time.RFC3339Nano)
	}
	desc := v.rec.Target
	resp := imagetypes.InspectResponse{
		ID:           v.rec.ID.String(),
		RepoTags:     v.tags,
		RepoDigests:  v.digests,
		Comment:      comment,
		Created:      created,
		Author:       v.config.Author,
		Config:       &dockerspec.DockerOCIImageConfig{ImageConfig: cfg.ImageConfig, DockerOCIImageConfigExt: cfg.DockerOCIImageConfigExt},
		Architecture: v.config.Architecture,
		Variant:      v.config.Variant,
		Os:           v.config.OS,
		OsVersion:    v.config.OSVersion,
		Size:         v.size(),
		RootFS:       imagetypes.RootFS{Type: "layers", Layers: layers},
		Metadata:     imagetypes.Metadata{LastTagTime: v.rec.LastTagTime},
		Descriptor:   &desc,
		GraphDriver:  e.imageGraphDriver(ctx, v.config.RootFS.DiffIDs),
	}
	return resp, nil
}

// imageGraphDriver is the storage of an image's layers as Docker's overlay2
// driver shows it: its top layer's directory as UpperDir, those below it
// (newest first) as LowerDir. Nil when the image has no layers or they are
// not unpacked.
func (e *Engine) imageGraphDriver(ctx context.Context, diffIDs []digest.Digest) *storage.DriverData {
	chains := chainIDs(diffIDs)
	if len(chains) == 0 {
		return nil
	}
	paths, err := e.snaps.Paths(ctx, chains[len(chains)-1].String())
	if err != nil || len(paths) == 0 {
		return nil
	}
	dd := map[string]string{"UpperDir": paths[0]}
	if len(paths) > 1 {
		dd["LowerDir"] = strings.Join(paths[1:], ":")
	}
	return &storage.DriverData{Name: "overlay2", Data: dd}
}

// History answers GET /images/{name}/history, newest step first.
func (e *Engine) History(ctx context.Context, name string) ([]imagetypes.HistoryResponseItem, error) {
	v, err := e.view(ctx, name)
	if err != nil {
		return nil, err
	}
	hist := v.config.History
	out := []imagetypes.HistoryResponseItem{}
	layer := 0
	items := make([]imagetypes.HistoryResponseItem, 0, len(hist))
	for _, h := range hist {
		it := imagetypes.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: nil}
		if h.Created != nil {
			it.Created = h.Created.Unix()
		}
		if !h.EmptyLayer {
			if layer < len(v.rec.LayerSizes) {
				it.Size = v.rec.LayerSizes[layer]
			}
			layer++
		}
		items = append(items, it)
	}
	if len(hist) == 0 {
		// No history in the config: one entry per layer.
		for i := range v.config.RootFS.DiffIDs {
			it := imagetypes.HistoryResponseItem{ID: "<missing>", Created: v.created().Unix()}
			if i < len(v.rec.LayerSizes) {
				it.Size = v.rec.LayerSizes[i]
			}
			items = append(items, it)
		}
	}
	for i := len(items) - 1; i >= 0; i-- {
		out = append(out, items[i])
	}
	if len(out) > 0 {
		out[0].ID = v.rec.ID.String()
		out[0].Tags = v.tags
	}
	return out, nil
}

// Tag points target (a reference) at the image source names.
func (e *Engine) Tag(ctx context.Context, source, target string) error {
	id, err := e.resolveID(source)
	if err != nil {
		return err
	}
	ref, err := image.ParseReference(target)
	if err != nil {
		return err
	}
	if ref.Digest != "" {
		return errdefs.InvalidArgument(fmt.Errorf("refusing to create a tag with a digest reference: %s", target))
	}
	if strings.HasPrefix(ref.FamiliarName(), "sha256") && len(ref.Path) == 64 {
		return errdefs.InvalidArgument(fmt.Errorf("refusing to create an ambiguous tag using digest algorithm as name: %s", target))
	}
	e.nameLock.Lock()
	defer e.nameLock.Unlock()
	_, err = e.meta.SetName(ref.String(), id)
	return err
}

// RemoveOptions are the options of Remove.
type RemoveOptions struct {
	Force bool
	// NoPrune is accepted for the API's sake: it spares untagged parent
	// images, which Berth's images (pulled, loaded or imported whole) do
	// not have.
	NoPrune bool
}

// Remove answers DELETE /images/{name} with Docker's rules: removing a
// name untags it, and the image goes when no tag is left; removing by ID
// deletes the image and all its names, which needs force when they span
// several repositories.
func (e *Engine) Remove(ctx context.Context, name string, opts RemoveOptions) ([]imagetypes.DeleteResponse, error) {
	resp, err := e.remove(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	// NoPrune keeps untagged parent images in Docker; Berth's images
	// have no parent images, so a deleted image's content always goes.
	if hasDeleted(resp) {
		if _, err := e.gc(ctx); err != nil {
			e.log.Warn("garbage collection after image removal", "err", err)
		}
	}
	return resp, nil
}

func hasDeleted(resp []imagetypes.DeleteResponse) bool {
	for _, r := range resp {
		if r.Deleted != "" {
			return true
		}
	}
	return false
}

func (e *Engine) remove(ctx context.Context, name string, opts RemoveOptions) ([]imagetypes.DeleteResponse, error) {
	e.nameLock.Lock()
	defer e.nameLock.Unlock()
	id, err := e.resolveID(name)
	if err != nil {
		return nil, err
	}
	names, err := e.meta.NamesOf(id)
	if err != nil {
		return nil, err
	}
	running, stopped := e.imageUsers(id)
	inUse := len(running)+len(stopped) > 0
	var resp []imagetypes.DeleteResponse
	byName := false
	if ref, err := image.ParseReference(name); err == nil {
		key := ref.String()
		if ref.Digest != "" {
			key = ref.WithDigest(ref.Digest).String()
		}
		for _, n := range names {
			if n == key {
				byName = true
			}
		}
		if byName && inUse && !opts.Force && singleReference(names) {
			// As Docker: the image would be left dangling under a
			// container; the client must force that.
			user := append(running, stopped...)[0]
			return nil, errdefs.Conflict(fmt.Errorf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
				name, user[:12], shortID(id)))
		}
		if byName {
			if _, err := e.meta.DeleteName(key); err != nil {
				return nil, err
			}
			resp = append(resp, imagetypes.DeleteResponse{Untagged: familiar(key)})
			var tagsLeft int
			var rest []string
			for _, n := range names {
				if n == key {
					continue
				}
				rest = append(rest, n)
				if r, err := image.ParseName(n); err == nil && r.Digest == "" {
					tagsLeft++
				}
			}
			if tagsLeft > 0 {
				return resp, nil
			}
			// Last tag gone: the digest references go too, then the image.
			for _, n := range rest {
				if _, err := e.meta.DeleteName(n); err == nil {
					resp = append(resp, imagetypes.DeleteResponse{Untagged: familiar(n)})
				}
			}
			if inUse {
				// Forced: untagged, but the containers keep their image
				// (dangling) as under Docker.
				return resp, nil
			}
			if err := e.meta.DeleteImage(id); err != nil {
				return nil, err
			}
			return append(resp, imagetypes.DeleteResponse{Deleted: id.String()}), nil
		}
	}
	// By ID.
	repos := map[string]bool{}
	for _, n := range names {
		if r, err := image.ParseName(n); err == nil {
			repos[r.Name()] = true
		}
	}
	if len(running) > 0 {
		return nil, errdefs.Conflict(fmt.Errorf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", shortID(id), running[0][:12]))
	}
	if len(stopped) > 0 && !opts.Force {
		return nil, errdefs.Conflict(fmt.Errorf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", shortID(id), stopped[0][:12]))
	}
	if len(repos) > 1 && !opts.Force {
		return nil, errdefs.Conflict(fmt.Errorf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortID(id)))
	}
	for _, n := range names {
		if _, err := e.meta.DeleteName(n); err != nil {
			return nil, err
		}
		resp = append(resp, imagetypes.DeleteResponse{Untagged: familiar(n)})
	}
	if inUse {
		// Forced with stopped containers on it: the names go, the image
		// stays for them (Berth's containers start from their image).
		return resp, nil
	}
	if err := e.meta.DeleteImage(id); err != nil {
		return nil, err
	}
	return append(resp, imagetypes.DeleteResponse{Deleted: id.String()}), nil
}

// imageUsers returns the IDs of the running (or paused) and of the other
// containers created from the image id.
func (e *Engine) imageUsers(id digest.Digest) (running, stopped []string) {
	cs, err := e.ctrs()
	if err != nil {
		return nil, nil
	}
	for _, c := range cs.list() {
		c.mu.Lock()
		if c.rec.Image == id {
			if c.running() {
				running = append(running, c.rec.ID)
			} else {
				stopped = append(stopped, c.rec.ID)
			}
		}
		c.mu.Unlock()
	}
	return running, stopped
}

// singleReference says whether names (an image's references) are all in
// one repository with at most one tag, as Docker's check before untagging
// an image containers use.
func singleReference(names []string) bool {
	repos, tags := map[string]bool{}, 0
	for _, n := range names {
		r, err := image.ParseName(n)
		if err != nil {
			continue
		}
		repos[r.Name()] = true
		if r.Digest == "" {
			tags++
		}
	}
	return len(repos) <= 1 && tags <= 1
}

func familiar(n string) string {
	if r, err := image.ParseName(n); err == nil {
		return r.Familiar()
	}
	return n
}

// Prune removes dangling images (all unused images with dangling=false)
// matching filters (until, label), then garbage-collects.
func (e *Engine) Prune(ctx context.Context, filters map[string][]string) (imagetypes.PruneReport, error) {
	rep := imagetypes.PruneReport{ImagesDeleted: []imagetypes.DeleteResponse{}}
	danglingOnly := true
	f := map[string][]string{}
	for k, vs := range filters {
		switch k {
		case "dangling":
			for _, v := range vs {
				if b, err := strconv.ParseBool(v); err == nil && !b {
					danglingOnly = false
				}
			}
		case "until", "label":
			f[k] = vs
		case "label!":
			// handled below
		default:
			return rep, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	fs, err := e.parseFilters(ctx, f)
	if err != nil {
		return rep, err
	}
	views, err := e.views(ctx)
	if err != nil {
		return rep, err
	}
	for _, v := range views {
		if danglingOnly && len(v.tags) > 0 {
			continue
		}
		if !fs.match(v) {
			continue
		}
		if nl := filters["label!"]; len(nl) > 0 && matchAnyLabel(v.config.Config.Labels, nl) {
			continue
		}
		if running, stopped := e.imageUsers(v.rec.ID); len(running)+len(stopped) > 0 {
			continue // as Docker: prune leaves images containers use
		}
		resp, err := e.remove(ctx, v.rec.ID.String(), RemoveOptions{Force: true})
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return rep, err
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, resp...)
	}
	reclaimed, err := e.gc(ctx)
	if err != nil {
		return rep, err
	}
	rep.SpaceReclaimed = reclaimed
	return rep, nil
}

func matchAnyLabel(labels map[string]string, want []string) bool {
	for _, l := range want {
		if matchLabels(labels, []string{l}) {
			return true
		}
	}
	return false
}
