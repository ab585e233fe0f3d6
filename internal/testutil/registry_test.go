package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestStartRegistryStopsProcess(t *testing.T) {
	requireRegistry(t)
	r, err := StartRegistryProcess(t.TempDir(), RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid := r.cmd.Process.Pid
	resp, err := http.Get("http://" + r.Addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/v2/ answered %d", resp.StatusCode)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("registry pid %d still exists after Stop", pid)
	}
}

func isStatus(err error, code int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == code
}

func TestTLSRegistryBasicAuth(t *testing.T) {
	requireRegistry(t)
	reg := StartTLSRegistry(t, "alice", "s3cret")
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	PushFixture(t, reg.Addr, "private/busybox", img, reg.RemoteOptions()...)
	pullImage(t, reg.Addr+"/private/busybox", img, reg.RemoteOptions()...)

	r, _ := name.ParseReference(reg.Addr + "/private/busybox")
	tls := reg.RemoteOptions()[0]
	if _, err := remote.Image(r, tls); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
	if _, err := remote.Image(r, tls, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong password: %v, want 401", err)
	}
	if _, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("pull without the CA: %v, want a certificate error", err)
	}
	if b, err := os.ReadFile(reg.CAPath); err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Errorf("CA file %s: %v", reg.CAPath, err)
	}
}

func TestTokenRegistry(t *testing.T) {
	reg := StartTokenRegistry(t, "bob", "tok3n")
	img, err := BusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	PushFixture(t, reg.Addr, "team/busybox:v1", img, reg.RemoteOptions()...)
	pullImage(t, reg.Addr+"/team/busybox:v1", img, reg.RemoteOptions()...)

	resp, err := http.Get("http://" + reg.Addr + "/v2/team/busybox/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ch := resp.Header.Get("WWW-Authenticate")
	want := fmt.Sprintf(`Bearer realm=%q,service=%q,scope="repository:team/busybox:pull"`, reg.Realm, reg.Service)
	if resp.StatusCode != http.StatusUnauthorized || ch != want {
		t.Errorf("unauthenticated GET: %d %q, want 401 %q", resp.StatusCode, ch, want)
	}
	r, _ := name.ParseReference(reg.Addr+"/team/busybox:v1", name.Insecure)
	if _, err := remote.Image(r); err == nil {
		t.Error("anonymous pull succeeded")
	}
	if _, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: "bob", Password: "nope"})); err == nil {
		t.Error("pull with a wrong password succeeded")
	}
	var pushScope bool
	for _, s := range reg.TokenRequests() {
		if strings.Contains(s, "repository:team/busybox:") && strings.Contains(s, "push") {
			pushScope = true
		}
	}
	if !pushScope {
		t.Errorf("token requests %q lack a push scope", reg.TokenRequests())
	}
}

func blobURL(addr, repo, digest string) string {
	return "http://" + addr + "/v2/" + repo + "/blobs/" + digest
}

func get(t *testing.T, url, rng string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestFaultProxies(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	PushBusybox(t, reg, "faults/busybox")
	img, _ := BusyboxImage()
	layers, _ := LayerDigests(img)
	digest := layers[0]

	_, good, err := get(t, blobURL(reg, "faults/busybox", digest), "")
	if err != nil || sha(good) != digest {
		t.Fatalf("direct blob: %v digest %s", err, sha(good))
	}

	t.Run("corrupt", func(t *testing.T) {
		p := StartCorruptingProxy(t, reg, digest)
		_, b, err := get(t, blobURL(p.Addr, "faults/busybox", digest), "")
		if err != nil || len(b) != len(good) || sha(b) == digest {
			t.Fatalf("corrupt blob: %v, %d bytes (want %d), digest %s", err, len(b), len(good), sha(b))
		}
		r, _ := name.ParseReference(p.Addr+"/faults/busybox", name.Insecure)
		pulled, err := remote.Image(r)
		if err != nil {
			t.Fatal(err) // manifest and config pass through untouched
		}
		ls, _ := pulled.Layers()
		rc, _ := ls[0].Compressed()
		_, err = io.Copy(io.Discard, rc)
		if err == nil {
			t.Error("go-containerregistry read a corrupt blob without error")
		}
	})

	t.Run("cut", func(t *testing.T) {
		p := StartCutProxy(t, reg, digest, 1000)
		_, b, err := get(t, blobURL(p.Addr, "faults/busybox", digest), "")
		if err == nil || len(b) != 1000 {
			t.Fatalf("first GET: %v after %d bytes, want an error after 1000", err, len(b))
		}
		resp, rest, err := get(t, blobURL(p.Addr, "faults/busybox", digest), "bytes=1000-")
		if err != nil || resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("resume GET: %v %v", err, resp)
		}
		if sha(append(b, rest...)) != digest {
			t.Error("resumed bytes do not make the blob")
		}
		reqs := p.BlobRequests()
		if len(reqs) != 2 || !reqs[0].Faulted || reqs[1].Faulted || reqs[1].Range != "bytes=1000-" || reqs[1].Bytes != int64(len(good)-1000) {
			t.Errorf("requests %+v", reqs)
		}
	})

	t.Run("busy", func(t *testing.T) {
		p := StartBusyProxy(t, reg, digest, 2)
		for i := 0; i < 3; i++ {
			resp, b, err := get(t, blobURL(p.Addr, "faults/busybox", digest), "")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 503, false: 200}[i < 2]; resp.StatusCode != want {
				t.Errorf("GET %d: %d, want %d", i, resp.StatusCode, want)
			}
			if i == 2 && sha(b) != digest {
				t.Error("third GET did not serve the blob")
			}
		}
	})

	t.Run("stall", func(t *testing.T) {
		p := StartStallProxy(t, reg, digest, 500)
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() {
			_, b, err := get(t, blobURL(p.Addr, "faults/busybox", digest), "")
			done <- result{len(b), err}
		}()
		<-p.Stalled
		select {
		case r := <-done:
			t.Fatalf("request finished while stalled: %+v", r)
		default:
		}
		p.Release()
		if r := <-done; r.err == nil || r.n != 500 {
			t.Errorf("stalled request: %d bytes, %v; want 500 and an error", r.n, r.err)
		}
		if _, b, err := get(t, blobURL(p.Addr, "faults/busybox", digest), ""); err != nil || sha(b) != digest {
			t.Errorf("second GET: %v", err)
		}
	})
}

func TestRecordingProxy(t *testing.T) {
	requireRegistry(t)
	reg := StartRegistry(t)
	p := StartRecordingProxy(t, reg)
	d := PushBusybox(t, p.Addr, "rec/busybox:1") // uploads follow the rewritten Location headers
	var manifestPut, blobUploads int
	for _, r := range p.Requests() {
		switch {
		case r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/manifests/1"):
			manifestPut++
		case r.Method == http.MethodPut && strings.Contains(r.Path, "/blobs/uploads/") && strings.Contains(r.Query, "digest="):
			blobUploads++
		}
		if r.Faulted {
			t.Errorf("recording proxy faulted %+v", r)
		}
	}
	if manifestPut != 1 || blobUploads != 2 { // layer and config
		t.Errorf("manifest PUTs %d, blob upload PUTs %d: %+v", manifestPut, blobUploads, p.Requests())
	}
	r, _ := name.ParseReference(reg+"/rec/busybox:1", name.Insecure)
	if desc, err := remote.Head(r); err != nil || desc.Digest.String() != d {
		t.Errorf("upstream has %v %v, want %s", desc, err, d)
	}
}
