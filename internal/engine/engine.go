// Package engine is berthd's engine behind the Docker Engine API.
//
// For images it orchestrates the content store, the snapshotter, the
// registry client and the metadata database into pull, push, list, inspect,
// tag, remove, prune, save, load, import and login. It owns the consistency
// rules between those stores: an image record is written only after every
// blob and snapshot it needs is complete, and removing an image
// garbage-collects the blobs and snapshots nothing else references.
//
// For containers it owns the container records, volumes, restart policies,
// health checks and events, and runs each container through its own
// berth-shim (internal/shim), never through the runtime directly, so
// containers outlive berthd and are adopted again when it starts (live
// restore). docs/containers.md describes the lifecycle.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-project/berth/internal/content"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/image"
	"github.com/berth-project/berth/internal/metadata"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/snapshot"
)

// Config configures an Engine.
type Config struct {
	// DataRoot holds content/, snapshots/ and metadata.db.
	DataRoot string
	// InsecureRegistries are hosts (host[:port]) or CIDRs spoken to over
	// plain HTTP or with unverified TLS. Loopback is always insecure.
	InsecureRegistries []string
	// Mirrors are registry mirrors for docker.io.
	Mirrors []string
	// MaxConcurrentDownloads bounds parallel layer downloads (default 3).
	MaxConcurrentDownloads int
	// MaxConcurrentUploads bounds parallel layer uploads (default 5).
	MaxConcurrentUploads int
	// UserAgent is sent to registries.
	UserAgent string
	// RegistryOptions are extra registry client options (TLS roots, ...).
	RegistryOptions []registry.Option
	Logger          *slog.Logger
}

// ProgressFunc receives the messages of a JSON progress stream. The engine
// calls it from one goroutine at a time.
type ProgressFunc func(jsonstream.Message)

// serialized returns f guarded by a mutex (nil stays nil).
func (f ProgressFunc) serialized() ProgressFunc {
	if f == nil {
		return nil
	}
	var mu sync.Mutex
	return func(m jsonstream.Message) {
		mu.Lock()
		defer mu.Unlock()
		f(m)
	}
}

// Auth is a registry credential as the Docker API carries it.
type Auth struct {
	Username      string
	Password      string
	ServerAddress string
	IdentityToken string
	RegistryToken string
}

// Engine is the image engine. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	content *content.Store
	snaps   *snapshot.Snapshotter
	meta    *metadata.DB

	// gcLock: operations that add or read content hold it shared (hold);
	// garbage collection holds it exclusively, so it never sees half a
	// pull. GC never waits for it: when it is busy, the collection is
	// marked pending and runs when the last holder lets go.
	gcLock    sync.RWMutex
	gcPending atomic.Bool
	gcRuns    sync.WaitGroup
	// nameLock serialises the check-then-change sequences on names.
	nameLock sync.Mutex

	clientOnce sync.Once
	client     *registry.Client

	flightMu sync.Mutex
	flights  map[digest.Digest]*flight // layer digest -> in-progress fetch
}

// New opens (creating where needed) the stores under cfg.DataRoot.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.DataRoot == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("engine: data root is required"))
	}
	if cfg.MaxConcurrentDownloads <= 0 {
		cfg.MaxConcurrentDownloads = 3
	}
	if cfg.MaxConcurrentUploads <= 0 {
		cfg.MaxConcurrentUploads = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create data root %s: %w", cfg.DataRoot, err)
	}
	if err := privateVolumesRoot(filepath.Join(cfg.DataRoot, "volumes")); err != nil {
		return nil, err
	}
	cs, err := content.Open(filepath.Join(cfg.DataRoot, "content"))
	if err != nil {
		return nil, err
	}
	sn, err := snapshot.New(filepath.Join(cfg.DataRoot, "snapshots"))
	if err != nil {
		return nil, err
	}
	md, err := metadata.Open(filepath.Join(cfg.DataRoot, "metadata.db"))
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, content: cs, snaps: sn, meta: md, flights: map[digest.Digest]*flight{}}
	e.cleanIngests(ctx)
	return e, nil
}

// Close waits for a deferred garbage collection and releases the metadata
// database.
func (e *Engine) Close() error {
	e.gcRuns.Wait()
	return e.meta.Close()
}

// staleIngest is how long a partial download is kept for a later pull to
// resume.
const staleIngest = 24 * time.Hour

// cleanIngests drops partial downloads nobody resumed for staleIngest.
func (e *Engine) cleanIngests(ctx context.Context) {
	removed, err := e.content.CleanIngests(ctx, time.Now().Add(-staleIngest))
	if err != nil {
		e.log.Warn("clean stale partial downloads", "err", err)
	}
	if len(removed) > 0 {
		e.log.Info("removed stale partial downloads", "count", len(removed))
	}
}

// hold keeps garbage collection away until the returned release is called.
func (e *Engine) hold() (release func()) {
	e.gcLock.RLock()
	return func() {
		e.gcLock.RUnlock()
		if e.gcPending.Load() {
			e.gcRuns.Add(1)
			go func() {
				defer e.gcRuns.Done()
				if _, err := e.gc(context.Background()); err != nil {
					e.log.Warn("deferred garbage collection", "err", err)
				}
			}()
		}
	}
}

// Stats counts what the engine holds, for /info.
type Stats struct {
	Images    int
	Blobs     int
	Snapshots int
}

// Stats reports the number of images, blobs and snapshots.
func (e *Engine) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	imgs, err := e.meta.Images()
	if err != nil {
		return st, err
	}
	st.Images = len(imgs)
	_ = e.content.Walk(ctx, func(content.Info) error { st.Blobs++; return nil })
	_ = e.snaps.Walk(ctx, func(string, string) error { st.Snapshots++; return nil })
	return st, nil
}

// localImage is an image record with its parsed manifest and config.
type localImage struct {
	rec      metadata.Image
	manifest ocispec.Manifest
	config   dockerspec.DockerOCIImage
	rawCfg   []byte
}

// load reads an image's manifest and config from the content store.
func (e *Engine) load(ctx context.Context, rec metadata.Image) (*localImage, error) {
	li := &localImage{rec: rec}
	data, err := e.content.ReadAll(ctx, rec.Manifest.Digest)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s of image %s: %w", rec.Manifest.Digest, rec.ID, err)
	}
	if err := json.Unmarshal(data, &li.manifest); err != nil {
		return nil, fmt.Errorf("decode manifest %s of image %s: %w", rec.Manifest.Digest, rec.ID, err)
	}
	li.rawCfg, err = e.content.ReadAll(ctx, rec.ID)
	if err != nil {
		return nil, fmt.Errorf("read config of image %s: %w", rec.ID, err)
	}
	if err := json.Unmarshal(li.rawCfg, &li.config); err != nil {
		return nil, fmt.Errorf("decode config of image %s: %w", rec.ID, err)
	}
	return li, nil
}

// resolveID finds the image a user's string names: a reference (tag or
// digest), a full image ID, or an unambiguous ID prefix, as Docker does.
func (e *Engine) resolveID(name string) (digest.Digest, error) {
	shown := name
	if r, err := image.ParseReference(name); err == nil && !strings.Contains(name, "@") {
		shown = r.Familiar() // as Docker says it: "No such image: busybox:latest"
	}
	notFound := errdefs.NotFound(fmt.Errorf("No such image: %s", shown))
	if d, err := digest.Parse(name); err == nil {
		if _, err := e.meta.GetImage(d); err == nil {
			return d, nil
		}
		return "", notFound
	}
	if ref, err := image.ParseReference(name); err == nil {
		key := ref.String()
		if ref.Tag != "" && ref.Digest != "" {
			key = ref.WithDigest(ref.Digest).String()
		}
		if id, err := e.meta.Resolve(key); err == nil {
			return id, nil
		}
		if ref.Digest != "" {
			// A digest the image was not pulled by in this repository:
			// match any image whose manifest or index has it.
			imgs, err := e.meta.Images()
			if err != nil {
				return "", err
			}
			for _, img := range imgs {
				if img.Target.Digest == ref.Digest || img.Manifest.Digest == ref.Digest {
					return img.ID, nil
				}
			}
		}
	}
	if prefix := strings.TrimPrefix(name, "sha256:"); isHexPrefix(prefix) {
		imgs, err := e.meta.Images()
		if err != nil {
			return "", err
		}
		var found []digest.Digest
		for _, img := range imgs {
			if strings.HasPrefix(img.ID.Encoded(), prefix) {
				found = append(found, img.ID)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			return "", errdefs.InvalidArgument(fmt.Errorf("image ID prefix %q is ambiguous: %d images match", prefix, len(found)))
		}
	}
	return "", notFound
}

func isHexPrefix(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// names returns an image's tags and repo digests in familiar form.
func splitNames(names []string) (tags, digests []string) {
	tags, digests = []string{}, []string{}
	for _, n := range names {
		ref, err := image.ParseName(n)
		if err != nil {
			continue
		}
		if ref.Digest != "" {
			digests = append(digests, ref.Familiar())
		} else {
			tags = append(tags, ref.Familiar())
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// chainIDs returns the chain ID of every prefix of diffIDs.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i := range diffIDs {
		out[i] = snapshot.ChainID(diffIDs[:i+1])
	}
	return out
}

// gc removes every blob and layer snapshot no image references, and
// returns the bytes reclaimed. When a pull, push, load or save is under way
// it only marks the collection pending (the last of them runs it) and
// returns 0. The caller must not hold gcLock.
func (e *Engine) gc(ctx context.Context) (uint64, error) {
	if !e.gcLock.TryLock() {
		e.gcPending.Store(true)
		// The holder may have let go before the mark: try once more.
		if !e.gcLock.TryLock() {
			return 0, nil
		}
	}
	defer e.gcLock.Unlock()
	e.gcPending.Store(false)
	e.cleanIngests(ctx)
	imgs, err := e.meta.Images()
	if err != nil {
		return 0, err
	}
	var roots, tops []digest.Digest
	keep := map[string]bool{}
	for _, rec := range imgs {
		roots = append(roots, rec.Target.Digest, rec.Manifest.Digest, rec.ID)
		li, err := e.load(ctx, rec)
		if err != nil {
			return 0, fmt.Errorf("garbage collection: %w", err)
		}
		chains := chainIDs(li.config.RootFS.DiffIDs)
		for _, c := range chains {
			keep[c.String()] = true
		}
		if len(chains) > 0 {
			tops = append(tops, chains[len(chains)-1])
		}
	}
	sizes := map[digest.Digest]int64{}
	_ = e.content.Walk(ctx, func(i content.Info) error { sizes[i.Digest] = i.Size; return nil })
	removed, err := e.content.GC(ctx, roots)
	if err != nil {
		return 0, fmt.Errorf("garbage collect content: %w", err)
	}
	var reclaimed uint64
	for _, d := range removed {
		reclaimed += uint64(sizes[d])
	}
	// Remove unreferenced layer snapshots (the snapshotter keeps the
	// chains of tops and anything under a container's snapshot), counting
	// their usage first.
	usage := map[string]int64{}
	_ = e.snaps.Walk(ctx, func(key, _ string) error {
		if !keep[key] {
			if u, err := e.snaps.Usage(ctx, key); err == nil {
				usage[key] = u
			}
		}
		return nil
	})
	removedSnaps, err := e.snaps.GC(ctx, tops)
	if err != nil {
		return reclaimed, fmt.Errorf("garbage collect snapshots: %w", err)
	}
	for _, k := range removedSnaps {
		reclaimed += uint64(usage[k])
	}
	return reclaimed, nil
}
