package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
)

func TestPullAllTags(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	reg := startRegistry(t)
	d1 := testutil.PushBusybox(t, reg, "test/all:one")
	d2 := testutil.PushMultiLayer(t, reg, "test/all:two")
	testutil.PushBusybox(t, reg, "test/other:three")
	e := newEngine(t)

	var rec recorder
	ids, err := e.PullAllTags(ctx, reg+"/test/all", PullOptions{Progress: rec.add})
	if err != nil {
		t.Fatalf("pull all tags: %v", err)
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("ids = %v, want two different images", ids)
	}
	// One "Pulling from" line per tag (its ID is the tag), each tag's
	// digest, and one status line for the repository at the end.
	var pulling []string
	for _, m := range rec.msgs {
		if m.Status == "Pulling from test/all" {
			pulling = append(pulling, m.ID)
		}
	}
	if !slices.Equal(pulling, []string{"one", "two"}) {
		t.Errorf("Pulling from lines for %v, want [one two]; progress: %q", pulling, rec.statuses())
	}
	for _, s := range []string{"Digest: " + d1, "Digest: " + d2} {
		if !rec.has(s) {
			t.Errorf("progress lacks %q: %q", s, rec.statuses())
		}
	}
	var final []string
	for _, s := range rec.statuses() {
		if strings.HasPrefix(s, "Status: ") {
			final = append(final, s)
		}
	}
	if want := []string{"Status: Downloaded newer image for " + reg + "/test/all"}; !slices.Equal(final, want) {
		t.Errorf("status lines %q, want %q", final, want)
	}
	for i, tag := range []string{"one", "two"} {
		insp, err := e.Inspect(ctx, reg+"/test/all:"+tag)
		if err != nil {
			t.Fatalf("inspect %s: %v", tag, err)
		}
		if insp.ID != ids[i].String() {
			t.Errorf("%s is %s, want %s", tag, insp.ID, ids[i])
		}
	}
	if _, err := e.Inspect(ctx, reg+"/test/other:three"); !errdefs.IsNotFound(err) {
		t.Errorf("another repository's image was pulled: %v", err)
	}

	// Again: nothing new.
	rec = recorder{}
	if _, err := e.PullAllTags(ctx, reg+"/test/all", PullOptions{Progress: rec.add}); err != nil {
		t.Fatal(err)
	}
	if !rec.has("Status: Image is up to date for "+reg+"/test/all") || rec.has("Pulling fs layer") {
		t.Errorf("second pull progress: %q", rec.statuses())
	}
}

func TestPullAllTagsErrors(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	e := newEngine(t)
	if _, err := e.PullAllTags(ctx, reg+"/test/all:v1", PullOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a tagged name: %v, want invalid argument", err)
	}
	_, err := e.PullAllTags(ctx, reg+"/no/such", PullOptions{})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no/such") {
		t.Errorf("unknown repository: %v, want not found naming it", err)
	}
}
