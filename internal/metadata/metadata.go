// Package metadata owns berthd's small database (bbolt): the image records
// (an image's ID is its config digest) and the names (tags and digest
// references) that point at them. Blobs and unpacked layers live in the
// content store and the snapshotter; this package only records which of them
// make up an image and what it is called, so that a crash never leaves a name
// pointing at half an image: the engine writes a record only after every blob
// it references is committed.
package metadata

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-project/berth/internal/errdefs"
)

var (
	bucketImages = []byte("images") // image ID -> JSON Image
	bucketNames  = []byte("names")  // full reference -> image ID
	bucketLayers = []byte("layers") // layer diff ID -> uncompressed size (decimal)
)

// Image is the record of one local image.
type Image struct {
	// ID is the digest of the image config.
	ID digest.Digest `json:"id"`
	// Target is what the image was pulled or loaded as: a manifest or an
	// index. Its digest is the image's repo digest.
	Target ocispec.Descriptor `json:"target"`
	// Manifest is the platform manifest chosen from Target (equal to Target
	// when Target is a manifest).
	Manifest ocispec.Descriptor `json:"manifest"`
	// Created is when the record was first written.
	Created time.Time `json:"created"`
	// LastTagTime is when a name last pointed here.
	LastTagTime time.Time `json:"lastTagTime,omitempty"`
	// LayerSizes are the uncompressed sizes of the layers, in order.
	LayerSizes []int64 `json:"layerSizes,omitempty"`
	// Labels are Berth's own annotations on the record (not the config labels).
	Labels map[string]string `json:"labels,omitempty"`
}

// DB is the metadata database. It is safe for concurrent use.
type DB struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database file at path.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create metadata directory %s: %w", filepath.Dir(path), err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, errdefs.Conflict(fmt.Errorf("open metadata database %s: it is locked by another process (is another berthd using this data root?)", path))
	}
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketNames, bucketLayers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise metadata database %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// PutImage stores img, keeping the original Created time of an existing
// record with the same ID.
func (d *DB) PutImage(img Image) error {
	if err := img.ID.Validate(); err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("store image record %q: %w", img.ID, err))
	}
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if old := b.Get([]byte(img.ID)); old != nil {
			var prev Image
			if err := json.Unmarshal(old, &prev); err == nil && !prev.Created.IsZero() {
				img.Created = prev.Created
				if img.LastTagTime.IsZero() {
					img.LastTagTime = prev.LastTagTime
				}
			}
		}
		if img.Created.IsZero() {
			img.Created = time.Now().UTC()
		}
		data, err := json.Marshal(img)
		if err != nil {
			return fmt.Errorf("encode image record %s: %w", img.ID, err)
		}
		return b.Put([]byte(img.ID), data)
	})
}

// GetImage returns the record of id; errdefs.ErrNotFound if there is none.
func (d *DB) GetImage(id digest.Digest) (Image, error) {
	var img Image
	err := d.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketImages).Get([]byte(id))
		if data == nil {
			return errdefs.NotFound(fmt.Errorf("image %s", id))
		}
		return json.Unmarshal(data, &img)
	})
	return img, err
}

// Images returns every image record, sorted by ID.
func (d *DB) Images() ([]Image, error) {
	var out []Image
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("decode image record %s: %w", k, err)
			}
			out = append(out, img)
			return nil
		})
	})
	return out, err
}

// DeleteImage removes the record of id and every name pointing at it.
func (d *DB) DeleteImage(id digest.Digest) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketImages)
		if b.Get([]byte(id)) == nil {
			return errdefs.NotFound(fmt.Errorf("image %s", id))
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		names := tx.Bucket(bucketNames)
		var drop [][]byte
		_ = names.ForEach(func(k, v []byte) error {
			if string(v) == string(id) {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range drop {
			if err := names.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetName points name (a full reference such as
// docker.io/library/busybox:latest or repo@sha256:...) at the image id, which
// must exist. It returns the image the name pointed at before ("" if none).
func (d *DB) SetName(name string, id digest.Digest) (digest.Digest, error) {
	var prev digest.Digest
	err := d.db.Update(func(tx *bolt.Tx) error {
		images := tx.Bucket(bucketImages)
		data := images.Get([]byte(id))
		if data == nil {
			return errdefs.NotFound(fmt.Errorf("name %s: image %s", name, id))
		}
		names := tx.Bucket(bucketNames)
		prev = digest.Digest(names.Get([]byte(name)))
		if err := names.Put([]byte(name), []byte(id)); err != nil {
			return err
		}
		var img Image
		if err := json.Unmarshal(data, &img); err != nil {
			return fmt.Errorf("decode image record %s: %w", id, err)
		}
		img.LastTagTime = time.Now().UTC()
		data, err := json.Marshal(img)
		if err != nil {
			return err
		}
		return images.Put([]byte(id), data)
	})
	return prev, err
}

// Resolve returns the image a name points at; errdefs.ErrNotFound if none.
func (d *DB) Resolve(name string) (digest.Digest, error) {
	var id digest.Digest
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNames).Get([]byte(name))
		if v == nil {
			return errdefs.NotFound(fmt.Errorf("no such image: %s", name))
		}
		id = digest.Digest(v)
		return nil
	})
	return id, err
}

// DeleteName removes a name; errdefs.ErrNotFound if it does not exist.
func (d *DB) DeleteName(name string) (digest.Digest, error) {
	var id digest.Digest
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNames)
		v := b.Get([]byte(name))
		if v == nil {
			return errdefs.NotFound(fmt.Errorf("no such image: %s", name))
		}
		id = digest.Digest(v)
		return b.Delete([]byte(name))
	})
	return id, err
}

// Names returns every name, mapped to the image it points at.
func (d *DB) Names() (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
			out[string(k)] = digest.Digest(v)
			return nil
		})
	})
	return out, err
}

// NamesOf returns the names pointing at id, sorted.
func (d *DB) NamesOf(id digest.Digest) ([]string, error) {
	all, err := d.Names()
	if err != nil {
		return nil, err
	}
	var out []string
	for n, v := range all {
		if v == id {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// SetLayerSize records the uncompressed size of the layer diffID.
func (d *DB) SetLayerSize(diffID digest.Digest, size int64) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLayers).Put([]byte(diffID), []byte(strconv.FormatInt(size, 10)))
	})
}

// LayerSize returns the recorded uncompressed size of diffID (false if
// none is recorded).
func (d *DB) LayerSize(diffID digest.Digest) (int64, bool) {
	var n int64
	var ok bool
	_ = d.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketLayers).Get([]byte(diffID)); v != nil {
			if x, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				n, ok = x, true
			}
		}
		return nil
	})
	return n, ok
}
