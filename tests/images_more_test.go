package tests

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// TestImagesPullAllTags pulls every tag of a repository with pull -a: both
// tags arrive, another repository's image does not.
func TestImagesPullAllTags(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	if _, err := os.Stat(testutil.RegistryBinary); err != nil {
		t.Skipf("%s missing (make deps installs docker-registry)", testutil.RegistryBinary)
	}
	reg := testutil.StartRegistry(t)
	dg := testutil.PushBusybox(t, reg, "e2e/alltags:one")
	if d2 := testutil.PushBusybox(t, reg, "e2e/alltags:two"); d2 != dg {
		t.Fatalf("the two tags have digests %s and %s", dg, d2)
	}
	testutil.PushBusybox(t, reg, "e2e/elsewhere:three")
	repo := reg + "/e2e/alltags"

	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		errOut := c.Fails(t, "pull", "-a", repo+":one")
		if !strings.Contains(errOut, "tag can't be used with --all-tags/-a") {
			t.Errorf("pull -a of a tagged name: %q", errOut)
		}

		out := c.Must(t, "pull", "-a", repo)
		for _, want := range []string{
			"one: Pulling from e2e/alltags",
			"two: Pulling from e2e/alltags",
			"Digest: " + dg,
			"Status: Downloaded newer image for " + repo + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("pull -a output lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(out, "Status: ") != 1 {
			t.Errorf("pull -a output has not one status line:\n%s", out)
		}
		if lines := Lines(out); len(lines) == 0 || lines[len(lines)-1] != repo {
			t.Errorf("pull -a output does not end with %s:\n%s", repo, out)
		}
		names := Lines(c.Must(t, "images", "--format", "{{.Repository}}:{{.Tag}}"))
		for _, want := range []string{repo + ":one", repo + ":two"} {
			if !contains(names, want) {
				t.Errorf("images %v lack %s", names, want)
			}
		}
		for _, n := range names {
			if strings.Contains(n, "elsewhere") {
				t.Errorf("another repository was pulled: %v", names)
			}
		}
		// Again: nothing new.
		out = c.Must(t, "pull", "--all-tags", repo)
		if !strings.Contains(out, "Status: Image is up to date for "+repo+"\n") {
			t.Errorf("second pull -a:\n%s", out)
		}

		errOut = c.Fails(t, "pull", "-a", reg+"/e2e/nosuchrepo")
		if !strings.Contains(errOut, "e2e/nosuchrepo") {
			t.Errorf("pull -a of a missing repository: %q", errOut)
		}
	})
}

// TestImagesImportURL imports a root file system tarball that berthd
// downloads from an HTTP server, and runs the image.
func TestImagesImportURL(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	rootfs, err := testutil.BusyboxTar()
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/rootfs.tar":
			_, _ = w.Write(rootfs)
		case "/rootfs.tar.gz":
			_, _ = w.Write(gz.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		for i, path := range []string{"/rootfs.tar", "/rootfs.tar.gz"} {
			src := srv.URL + path
			img := "e2e/fromurl:" + []string{"plain", "gzip"}[i]
			out := c.Must(t, "import", "--change", "ENV FROM_URL=yes", src, img)
			if !strings.Contains(out, "sha256:") {
				t.Errorf("import %s printed no image ID:\n%s", src, out)
			}
			comment := strings.TrimSpace(c.Must(t, "image", "inspect", "--format", "{{.Comment}}", img))
			if comment != "Imported from "+src {
				t.Errorf("comment %q, want %q", comment, "Imported from "+src)
			}
			c.Must(t, "run", "--rm", "--network", "none", img, "true")
			if got := c.Must(t, "run", "--rm", "--network", "none", img, "sh", "-c", "echo $FROM_URL; ls /bin/busybox"); got != "yes\n/bin/busybox\n" {
				t.Errorf("run in the imported image printed %q", got)
			}
		}
		missing := srv.URL + "/missing.tar"
		errOut := c.Fails(t, "import", missing, "e2e/fromurl:missing")
		if !strings.Contains(errOut, missing) || !strings.Contains(errOut, "404 Not Found") {
			t.Errorf("import of a missing URL: %q, want the URL and the status named", errOut)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if !contains(requests, "/rootfs.tar") || !contains(requests, "/rootfs.tar.gz") {
		t.Errorf("the server saw %v", requests)
	}
}

// TestImagesPullAllTagsToken pulls all tags from a registry that wants a
// bearer token: refused before login as Docker words it, pulled after.
func TestImagesPullAllTagsToken(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartTokenRegistry(t, "bob", "tok3n")
	testutil.PushBusybox(t, reg.Addr, "team/all:x", reg.RemoteOptions()...)
	testutil.PushBusybox(t, reg.Addr, "team/all:y", reg.RemoteOptions()...)
	repo := reg.Addr + "/team/all"
	forEachClient(t, func(t *testing.T, d *Daemon, c *CLI) {
		errOut := c.Fails(t, "pull", "-a", repo)
		if !strings.Contains(errOut, "pull access denied for "+repo) {
			t.Errorf("pull -a before login: %q", errOut)
		}
		c.Stdin = reg.Password + "\n"
		c.Must(t, "login", "--username", reg.User, "--password-stdin", reg.Addr)
		c.Stdin = ""
		out := c.Must(t, "pull", "-a", repo)
		if !strings.Contains(out, "x: Pulling from team/all") || !strings.Contains(out, "y: Pulling from team/all") {
			t.Errorf("pull -a after login:\n%s", out)
		}
		names := Lines(c.Must(t, "images", "--format", "{{.Repository}}:{{.Tag}}"))
		if !contains(names, repo+":x") || !contains(names, repo+":y") {
			t.Errorf("images %v lack %s:x and :y", names, repo)
		}
	})
}
