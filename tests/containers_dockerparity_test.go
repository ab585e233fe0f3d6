package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/testutil"
)

// TestDockerParity runs docker CLI commands whose answers differed between
// dockerd and berthd (scripts/compare-dockerd.sh finds such differences)
// and checks berthd now answers as dockerd does.
func TestDockerParity(t *testing.T) {
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
	d := StartDaemon(t, "--exec-root", shortExecRoot(t))
	c := DockerCLIFor(t, d)
	c.Must(t, "pull", "-q", ref)
	e := &ctrEnv{d: d, c: c, image: ref}
	t.Cleanup(func() { removeAllContainers(t, e) })
	t.Run("SystemDFAndPrune", func(t *testing.T) {
		c.Must(t, "run", "--network", "none", "--name", "df1", "-v", "dfvol:/data", ref, "sh", "-c", "echo data >/data/f")
		defer c.Run("volume", "rm", "-f", "dfvol")
		got := strings.TrimSpace(c.Must(t, "system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"))
		want := "Images 1 1\nContainers 1 0\nLocal Volumes 1 1\nBuild Cache 0 0"
		if got != want {
			t.Errorf("docker system df:\n%s\nwant:\n%s", got, want)
		}
		v := c.Must(t, "system", "df", "-v", "--format", "{{range .Volumes}}{{.Name}} {{.Links}} {{.Size}}{{end}}")
		if strings.TrimSpace(v) != "dfvol 1 5B" {
			t.Errorf("docker system df -v volumes: %q, want \"dfvol 1 5B\" (name, users, bytes)", v)
		}
		out := c.Must(t, "system", "prune", "-f")
		if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, "Total reclaimed space:") {
			t.Errorf("docker system prune -f printed %q", out)
		}
		if ids := Lines(c.Must(t, "ps", "-aq")); len(ids) != 0 {
			t.Errorf("containers left after system prune: %v", ids)
		}
	})

	t.Run("PsCommandAndNetwork", func(t *testing.T) {
		c.Run("run", "--network", "none", "--name", "ps1", ref, "sh", "-c", "exit 2")
		defer c.Run("rm", "-f", "ps1")
		got := strings.TrimSpace(c.Must(t, "ps", "-a", "--no-trunc", "--filter", "name=ps1", "--format", "{{.Command}}|{{.Networks}}"))
		if want := `"sh -c 'exit 2'"|none`; got != want {
			t.Errorf("docker ps: %s, want %s (an argument with a space quoted, the none network named)", got, want)
		}
	})

	t.Run("EventsLegacyFields", func(t *testing.T) {
		since := strconv.FormatInt(time.Now().Unix()-1, 10)
		c.Must(t, "run", "--network", "none", "--name", "ev1", ref, "true")
		c.Must(t, "rm", "ev1")
		until := strconv.FormatInt(time.Now().Unix()+1, 10)
		got := strings.TrimSpace(c.Must(t, "events", "--since", since, "--until", until, "--filter", "event=die", "--filter", "container=ev1",
			"--format", "{{.Status}} {{.From}} {{.ID | len}}"))
		if want := "die " + ref + " 64"; got != want {
			t.Errorf("docker events --format '{{.Status}} {{.From}} {{.ID | len}}': %q, want %q", got, want)
		}
	})

	t.Run("Logs", func(t *testing.T) {
		c.Must(t, "run", "--network", "none", "--name", "lg1", ref, "sh", "-c", "echo one; echo two")
		defer c.Run("rm", "-f", "lg1")
		if got := c.Must(t, "logs", "--details", "lg1"); got != " one\n two\n" {
			t.Errorf("docker logs --details: %q, want each line after a space (no attributes)", got)
		}
		if got := c.Must(t, "logs", "--tail", "bogus", "lg1"); got != "one\ntwo\n" {
			t.Errorf("docker logs --tail bogus: %q, want the whole log as Docker gives", got)
		}
		ts := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one$`)
		if got := Lines(c.Must(t, "logs", "-t", "lg1")); len(got) != 2 || !ts.MatchString(got[0]) {
			t.Errorf("docker logs -t: %q, want times with nine fraction digits", got)
		}
	})

	t.Run("LogDriverNone", func(t *testing.T) {
		if out := c.Must(t, "run", "--network", "none", "--name", "ln1", "--log-driver", "none", ref, "echo", "attached"); out != "attached\n" {
			t.Errorf("docker run --log-driver none printed %q, want the output through the attach", out)
		}
		defer c.Run("rm", "-f", "ln1")
		if msg := c.Fails(t, "logs", "ln1"); !strings.Contains(msg, "configured logging driver does not support reading") {
			t.Errorf("docker logs of a none-logged container: %q", msg)
		}
		got := strings.TrimSpace(c.Must(t, "inspect", "--format", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}|{{.Id}}", "ln1"))
		typ, rest, _ := strings.Cut(got, "|")
		logPath, id, _ := strings.Cut(rest, "|")
		if typ != "none" || logPath != "" {
			t.Errorf("inspect of a none-logged container: %q, want type none and no LogPath", got)
		}
		if _, err := os.Stat(filepath.Join(d.DataRoot, "containers", id, id+"-json.log")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a none-logged container has a json log: %v", err)
		}
	})

	t.Run("ExecThatCannotStart", func(t *testing.T) {
		c.Must(t, "run", "-d", "--network", "none", "--name", "ex1", ref, "sleep", "1000")
		defer c.Run("rm", "-f", "ex1")
		out, _, err := c.Run("exec", "-u", "nosuchuser", "ex1", "true")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 126 {
			t.Fatalf("docker exec -u nosuchuser: %v, want status 126", err)
		}
		if !strings.Contains(out, "unable to find user nosuchuser") {
			t.Errorf("docker exec -u nosuchuser printed %q on stdout, want the reason", out)
		}
	})

	t.Run("CreateRefusals", func(t *testing.T) {
		for _, tc := range []struct {
			flags []string
			want  string
		}{
			{[]string{"--cap-add", "BOGUS"}, `invalid CapAdd: unknown capability: "CAP_BOGUS"`},
			{[]string{"--cap-drop", "BOGUS"}, `invalid CapDrop: unknown capability: "CAP_BOGUS"`},
			{[]string{"--workdir", "relative"}, "the working directory 'relative' is invalid, it needs to be an absolute path"},
			{[]string{"--stop-signal", "BOGUS"}, "invalid signal: BOGUS"},
			{[]string{"-v", "/x:relative"}, `invalid volume specification: '/x:relative': invalid mount config for type "bind": invalid mount path: 'relative' mount path must be absolute`},
			{[]string{"--mount", "type=bogus,target=/x"}, `invalid mount config for type "bogus": mount type unknown`},
			{[]string{"--tmpfs", "relative"}, "invalid mount path: 'relative' mount path must be absolute"},
		} {
			args := append(append([]string{"create", "--network", "none"}, tc.flags...), ref)
			if msg := c.Fails(t, args...); !strings.Contains(msg, tc.want) {
				t.Errorf("docker create %s: %q, want %q", strings.Join(tc.flags, " "), msg, tc.want)
			}
		}
		if ids := Lines(c.Must(t, "ps", "-aq")); len(ids) != 0 {
			t.Errorf("refused creates left containers: %v", ids)
		}
	})

	t.Run("InspectAsDocker", func(t *testing.T) {
		c.Must(t, "create", "--network", "none", "--name", "in1", ref)
		defer c.Run("rm", "-f", "in1")
		got := strings.TrimSpace(c.Must(t, "inspect", "--format",
			"{{.HostConfig.LogConfig.Type}}|{{json .HostConfig.PidsLimit}}|{{json .HostConfig.MemorySwappiness}}|{{.NetworkSettings.IPAddress}}|{{.NetworkSettings.Gateway}}|{{json .NetworkSettings.Networks.none.IPAddress}}", "in1"))
		if want := `json-file|null|null|||""`; got != want {
			t.Errorf("docker inspect: %s, want %s", got, want)
		}
		c.Must(t, "volume", "create", "plain")
		defer c.Run("volume", "rm", "plain")
		if got := strings.TrimSpace(c.Must(t, "volume", "inspect", "--format", "{{json .Labels}} {{json .Options}}", "plain")); got != "null null" {
			t.Errorf("docker volume inspect of a volume without labels or options: %s, want null null", got)
		}
	})

	t.Run("DiffAndCpErrors", func(t *testing.T) {
		c.Must(t, "run", "--network", "none", "--name", "df2", ref, "sh", "-c", "echo x >/newfile")
		defer c.Run("rm", "-f", "df2")
		// The hostname, hosts and resolv.conf mount points are no change of
		// /etc, as in Docker's diff.
		got := Lines(c.Must(t, "diff", "df2"))
		if !slices.Contains(got, "A /newfile") || slices.Contains(got, "C /etc") {
			t.Errorf("docker diff: %q, want A /newfile and no C /etc", got)
		}
		in := filepath.Join(t.TempDir(), "in")
		if err := os.WriteFile(in, []byte("new\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// "newfile/" names a directory: as with dockerd, the client refuses
		// and the file stays.
		if msg := c.Fails(t, "cp", in, "df2:/newfile/"); !strings.Contains(msg, "no such directory") {
			t.Errorf("docker cp into file/: %q, want \"no such directory\"", msg)
		}
		if out := c.Must(t, "cp", "df2:/newfile", "-"); !strings.Contains(out, "x\n") {
			t.Errorf("/newfile after a refused cp into newfile/: %q", out)
		}
		if msg := c.Fails(t, "cp", "df2:/nonexistent", t.TempDir()); !strings.Contains(msg, "Could not find the file /nonexistent in container df2") {
			t.Errorf("docker cp of a missing path: %q, want Docker's message naming the container", msg)
		}
	})

	t.Run("TopExecRenameMessages", func(t *testing.T) {
		c.Must(t, "run", "-d", "--network", "none", "--name", "tm1", ref, "sleep", "1000")
		defer c.Run("rm", "-f", "tm1")
		c.Must(t, "create", "--network", "none", "--name", "tm2", ref)
		defer c.Run("rm", "-f", "tm2")
		// ps's own complaint reaches the user, as through dockerd.
		if msg := c.Fails(t, "top", "tm1", "--bogus-option"); !strings.Contains(msg, "Error response from daemon: ps: error: unknown gnu long option") {
			t.Errorf("docker top with a bad ps option: %q, want ps's message", msg)
		}
		if msg := c.Fails(t, "rename", "tm1", "tm2"); !strings.Contains(msg, `Error when allocating new name: Conflict. The container name "/tm2" is already in use`) {
			t.Errorf("docker rename to a taken name: %q", msg)
		}
		if msg := c.Fails(t, "rename", "tm1", "bad name"); !strings.Contains(msg, "Error when allocating new name: Invalid container name (/bad name)") {
			t.Errorf("docker rename to an invalid name: %q", msg)
		}
		c.Must(t, "pause", "tm1")
		defer c.Run("unpause", "tm1")
		if msg := c.Fails(t, "exec", "tm1", "true"); !strings.Contains(msg, "Container tm1 is paused, unpause the container before exec") {
			t.Errorf("docker exec into a paused container: %q", msg)
		}
	})

	t.Run("UpdateStoppedAndUnpause", func(t *testing.T) {
		c.Must(t, "create", "--network", "none", "--name", "up1", "--memory", "32m", ref)
		defer c.Run("rm", "-f", "up1")
		if msg := c.Fails(t, "update", "--memory", "1k", "up1"); !strings.Contains(msg, "Minimum memory limit allowed is 6MB") {
			t.Errorf("docker update --memory 1k of a stopped container: %q", msg)
		}
		if msg := c.Fails(t, "update", "--memory", "64m", "--memory-swap", "48m", "up1"); !strings.Contains(msg, "memoryswap limit should be larger than memory limit") {
			t.Errorf("docker update --memory 64m --memory-swap 48m: %q", msg)
		}
		if got := strings.TrimSpace(c.Must(t, "inspect", "--format", "{{.HostConfig.Memory}}", "up1")); got != strconv.Itoa(32<<20) {
			t.Errorf("memory after refused updates: %s, want %d", got, 32<<20)
		}
		if msg := c.Fails(t, "unpause", "up1"); !strings.Contains(msg, "is not paused") {
			t.Errorf("docker unpause of a stopped container: %q, want Docker's 'is not paused'", msg)
		}
	})

	// Last: it untags the test image.
	t.Run("RmiOfAnImageInUse", func(t *testing.T) {
		c.Must(t, "create", "--network", "none", "--name", "rmi1", ref, "sh", "-c", "echo still-here")
		defer c.Run("rm", "-f", "rmi1")
		id := strings.TrimSpace(c.Must(t, "image", "inspect", "--format", "{{.Id}}", ref))
		if msg := c.Fails(t, "rmi", ref); !strings.Contains(msg, "conflict: unable to remove repository reference \""+ref+"\" (must force) - container ") {
			t.Errorf("docker rmi of the image a container uses: %q", msg)
		}
		if msg := c.Fails(t, "rmi", id); !strings.Contains(msg, "(must be forced) - image is being used by stopped container") {
			t.Errorf("docker rmi by ID of the image a container uses: %q", msg)
		}
		c.Must(t, "image", "prune", "-a", "-f")
		c.Must(t, "rmi", "-f", ref)
		// Untagged, the image stays for its container, which still runs.
		if out := c.Must(t, "start", "-a", "rmi1"); strings.TrimSpace(out) != "still-here" {
			t.Errorf("the container after its image was untagged printed %q", out)
		}
		if got := strings.TrimSpace(c.Must(t, "images", "-q", "--no-trunc")); got != id {
			t.Errorf("images after rmi -f: %q, want the dangling %s", got, id)
		}
	})
}
