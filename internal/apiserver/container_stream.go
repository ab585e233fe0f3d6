package apiserver

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
)

// The stream kinds of Docker's multiplexed (stdcopy) framing.
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
)

// muxWriter frames writes for one stream of a multiplexed connection: an
// 8-byte header (stream kind, three zero bytes, big-endian length), then
// the bytes. Writers of one connection share a mutex so frames never
// interleave.
type muxWriter struct {
	mu   *sync.Mutex
	w    io.Writer
	kind byte
}

func (m *muxWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var hdr [8]byte
	hdr[0] = m.kind
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
	if _, err := m.w.Write(hdr[:]); err != nil {
		return 0, err
	}
	n, err := m.w.Write(p)
	if f, ok := m.w.(interface{ Flush() error }); ok && err == nil {
		err = f.Flush()
	}
	return n, err
}

// lockedWriter serialises raw (tty) writes and flushes each.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(p)
	if f, ok := l.w.(interface{ Flush() error }); ok && err == nil {
		err = f.Flush()
	}
	if f, ok := l.w.(http.Flusher); ok && err == nil {
		f.Flush()
	}
	return n, err
}

// streamWriters returns the stdout and stderr writers over w: one raw
// stream for a terminal, else multiplexed frames.
func streamWriters(w io.Writer, tty bool) (stdout, stderr io.Writer) {
	mu := &sync.Mutex{}
	if tty {
		lw := &lockedWriter{mu: mu, w: w}
		return lw, lw
	}
	return &muxWriter{mu: mu, w: w, kind: streamStdout}, &muxWriter{mu: mu, w: w, kind: streamStderr}
}

// streamContentType is the media type of an attach or logs stream.
func streamContentType(r *http.Request, tty bool) string {
	if !tty && compareVersions(requestVersion(r), "1.42") >= 0 {
		return "application/vnd.docker.multiplexed-stream"
	}
	return "application/vnd.docker.raw-stream"
}

// hijack takes over the connection for an attach or exec stream and
// answers as Docker does: 101 UPGRADED when the client asked to upgrade to
// "tcp", else 200 OK, followed by the raw stream.
func hijack(w http.ResponseWriter, r *http.Request, contentType string) (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack connection: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	if strings.EqualFold(r.Header.Get("Upgrade"), "tcp") || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		fmt.Fprintf(brw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", contentType)
	} else {
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n", contentType)
	}
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("write stream header: %w", err)
	}
	return conn, brw, nil
}

// flushWriter writes through to a hijacked connection's buffer and
// flushes it.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// parseTime reads Docker's time parameters: Unix seconds with an optional
// fraction ("1700000000.5"), RFC 3339, or a duration before now ("10m").
func parseTime(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	sec, frac, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, errdefs.InvalidArgument(fmt.Errorf("invalid time %q", v))
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, errdefs.InvalidArgument(fmt.Errorf("invalid time %q", v))
		}
	}
	return time.Unix(s, ns), nil
}
