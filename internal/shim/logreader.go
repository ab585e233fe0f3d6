package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LogEntry is one json-file log entry.
type LogEntry struct {
	Stream string    // "stdout" or "stderr"
	Time   time.Time // when the shim read the output
	Line   []byte    // the output, with its newline unless Partial
}

// Partial reports whether the entry is a piece of a longer line (or the
// last output without a newline).
func (e LogEntry) Partial() bool { return !bytes.HasSuffix(e.Line, []byte("\n")) }

// Format renders the entry as `docker logs` prints it: the line, preceded
// by its RFC3339Nano time and a space when timestamps is set.
func (e LogEntry) Format(timestamps bool) []byte {
	if !timestamps {
		return e.Line
	}
	b := e.Time.UTC().AppendFormat(nil, time.RFC3339Nano)
	b = append(b, ' ')
	return append(b, e.Line...)
}

// ReadOpts selects the entries ReadLogs yields, with the meaning of
// `docker logs` options.
type ReadOpts struct {
	// Follow keeps reading new entries (through rotations) after the
	// existing ones until ctx is done, Stop is closed or Until passes.
	Follow bool
	// Stop, when closed, ends following after the entries written so far
	// (the engine closes it when the container has exited).
	Stop <-chan struct{}
	// Since and Until, when not zero, keep entries with Since <= Time and
	// Time <= Until.
	Since, Until time.Time
	// Tail is the number of most recent existing entries to yield; a
	// negative Tail yields all of them. It does not limit followed entries.
	Tail int
	// PollInterval is how often a follower looks for new output; zero
	// means 100ms.
	PollInterval time.Duration
}

// logFile is one file of a log and what it was when listed.
type logFile struct {
	name string
	info os.FileInfo
}

// listLog lists the files of the log at path that exist, oldest first:
// path.N .. path.1 (found by reading the directory, so a gap a rotation
// in progress leaves does not hide older files), then path.
func listLog(path string) ([]logFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list log files of %s: %w", path, err)
	}
	type numbered struct {
		n    int
		name string
	}
	var rotated []numbered
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 1 || strconv.Itoa(n) != suffix {
			continue
		}
		rotated = append(rotated, numbered{n, filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(rotated, func(a, b numbered) int { return b.n - a.n })
	var files []logFile
	for _, r := range rotated {
		if fi, err := os.Stat(r.name); err == nil {
			files = append(files, logFile{r.name, fi})
		}
	}
	if fi, err := os.Stat(path); err == nil {
		files = append(files, logFile{path, fi})
	}
	return files, nil
}

// stableListLog lists the log's files until two listings in a row agree,
// so that a rotation running meanwhile is seen either whole or not at all.
func stableListLog(path string) ([]logFile, error) {
	prev, err := listLog(path)
	if err != nil {
		return nil, err
	}
	for range 100 {
		cur, err := listLog(path)
		if err != nil {
			return nil, err
		}
		if sameListing(prev, cur) {
			return cur, nil
		}
		prev = cur
		time.Sleep(time.Millisecond)
	}
	return prev, nil
}

func sameListing(a, b []logFile) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || !os.SameFile(a[i].info, b[i].info) {
			return false
		}
	}
	return true
}

type rawEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

func parseEntry(line []byte) (LogEntry, error) {
	var r rawEntry
	if err := json.Unmarshal(line, &r); err != nil {
		return LogEntry{}, err
	}
	return LogEntry{Stream: r.Stream, Time: r.Time, Line: []byte(r.Log)}, nil
}

// ReadLogs yields the entries of the json-file log at path and its rotated
// files path.1 .. path.N, oldest first, selected by opts. A missing log
// yields nothing (or, when following, waits for it).
func ReadLogs(ctx context.Context, path string, opts ReadOpts) iter.Seq2[LogEntry, error] {
	return func(yield func(LogEntry, error) bool) {
		lr := &logReader{path: path, opts: opts}
		lr.run(ctx, yield)
	}
}

type logReader struct {
	path string
	opts ReadOpts
	// the live file being read when the existing entries end
	cur     *os.File
	rd      *bufio.Reader
	partial []byte
	pos     int64
}

func (lr *logReader) keep(e LogEntry) bool {
	if !lr.opts.Since.IsZero() && e.Time.Before(lr.opts.Since) {
		return false
	}
	return true
}

func (lr *logReader) pastUntil(e LogEntry) bool {
	return !lr.opts.Until.IsZero() && e.Time.After(lr.opts.Until)
}

func (lr *logReader) run(ctx context.Context, yield func(LogEntry, error) bool) {
	defer func() {
		if lr.cur != nil {
			lr.cur.Close()
		}
	}()
	// The existing entries.
	var ring []LogEntry
	tail := lr.opts.Tail
	emit := func(e LogEntry) bool {
		if tail < 0 {
			return yield(e, nil)
		}
		if tail == 0 {
			return true
		}
		if len(ring) == tail {
			copy(ring, ring[1:])
			ring = ring[:tail-1]
		}
		ring = append(ring, e)
		return true
	}
	files, err := stableListLog(lr.path)
	if err != nil {
		yield(LogEntry{}, err)
		return
	}
	done := false // Until passed
	for i, lf := range files {
		name := lf.name
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // rotated away meanwhile, or no log yet
			}
			yield(LogEntry{}, fmt.Errorf("open log %s: %w", name, err))
			return
		}
		last := i == len(files)-1
		if fi, err := f.Stat(); err == nil && !os.SameFile(fi, lf.info) {
			// Rotated since listing: what was listed is gone from here.
			f.Close()
			continue
		}
		rd := bufio.NewReaderSize(f, 32*1024)
		var pos int64
		for !done {
			line, err := rd.ReadBytes('\n')
			if err == io.EOF {
				if last {
					lr.partial = line
				}
				break
			}
			if err != nil {
				f.Close()
				yield(LogEntry{}, fmt.Errorf("read log %s: %w", name, err))
				return
			}
			pos += int64(len(line))
			e, err := parseEntry(line)
			if err != nil {
				continue // a torn line from a crash: skip it as Docker does
			}
			if lr.pastUntil(e) {
				done = true
				break
			}
			if lr.keep(e) && !emit(e) {
				f.Close()
				return
			}
		}
		if last {
			lr.cur, lr.rd, lr.pos = f, rd, pos
		} else {
			f.Close()
		}
	}
	for _, e := range ring {
		if !yield(e, nil) {
			return
		}
	}
	if !lr.opts.Follow || done {
		return
	}
	lr.follow(ctx, yield)
}

// follow yields new entries of the live file, moving to the next file when
// the writer rotates it away, until ctx is done, Stop is closed (after a
// last read) or Until passes.
func (lr *logReader) follow(ctx context.Context, yield func(LogEntry, error) bool) {
	interval := lr.opts.PollInterval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	stopping := false
	for {
		if lr.cur == nil {
			f, err := os.Open(lr.path)
			if err == nil {
				lr.cur, lr.rd, lr.pos, lr.partial = f, bufio.NewReaderSize(f, 32*1024), 0, nil
			} else if !errors.Is(err, os.ErrNotExist) {
				yield(LogEntry{}, fmt.Errorf("open log %s: %w", lr.path, err))
				return
			}
		}
		if lr.cur != nil {
			cont, ok := lr.drain(yield)
			if !ok || !cont {
				return
			}
			next, err := lr.rotatedTo()
			if err != nil {
				yield(LogEntry{}, err)
				return
			}
			if next != "" {
				// The writer moved on: what the old file holds is final.
				if cont, ok := lr.drain(yield); !ok || !cont {
					return
				}
				lr.cur.Close()
				f, err := os.Open(next)
				if err != nil {
					lr.cur = nil // gone already; start again from the live file
					continue
				}
				lr.cur, lr.rd, lr.pos, lr.partial = f, bufio.NewReaderSize(f, 32*1024), 0, nil
				continue
			}
		}
		if stopping {
			return
		}
		timer.Reset(interval)
		select {
		case <-ctx.Done():
			return
		case <-lr.opts.Stop:
			stopping = true // one more pass reads what was written before
		case <-timer.C:
		}
	}
}

// drain yields the complete entries of the current file up to its end. It
// returns cont=false when Until passed and ok=false when yield stopped.
func (lr *logReader) drain(yield func(LogEntry, error) bool) (cont, ok bool) {
	for {
		line, err := lr.rd.ReadBytes('\n')
		if err == io.EOF {
			lr.partial = append(lr.partial, line...)
			return true, true
		}
		if err != nil {
			return false, yield(LogEntry{}, fmt.Errorf("read log %s: %w", lr.path, err))
		}
		if len(lr.partial) > 0 {
			line = append(lr.partial, line...)
			lr.partial = nil
		}
		lr.pos += int64(len(line))
		e, err := parseEntry(line)
		if err != nil {
			continue
		}
		if lr.pastUntil(e) {
			return false, true
		}
		if lr.keep(e) && !yield(e, nil) {
			return false, false
		}
	}
}

// rotatedTo reports the file to continue with when the current one is no
// longer the live file: the file rotated right after it, or the oldest one
// left when the current file was rotated away entirely. A truncated live
// file (max-file 1) is read again from its start.
func (lr *logReader) rotatedTo() (string, error) {
	curInfo, err := lr.cur.Stat()
	if err != nil {
		return "", fmt.Errorf("stat log %s: %w", lr.path, err)
	}
	live, err := os.Stat(lr.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil // between the rename and the new file
		}
		return "", fmt.Errorf("stat log %s: %w", lr.path, err)
	}
	if os.SameFile(curInfo, live) {
		if live.Size() < lr.pos+int64(len(lr.partial)) {
			if _, err := lr.cur.Seek(0, io.SeekStart); err != nil {
				return "", fmt.Errorf("seek log %s: %w", lr.path, err)
			}
			lr.rd.Reset(lr.cur)
			lr.pos, lr.partial = 0, nil
		}
		return "", nil
	}
	files, err := stableListLog(lr.path)
	if err != nil {
		return "", err
	}
	for i, f := range files {
		if os.SameFile(f.info, curInfo) {
			if i+1 < len(files) {
				return files[i+1].name, nil
			}
			return "", nil // still the newest: the live file is not there yet
		}
	}
	if len(files) > 0 {
		return files[0].name, nil
	}
	return "", nil
}
