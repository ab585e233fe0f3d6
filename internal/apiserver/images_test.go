package apiserver

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"

	"github.com/berth-project/berth/internal/testutil"
)

type streamLine struct {
	Status         string `json:"status"`
	ID             string `json:"id"`
	ProgressDetail *struct {
		Current int64 `json:"current"`
		Total   int64 `json:"total"`
	} `json:"progressDetail"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Error string `json:"error"`
}

func readStream(t *testing.T, r io.Reader) []streamLine {
	t.Helper()
	var out []streamLine
	dec := json.NewDecoder(r)
	for {
		var l streamLine
		if err := dec.Decode(&l); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("decode progress stream: %v", err)
		}
		out = append(out, l)
	}
}

func TestPullStreamAndImageRoutes(t *testing.T) {
	testutil.RequiresRoot(t)
	reg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	u, _ := url.Parse(reg.URL)
	host := u.Host
	digest := testutil.PushBusybox(t, host, "test/bb:1")
	srv := newServer(t)

	resp, err := http.Post(srv.URL+"/v1.44/images/create?fromImage="+host+"/test/bb&tag=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := readStream(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("pull: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if l.Error != "" {
			t.Fatalf("pull stream error: %s", l.Error)
		}
		seen[l.Status] = true
		if l.Status == "Pulling fs layer" && (len(l.ID) != 12 || l.ProgressDetail == nil) {
			t.Errorf("layer line: %+v", l)
		}
	}
	for _, s := range []string{"Pulling from test/bb", "Pulling fs layer", "Download complete", "Pull complete", "Digest: " + digest, "Status: Downloaded newer image for " + host + "/test/bb:1"} {
		if !seen[s] {
			t.Errorf("stream lacks %q: %+v", s, lines)
		}
	}

	r, err := http.Get(srv.URL + "/v1.44/images/json")
	if err != nil {
		t.Fatal(err)
	}
	var list []image.Summary
	_ = json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if len(list) != 1 || len(list[0].RepoTags) != 1 || list[0].RepoTags[0] != host+"/test/bb:1" {
		t.Fatalf("list: %+v", list)
	}
	// Names with slashes and ports route to the image.
	r, err = http.Get(srv.URL + "/v1.44/images/" + host + "/test/bb:1/json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	var insp image.InspectResponse
	_ = json.Unmarshal(body, &insp)
	if r.StatusCode != 200 || insp.ID != list[0].ID {
		t.Fatalf("inspect: %d %+v", r.StatusCode, insp)
	}
	// As Docker's before API 1.52: Parent and DockerVersion are sent (empty
	// for a pulled image), and the layers' directories are shown.
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	for _, k := range []string{"Parent", "DockerVersion"} {
		if v, ok := raw[k]; !ok || v != "" {
			t.Errorf("inspect %s: %#v (present %v), want \"\"", k, v, ok)
		}
	}
	if gd := insp.GraphDriver; gd == nil || gd.Name != "overlay2" || gd.Data["UpperDir"] == "" {
		t.Errorf("inspect GraphDriver: %+v", gd)
	} else if st, err := os.Stat(gd.Data["UpperDir"]); err != nil || !st.IsDir() {
		t.Errorf("inspect GraphDriver UpperDir %s: %v", gd.Data["UpperDir"], err)
	}
	// Tag, then delete the tag.
	r, err = http.Post(srv.URL+"/v1.44/images/"+host+"/test/bb:1/tag?repo=x/y&tag=z", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 201 {
		t.Fatalf("tag: %d", r.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/v1.44/images/x/y:z", nil)
	r, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var del []image.DeleteResponse
	_ = json.NewDecoder(r.Body).Decode(&del)
	r.Body.Close()
	if len(del) != 1 || del[0].Untagged != "x/y:z" {
		t.Fatalf("delete tag: %+v", del)
	}
	// Save streams a tar.
	r, err = http.Get(srv.URL + "/v1.44/images/get?names=" + url.QueryEscape(host+"/test/bb:1"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/x-tar" || n == 0 {
		t.Fatalf("save: %d %s %d bytes", r.StatusCode, r.Header.Get("Content-Type"), n)
	}
	r, _ = http.Get(srv.URL + "/v1.44/images/get?names=missing")
	r.Body.Close()
	if r.StatusCode != 404 {
		t.Errorf("save of a missing image: %d", r.StatusCode)
	}
}

func TestPullErrorMidStream(t *testing.T) {
	testutil.RequiresRoot(t)
	reg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	u, _ := url.Parse(reg.URL)
	testutil.PushBusybox(t, u.Host, "test/bb:1")
	img, err := testutil.BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := testutil.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartCorruptingProxy(t, u.Host, layers[0])
	srv := newServer(t)
	resp, err := http.Post(srv.URL+"/v1.44/images/create?fromImage="+proxy.Addr+"/test/bb&tag=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := readStream(t, resp.Body)
	resp.Body.Close()
	last := lines[len(lines)-1]
	if resp.StatusCode != 200 || last.ErrorDetail == nil || last.Error == "" || !strings.Contains(last.Error, layers[0]) {
		t.Fatalf("mid-stream error: status %d, last line %+v", resp.StatusCode, last)
	}
	// A pull of something absent fails before streaming, with a status.
	resp, err = http.Post(srv.URL+"/v1.44/images/create?fromImage="+u.Host+"/no/such&tag=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("pull of a missing image: %d", resp.StatusCode)
	}
}

// Image inspect sends the whole image config, Docker's fields of a container
// config included (empty), Parent and DockerVersion empty, Comment and
// Author even when empty.
func TestImageInspectLegacyShape(t *testing.T) {
	cfg := &dockerspec.DockerOCIImageConfig{}
	cfg.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	cfg.Volumes = map[string]struct{}{"/data": {}}
	cfg.StopSignal = "SIGQUIT"
	cfg.Cmd = []string{"sh"}
	cfg.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "true"}}
	cfg.OnBuild = []string{"RUN true"}
	cfg.Shell = []string{"/bin/ash", "-c"}
	data, err := json.Marshal(newImageInspectResponse(image.InspectResponse{ID: "sha256:x", Author: "me", Config: cfg}))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		ID            string `json:"Id"`
		Parent        *string
		Comment       *string
		DockerVersion *string
		Author        *string
		Config        map[string]json.RawMessage
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*string{raw.Parent, raw.Comment, raw.DockerVersion} {
		if f == nil || *f != "" {
			t.Errorf("inspect lacks Parent, Comment or DockerVersion: %s", data)
		}
	}
	if raw.ID != "sha256:x" || raw.Author == nil || *raw.Author != "me" {
		t.Errorf("inspect: %s", data)
	}
	want := map[string]string{
		"Hostname": `""`, "Domainname": `""`, "User": `""`, "AttachStdin": "false", "AttachStdout": "false",
		"AttachStderr": "false", "Tty": "false", "OpenStdin": "false", "StdinOnce": "false", "Env": "null",
		"Cmd": `["sh"]`, "Image": `""`, "Volumes": `{"/data":{}}`, "WorkingDir": `""`, "Entrypoint": "null",
		"OnBuild": `["RUN true"]`, "Labels": "null", "ExposedPorts": `{"80/tcp":{}}`, "StopSignal": `"SIGQUIT"`,
		"Healthcheck": `{"Test":["CMD","true"]}`, "Shell": `["/bin/ash","-c"]`,
	}
	for k, v := range want {
		if got, ok := raw.Config[k]; !ok || string(got) != v {
			t.Errorf("Config.%s: %s (present %v), want %s", k, got, ok, v)
		}
	}
	if len(raw.Config) != len(want) {
		t.Errorf("Config has %d fields, want %d: %s", len(raw.Config), len(want), data)
	}
}
