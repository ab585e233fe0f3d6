package shim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// maxLogLine is where a line without a newline is cut into a partial entry,
// as Docker's log copier does (16 KiB).
const maxLogLine = 16 * 1024

// LogWriter writes a container's output in Docker's json-file format, one
// JSON object per line: {"log":"...","stream":"stdout","time":"RFC3339Nano"}.
// When the file would grow past MaxSize it is rotated into path.1 ..
// path.(MaxFiles-1); like Docker, MaxFiles counts the live file, and a
// MaxFiles of 1 truncates the file instead. Entries of one Write are written
// with one write(2), so a reader never sees them interleaved with the other
// stream's.
type LogWriter struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	batch    []byte
	now      func() time.Time
}

// NewLogWriter opens (appending) or creates the json-file log at path.
// maxSize <= 0 disables rotation; maxFiles < 1 counts as 1.
func NewLogWriter(path string, maxSize int64, maxFiles int) (*LogWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log %s: %w", path, err)
	}
	if maxFiles < 1 {
		maxFiles = 1
	}
	return &LogWriter{path: path, maxSize: maxSize, maxFiles: maxFiles, f: f, size: fi.Size(), now: time.Now}, nil
}

// Close closes the log file.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// writeLines appends one entry per element of lines, all stamped t, and
// writes them out.
func (w *LogWriter) writeLines(stream string, t time.Time, lines [][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("write log %s: closed", w.path)
	}
	ts := t.UTC().Format(time.RFC3339Nano)
	for _, l := range lines {
		start := len(w.batch)
		w.batch = appendEntry(w.batch, l, stream, ts)
		n := int64(len(w.batch) - start)
		if w.maxSize > 0 && w.size+int64(start)+n > w.maxSize && w.size+int64(start) > 0 {
			entry := append([]byte(nil), w.batch[start:]...)
			w.batch = w.batch[:start]
			if err := w.flush(); err != nil {
				return err
			}
			if err := w.rotate(); err != nil {
				return err
			}
			w.batch = append(w.batch, entry...)
		}
	}
	return w.flush()
}

func (w *LogWriter) flush() error {
	if len(w.batch) == 0 {
		return nil
	}
	n, err := w.f.Write(w.batch)
	w.size += int64(n)
	w.batch = w.batch[:0]
	if cap(w.batch) > 64*1024 {
		w.batch = nil
	}
	if err != nil {
		return fmt.Errorf("write log %s: %w", w.path, err)
	}
	return nil
}

func (w *LogWriter) rotate() error {
	if w.maxFiles <= 1 {
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("truncate log %s: %w", w.path, err)
		}
		w.size = 0
		return nil
	}
	if err := os.Remove(rotatedName(w.path, w.maxFiles-1)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate log %s: %w", w.path, err)
	}
	for i := w.maxFiles - 2; i >= 1; i-- {
		if err := os.Rename(rotatedName(w.path, i), rotatedName(w.path, i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate log %s: %w", w.path, err)
		}
	}
	if err := os.Rename(w.path, rotatedName(w.path, 1)); err != nil {
		return fmt.Errorf("rotate log %s: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s after rotation: %w", w.path, err)
	}
	w.f.Close()
	w.f = f
	w.size = 0
	return nil
}

func rotatedName(path string, i int) string { return path + "." + strconv.Itoa(i) }

// appendEntry appends one json-file line.
func appendEntry(b, line []byte, stream, ts string) []byte {
	b = append(b, `{"log":`...)
	b = appendJSONString(b, line)
	b = append(b, `,"stream":"`...)
	b = append(b, stream...)
	b = append(b, `","time":"`...)
	b = append(b, ts...)
	return append(b, "\"}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (including <, > and &, as Docker's json-file does) and replacing
// invalid UTF-8 with U+FFFD.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// lineSplitter turns one stream's output into log entries: a line per
// newline, and a partial entry (no trailing newline) per 16 KiB without one.
type lineSplitter struct {
	w       *LogWriter
	stream  string
	pending []byte
	lines   [][]byte
}

func newLineSplitter(w *LogWriter, stream string) *lineSplitter {
	return &lineSplitter{w: w, stream: stream}
}

// Write logs every complete line of p (with what was pending before).
func (s *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	s.lines = s.lines[:0]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(s.pending)
			if len(p) < room {
				s.pending = append(s.pending, p...)
				break
			}
			line := append(append([]byte(nil), s.pending...), p[:room]...)
			s.lines = append(s.lines, line)
			s.pending = s.pending[:0]
			p = p[room:]
			continue
		}
		if len(s.pending) > 0 || i+1 > maxLogLine {
			line := append(append([]byte(nil), s.pending...), p[:i+1]...)
			s.pending = s.pending[:0]
			for len(line) > maxLogLine {
				s.lines = append(s.lines, line[:maxLogLine])
				line = line[maxLogLine:]
			}
			s.lines = append(s.lines, line)
		} else {
			s.lines = append(s.lines, p[:i+1])
		}
		p = p[i+1:]
	}
	if len(s.lines) == 0 {
		return n, nil
	}
	err := s.w.writeLines(s.stream, s.w.now(), s.lines)
	s.lines = s.lines[:0]
	return n, err
}

// Flush logs what is pending without a newline (at the end of the stream).
func (s *lineSplitter) Flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	line := append([]byte(nil), s.pending...)
	s.pending = s.pending[:0]
	return s.w.writeLines(s.stream, s.w.now(), [][]byte{line})
}
