package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock returns t0, t0+1s, t0+2s, ... on successive calls.
func fakeClock(t0 time.Time) func() time.Time {
	n := 0
	return func() time.Time {
		n++
		return t0.Add(time.Duration(n-1) * time.Second)
	}
}

func readAll(t *testing.T, path string, opts ReadOpts) []LogEntry {
	t.Helper()
	var out []LogEntry
	for e, err := range ReadLogs(context.Background(), path, opts) {
		if err != nil {
			t.Fatalf("read logs: %v", err)
		}
		out = append(out, e)
	}
	return out
}

func lines(es []LogEntry) []string {
	var s []string
	for _, e := range es {
		s = append(s, e.Stream+":"+string(e.Line))
	}
	return s
}

func TestLogWriterFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	w.now = fakeClock(t0)
	out, errs := newLineSplitter(w, "stdout"), newLineSplitter(w, "stderr")
	out.Write([]byte("a\nb"))
	errs.Write([]byte("<e>&\"\\\t\x01\xff\n"))
	out.Write([]byte("c\nd"))
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rawLines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(rawLines) != 4 {
		t.Fatalf("%d lines: %q", len(rawLines), raw)
	}
	if want := `{"log":"a\n","stream":"stdout","time":"2026-01-02T03:04:05.000000006Z"}`; rawLines[0] != want {
		t.Fatalf("line 0 = %s, want %s", rawLines[0], want)
	}
	// Every line is valid JSON that encoding/json reads back to the bytes
	// written (invalid UTF-8 becomes U+FFFD).
	var e struct{ Log, Stream, Time string }
	if err := json.Unmarshal([]byte(rawLines[1]), &e); err != nil || e.Log != "<e>&\"\\\t\x01\uFFFD\n" || e.Stream != "stderr" {
		t.Fatalf("line 1 %s: %+v %v", rawLines[1], e, err)
	}
	got := lines(readAll(t, path, ReadOpts{Tail: -1}))
	want := []string{"stdout:a\n", "stderr:<e>&\"\\\t\x01\uFFFD\n", "stdout:bc\n", "stdout:d"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	es := readAll(t, path, ReadOpts{Tail: -1})
	if es[2].Partial() || !es[3].Partial() {
		t.Fatal("partial flags wrong")
	}
	if !es[0].Time.Equal(t0) {
		t.Fatalf("time %v, want %v", es[0].Time, t0)
	}
	if got := string(es[0].Format(true)); got != "2026-01-02T03:04:05.000000006Z a\n" {
		t.Fatalf("format with timestamps %q", got)
	}
}

func TestLogWriterSplitsLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := newLineSplitter(w, "stdout")
	long := bytes.Repeat([]byte("x"), 2*maxLogLine+100)
	// In pieces, so the splitter must carry what is pending.
	s.Write(long[:1000])
	s.Write(long[1000:])
	s.Write([]byte("\nshort\n"))
	s.Write(append(bytes.Repeat([]byte("y"), maxLogLine+1), '\n')) // in one write
	w.Close()
	es := readAll(t, path, ReadOpts{Tail: -1})
	var sizes []int
	var partial []bool
	for _, e := range es {
		sizes = append(sizes, len(e.Line))
		partial = append(partial, e.Partial())
	}
	wantSizes := []int{maxLogLine, maxLogLine, 101, 6, maxLogLine, 2}
	wantPartial := []bool{true, true, false, false, true, false}
	if fmt.Sprint(sizes) != fmt.Sprint(wantSizes) || fmt.Sprint(partial) != fmt.Sprint(wantPartial) {
		t.Fatalf("sizes %v partial %v, want %v %v", sizes, partial, wantSizes, wantPartial)
	}
}

// writeNumbered writes lines "line <i>\n" for i in [from, to) as one Write
// per line.
func writeNumbered(t *testing.T, s *lineSplitter, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := fmt.Fprintf(s, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
}

func checkNumbered(t *testing.T, es []LogEntry, from, to int) {
	t.Helper()
	if len(es) != to-from {
		t.Fatalf("%d entries, want %d (%d..%d)", len(es), to-from, from, to-1)
	}
	for i, e := range es {
		if want := fmt.Sprintf("line %d\n", from+i); string(e.Line) != want {
			t.Fatalf("entry %d = %q, want %q", i, e.Line, want)
		}
	}
}

func TestLogRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	writeNumbered(t, newLineSplitter(w, "stdout"), 0, 200)
	w.Close()
	for _, name := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1000 || fi.Size() == 0 {
			t.Fatalf("%s has %d bytes, want 1..1000", name, fi.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("max-file 3 left a %s: %v", path+".3", err)
	}
	es := readAll(t, path, ReadOpts{Tail: -1})
	// What is kept is the newest lines, in order, ending with the last.
	checkNumbered(t, es, 200-len(es), 200)
	if len(es) < 20 {
		t.Fatalf("only %d entries kept over three files", len(es))
	}
	// Reopening appends to the live file and keeps rotating.
	w, err = NewLogWriter(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	writeNumbered(t, newLineSplitter(w, "stdout"), 200, 210)
	w.Close()
	es = readAll(t, path, ReadOpts{Tail: -1})
	checkNumbered(t, es, 210-len(es), 210)
}

func TestLogMaxFileOneTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	writeNumbered(t, newLineSplitter(w, "stdout"), 0, 100)
	w.Close()
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Fatalf("max-file 1 rotated into %s", path+".1")
	}
	fi, _ := os.Stat(path)
	if fi.Size() > 500 {
		t.Fatalf("log has %d bytes over max-size 500", fi.Size())
	}
	es := readAll(t, path, ReadOpts{Tail: -1})
	checkNumbered(t, es, 100-len(es), 100)
}

func TestReadLogsTailSinceUntil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 300, 10) // several files
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	w.now = fakeClock(t0) // line i is written at t0 + i seconds
	writeNumbered(t, newLineSplitter(w, "stdout"), 0, 20)
	w.Close()
	if _, err := os.Stat(path + ".2"); err != nil {
		t.Fatalf("expected rotated files: %v", err)
	}
	sec := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	cases := []struct {
		name     string
		opts     ReadOpts
		from, to int
	}{
		{"all", ReadOpts{Tail: -1}, 0, 20},
		{"tail 3", ReadOpts{Tail: 3}, 17, 20},
		{"tail 0", ReadOpts{Tail: 0}, 0, 0},
		{"tail over count", ReadOpts{Tail: 100}, 0, 20},
		{"since", ReadOpts{Tail: -1, Since: sec(15)}, 15, 20},
		{"until", ReadOpts{Tail: -1, Until: sec(4)}, 0, 5},
		{"since and until", ReadOpts{Tail: -1, Since: sec(5), Until: sec(8)}, 5, 9},
		{"tail within since", ReadOpts{Tail: 2, Since: sec(3), Until: sec(10)}, 9, 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			es := readAll(t, path, c.opts)
			if c.to == c.from {
				if len(es) != 0 {
					t.Fatalf("got %d entries, want none", len(es))
				}
				return
			}
			checkNumbered(t, es, c.from, c.to)
		})
	}
	if es := readAll(t, filepath.Join(t.TempDir(), "missing.log"), ReadOpts{Tail: -1}); len(es) != 0 {
		t.Fatalf("missing log yielded %d entries", len(es))
	}
}

func TestReadLogsSkipsTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	good := `{"log":"a\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"log":"b\n","str`), 0o644); err != nil {
		t.Fatal(err)
	}
	checkLines := lines(readAll(t, path, ReadOpts{Tail: -1}))
	if fmt.Sprint(checkLines) != fmt.Sprint([]string{"stdout:a\n"}) {
		t.Fatalf("entries %q", checkLines)
	}
}

func TestReadLogsFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 400, 1000) // rotates every ~6 lines, keeps all
	if err != nil {
		t.Fatal(err)
	}
	s := newLineSplitter(w, "stdout")
	writeNumbered(t, s, 0, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	got := make(chan LogEntry, 1000)
	errc := make(chan error, 1)
	go func() {
		defer close(got)
		for e, err := range ReadLogs(ctx, path, ReadOpts{Tail: -1, Follow: true, Stop: stop, PollInterval: time.Millisecond}) {
			if err != nil {
				errc <- err
				return
			}
			got <- e
		}
	}()
	first := <-got
	if string(first.Line) != "line 0\n" {
		t.Fatalf("first entry %q", first.Line)
	}
	// Everything else is written while the reader follows, in bursts that
	// rotate several times between its polls.
	for i := 1; i < 600; i += 50 {
		writeNumbered(t, s, i, i+50)
		time.Sleep(2 * time.Millisecond)
	}
	w.Close()
	if _, err := os.Stat(path + ".50"); err != nil {
		t.Fatalf("expected many rotations: %v", err)
	}
	close(stop)
	var es []LogEntry
	es = append(es, first)
	for e := range got {
		es = append(es, e)
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	checkNumbered(t, es, 0, 601)
}

func TestReadLogsFollowTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewLogWriter(path, 300, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := newLineSplitter(w, "stdout")
	writeNumbered(t, s, 0, 1)
	stop := make(chan struct{})
	got := make(chan LogEntry, 100)
	go func() {
		defer close(got)
		for e, err := range ReadLogs(context.Background(), path, ReadOpts{Tail: -1, Follow: true, Stop: stop, PollInterval: time.Millisecond}) {
			if err != nil {
				return
			}
			got <- e
		}
	}()
	<-got
	// One line at a time, each waited for: truncation never outruns the
	// reader, so it must see every line.
	for i := 1; i < 30; i++ {
		writeNumbered(t, s, i, i+1)
		e := <-got
		if want := fmt.Sprintf("line %d\n", i); string(e.Line) != want {
			t.Fatalf("entry %q, want %q", e.Line, want)
		}
	}
	close(stop)
	for e := range got {
		t.Fatalf("extra entry %q", e.Line)
	}
	w.Close()
}

// BenchmarkLogWriter measures the json-file path a container's output
// takes: 8 KiB reads of 80-byte lines, split, encoded and written, with
// rotation at 10 MiB over 3 files.
func BenchmarkLogWriter(b *testing.B) {
	path := filepath.Join(b.TempDir(), "c.log")
	w, err := NewLogWriter(path, 10<<20, 3)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	s := newLineSplitter(w, "stdout")
	chunk := bytes.Repeat([]byte(strings.Repeat("x", 79)+"\n"), 8*1024/80)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}
