package engine

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
)

func TestResolvConf(t *testing.T) {
	host := "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 10.0.0.0\n"
	tests := []struct {
		name string
		host string
		hc   container.HostConfig
		want string
	}{
		{"loopback dropped", host, container.HostConfig{},
			"nameserver 10.0.0.2\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 10.0.0.0\n"},
		{"only loopback falls back to public servers", "nameserver 127.0.0.1\n", container.HostConfig{},
			"nameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"host network keeps the host's", "nameserver 127.0.0.53\n", container.HostConfig{NetworkMode: "host"},
			"nameserver 127.0.0.53\n"},
		{"dns flags replace", host, container.HostConfig{
			DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1")}, DNSSearch: []string{"a.test"}, DNSOptions: []string{"ndots:2"},
		}, "nameserver 1.1.1.1\nsearch a.test\noptions ndots:2\nsortlist 10.0.0.0\n"},
		{"dns-search . clears", "nameserver 10.0.0.2\nsearch x\n", container.HostConfig{DNSSearch: []string{"."}},
			"nameserver 10.0.0.2\n"},
	}
	for _, tt := range tests {
		if got := resolvConf(tt.host, &tt.hc); got != tt.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

func TestParseDetachKeys(t *testing.T) {
	for in, want := range map[string][]byte{
		"":              {0x10, 0x11},
		"ctrl-p,ctrl-q": {0x10, 0x11},
		"a,ctrl-@":      {'a', 0},
		"ctrl-[":        {27},
	} {
		got, err := parseDetachKeys(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"ctrl-", "ctrl-1", "ab", "ctrl-pp"} {
		if _, err := parseDetachKeys(bad); err == nil {
			t.Errorf("parseDetachKeys(%q) accepted", bad)
		}
	}
}

func TestDetachReader(t *testing.T) {
	read := func(in string, eofEnds bool) (string, error, bool) {
		cancelled := false
		d := &detachReader{r: strings.NewReader(in), keys: []byte{0x10, 0x11}, cancel: func() { cancelled = true },
			done: make(chan struct{}), detached: make(chan struct{}), eofEnds: eofEnds}
		close(d.done) // the attach is already over: Read must not block
		var out bytes.Buffer
		_, err := io.Copy(&out, d)
		return out.String(), err, cancelled
	}
	if out, err, c := read("abc\x10xyz", false); out != "abc\x10xyz" || err != nil || c {
		t.Errorf("partial sequence: %q %v cancelled=%v", out, err, c)
	}
	if out, err, c := read("tail\x10", false); out != "tail\x10" || err != nil || c {
		t.Errorf("partial sequence at the end: %q %v cancelled=%v", out, err, c)
	}
	if out, err, c := read("ab\x10\x10\x11cd", false); !errors.Is(err, ErrDetached) || !c || strings.Contains(out, "cd") {
		t.Errorf("detach sequence: %q %v cancelled=%v", out, err, c)
	}
	if _, err, c := read("plain", true); err != nil || !c {
		t.Errorf("end of a terminal's stdin: %v cancelled=%v, want the attach cancelled", err, c)
	}
	if _, err, c := read("plain", false); err != nil || c {
		t.Errorf("end of stdin: %v cancelled=%v, want EOF passed on", err, c)
	}
}

func TestParsePS(t *testing.T) {
	out := []byte("UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init splash\nroot 42 1 0 10:00 ? 00:00:00 sleep 1000 now\nroot 43 1 0 10:00 ? 00:00:00 other\n")
	resp, err := parsePS(out, map[int]bool{42: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Titles) != 8 || len(resp.Processes) != 1 {
		t.Fatalf("got %+v", resp)
	}
	if p := resp.Processes[0]; p[1] != "42" || p[7] != "sleep 1000 now" {
		t.Errorf("row %q", p)
	}
	if _, err := parsePS([]byte("UID CMD\nroot x\n"), nil); err == nil {
		t.Error("ps output without a PID column accepted")
	}
}

func TestEventFilter(t *testing.T) {
	m := events.Message{Type: events.ContainerEventType, Action: "health_status: healthy",
		Actor: events.Actor{ID: "abcdef", Attributes: map[string]string{"name": "web", "image": "busybox", "tier": "db"}}}
	for _, tt := range []struct {
		f    EventFilter
		want bool
	}{
		{EventFilter{}, true},
		{EventFilter{"type": {"container"}}, true},
		{EventFilter{"type": {"image"}}, false},
		{EventFilter{"event": {"health_status"}}, true},
		{EventFilter{"event": {"start", "die"}}, false},
		{EventFilter{"container": {"web"}}, true},
		{EventFilter{"container": {"abc"}}, true},
		{EventFilter{"container": {"other"}}, false},
		{EventFilter{"image": {"busybox"}}, true},
		{EventFilter{"label": {"tier=db"}}, true},
		{EventFilter{"label": {"tier=web"}}, false},
		{EventFilter{"label": {"tier"}, "type": {"container"}}, true},
	} {
		if got := tt.f.Match(m); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.f, got, tt.want)
		}
	}
}

func TestHealthCommand(t *testing.T) {
	for _, tt := range []struct {
		test []string
		want []string
	}{
		{[]string{"CMD", "true", "x"}, []string{"true", "x"}},
		{[]string{"CMD-SHELL", "exit 0"}, []string{"/bin/sh", "-c", "exit 0"}},
		{[]string{"NONE"}, nil},
		{nil, nil},
		{[]string{"CMD"}, nil},
	} {
		got := healthCommand(&container.HealthConfig{Test: tt.test})
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || (got == nil) != (tt.want == nil) {
			t.Errorf("%q: %q, want %q", tt.test, got, tt.want)
		}
	}
}

func TestValidateHostConfig(t *testing.T) {
	bad := []container.HostConfig{
		{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "always"}},
		{RestartPolicy: container.RestartPolicy{Name: "sometimes"}},
		{LogConfig: container.LogConfig{Type: "syslog"}},
		{NetworkMode: "container:x"},
	}
	for _, hc := range bad {
		if err := validateHostConfig(&hc); err == nil {
			t.Errorf("%+v accepted", hc)
		}
	}
	if err := validateHostConfig(&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}, NetworkMode: "none"}); err != nil {
		t.Error(err)
	}
}

func TestStatusString(t *testing.T) {
	now := mustTime(t, "2026-01-01T00:01:00Z")
	start := mustTime(t, "2026-01-01T00:00:00Z")
	for _, tt := range []struct {
		st   ctrState
		want string
	}{
		{ctrState{Status: StateCreated}, "Created"},
		{ctrState{Status: StateRunning, StartedAt: start}, "Up About a minute"},
		{ctrState{Status: StatePaused, StartedAt: start}, "Up About a minute (Paused)"},
		{ctrState{Status: StateExited, ExitCode: 3, FinishedAt: start}, "Exited (3) About a minute ago"},
		{ctrState{Status: StateRunning, StartedAt: start, Health: &container.Health{Status: container.Starting}}, "Up About a minute (health: starting)"},
		{ctrState{Status: StatePaused, StartedAt: start, Health: &container.Health{Status: container.Healthy}}, "Up About a minute (Paused)"},
	} {
		if got := statusString(tt.st, now); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.st, got, tt.want)
		}
	}
}

func mustTime(t *testing.T, s string) (tm time.Time) {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestListFilterHelpers(t *testing.T) {
	ports := network.PortSet{network.MustParsePort("8080/tcp"): {}, network.MustParsePort("53/udp"): {}}
	for spec, want := range map[string]bool{
		"8080": true, "8080/tcp": true, "8000-8090": true, "8080/udp": false, "53/udp": true, "53": false, "x": false,
	} {
		if got := portInRange(ports, spec); got != want {
			t.Errorf("portInRange %s: %v, want %v", spec, got, want)
		}
	}
	mounts := []container.MountPoint{
		{Type: "volume", Name: "named", Source: "/var/lib/x/_data", Destination: "/data"},
		{Type: "bind", Source: "/host/dir", Destination: "/h"},
	}
	for v, want := range map[string]bool{"named": true, "/data": true, "/host/dir": true, "/h": true, "/var/lib/x/_data": false, "other": false} {
		if got := mountedAt(mounts, v); got != want {
			t.Errorf("mountedAt %s: %v, want %v", v, got, want)
		}
	}
}

func TestSummaryCommand(t *testing.T) {
	for _, tc := range []struct {
		path string
		args []string
		want string
	}{
		{"sleep", []string{"1000"}, "sleep 1000"},
		{"true", nil, "true"},
		{"sh", []string{"-c", "exit 2"}, "sh -c 'exit 2'"},
	} {
		if got := summaryCommand(tc.path, tc.args); got != tc.want {
			t.Errorf("summaryCommand(%q, %q) = %q, want %q", tc.path, tc.args, got, tc.want)
		}
	}
}
