package metadata

import (
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth-project/berth/internal/errdefs"
)

func TestImagesAndNames(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	id := digest.FromString("config")
	if _, err := db.SetName("docker.io/library/a:latest", id); !errdefs.IsNotFound(err) {
		t.Fatalf("naming a missing image: got %v, want not found", err)
	}
	if err := db.PutImage(Image{ID: id}); err != nil {
		t.Fatal(err)
	}
	first, err := db.GetImage(id)
	if err != nil || first.Created.IsZero() {
		t.Fatalf("get image: %+v %v", first, err)
	}
	// A second put keeps the first creation time.
	if err := db.PutImage(Image{ID: id}); err != nil {
		t.Fatal(err)
	}
	if again, _ := db.GetImage(id); !again.Created.Equal(first.Created) {
		t.Fatalf("created changed: %v -> %v", first.Created, again.Created)
	}
	for _, n := range []string{"docker.io/library/a:latest", "docker.io/library/b:1"} {
		if _, err := db.SetName(n, id); err != nil {
			t.Fatal(err)
		}
	}
	names, err := db.NamesOf(id)
	if err != nil || len(names) != 2 || names[0] != "docker.io/library/a:latest" {
		t.Fatalf("names of image: %v %v", names, err)
	}
	if got, err := db.Resolve("docker.io/library/b:1"); err != nil || got != id {
		t.Fatalf("resolve: %v %v", got, err)
	}
	if _, err := db.DeleteName("docker.io/library/b:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Resolve("docker.io/library/b:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("resolve deleted name: %v", err)
	}
	if err := db.DeleteImage(id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Resolve("docker.io/library/a:latest"); !errdefs.IsNotFound(err) {
		t.Fatalf("name survived its image: %v", err)
	}
	if imgs, _ := db.Images(); len(imgs) != 0 {
		t.Fatalf("images left: %v", imgs)
	}
	if err := db.PutImage(Image{ID: "bad"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad id accepted: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(p); !errdefs.IsConflict(err) {
		t.Fatalf("second open of a locked database: %v", err)
	}
}
