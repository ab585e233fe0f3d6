package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	eng, err := engine.New(context.Background(), engine.Config{DataRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv := httptest.NewServer(New(eng, Identity{ID: "test-id", Name: "test", ServerVersion: "test"}, nil))
	t.Cleanup(srv.Close)
	return srv
}

func TestPing(t *testing.T) {
	srv := newServer(t)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, srv.URL+"/_ping", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /_ping: status %d", method, resp.StatusCode)
		}
		want := map[string]string{
			"Api-Version":     APIVersion,
			"Ostype":          "linux",
			"Builder-Version": "1",
			"Cache-Control":   "no-cache, no-store, must-revalidate",
			"Pragma":          "no-cache",
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s /_ping header %s = %q, want %q", method, k, got, v)
			}
		}
		if method == http.MethodGet && string(body) != "OK" {
			t.Errorf("GET /_ping body %q", body)
		}
		if method == http.MethodHead && len(body) != 0 {
			t.Errorf("HEAD /_ping body %q", body)
		}
	}
}

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestVersionNegotiation(t *testing.T) {
	srv := newServer(t)
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/version", 200, ""},
		{"/v1.44/version", 200, ""},
		{"/v" + APIVersion + "/version", 200, ""},
		{"/v" + MinAPIVersion + "/version", 200, ""},
		{"/v1.99/version", 400, "client version 1.99 is too new. Maximum supported API version is " + APIVersion},
		{"/v1.12/version", 400, "client version 1.12 is too old"},
	} {
		status, body := get(t, srv.URL+tc.path)
		if status != tc.status {
			t.Errorf("GET %s: status %d, want %d (%v)", tc.path, status, tc.status, body)
			continue
		}
		if tc.msg != "" {
			if m, _ := body["message"].(string); !strings.HasPrefix(m, tc.msg) {
				t.Errorf("GET %s: message %q, want prefix %q", tc.path, m, tc.msg)
			}
		} else if body["ApiVersion"] != APIVersion || body["MinAPIVersion"] != MinAPIVersion {
			t.Errorf("GET %s: versions %v/%v", tc.path, body["ApiVersion"], body["MinAPIVersion"])
		}
	}
}

func TestInfo(t *testing.T) {
	srv := newServer(t)
	status, body := get(t, srv.URL+"/v1.44/info")
	if status != 200 {
		t.Fatalf("info: %d %v", status, body)
	}
	if body["ID"] != "test-id" || body["DefaultRuntime"] != "berth-runtime" || body["OSType"] != "linux" {
		t.Errorf("info fields: %v", body)
	}
	if n, _ := body["Images"].(float64); n != 0 {
		t.Errorf("images = %v", body["Images"])
	}
	rc, _ := body["RegistryConfig"].(map[string]any)
	if cidrs, _ := rc["InsecureRegistryCIDRs"].([]any); len(cidrs) == 0 || cidrs[0] != "127.0.0.0/8" {
		t.Errorf("insecure CIDRs: %v", rc)
	}
}

func TestErrors(t *testing.T) {
	srv := newServer(t)
	status, body := get(t, srv.URL+"/v1.44/images/docker.io/library/nothing:here/json")
	if status != 404 || body["message"] != "No such image: nothing:here" {
		t.Errorf("inspect missing image: %d %v", status, body)
	}
	status, body = get(t, srv.URL+"/v1.44/no/such/route")
	if status != 404 || body["message"] == nil {
		t.Errorf("unknown route: %d %v", status, body)
	}
	status, body = get(t, srv.URL+`/images/json?filters={"bogus":{"x":true}}`)
	if status != 400 {
		t.Errorf("bad filter: %d %v", status, body)
	}
	resp, err := http.Post(srv.URL+"/v1.44/images/create", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("create without fromImage: %d", resp.StatusCode)
	}
}

func TestStatusCode(t *testing.T) {
	base := errors.New("x")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errdefs.NotFound(base), 404},
		{errdefs.InvalidArgument(base), 400},
		{errdefs.Conflict(base), 409},
		{errdefs.AlreadyExists(base), 409},
		{errdefs.With(errdefs.ErrUnauthorized, base), 401},
		{errdefs.NotImplemented(base), 501},
		{fmt.Errorf("wrapped: %w", errdefs.NotFound(base)), 404},
		{base, 500},
	} {
		if got := StatusCode(tc.err); got != tc.want {
			t.Errorf("StatusCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestParseFilters(t *testing.T) {
	modern, err := parseFilters(`{"dangling":{"true":true},"label":{"a=b":true}}`)
	if err != nil || modern["dangling"][0] != "true" || modern["label"][0] != "a=b" {
		t.Errorf("modern filters: %v %v", modern, err)
	}
	legacy, err := parseFilters(`{"reference":["busybox"]}`)
	if err != nil || legacy["reference"][0] != "busybox" {
		t.Errorf("legacy filters: %v %v", legacy, err)
	}
	if _, err := parseFilters(`{`); !errdefs.IsInvalidArgument(err) {
		t.Errorf("broken filters: %v", err)
	}
}

func TestRegistryAuthHeader(t *testing.T) {
	req := httptest.NewRequest("POST", "/images/create", nil)
	// {"username":"u","password":"p:w","serveraddress":"r.example"} base64url
	req.Header.Set("X-Registry-Auth", "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InA6dyIsInNlcnZlcmFkZHJlc3MiOiJyLmV4YW1wbGUifQ==")
	a, err := registryAuth(req)
	if err != nil || a == nil || a.Username != "u" || a.Password != "p:w" || a.ServerAddress != "r.example" {
		t.Fatalf("auth: %+v %v", a, err)
	}
	req.Header.Set("X-Registry-Auth", "e30=") // {}
	if a, err := registryAuth(req); err != nil || a != nil {
		t.Fatalf("empty auth: %+v %v", a, err)
	}
	req.Header.Set("X-Registry-Auth", "!!!")
	if _, err := registryAuth(req); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("garbage auth: %v", err)
	}
}
