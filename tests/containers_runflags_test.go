package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-project/berth/internal/testutil"
)

// runFlagsEnvs is one daemon (default runtime) with the busybox image and
// both CLIs: the run flags are parsed by the client, so one runtime is
// enough; both CLIs must give the daemon the same request.
func runFlagsEnvs(t *testing.T) (*Daemon, string, []*ctrEnv) {
	t.Helper()
	testutil.RequiresRoot(t)
	RequireBinary(t, "berthd")
	reg := testutil.StartRegistry(t)
	ref := reg + "/e2e/busybox:1"
	testutil.PushBusybox(t, reg, "e2e/busybox:1")
	testutil.PushBusybox(t, reg, "e2e/quiet:1")
	d := StartDaemon(t, "--exec-root", shortExecRoot(t))
	var envs []*ctrEnv
	for _, c := range []*CLI{BerthCLI(t, d), DockerCLIFor(t, d)} {
		c.Must(t, "pull", "-q", ref)
		e := &ctrEnv{d: d, c: c, image: ref}
		t.Cleanup(func() { removeAllContainers(t, e) })
		envs = append(envs, e)
	}
	return d, reg, envs
}

// blockDevice is a block device of the host for the throttle flags, as
// "path major:minor".
func blockDevice(t *testing.T) (string, string) {
	t.Helper()
	ents, _ := os.ReadDir("/sys/block")
	for _, ent := range ents {
		n := ent.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		dev, err := os.ReadFile(filepath.Join("/sys/block", n, "dev"))
		if err != nil {
			continue
		}
		if _, err := os.Stat("/dev/" + n); err == nil {
			return "/dev/" + n, strings.TrimSpace(string(dev))
		}
	}
	t.Fatal("no block device on this host for the --device-*-bps checks")
	return "", ""
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// TestContainersRunFlagsDocker checks the effect of the run flags docker users
// paste: log rotation, the ID file, cgroup settings, annotations,
// --volumes-from, --expose, --quiet, and the options berthd refuses.
func TestContainersRunFlagsDocker(t *testing.T) {
	d, reg, envs := runFlagsEnvs(t)
	dev, majmin := blockDevice(t)
	for _, e := range envs {
		t.Run(e.c.Name, func(t *testing.T) {
			// --log-opt max-size/max-file: the log rotates, logs shows the
			// latest lines.
			logOpts := []string{"--log-opt", "max-size=1k", "--log-opt", "max-file=2"}
			if e.c.Name == "berth" {
				// berth also takes them as one list (docker's daemon would
				// read "1k,max-file=2" as a size and refuse it).
				logOpts = []string{"--log-opt", "max-size=1k,max-file=2"}
			}
			id := strings.TrimSpace(e.mustRun(t, append(append([]string{"-d"}, logOpts...), e.image,
				"sh", "-c", `i=0; while [ $i -lt 300 ]; do echo "line $i ........................................"; i=$((i+1)); done`)...))
			e.c.Must(t, "wait", id)
			logBase := filepath.Join(d.DataRoot, "containers", id, id+"-json.log")
			if fi, err := os.Stat(logBase + ".1"); err != nil || fi.Size() == 0 {
				t.Errorf("no rotated log %s.1: %v", logBase, err)
			}
			if _, err := os.Stat(logBase + ".2"); err == nil {
				t.Errorf("max-file=2 kept a third file %s.2", logBase)
			}
			if fi, err := os.Stat(logBase); err != nil || fi.Size() > 1024 {
				t.Errorf("current log %s: %v (size above max-size 1k?)", logBase, err)
			}
			if got := Lines(e.c.Must(t, "logs", "--tail", "1", id)); len(got) != 1 || !strings.HasPrefix(got[0], "line 299 ") {
				t.Errorf("logs --tail 1 after rotation: %q", got)
			}
			if got := Lines(e.c.Must(t, "logs", id)); len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "line 299 ") || strings.HasPrefix(got[0], "line 0 ") {
				t.Errorf("logs after rotation: %d lines, first %q", len(got), got)
			}

			// --cidfile: the ID, and an existing file refused.
			cid := filepath.Join(t.TempDir(), "cid")
			created := strings.TrimSpace(e.c.Must(t, "create", "--cidfile", cid, e.image, "true"))
			if b, err := os.ReadFile(cid); err != nil || string(b) != created {
				t.Errorf("--cidfile holds %q (%v), want %q", b, err, created)
			}
			if stderr := e.c.Fails(t, "run", "--cidfile", cid, e.image, "true"); !strings.Contains(stderr, "container ID file found") {
				t.Errorf("an existing --cidfile: %s", stderr)
			}
			if b, _ := os.ReadFile(cid); string(b) != created {
				t.Errorf("the refused run changed the ID file: %q", b)
			}
			failed := filepath.Join(t.TempDir(), "cid")
			e.c.Fails(t, "create", "--cidfile", failed, "--pull", "never", "no/such-image:1", "true")
			if _, err := os.Stat(failed); err == nil {
				t.Errorf("a failed create left its --cidfile %s", failed)
			}

			// Resources in the container's cgroup (v1 controllers here),
			// under a --cgroup-parent inside the daemon's own.
			parent := d.CgroupParent + "/" + e.c.Name
			id = strings.TrimSpace(e.mustRun(t, "-d", "--cgroup-parent", parent, "--cpuset-mems", "0", "--memory-swappiness", "17",
				"--device-read-bps", dev+":1mb", "--device-write-iops", dev+":70", "--device-cgroup-rule", "c 42:* rmw",
				"--annotation", "org.example.flag=yes", e.image, "sleep", "1000"))
			cg := func(ctrl, file string) string {
				return readTrim(t, filepath.Join("/sys/fs/cgroup", ctrl, parent, id, file))
			}
			if got := cg("cpuset", "cpuset.mems"); got != "0" {
				t.Errorf("cpuset.mems = %q", got)
			}
			if got := cg("memory", "memory.swappiness"); got != "17" {
				t.Errorf("memory.swappiness = %q", got)
			}
			if got := cg("blkio", "blkio.throttle.read_bps_device"); got != majmin+" 1048576" {
				t.Errorf("blkio.throttle.read_bps_device = %q, want %s 1048576", got, majmin)
			}
			if got := cg("blkio", "blkio.throttle.write_iops_device"); got != majmin+" 70" {
				t.Errorf("blkio.throttle.write_iops_device = %q, want %s 70", got, majmin)
			}
			if got := cg("devices", "devices.list"); !contains(Lines(got), "c 42:* rwm") {
				t.Errorf("devices.list lacks the --device-cgroup-rule: %q", got)
			}
			var spec struct{ Annotations map[string]string }
			b, err := os.ReadFile(filepath.Join(d.DataRoot, "containers", id, "bundle", "config.json"))
			if err == nil {
				err = json.Unmarshal(b, &spec)
			}
			if err != nil || spec.Annotations["org.example.flag"] != "yes" {
				t.Errorf("--annotation in the bundle's config.json: %v %v", spec.Annotations, err)
			}
			e.c.Must(t, "rm", "-f", id)

			// --cpu-rt-runtime: refused while the parent cgroup has no
			// real-time time to give; honoured once it has. (Each client's
			// parent keeps its share until the daemon's cgroups go: a
			// removed cgroup may still count against it for a while.)
			if stderr := e.c.Fails(t, "run", "-d", "--cgroup-parent", parent, "--cpu-rt-runtime", "5000", e.image, "true"); !strings.Contains(stderr, "--cpu-rt-runtime 5000: the parent cgroup "+parent+" has 0") {
				t.Errorf("--cpu-rt-runtime without real-time time in the parent: %s", stderr)
			}
			rtFile := func(dir string) string { return filepath.Join("/sys/fs/cgroup/cpu", dir, "cpu.rt_runtime_us") }
			for _, w := range []struct{ dir, v string }{{d.CgroupParent, "30000"}, {parent, "10000"}} {
				if err := os.WriteFile(rtFile(w.dir), []byte(w.v), 0o644); err != nil {
					t.Fatalf("allot real-time time to %s: %v", w.dir, err)
				}
			}
			id = strings.TrimSpace(e.mustRun(t, "-d", "--cgroup-parent", parent, "--cpu-rt-runtime", "5000", e.image, "sleep", "1000"))
			if got := cg("cpu", "cpu.rt_runtime_us"); got != "5000" {
				t.Errorf("cpu.rt_runtime_us = %q, want 5000", got)
			}
			e.c.Must(t, "rm", "-f", id)
			if stderr := e.c.Fails(t, "create", "--cpu-rt-period", "1000", "--cpu-rt-runtime", "2000", e.image, "true"); !strings.Contains(stderr, "cannot be higher than cpu real-time period") {
				t.Errorf("--cpu-rt-runtime above --cpu-rt-period: %s", stderr)
			}

			// --blkio-weight-device: only where the host can weight the
			// device (CFQ's blkio.weight_device, or bfq on the device).
			sched, _ := os.ReadFile("/sys/dev/block/" + majmin + "/queue/scheduler")
			_, cfq := os.Stat("/sys/fs/cgroup/blkio/blkio.weight_device")
			_, stderr, err := e.c.Run("create", "--blkio-weight-device", dev+":300", e.image, "true")
			if cfq == nil || strings.Contains(string(sched), "[bfq]") {
				if err != nil {
					t.Errorf("--blkio-weight-device on a device the host can weight: %v", err)
				}
			} else if err == nil || !strings.Contains(stderr, "--blkio-weight-device "+dev+" is not supported on this host") {
				t.Errorf("--blkio-weight-device with scheduler %q: %v %s", strings.TrimSpace(string(sched)), err, stderr)
			}

			// --volumes-from: the other container's volumes and binds, read
			// only with :ro.
			hostDir := t.TempDir()
			writeFile(t, filepath.Join(hostDir, "h"), "host\n")
			e.mustRun(t, "--name", "vsrc", "-v", "/anonvol", "-v", "fromvol:/named", "-v", hostDir+":/hb", e.image,
				"sh", "-c", "echo anon > /anonvol/a; echo named > /named/n")
			if got := e.mustRun(t, "--rm", "--volumes-from", "vsrc", e.image, "sh", "-c", "cat /anonvol/a /named/n /hb/h; echo more >> /named/n"); got != "anon\nnamed\nhost\n" {
				t.Errorf("--volumes-from reads %q", got)
			}
			if _, stderr, err := e.run("--rm", "--volumes-from", "vsrc:ro", e.image, "sh", "-c", "echo x > /named/n"); err == nil || !strings.Contains(stderr, "Read-only file system") {
				t.Errorf("--volumes-from vsrc:ro could write: %v %s", err, stderr)
			}
			if got := e.mustRun(t, "--rm", "-v", "fromvol:/named", e.image, "cat", "/named/n"); got != "named\nmore\n" {
				t.Errorf("the volume shared through --volumes-from holds %q", got)
			}
			if stderr := e.c.Fails(t, "run", "--rm", "--volumes-from", "nosuch", e.image, "true"); !strings.Contains(stderr, "nosuch") {
				t.Errorf("--volumes-from of a missing container: %s", stderr)
			}
			e.c.Must(t, "rm", "-v", "vsrc")
			e.c.Must(t, "volume", "rm", "fromvol")

			// --expose is stored.
			e.c.Must(t, "create", "--name", "exp", "--expose", "8080", "--expose", "9000-9001/udp", e.image, "true")
			ports := e.c.Must(t, "inspect", "-f", "{{json .Config.ExposedPorts}}", "exp")
			for _, p := range []string{"8080/tcp", "9000/udp", "9001/udp"} {
				if !strings.Contains(ports, `"`+p+`"`) {
					t.Errorf("ExposedPorts %s lacks %s", strings.TrimSpace(ports), p)
				}
			}
			e.c.Must(t, "rm", "exp")

			// --quiet: no pull output.
			out, stderr, err := e.c.Run("run", "--rm", "-q", reg+"/e2e/quiet:1", "echo", "ran")
			e.c.Must(t, "rmi", reg+"/e2e/quiet:1")
			if err != nil || out != "ran\n" || strings.TrimSpace(stderr) != "" {
				t.Errorf("run -q of an image to pull: %v out %q stderr %q", err, out, stderr)
			}

			// Accepted as docker accepts them, and the container runs.
			for _, args := range [][]string{
				{"--kernel-memory", "10m"}, // deprecated: ignored, as docker's CLI and daemon do
				{"--disable-content-trust"},
				{"--userns", "host"},
				{"--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "--log-opt", "compress=false"},
				{"--volume-driver", "local", "-v", "/anon"},
				{"--isolation", "default"},
				{"--cpu-rt-period", "500000"},
			} {
				if _, stderr, err := e.run(append(append([]string{"--rm"}, args...), e.image, "true")...); err != nil {
					t.Errorf("run %s: %v %s", strings.Join(args, " "), err, stderr)
				}
			}
			if e.c.Name == "berth" {
				// --use-api-socket: the daemon's socket, and the client's
				// credentials for the registries it knows. (docker's CLI
				// binds /var/run/docker.sock of the host, absent here.)
				writeFile(t, filepath.Join(e.c.Config, "config.json"), `{"auths":{"reg.example.com":{"auth":"dXNlcjpwYXNz"}}}`)
				got := e.mustRun(t, "--rm", "--use-api-socket", e.image, "sh", "-c",
					`test -S /var/run/docker.sock && echo socket; echo $DOCKER_CONFIG; grep -c dXNlcjpwYXNz /run/secrets/docker/config.json`)
				if got != "socket\n/run/secrets/docker\n1\n" {
					t.Errorf("--use-api-socket: %q", got)
				}
				os.Remove(filepath.Join(e.c.Config, "config.json"))
			}

			// What berthd cannot do is refused, naming the option.
			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"--ip", "10.9.8.7"}, "--ip"},
				{[]string{"--ip6", "2001:db8::33"}, "--ip6"},
				{[]string{"--mac-address", "92:d0:c6:0a:29:33"}, "--mac-address"},
				{[]string{"--link-local-ip", "169.254.1.1"}, "--link-local-ip"},
				{[]string{"--link", "other:alias"}, "--link"},
				{[]string{"--network-alias", "web"}, "network-scoped aliases are only supported for user-defined networks"},
				{[]string{"--storage-opt", "size=1G"}, "--storage-opt"},
				{[]string{"--volume-driver", "nfs"}, "--volume-driver"},
				{[]string{"--isolation", "hyperv"}, "isolation"},
				// Windows-only flags: the CLI asks the daemon's OS first.
				{[]string{"--io-maxiops", "10"}, `"--io-maxiops" is only supported on a Docker daemon running on windows, but the Docker daemon is running on linux`},
				{[]string{"--io-maxbandwidth", "10m"}, `"--io-maxbandwidth" is only supported on a Docker daemon running on windows`},
				{[]string{"--cpu-count", "2"}, `"--cpu-count" is only supported on a Docker daemon running on windows`},
				{[]string{"--cpu-percent", "50"}, `"--cpu-percent" is only supported on a Docker daemon running on windows`},
				{[]string{"--userns", "private"}, "--userns"},
				{[]string{"--gpus", "all"}, "--gpus"},
				{[]string{"--log-driver", "syslog"}, "syslog"},
				{[]string{"--log-opt", "compress=true"}, "compress"},
				{[]string{"--log-opt", "tag={{.Name}}"}, "tag"},
				{[]string{"--log-opt", "max-size=lots"}, "max-size"},
				{[]string{"--log-opt", "nosuch=1"}, "unknown log opt 'nosuch'"},
			} {
				args := append(append([]string{"create"}, c.args...), e.image, "true")
				if stderr := e.c.Fails(t, args...); !strings.Contains(stderr, c.want) {
					t.Errorf("%s: %s, want an error naming %q", strings.Join(c.args, " "), strings.TrimSpace(stderr), c.want)
				}
			}
		})
	}
}

// TestContainersCreateWindowsOptions: a client that sends the Windows-only
// resources anyway gets Docker's Linux answer from berthd: --cpu-count
// ignored, --cpu-percent discarded with a warning, IO maximums refused.
func TestContainersCreateWindowsOptions(t *testing.T) {
	d, _, envs := runFlagsEnvs(t)
	create := func(hc map[string]any) (int, map[string]any, error) {
		body, _ := json.Marshal(map[string]any{"Image": envs[0].image, "Cmd": []string{"true"}, "HostConfig": hc})
		var out map[string]any
		code, err := d.API("POST", "/containers/create", strings.NewReader(string(body)), &out)
		if err != nil && code == 0 {
			t.Fatal(err)
		}
		return code, out, err
	}
	if code, out, err := create(map[string]any{"CpuCount": 2, "CpuPercent": 50}); code != 201 || !strings.Contains(strings.Join(toStrings(out["Warnings"]), "\n"), "does not support CPU percent") {
		t.Errorf("CpuCount, CpuPercent: %d %v %v", code, out, err)
	}
	for _, hc := range []map[string]any{{"IOMaximumIOps": 10}, {"IOMaximumBandwidth": 1 << 20}} {
		if code, _, err := create(hc); code != 400 || err == nil || !strings.Contains(err.Error(), "Maximum IO") {
			t.Errorf("%v: %d %v", hc, code, err)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
