package tests

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecurityCidfileNeverFollowsASymlink: --cidfile creates its file
// exclusively: a symlink planted at that path (dangling, so a stat sees
// nothing there) is refused, and the file it points to is never created by
// the client, which usually runs as root.
func TestSecurityCidfileNeverFollowsASymlink(t *testing.T) {
	d := StartDaemon(t)
	c := BerthCLI(t, d)
	dir := t.TempDir()
	target := filepath.Join(dir, "created-through-the-link")
	link := filepath.Join(dir, "cid")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	stderr := c.Fails(t, "create", "--cidfile", link, "--pull", "never", "no/such-image:1", "true")
	if !strings.Contains(stderr, "container ID file found") {
		t.Errorf("--cidfile on a planted symlink: %s", stderr)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("the client created %s through the symlink at the --cidfile path", target)
	}
}

// TestSecurityContainerSeesNoExtraDescriptors: the container's first
// process holds only its standard streams: no descriptor of berthd, the
// shim (its ready pipe) or the runtime leaks into it (CVE-2024-21626's
// shape).
func TestSecurityContainerSeesNoExtraDescriptors(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		out := e.mustRun(t, "--rm", e.image, "sh", "-c", "ls /proc/1/fd; true")
		if got := strings.Join(Lines(out), " "); got != "0 1 2" {
			t.Errorf("descriptors of the container's process: %q, want 0 1 2", got)
		}
	})
}

// TestSecurityInitBinaryIsReadOnly: the init bound at /sbin/docker-init
// (--init) is the host's berth-init: the container's root can neither
// change its mode (a setuid init on the host) nor write it.
func TestSecurityInitBinaryIsReadOnly(t *testing.T) {
	initBin := RequireBinary(t, "berth-init")
	before, err := os.Stat(initBin)
	if err != nil {
		t.Fatal(err)
	}
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		out, _, _ := e.run("--rm", "--init", e.image, "sh", "-c",
			"test -x /sbin/docker-init && echo RAN; chmod 4755 /sbin/docker-init && echo CHMOD-OK; (echo x >> /sbin/docker-init) 2>/dev/null && echo WRITE-OK; true")
		if !strings.Contains(out, "RAN") {
			t.Fatalf("the container with --init did not run: %q", out)
		}
		if strings.Contains(out, "CHMOD-OK") || strings.Contains(out, "WRITE-OK") {
			t.Errorf("the container changed the init binary: %q", out)
		}
		after, err := os.Stat(initBin)
		if err != nil {
			t.Fatal(err)
		}
		if after.Mode() != before.Mode() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
			t.Errorf("%s changed: %v %d %v, was %v %d %v", initBin, after.Mode(), after.Size(), after.ModTime(), before.Mode(), before.Size(), before.ModTime())
		}
	})
}

// TestSecurityCopyNodesKeepTheirModes: cp of a fifo and a device node into
// a running and into a stopped container gives them the archive's modes,
// set through a descriptor of the node (never by a name a container
// process could turn into a symlink to a host file).
func TestSecurityCopyNodesKeepTheirModes(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "nodes/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "nodes/fifo", Typeflag: tar.TypeFifo, Mode: 0o640},
		{Name: "nodes/null", Typeflag: tar.TypeChar, Mode: 0o604, Devmajor: 1, Devminor: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		const want = "640 fifo\n604 character special file\n"
		check := "stat -c '%a %F' /tmp/nodes/fifo /tmp/nodes/null"
		e.mustRun(t, "-d", "--name", "running", e.image, "sleep", "1000")
		e.c.Stdin = buf.String()
		e.c.Must(t, "cp", "-", "running:/tmp")
		if out := e.c.Must(t, "exec", "running", "sh", "-c", check); out != want {
			t.Errorf("nodes copied into a running container: %q, want %q", out, want)
		}
		createArgs := []string{"create", "--name", "stopped"}
		if e.runtime != "" {
			createArgs = append(createArgs, "--runtime", e.runtime)
		}
		e.c.Must(t, append(createArgs, e.image, "sh", "-c", check)...)
		e.c.Stdin = buf.String()
		e.c.Must(t, "cp", "-", "stopped:/tmp")
		if out := e.c.Must(t, "start", "-a", "stopped"); out != want {
			t.Errorf("nodes copied into a stopped container: %q, want %q", out, want)
		}
	})
}
