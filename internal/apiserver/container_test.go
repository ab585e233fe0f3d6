package apiserver

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-project/berth/internal/shim"
)

func TestMuxWriterFrames(t *testing.T) {
	var buf bytes.Buffer
	stdout, stderr := streamWriters(&buf, false)
	stdout.Write([]byte("out"))
	stderr.Write([]byte("error!"))
	stdout.Write(nil) // no empty frames
	want := []struct {
		kind byte
		data string
	}{{streamStdout, "out"}, {streamStderr, "error!"}}
	b := buf.Bytes()
	for _, w := range want {
		if len(b) < 8 {
			t.Fatalf("short stream: %q", buf.Bytes())
		}
		n := binary.BigEndian.Uint32(b[4:8])
		if b[0] != w.kind || b[1] != 0 || b[2] != 0 || b[3] != 0 || string(b[8:8+n]) != w.data {
			t.Fatalf("frame %v %q, want kind %d %q", b[:8], b[8:8+n], w.kind, w.data)
		}
		b = b[8+n:]
	}
	if len(b) != 0 {
		t.Errorf("trailing bytes %q", b)
	}
	buf.Reset()
	stdout, stderr = streamWriters(&buf, true)
	stdout.Write([]byte("a"))
	stderr.Write([]byte("b"))
	if buf.String() != "ab" {
		t.Errorf("tty stream %q, want raw", buf.String())
	}
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1000, 0)
	for in, want := range map[string]time.Time{
		"":                     {},
		"1700000000":           time.Unix(1700000000, 0),
		"1700000000.5":         time.Unix(1700000000, 500000000),
		"1700000000.000000001": time.Unix(1700000000, 1),
		"10s":                  time.Unix(990, 0),
		"2026-01-02T03:04:05Z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("yesterday", now); err == nil {
		t.Error("parseTime accepted nonsense")
	}
}

func TestLogLine(t *testing.T) {
	e := shim.LogEntry{Stream: "stdout", Time: time.Date(2024, 1, 2, 3, 4, 5, 100, time.UTC), Line: []byte("hi\n")}
	for _, tc := range []struct {
		timestamps, details bool
		want                string
	}{
		{false, false, "hi\n"},
		{false, true, " hi\n"},
		{true, false, "2024-01-02T03:04:05.000000100Z hi\n"},
		{true, true, "2024-01-02T03:04:05.000000100Z  hi\n"},
	} {
		if got := string(logLine(e, tc.timestamps, tc.details)); got != tc.want {
			t.Errorf("logLine(timestamps %v, details %v) = %q, want %q", tc.timestamps, tc.details, got, tc.want)
		}
	}
}

func TestLegacyEvent(t *testing.T) {
	m := events.Message{Type: events.ContainerEventType, Action: "die", Actor: events.Actor{ID: "abc", Attributes: map[string]string{"image": "busybox"}}}
	b, err := json.Marshal(legacyEvent(m))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["status"] != "die" || got["id"] != "abc" || got["from"] != "busybox" || got["Action"] != "die" {
		t.Errorf("container event %s: want status, id and from beside Action", b)
	}
	b, _ = json.Marshal(legacyEvent(events.Message{Type: events.VolumeEventType, Action: "create", Actor: events.Actor{ID: "v"}}))
	if strings.Contains(string(b), `"status"`) {
		t.Errorf("volume event %s: Docker sends no status for it", b)
	}
}

func TestLegacyInspectNetworkFields(t *testing.T) {
	b, err := json.Marshal(legacyInspect(container.InspectResponse{NetworkSettings: &container.NetworkSettings{SandboxKey: "k"}}))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ NetworkSettings map[string]any }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"IPAddress", "Gateway", "MacAddress", "Bridge", "SandboxKey", "Networks"} {
		if _, ok := got.NetworkSettings[k]; !ok {
			t.Errorf("NetworkSettings has no %s: %s", k, b)
		}
	}
}
