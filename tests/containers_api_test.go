package tests

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/berth-project/berth/internal/testutil"
)

// containerFixture starts berthd (with a short exec root for the shims'
// sockets) and a registry holding busybox, pulls it, and returns the
// daemon, the docker CLI for it and the image reference. Every container
// is removed when the test ends and no mount may remain under the data
// root.
func containerFixture(t *testing.T, args ...string) (*Daemon, *CLI, string) {
	t.Helper()
	for _, b := range []string{"berthd", "berth-shim", "berth-runtime"} {
		RequireBinary(t, b)
	}
	d := StartDaemon(t, append([]string{"--exec-root", apiExecRoot(t)}, args...)...)
	reg := testutil.StartRegistry(t)
	testutil.PushBusybox(t, reg, "busybox:latest")
	ref := reg + "/busybox:latest"
	c := DockerCLIFor(t, d)
	c.Must(t, "pull", "-q", ref)
	t.Cleanup(func() { cleanupContainers(t, d, c) })
	return d, c, ref
}

// cleanupContainers force-removes every container the test left and checks
// that no mount under the data root remains.
func cleanupContainers(t *testing.T, d *Daemon, c *CLI) {
	if d.PID() == 0 {
		if err := d.Start(); err != nil {
			t.Errorf("restart berthd to clean up: %v", err)
			return
		}
	}
	out, _, err := c.Run("ps", "-aq", "--no-trunc")
	if err == nil {
		for _, id := range Lines(out) {
			if _, _, err := c.Run("rm", "-f", "-v", id); err != nil {
				t.Errorf("remove container %s: %v", id, err)
			}
		}
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.DataRoot+"/") {
			t.Errorf("mount left under the data root: %s", f[4])
		}
	}
}

// apiClient is a moby client for d.
func apiClient(t *testing.T, d *Daemon) *client.Client {
	t.Helper()
	cl, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func create(t *testing.T, cl *client.Client, name string, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	res, err := cl.ContainerCreate(context.Background(), client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return res.ID
}

func inspectAPI(t *testing.T, cl *client.Client, id string) container.InspectResponse {
	t.Helper()
	res, err := cl.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return res.Container
}

func TestContainersAPIDockerRun(t *testing.T) {
	_, c, ref := containerFixture(t)
	out := c.Must(t, "run", "--rm", ref, "sh", "-c", "echo hello; echo err >&2; hostname")
	lines := Lines(out)
	if len(lines) != 2 || lines[0] != "hello" || len(lines[1]) != 12 {
		t.Fatalf("docker run printed %q, want hello and a 12-character hostname", out)
	}
	_, _, err := c.Run("run", "--rm", ref, "sh", "-c", "exit 3")
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("docker run of exit 3: %v, want exit status 3", err)
	}
	if out := c.Must(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("--rm left containers: %q", out)
	}
}

// TestContainersAPIAttachWaitLogs drives the API as the docker CLI's run
// does: attach before start (multiplexed stdout and stderr, stdin), wait
// for next-exit, then logs with stdcopy framing and tail.
func TestContainersAPIAttachWaitLogs(t *testing.T) {
	d, _, ref := containerFixture(t)
	cl := apiClient(t, d)
	ctx := context.Background()
	id := create(t, cl, "talker", &container.Config{
		Image: ref, Cmd: []string{"sh", "-c", "read x; echo got-$x; echo warn >&2; exit 7"},
		OpenStdin: true, StdinOnce: true, AttachStdin: true, AttachStdout: true, AttachStderr: true,
	}, nil)
	att, err := cl.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	wait := cl.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := att.Conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = att.CloseWrite()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("read the multiplexed stream: %v", err)
	}
	if stdout.String() != "got-ping\n" || stderr.String() != "warn\n" {
		t.Errorf("attach: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	select {
	case res := <-wait.Result:
		if res.StatusCode != 7 {
			t.Errorf("wait: status %d, want 7", res.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	in := inspectAPI(t, cl, id)
	if in.State.Status != "exited" || in.State.ExitCode != 7 || in.State.Running || in.State.FinishedAt == "0001-01-01T00:00:00Z" {
		t.Errorf("state after exit: %+v", in.State)
	}
	// not-running returns at once for a stopped container.
	w2 := cl.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	if res := <-w2.Result; res.StatusCode != 7 {
		t.Errorf("wait not-running: %d", res.StatusCode)
	}
	logs, err := cl.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatal(err)
	}
	logs.Close()
	ts, line, _ := strings.Cut(strings.TrimSpace(stdout.String()), " ")
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || line != "got-ping" || !strings.HasSuffix(stderr.String(), " warn\n") {
		t.Errorf("logs with timestamps: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	logs, err = cl.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	stdcopy.StdCopy(&stdout, &stderr, logs)
	logs.Close()
	if stdout.Len() != 0 || stderr.String() != "warn\n" {
		t.Errorf("stderr-only logs: stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

// TestContainersAPIErrors checks Docker's error statuses and messages and
// the name and ID rules.
func TestContainersAPIErrors(t *testing.T) {
	d, c, ref := containerFixture(t)
	cl := apiClient(t, d)
	ctx := context.Background()
	status := func(method, path string) int {
		t.Helper()
		return apiStatus(t, d, method, path)
	}
	if code := status("GET", "/containers/nosuch/json"); code != 404 {
		t.Errorf("inspect of a missing container: %d", code)
	}
	if _, err := cl.ContainerInspect(ctx, "nosuch", client.ContainerInspectOptions{}); err == nil || !strings.Contains(err.Error(), "No such container: nosuch") {
		t.Errorf("missing container error: %v", err)
	}
	id := create(t, cl, "sleeper", &container.Config{Image: ref, Cmd: []string{"sleep", "1000"}}, nil)
	if _, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "/sleeper", Config: &container.Config{Image: ref}}); err == nil || !strings.Contains(err.Error(), "is already in use by container") {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := cl.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "bad/name", Config: &container.Config{Image: ref}}); err == nil || !strings.Contains(err.Error(), "Invalid container name") {
		t.Errorf("invalid name: %v", err)
	}
	if code := status("POST", "/containers/"+id[:8]+"/start"); code != 204 {
		t.Errorf("start by ID prefix: %d", code)
	}
	if code := status("POST", "/containers/sleeper/start"); code != 304 {
		t.Errorf("second start: %d, want 304", code)
	}
	if _, err := cl.ContainerRemove(ctx, "sleeper", client.ContainerRemoveOptions{}); err == nil || !strings.Contains(err.Error(), "stop the container before removing or force remove") {
		t.Errorf("remove of a running container: %v", err)
	}
	if code := status("DELETE", "/containers/sleeper"); code != 409 {
		t.Errorf("remove of a running container: %d, want 409", code)
	}
	c.Must(t, "stop", "-t", "0", "sleeper")
	if code := status("POST", "/containers/sleeper/stop"); code != 304 {
		t.Errorf("stop of a stopped container: %d, want 304", code)
	}
	if code := status("POST", "/containers/sleeper/kill"); code != 409 {
		t.Errorf("kill of a stopped container: %d, want 409", code)
	}
	if in := inspectAPI(t, cl, "sleeper"); in.State.ExitCode != 137 && in.State.ExitCode != 143 {
		t.Errorf("exit code after stop -t 0: %d", in.State.ExitCode)
	}
	c.Must(t, "rename", "sleeper", "dozer")
	if in := inspectAPI(t, cl, "dozer"); in.Name != "/dozer" || in.ID != id {
		t.Errorf("after rename: %s %s", in.Name, in.ID)
	}
	if code := status("DELETE", "/containers/dozer"); code != 204 {
		t.Errorf("remove: %d", code)
	}
	if code := status("GET", "/containers/"+id+"/json"); code != 404 {
		t.Errorf("inspect after remove: %d", code)
	}
}

// TestContainersAPIListFiltersEvents checks ps filters and events.
func TestContainersAPIListFiltersEvents(t *testing.T) {
	d, c, ref := containerFixture(t)
	cl := apiClient(t, d)
	ctx := context.Background()
	since := time.Now()
	c.Must(t, "run", "-d", "--name", "up", "--label", "role=web", ref, "sleep", "1000")
	if _, _, err := c.Run("run", "--name", "down", "--label", "role=job", ref, "sh", "-c", "exit 2"); err == nil {
		t.Fatal("run of exit 2 succeeded")
	}
	c.Must(t, "create", "--name", "fresh", ref, "true")
	names := func(f client.Filters, all bool) string {
		t.Helper()
		res, err := cl.ContainerList(ctx, client.ContainerListOptions{All: all, Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range res.Items {
			out = append(out, strings.TrimPrefix(s.Names[0], "/"))
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		f    client.Filters
		all  bool
		want string
	}{
		{client.Filters{}, false, "up"},
		{client.Filters{}, true, "fresh,down,up"},
		{make(client.Filters).Add("status", "exited"), false, "down"},
		{make(client.Filters).Add("status", "created"), true, "fresh"},
		{make(client.Filters).Add("exited", "2"), true, "down"},
		{make(client.Filters).Add("label", "role=web"), true, "up"},
		{make(client.Filters).Add("label", "role"), true, "down,up"},
		{make(client.Filters).Add("name", "fre"), true, "fresh"},
		{make(client.Filters).Add("ancestor", ref), true, "fresh,down,up"},
	} {
		if got := names(tt.f, tt.all); got != tt.want {
			t.Errorf("list %v all=%v: %q, want %q", tt.f, tt.all, got, tt.want)
		}
	}
	if out := strings.TrimSpace(c.Must(t, "ps", "-a", "--filter", "status=exited", "--format", "{{.Status}}")); !strings.HasPrefix(out, "Exited (2)") {
		t.Errorf("ps status column: %q", out)
	}
	ev := cl.Events(ctx, client.EventsListOptions{
		Since: since.Format(time.RFC3339Nano), Until: time.Now().Add(time.Second).Format(time.RFC3339Nano),
		Filters: make(client.Filters).Add("container", "down"),
	})
	var got []string
read:
	for {
		select {
		case m := <-ev.Messages:
			if m.Type != events.ContainerEventType || m.Actor.Attributes["name"] != "down" {
				t.Errorf("event outside the filter: %+v", m)
			}
			got = append(got, string(m.Action))
		case err := <-ev.Err:
			if err != nil && err != io.EOF {
				t.Errorf("events: %v", err)
			}
			break read
		}
	}
	if s := strings.Join(got, ","); !strings.Contains(s, "create") || !strings.Contains(s, "start") || !strings.Contains(s, "die") {
		t.Errorf("events of down: %s", s)
	}
}

// TestContainersAPIVolumes checks anonymous volumes for image VOLUMEs, a
// named volume receiving the image's content, and rm -v.
func TestContainersAPIVolumes(t *testing.T) {
	d, c, ref := containerFixture(t)
	cl := apiClient(t, d)
	c.Must(t, "run", "--name", "filler", "-v", "vol1:/etc", ref, "true")
	res, err := cl.VolumeInspect(context.Background(), "vol1", client.VolumeInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(res.Volume.Mountpoint, "passwd")); err != nil {
		t.Errorf("the image's /etc was not copied into the new volume: %v", err)
	}
	out := c.Must(t, "run", "--rm", "-v", "vol1:/data", ref, "sh", "-c", "ls /data/passwd && echo x > /data/new")
	if strings.TrimSpace(out) != "/data/passwd" {
		t.Errorf("volume in a second container: %q", out)
	}
	if code := apiStatus(t, d, "DELETE", "/volumes/vol1"); code != 409 {
		t.Errorf("remove of a volume in use: %d, want 409", code)
	}
	c.Must(t, "rm", "filler")
	c.Must(t, "volume", "rm", "vol1")
	c.Must(t, "run", "--name", "anon", "--mount", "type=volume,dst=/scratch", ref, "touch", "/scratch/f")
	// The fixture's image declares VOLUME /data: anon gets an anonymous
	// volume there too.
	in := inspectAPI(t, cl, "anon")
	var vols []string
	for _, m := range in.Mounts {
		if m.Type != "volume" || (m.Destination != "/scratch" && m.Destination != "/data") {
			t.Errorf("unexpected mount %+v", m)
		}
		vols = append(vols, m.Name)
	}
	if len(vols) != 2 {
		t.Fatalf("mounts of anon: %+v", in.Mounts)
	}
	c.Must(t, "rm", "-v", "anon")
	for _, vol := range vols {
		if _, err := cl.VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{}); err == nil {
			t.Errorf("anonymous volume %s kept after rm -v", vol)
		}
	}
}

// TestContainersAPIRestartAfterDaemonKill: a container with --restart
// always that exits while berthd is down is started again when berthd
// comes back; a stopped one stays stopped.
func TestContainersAPIRestartAfterDaemonKill(t *testing.T) {
	d, c, ref := containerFixture(t)
	c.Must(t, "run", "-d", "--name", "phoenix", "--restart", "always", ref, "sh", "-c", "echo started; sleep 1000")
	c.Must(t, "run", "-d", "--name", "resting", "--restart", "unless-stopped", ref, "sleep", "1000")
	c.Must(t, "stop", "-t", "0", "resting")
	pid := inspectAPI(t, apiClient(t, d), "phoenix").State.Pid
	d.Kill()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("kill phoenix's init %d: %v", pid, err)
	}
	waitUntil(t, "phoenix's init to end", func() bool { return p.Signal(syscall.Signal(0)) != nil })
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	cl := apiClient(t, d)
	waitUntil(t, "phoenix to run again", func() bool {
		in := inspectAPI(t, cl, "phoenix")
		return in.State.Running && in.State.Pid != pid
	})
	if out := c.Must(t, "logs", "phoenix"); out != "started\nstarted\n" {
		t.Errorf("phoenix logs: %q", out)
	}
	if in := inspectAPI(t, cl, "resting"); in.State.Running {
		t.Errorf("a stopped unless-stopped container was started: %+v", in.State)
	}
	c.Must(t, "rm", "-f", "phoenix", "resting")
}

// apiStatus makes a request without a body and returns the HTTP status.
func apiStatus(t *testing.T, d *Daemon, method, path string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://berthd"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// apiExecRoot is a short exec root (the shims' unix sockets live under
// it), removed when the test ends.
func apiExecRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "ea")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// waitUntil polls cond until it holds, failing t after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestContainersAPIRuntimes: --add-runtime and --default-runtime as
// dockerd's; an unknown runtime name is refused at create.
func TestContainersAPIRuntimes(t *testing.T) {
	rt := RequireBinary(t, "berth-runtime")
	d, c, ref := containerFixture(t, "--add-runtime", "alt="+rt, "--default-runtime", "alt")
	if out := c.Must(t, "run", "--name", "onalt", ref, "echo", "from-alt"); out != "from-alt\n" {
		t.Errorf("run on the added runtime: %q", out)
	}
	if in := inspectAPI(t, apiClient(t, d), "onalt"); in.HostConfig.Runtime != "alt" {
		t.Errorf("runtime of a container that named none: %q, want the default alt", in.HostConfig.Runtime)
	}
	if _, stderr, err := c.Run("create", "--runtime", "nosuch", ref, "true"); err == nil || !strings.Contains(stderr, "unknown or invalid runtime name: nosuch") {
		t.Errorf("create with an unknown runtime: %v %s", err, stderr)
	}
}
