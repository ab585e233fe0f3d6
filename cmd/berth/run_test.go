package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/spf13/pflag"
)

func parseRun(t *testing.T, args ...string) (*createRequest, error) {
	t.Helper()
	o := newRunOptions()
	fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(fl, true)
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	return o.toConfig(fl.Args())
}

func TestRunFlagsToConfig(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nFROM_FILE=1\nB=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PASSED", "through")
	req, err := parseRun(t, "-e", "A=1", "-e", "PASSED", "--env-file", envFile, "-e", "B=flag",
		"-v", "/host:/ctr:ro", "-v", "named:/data", "-v", "/anon", "--tmpfs", "/run:size=1m",
		"--ulimit", "nofile=100:200", "--memory", "64m", "--memory-swap", "-1", "--cpus", "1.5",
		"--restart", "on-failure:3", "--health-cmd", "true", "--health-interval", "2s", "--health-retries", "4",
		"--add-host", "db:10.0.0.2", "--device", "/dev/fuse:/dev/f:rw", "--sysctl", "net.ipv4.ip_forward=1",
		"--security-opt", "no-new-privileges", "-l", "k=v", "--stop-timeout", "7", "--init", "--network", "none",
		"--runtime", "runc", "--shm-size", "128m", "--pids-limit", "50", "-h", "box", "-u", "1000:1000", "-w", "/tmp",
		"--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--read-only", "--entrypoint", "", "--name", "x",
		"busybox", "sh", "-c", "echo hi")
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := req.config, req.hostConfig
	if cfg.Image != "busybox" || !reflect.DeepEqual(cfg.Cmd, []string{"sh", "-c", "echo hi"}) {
		t.Errorf("image/cmd: %q %q", cfg.Image, cfg.Cmd)
	}
	wantEnv := []string{"FROM_FILE=1", "B=file", "A=1", "PASSED=through", "B=flag"}
	if !reflect.DeepEqual(cfg.Env, wantEnv) {
		t.Errorf("env = %q, want %q", cfg.Env, wantEnv)
	}
	if !reflect.DeepEqual(hc.Binds, []string{"/host:/ctr:ro", "named:/data"}) {
		t.Errorf("binds = %q", hc.Binds)
	}
	if _, ok := cfg.Volumes["/anon"]; !ok || len(cfg.Volumes) != 1 {
		t.Errorf("volumes = %v", cfg.Volumes)
	}
	if hc.Tmpfs["/run"] != "size=1m" {
		t.Errorf("tmpfs = %v", hc.Tmpfs)
	}
	if len(hc.Ulimits) != 1 || hc.Ulimits[0].Name != "nofile" || hc.Ulimits[0].Soft != 100 || hc.Ulimits[0].Hard != 200 {
		t.Errorf("ulimits = %+v", hc.Ulimits)
	}
	if hc.Memory != 64<<20 || hc.MemorySwap != -1 || hc.NanoCPUs != 1500000000 {
		t.Errorf("memory %d swap %d cpus %d", hc.Memory, hc.MemorySwap, hc.NanoCPUs)
	}
	if hc.RestartPolicy != (container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}) {
		t.Errorf("restart = %+v", hc.RestartPolicy)
	}
	h := cfg.Healthcheck
	if h == nil || !reflect.DeepEqual(h.Test, []string{"CMD-SHELL", "true"}) || h.Interval != 2*time.Second || h.Retries != 4 {
		t.Errorf("health = %+v", h)
	}
	if !reflect.DeepEqual(hc.ExtraHosts, []string{"db:10.0.0.2"}) {
		t.Errorf("extra hosts = %q", hc.ExtraHosts)
	}
	if len(hc.Devices) != 1 || hc.Devices[0] != (container.DeviceMapping{PathOnHost: "/dev/fuse", PathInContainer: "/dev/f", CgroupPermissions: "rw"}) {
		t.Errorf("devices = %+v", hc.Devices)
	}
	if hc.Sysctls["net.ipv4.ip_forward"] != "1" || !reflect.DeepEqual(hc.SecurityOpt, []string{"no-new-privileges"}) {
		t.Errorf("sysctls %v secopts %q", hc.Sysctls, hc.SecurityOpt)
	}
	if cfg.Labels["k"] != "v" || cfg.StopTimeout == nil || *cfg.StopTimeout != 7 || hc.Init == nil || !*hc.Init {
		t.Errorf("labels %v stop timeout %v init %v", cfg.Labels, cfg.StopTimeout, hc.Init)
	}
	if hc.NetworkMode != "none" || !cfg.NetworkDisabled || hc.Runtime != "runc" || hc.ShmSize != 128<<20 {
		t.Errorf("network %q runtime %q shm %d", hc.NetworkMode, hc.Runtime, hc.ShmSize)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != 50 || cfg.Hostname != "box" || cfg.User != "1000:1000" || cfg.WorkingDir != "/tmp" {
		t.Errorf("pids %v hostname %q user %q workdir %q", hc.PidsLimit, cfg.Hostname, cfg.User, cfg.WorkingDir)
	}
	if !reflect.DeepEqual(hc.CapAdd, []string{"NET_ADMIN"}) || !reflect.DeepEqual(hc.CapDrop, []string{"ALL"}) || !hc.ReadonlyRootfs {
		t.Errorf("caps %q %q read-only %v", hc.CapAdd, hc.CapDrop, hc.ReadonlyRootfs)
	}
	if !reflect.DeepEqual(cfg.Entrypoint, []string{""}) {
		t.Errorf("an empty --entrypoint resets it: got %q", cfg.Entrypoint)
	}
	if !cfg.AttachStdout || !cfg.AttachStderr || cfg.AttachStdin || cfg.OpenStdin {
		t.Errorf("attach: %+v", cfg)
	}
}

func TestRunInteractiveAndDetach(t *testing.T) {
	req, err := parseRun(t, "-i", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if !req.config.OpenStdin || !req.config.AttachStdin || !req.config.StdinOnce {
		t.Errorf("-i: %+v", req.config)
	}
	req, err = parseRun(t, "-d", "-i", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if !req.config.OpenStdin || req.config.AttachStdin || req.config.AttachStdout {
		t.Errorf("-d -i: %+v", req.config)
	}
	req, err = parseRun(t, "--rm", "--no-healthcheck", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if !req.hostConfig.AutoRemove || !reflect.DeepEqual(req.config.Healthcheck.Test, []string{"NONE"}) {
		t.Errorf("--rm --no-healthcheck: %+v %+v", req.hostConfig, req.config.Healthcheck)
	}
}

func TestRunRejects(t *testing.T) {
	for _, args := range [][]string{
		{"-p", "80:80", "busybox"},
		{"-P", "busybox"},
		{"--rm", "--restart", "always", "busybox"},
		{"--restart", "sometimes", "busybox"},
		{"-v", "relative", "busybox"},
		{"-v", "/a:relative", "busybox"},
		{"-v", "/a:/b:ro:extra", "busybox"},
		{"--tmpfs", "run", "busybox"},
		{"--device", "/dev/fuse:/dev/f:xyz", "busybox"},
		{"--no-healthcheck", "--health-cmd", "true", "busybox"},
		{"--health-retries", "-1", "busybox"},
		{"-d", "-a", "stdout", "busybox"},
		{"-a", "stdweird", "busybox"},
		{"-e", "=x", "busybox"},
		{"--security-opt", "seccomp=/does/not/exist.json", "busybox"},
	} {
		if _, err := parseRun(t, args...); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	if _, err := parseRun(t, "-p", "80:80", "busybox"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("-p: %v", err)
	}
}

func TestRunSeccompProfileIsSentInline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(p, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	req, err := parseRun(t, "--security-opt", "seccomp="+p, "--security-opt", "seccomp=unconfined", "busybox")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, "seccomp=unconfined"}
	if !reflect.DeepEqual(req.hostConfig.SecurityOpt, want) {
		t.Errorf("security opts = %q, want %q", req.hostConfig.SecurityOpt, want)
	}
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]container.DeviceMapping{
		"/dev/fuse":          {PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"},
		"/dev/fuse:r":        {PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "r"},
		"/dev/fuse:/dev/x":   {PathOnHost: "/dev/fuse", PathInContainer: "/dev/x", CgroupPermissions: "rwm"},
		"/dev/fuse:/dev/x:w": {PathOnHost: "/dev/fuse", PathInContainer: "/dev/x", CgroupPermissions: "w"},
	} {
		got, err := parseDevice(in)
		if err != nil || got != want {
			t.Errorf("parseDevice(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"dev/fuse", "/dev/fuse:x:y:z", "/dev/fuse:/x:q"} {
		if _, err := parseDevice(bad); err == nil {
			t.Errorf("parseDevice(%q) accepted", bad)
		}
	}
}

func TestStartErrorCodes(t *testing.T) {
	for msg, code := range map[string]int{
		`exec: "nope": executable file not found in $PATH`: 127,
		"open /bin/x: no such file or directory":           127,
		"exec /etc/passwd: permission denied":              126,
		"cgroup: device busy":                              125,
	} {
		var se statusError
		if !errors.As(startError(errors.New(msg)), &se) || se.code != code {
			t.Errorf("%q: code %d, want %d", msg, se.code, code)
		}
	}
}

func TestParseDetachKeys(t *testing.T) {
	for in, want := range map[string][]byte{
		"":              {0x10, 0x11},
		"ctrl-p,ctrl-q": {0x10, 0x11},
		"ctrl-a,x":      {0x01, 'x'},
		"ctrl-@,ctrl-_": {0x00, 0x1f},
		"ctrl-[":        {0x1b},
	} {
		got, err := parseDetachKeys(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"ctrl-", "ctrl-1", "ab", "ctrl-pq"} {
		if _, err := parseDetachKeys(bad); err == nil {
			t.Errorf("parseDetachKeys(%q) accepted", bad)
		}
	}
}

// chunks is a reader returning its pieces one Read at a time.
type chunks [][]byte

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	*c = (*c)[1:]
	return n, nil
}

func TestCopyEscapable(t *testing.T) {
	keys := []byte{0x10, 0x11}
	cases := []struct {
		in       chunks
		out      string
		detached bool
	}{
		{chunks{[]byte("hello")}, "hello", false},
		{chunks{[]byte("ab\x10\x11cd")}, "ab", true},
		{chunks{[]byte("ab\x10"), []byte("\x11cd")}, "ab", true},
		{chunks{[]byte("a\x10b")}, "a\x10b", false},
		{chunks{[]byte("a\x10\x10\x11")}, "a\x10", true},
		{chunks{[]byte("a\x10")}, "a\x10", false},
	}
	for i, tc := range cases {
		var out bytes.Buffer
		in := tc.in
		err := copyEscapable(&out, &in, keys)
		if out.String() != tc.out || errors.Is(err, errDetached) != tc.detached || (err != nil && !errors.Is(err, errDetached)) {
			t.Errorf("case %d: out %q err %v; want %q detached=%v", i, out.String(), err, tc.out, tc.detached)
		}
	}
	var out bytes.Buffer
	in := chunks{[]byte("a\x10\x11b")}
	if err := copyEscapable(&out, &in, nil); err != nil || out.String() != "a\x10\x11b" {
		t.Errorf("no keys: %q %v", out.String(), err)
	}
}
