package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpRead copies ctr:p out to a fresh path and returns what landed there: a
// file's content, or "-> target" for a symlink (never followed on the host).
func cpRead(t *testing.T, e *ctrEnv, args ...string) (string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if _, stderr, err := e.c.Run(append(append([]string{"cp"}, args...), dst)...); err != nil {
		return stderr, err
	}
	if target, err := os.Readlink(dst); err == nil {
		return "-> " + target, nil
	}
	b, err := os.ReadFile(dst)
	return string(b), err
}

func mustCpRead(t *testing.T, e *ctrEnv, src, want string) {
	t.Helper()
	got, err := cpRead(t, e, src)
	if err != nil || got != want {
		t.Errorf("cp %s: %q (%v), want %q", src, got, err, want)
	}
}

func volumeDir(t *testing.T, e *ctrEnv, name string) string {
	t.Helper()
	var mp string
	if err := json.Unmarshal([]byte(e.c.Must(t, "volume", "inspect", "-f", "{{json .Mountpoint}}", name)), &mp); err != nil || mp == "" {
		t.Fatalf("volume %s mount point: %q %v", name, mp, err)
	}
	return mp
}

func writeFile(t *testing.T, p, data string) string {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestContainersCopyThroughMounts(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		// A host file no copy may ever read or change, and a bind source.
		secret := writeFile(t, filepath.Join(t.TempDir(), "shadow"), "HOST SECRET\n")
		hostDir := t.TempDir()
		writeFile(t, filepath.Join(hostDir, "host.txt"), "from the host\n")

		started := time.Now()
		e.c.Must(t, "volume", "create", "cpvol")
		e.mustRun(t, "-d", "--name", "cpr",
			"-v", "cpvol:/named", "--mount", "type=volume,destination=/anon", "-v", hostDir+":/bind", "-v", "cpvol:/ro:ro", "--tmpfs", "/tm",
			e.image, "sh", "-c", strings.Join([]string{
				"echo named > /named/n", "echo anon > /anon/a", "echo image-volume > /data/i", "echo tmp > /tm/t",
				"mkdir -p /srv && echo srv > /srv/s",
				"echo container-shadow > /etc/shadow",
				"ln -sf /etc/shadow /named/abs", "touch /ready", "exec sleep 1000"}, "; "))
		waitFor(t, "the container's files", func() bool {
			_, _, err := e.c.Run("exec", "cpr", "test", "-e", "/ready")
			return err == nil
		})
		named := volumeDir(t, e, "cpvol")

		// Out of a running container: each kind of mount, tmpfs included.
		mustCpRead(t, e, "cpr:/named/n", "named\n")
		mustCpRead(t, e, "cpr:/anon/a", "anon\n")
		mustCpRead(t, e, "cpr:/data/i", "image-volume\n") // the image's VOLUME
		mustCpRead(t, e, "cpr:/bind/host.txt", "from the host\n")
		mustCpRead(t, e, "cpr:/tm/t", "tmp\n")
		mustCpRead(t, e, "cpr:/ro/n", "named\n")
		// A directory holding mount points, with what is mounted there.
		out := filepath.Join(t.TempDir(), "root")
		e.c.Must(t, "cp", "cpr:/", out)
		for rel, want := range map[string]string{"named/n": "named\n", "anon/a": "anon\n", "bind/host.txt": "from the host\n", "tm/t": "tmp\n", "srv/s": "srv\n", "etc/shadow": "container-shadow\n"} {
			if b, err := os.ReadFile(filepath.Join(out, rel)); err != nil || string(b) != want {
				t.Errorf("cp cpr:/ %s: %q %v", rel, b, err)
			}
		}
		if ents, err := os.ReadDir(filepath.Join(out, "proc")); err != nil || len(ents) != 0 {
			t.Errorf("cp cpr:/ entered the container's /proc: %d entries, %v", len(ents), err)
		}
		// Symlinks in a volume are copied as links, and followed (-L) inside
		// the container only. (Links climbing out of the copied directory are
		// made only now: the docker CLI refuses to extract those.)
		e.c.Must(t, "exec", "cpr", "sh", "-c", "ln -sf ../../../../../../../etc/shadow /named/rel; ln -sf "+secret+" /named/hostlink; ln -sfn ../../../../../../.. /named/up")
		if fi, err := os.Lstat(filepath.Join(out, "named", "abs")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link in the volume was not copied as a link: %v %v", fi, err)
		}
		mustCpRead(t, e, "cpr:/named/abs", "-> /etc/shadow")
		checkSecret := func(what string) {
			t.Helper()
			if b, err := os.ReadFile(secret); err != nil || string(b) != "HOST SECRET\n" {
				t.Fatalf("%s changed the host file: %q %v", what, b, err)
			}
		}
		followLinks := func(what string) {
			t.Helper()
			for _, l := range []string{"abs", "rel", "hostlink", "up/etc/shadow"} {
				got, err := cpRead(t, e, "-L", "cpr:/named/"+l)
				if strings.Contains(got, "HOST SECRET") || (err == nil && got != "container-shadow\n") {
					t.Errorf("%s: cp -L cpr:/named/%s read %q (%v), want the container's /etc/shadow or an error", what, l, got, err)
				}
			}
		}
		followLinks("running")

		// Into a running container: seen by its processes.
		src := writeFile(t, filepath.Join(t.TempDir(), "in.txt"), "copied in\n")
		for _, dir := range []string{"/named", "/anon", "/bind", "/tm", "/data"} {
			e.c.Must(t, "cp", src, "cpr:"+dir+"/")
			if got := e.c.Must(t, "exec", "cpr", "cat", dir+"/in.txt"); got != "copied in\n" {
				t.Errorf("cp into %s: the container reads %q", dir, got)
			}
		}
		e.c.Must(t, "cp", src, "cpr:/named/renamed.txt")
		if b, err := os.ReadFile(filepath.Join(named, "renamed.txt")); err != nil || string(b) != "copied in\n" {
			t.Errorf("cp to a new name in the volume: %q %v", b, err)
		}
		// A file may not replace a directory (both CLIs send
		// noOverwriteDirNonDir).
		clash := writeFile(t, filepath.Join(t.TempDir(), "srv"), "not a directory\n")
		if stderr := e.c.Fails(t, "cp", clash, "cpr:/"); !strings.Contains(stderr, "cannot overwrite directory") {
			t.Errorf("cp of a file over the directory /srv: %q, want Docker's cannot overwrite directory error", stderr)
		}
		if got := e.c.Must(t, "exec", "cpr", "cat", "/srv/s"); got != "srv\n" {
			t.Errorf("after the refused copy /srv/s reads %q", got)
		}
		if b, err := os.ReadFile(filepath.Join(hostDir, "in.txt")); err != nil || string(b) != "copied in\n" {
			t.Errorf("cp into the bind mount: the host reads %q %v", b, err)
		}
		if stderr := e.c.Fails(t, "cp", src, "cpr:/ro/"); !strings.Contains(stderr, "mounted volume is marked read-only") {
			t.Errorf("cp into a read-only volume: %s", stderr)
		}
		if _, err := os.Stat(filepath.Join(named, "in.txt")); err != nil {
			t.Errorf("the volume lost in.txt: %v", err)
		}
		// A destination that is a link to a host path stays in the container.
		_, _, _ = e.c.Run("cp", src, "cpr:/named/hostlink")
		checkSecret("cp onto a link to a host path")
		_, _, _ = e.c.Run("cp", src, "cpr:/named/up/etc/")
		checkSecret("cp through a link climbing out of the volume")

		// Docker's events for the copies.
		events := e.c.Must(t, "events", "--since", strconv.FormatInt(started.Unix()-1, 10), "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
			"--filter", "container=cpr", "--format", "{{.Action}}")
		if acts := Lines(events); !contains(acts, "archive-path") || !contains(acts, "extract-to-dir") {
			t.Errorf("events of the copies: %q", acts)
		}

		// Stopped: the same mounts, from their sources.
		e.c.Must(t, "kill", "cpr")
		e.c.Must(t, "wait", "cpr")
		mustCpRead(t, e, "cpr:/named/in.txt", "copied in\n")
		mustCpRead(t, e, "cpr:/anon/a", "anon\n")
		mustCpRead(t, e, "cpr:/data/in.txt", "copied in\n")
		mustCpRead(t, e, "cpr:/bind/host.txt", "from the host\n")
		mustCpRead(t, e, "cpr:/etc/shadow", "container-shadow\n")
		followLinks("stopped")
		if _, err := cpRead(t, e, "cpr:/tm/t"); err == nil {
			t.Errorf("a stopped container's tmpfs still shows its content")
		}
		src2 := writeFile(t, filepath.Join(t.TempDir(), "in2.txt"), "copied while stopped\n")
		for _, dir := range []string{"/named", "/anon", "/bind", "/data"} {
			e.c.Must(t, "cp", src2, "cpr:"+dir+"/")
		}
		if stderr := e.c.Fails(t, "cp", src2, "cpr:/ro/"); !strings.Contains(stderr, "mounted volume is marked read-only") {
			t.Errorf("stopped: cp into a read-only volume: %s", stderr)
		}
		if stderr := e.c.Fails(t, "cp", src2, "cpr:/tm/"); !strings.Contains(stderr, "tmpfs") {
			t.Errorf("stopped: cp into a tmpfs: %s", stderr)
		}
		_, _, _ = e.c.Run("cp", src2, "cpr:/named/hostlink")
		checkSecret("stopped: cp onto a link to a host path")
		if b, err := os.ReadFile(filepath.Join(hostDir, "in2.txt")); err != nil || string(b) != "copied while stopped\n" {
			t.Errorf("stopped: cp into the bind mount: %q %v", b, err)
		}
		e.c.Must(t, "start", "cpr")
		waitFor(t, "the restarted container", func() bool {
			_, _, err := e.c.Run("exec", "cpr", "test", "-e", "/tm/t")
			return err == nil
		})
		for _, dir := range []string{"/named", "/anon", "/bind", "/data"} {
			if got, _, err := e.c.Run("exec", "cpr", "cat", dir+"/in2.txt"); got != "copied while stopped\n" {
				t.Errorf("copied into %s while stopped: the container reads %q (%v)", dir, got, err)
			}
		}

		// A read-only root filesystem refuses copies except into its volumes.
		e.mustRun(t, "-d", "--name", "cpro", "--read-only", "-v", "cpvol2:/w", e.image, "sleep", "1000")
		if stderr := e.c.Fails(t, "cp", src, "cpro:/tmp/"); !strings.Contains(stderr, "container rootfs is marked read-only") {
			t.Errorf("cp into a read-only root filesystem: %s", stderr)
		}
		e.c.Must(t, "cp", src, "cpro:/w/")
		if got := e.c.Must(t, "exec", "cpro", "cat", "/w/in.txt"); got != "copied in\n" {
			t.Errorf("cp into the volume of a read-only container: %q", got)
		}

		// A container never started: its image VOLUME is there already, with
		// the image's content in it, as the container will see it.
		e.mustRun(t, "--name", "seeder", e.image, "sh", "-c", "mkdir /seed && echo seed > /seed/s")
		e.c.Must(t, "commit", "-c", "VOLUME /seed", "seeder", "e2e/seeded:1")
		e.c.Must(t, "create", "--name", "cpc", "e2e/seeded:1", "cat", "/seed/s", "/seed/in.txt")
		mustCpRead(t, e, "cpc:/seed/s", "seed\n")
		e.c.Must(t, "cp", src, "cpc:/seed/")
		mustCpRead(t, e, "cpc:/seed/in.txt", "copied in\n")
		if got := e.c.Must(t, "start", "-a", "cpc"); got != "seed\ncopied in\n" {
			t.Errorf("a created container's volume after a copy into it: %q", got)
		}
	})
}
