package tests

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestContainersCgroupParentAndAnonymousVolumes checks that a container's
// cgroup is made under its --cgroup-parent, and that `-v /path` (which the
// docker CLI sends as Config.Volumes, not as a bind) gives the container an
// anonymous volume that rm -v removes.
func TestContainersCgroupParentAndAnonymousVolumes(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		parent := fmt.Sprintf("/berth-e2e-parent-%d", time.Now().UnixNano())
		t.Cleanup(func() { removeCgroupEverywhere(t, parent) })
		id := strings.TrimSpace(e.mustRun(t, "-d", "--cgroup-parent", parent, e.image, "sleep", "300"))
		pid := e.inspect(t, id).State.Pid
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		want := parent + "/" + id
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.SplitN(line, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
				found = f[2] == want
				if !found {
					t.Errorf("memory cgroup of the container is %s, want %s", f[2], want)
				}
			}
		}
		if !found {
			t.Errorf("no memory cgroup %s in /proc/%d/cgroup:\n%s", want, pid, data)
		}
		e.c.Must(t, "rm", "-f", id)

		out := e.mustRun(t, "--name", "anon", "-v", "/anon", e.image, "sh", "-c", "echo kept > /anon/f; grep -c ' /anon ' /proc/self/mountinfo")
		if strings.TrimSpace(out) != "1" {
			t.Errorf("-v /anon: /anon is not a mount in the container (mountinfo matches: %q)", out)
		}
		ins := e.inspect(t, "anon")
		var vol string
		for _, m := range ins.Mounts {
			if m.Destination == "/anon" && m.Type == "volume" && m.RW {
				vol = m.Name
			}
		}
		if vol == "" {
			t.Fatalf("-v /anon: no read-write volume mount at /anon in inspect: %+v", ins.Mounts)
		}
		if got := strings.TrimSpace(e.c.Must(t, "volume", "inspect", "-f", "{{.Name}}", vol)); got != vol {
			t.Errorf("volume inspect %s gave %q", vol, got)
		}
		e.c.Must(t, "rm", "-v", "anon")
		if _, _, err := e.c.Run("volume", "inspect", vol); err == nil {
			t.Errorf("anonymous volume %s still exists after rm -v", vol)
		}
	})
}

// TestContainersInfoRuntimes checks that docker info shows the runtimes
// containers may name, the default one and the init binary berthd found.
func TestContainersInfoRuntimes(t *testing.T) {
	RequireBinary(t, "berth-init")
	d := StartDaemon(t, "--exec-root", shortExecRoot(t), "--add-runtime", "myrunc=/usr/bin/runc")
	c := DockerCLIFor(t, d)
	if got := strings.TrimSpace(c.Must(t, "info", "-f", "{{.DefaultRuntime}}")); got != "berth-runtime" {
		t.Errorf("default runtime %q, want berth-runtime", got)
	}
	rts := c.Must(t, "info", "-f", "{{range $k, $v := .Runtimes}}{{$k}}={{$v.Path}} {{end}}")
	for _, want := range []string{"berth-runtime=", "runc=", "myrunc=/usr/bin/runc"} {
		if !strings.Contains(rts, want) {
			t.Errorf("runtimes %q lack %q", rts, want)
		}
	}
	if got := strings.TrimSpace(c.Must(t, "info", "-f", "{{.InitBinary}}")); !strings.HasSuffix(got, "/berth-init") {
		t.Errorf("init binary %q, want the path of berth-init", got)
	}
}

// TestContainersCreateChecks: what Docker refuses at create is refused at
// create (no container is left), and a rename to the current name is an
// invalid request, with Docker's words.
func TestContainersCreateChecks(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if e.runtime != "" {
			t.Skip("the daemon's checks, the same for every runtime")
		}
		if stderr := e.c.Fails(t, "create", "--memory", "1000", e.image, "true"); !strings.Contains(stderr, "Minimum memory limit allowed is 6MB") {
			t.Errorf("create --memory 1000: %q", stderr)
		}
		if out := e.c.Must(t, "ps", "-aq"); out != "" {
			t.Errorf("a refused create left containers: %q", out)
		}
		e.c.Must(t, "create", "--name", "same", e.image, "true")
		if stderr := e.c.Fails(t, "rename", "same", "same"); !strings.Contains(stderr, "Renaming a container with the same name as its current name") {
			t.Errorf("rename to the same name: %q", stderr)
		}
	})
}

// TestContainersRuntimeErrors: a container the runtime cannot create
// fails as Docker's does: "OCI runtime create failed: <the runtime's
// reason>", no command line or private path of the engine, and the exit
// code the docker CLI derives from it (127 for a missing command, 125 for
// a mount that cannot be made).
func TestContainersRuntimeErrors(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if e.c.Name != "docker" {
			t.Skip("the daemon's message; the docker CLI derives the exit code from it")
		}
		_, stderr, err := e.run("--rm", e.image, "/nope")
		if code := ctrExitCode(t, err); code != 127 {
			t.Errorf("run of a missing command exited %d, want 127: %s", code, stderr)
		}
		if !strings.Contains(stderr, "OCI runtime create failed") || !strings.Contains(stderr, "/nope") {
			t.Errorf("run of a missing command: %q, want Docker's OCI runtime create failed naming /nope", stderr)
		}
		for _, private := range []string{"--bundle", e.d.DataRoot, "--pid-file"} {
			if strings.Contains(stderr, private) {
				t.Errorf("the error shows the engine's %q: %s", private, stderr)
			}
		}
		hostFile := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(hostFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, err = e.run("--rm", "-v", hostFile+":/bin", e.image, "true")
		if code := ctrExitCode(t, err); code != 125 {
			t.Errorf("run with a file bound on a directory exited %d, want 125: %s", code, stderr)
		}
	})
}

// TestContainersCommitLeavesOutStubs: a committed image's new layer holds
// what the container changed, not the empty files the engine made in its
// layer (/.dockerenv and the hostname, hosts and resolv.conf mount
// points), as Docker's commit leaves its init layer out.
func TestContainersCommitLeavesOutStubs(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		if e.runtime != "" || e.c.Name != "docker" {
			t.Skip("the daemon's layer, the same for every runtime and client")
		}
		e.mustRun(t, "--name", "stubs", e.image, "sh", "-c", "echo made > /made")
		e.c.Must(t, "commit", "stubs", "e2e/stubs:1")
		saved := filepath.Join(t.TempDir(), "saved.tar")
		e.c.Must(t, "save", "-o", saved, "e2e/stubs:1")
		names := topLayerNames(t, saved)
		if !slices.Contains(names, "made") {
			t.Errorf("the committed layer lacks the container's change: %v", names)
		}
		for _, stub := range []string{".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf"} {
			if slices.Contains(names, stub) {
				t.Errorf("the committed layer holds the engine's %s: %v", stub, names)
			}
		}
	})
}

// topLayerNames lists the entries of the last layer of the one image in a
// docker-archive tarball.
func topLayerNames(t *testing.T, archive string) []string {
	t.Helper()
	read := func(name string) []byte {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("%s not in %s: %v", name, archive, err)
			}
			if h.Name == name {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(read("manifest.json"), &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("manifest.json of %s: %v %+v", archive, err, manifest)
	}
	layer := read(manifest[0].Layers[len(manifest[0].Layers)-1])
	var names []string
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"))
	}
}
