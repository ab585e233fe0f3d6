package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
)

func TestTagsFromRegistry(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	seedImage(t, host, "lib/app", "v1", 64, 1)
	seedImage(t, host, "lib/app", "v2", 64, 1)
	seedImage(t, host, "lib/other", "x", 64, 1)
	got, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/lib/app"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1", "v2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("tags = %v, want %v", got, want)
	}
}

// pagedTags serves /v2/lib/app/tags/list in pages of two, linking each to
// the next with a relative Link header as the distribution spec shows.
func pagedTags(t *testing.T, all []string, link func(last string) string) (http.Handler, *atomic.Int32) {
	var pages atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(http.StatusOK)
			return
		case "/v2/lib/app/tags/list":
		default:
			http.NotFound(w, r)
			return
		}
		pages.Add(1)
		start := 0
		if last := r.URL.Query().Get("last"); last != "" {
			for i, tag := range all {
				if tag == last {
					start = i + 1
				}
			}
		}
		end := min(start+2, len(all))
		if end < len(all) {
			w.Header().Set("Link", link(all[end-1]))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": "lib/app", "tags": all[start:end]})
	}), &pages
}

func TestTagsFollowsLinkPagination(t *testing.T) {
	all := []string{"1.0", "1.1", "2.0", "latest", "z_last"}
	h, pages := pagedTags(t, all, func(last string) string {
		return `</v2/lib/app/tags/list?n=2&last=` + last + `>; rel="next"`
	})
	_, host := startRegistry(t, h)
	got, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/lib/app"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, all) {
		t.Fatalf("tags = %v, want %v", got, all)
	}
	if n := pages.Load(); n != 3 {
		t.Fatalf("fetched %d pages, want 3", n)
	}
}

func TestTagsRefusesNextPageOnAnotherHost(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the other host was asked for %s", r.URL)
	}))
	defer other.Close()
	h, _ := pagedTags(t, []string{"a", "b", "c"}, func(last string) string {
		return `<` + other.URL + `/v2/lib/app/tags/list?last=` + last + `>; rel="next"`
	})
	_, host := startRegistry(t, h)
	_, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/lib/app"))
	if err == nil || !strings.Contains(err.Error(), "only its own host is followed") {
		t.Fatalf("err = %v, want a refused next page", err)
	}
}

func TestTagsLoopingLinkIsAnError(t *testing.T) {
	h, _ := pagedTags(t, []string{"a", "b", "c"}, func(string) string {
		return `</v2/lib/app/tags/list>; rel="next"`
	})
	_, host := startRegistry(t, h)
	_, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/lib/app"))
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("err = %v, want a loop detected", err)
	}
}

func TestTagsUnknownRepository(t *testing.T) {
	_, host := startRegistry(t, newRegistryHandler())
	_, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/nothing/here"))
	if !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v, want not found", err)
	}
	if !strings.Contains(err.Error(), "nothing/here") {
		t.Fatalf("err = %v does not name the repository", err)
	}
}

func TestTagsRejectsInvalidTag(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		_, _ = w.Write([]byte(`{"name":"lib/app","tags":["ok","../../etc"]}`))
	})
	_, host := startRegistry(t, h)
	_, err := New(fastRetry()).Tags(context.Background(), mustRef(t, host+"/lib/app"))
	if err == nil || !strings.Contains(err.Error(), `invalid tag "../../etc"`) {
		t.Fatalf("err = %v, want the invalid tag named", err)
	}
}

func TestNextPage(t *testing.T) {
	for _, tc := range []struct{ link, want string }{
		{"", ""},
		{`</v2/a/tags/list?last=x>; rel="next"`, "https://reg.example:5000/v2/a/tags/list?last=x"},
		{`<https://reg.example:5000/v2/a/tags/list?last=y>; rel=next`, "https://reg.example:5000/v2/a/tags/list?last=y"},
		{`</prev>; rel="prev", </v2/a/tags/list?last=z>; rel="next"`, "https://reg.example:5000/v2/a/tags/list?last=z"},
		{`</v2/a/tags/list?last=z>; rel="first"`, ""},
	} {
		r, err := New().registry("reg.example:5000")
		if err != nil {
			t.Fatal(err)
		}
		got, err := nextPage(r, "https://reg.example:5000/v2/a/tags/list", tc.link)
		if err != nil || got != tc.want {
			t.Errorf("nextPage(%q) = %q, %v; want %q", tc.link, got, err, tc.want)
		}
	}
}

// TestTagsThroughBearerToken lists tags, across pages, of a registry that
// wants a bearer token: every page goes with the token, as pulls do.
func TestTagsThroughBearerToken(t *testing.T) {
	all := []string{"a", "b", "c", "d"}
	h, pages := pagedTags(t, all, func(last string) string {
		return `</v2/lib/app/tags/list?n=2&last=` + last + `>; rel="next"`
	})
	tr := &tokenRegistry{next: h, user: "alice", pass: "s3cret", tokens: map[string]bool{}}
	_, host := startRegistry(t, tr)
	ctx := context.Background()
	got, err := New(fastRetry(), WithAuth(staticAuth{"alice", "s3cret"})).Tags(ctx, mustRef(t, host+"/lib/app"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, all) || pages.Load() != 2 {
		t.Fatalf("tags = %v from %d pages, want %v from 2", got, pages.Load(), all)
	}
	_, err = New(WithRetry(0, 0), WithAuth(staticAuth{"alice", "nope"})).Tags(ctx, mustRef(t, host+"/lib/app"))
	if !errors.Is(err, errdefs.ErrUnauthorized) {
		t.Fatalf("wrong password: %v, want unauthorized", err)
	}
}
