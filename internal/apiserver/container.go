package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/shim"
)

// containerRoutes registers the container, exec, volume and event routes.
func (s *Server) containerRoutes(m *http.ServeMux) {
	m.HandleFunc("POST /containers/create", s.containerCreate)
	m.HandleFunc("GET /containers/json", s.containerList)
	m.HandleFunc("POST /containers/prune", s.containerPrune)
	m.HandleFunc("GET /containers/{id}/json", s.containerInspect)
	m.HandleFunc("POST /containers/{id}/start", s.containerStart)
	m.HandleFunc("POST /containers/{id}/stop", s.containerStop)
	m.HandleFunc("POST /containers/{id}/restart", s.containerRestart)
	m.HandleFunc("POST /containers/{id}/kill", s.containerKill)
	m.HandleFunc("POST /containers/{id}/wait", s.containerWait)
	m.HandleFunc("DELETE /containers/{id}", s.containerDelete)
	m.HandleFunc("POST /containers/{id}/attach", s.containerAttach)
	m.HandleFunc("GET /containers/{id}/logs", s.containerLogs)
	m.HandleFunc("POST /containers/{id}/resize", s.containerResize)
	m.HandleFunc("POST /containers/{id}/pause", s.containerPause)
	m.HandleFunc("POST /containers/{id}/unpause", s.containerUnpause)
	m.HandleFunc("POST /containers/{id}/rename", s.containerRename)
	m.HandleFunc("POST /containers/{id}/exec", s.execCreate)
	m.HandleFunc("GET /containers/{id}/top", s.containerTop)
	m.HandleFunc("GET /containers/{id}/archive", s.containerArchive) // and HEAD
	m.HandleFunc("PUT /containers/{id}/archive", s.containerExtract)
	m.HandleFunc("GET /containers/{id}/export", s.containerExport)
	m.HandleFunc("GET /containers/{id}/changes", s.containerChanges)
	m.HandleFunc("POST /commit", s.commit)
	m.HandleFunc("GET /containers/{id}/stats", s.containerStats)
	m.HandleFunc("POST /containers/{id}/update", s.containerUpdate)
	m.HandleFunc("POST /exec/{id}/start", s.execStart)
	m.HandleFunc("POST /exec/{id}/resize", s.execResize)
	m.HandleFunc("GET /exec/{id}/json", s.execInspect)
	m.HandleFunc("GET /events", s.events)
	m.HandleFunc("GET /volumes", s.volumeList)
	m.HandleFunc("POST /volumes/create", s.volumeCreate)
	m.HandleFunc("POST /volumes/prune", s.volumePrune)
	m.HandleFunc("GET /volumes/{name}", s.volumeInspect)
	m.HandleFunc("DELETE /volumes/{name}", s.volumeDelete)
}

// decodeBody decodes a JSON request body into v; an empty body leaves v.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	err := json.NewDecoder(r.Body).Decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		return errdefs.InvalidArgument(fmt.Errorf("invalid JSON body: %w", err))
	}
	return nil
}

func (s *Server) containerCreate(w http.ResponseWriter, r *http.Request) {
	var req container.CreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Config == nil {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("config cannot be empty in order to create a container")))
		return
	}
	warnings, err := s.eng.CheckCreate(req.Config, req.HostConfig, req.NetworkingConfig)
	if err != nil {
		writeError(w, err)
		return
	}
	id, err := s.eng.ContainerCreate(r.Context(), engine.CreateOptions{
		Name: r.URL.Query().Get("name"), Config: req.Config, HostConfig: req.HostConfig,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if warnings == nil {
		warnings = []string{}
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: id, Warnings: warnings})
}

func (s *Server) containerList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilters(q.Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	out, err := s.eng.ContainerList(r.Context(), engine.ContainerListOptions{
		All: boolValue(r, "all"), Size: boolValue(r, "size"), Limit: limit, Filters: f,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) containerInspect(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.ContainerInspect(r.Context(), r.PathValue("id"), boolValue(r, "size"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, legacyInspect(out))
}

// noContent answers 204, or 304 when the engine found nothing to do.
func noContent(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, engine.ErrNotModified):
		w.WriteHeader(http.StatusNotModified)
	case err != nil:
		writeError(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) containerStart(w http.ResponseWriter, r *http.Request) {
	noContent(w, s.eng.ContainerStart(r.Context(), r.PathValue("id")))
}

// stopParams reads the signal and t (timeout seconds) parameters.
func stopParams(r *http.Request) (string, *int, error) {
	q := r.URL.Query()
	var timeout *int
	if v := q.Get("t"); v != "" {
		t, err := strconv.Atoi(v)
		if err != nil {
			return "", nil, errdefs.InvalidArgument(fmt.Errorf("invalid timeout %q: %w", v, err))
		}
		timeout = &t
	}
	return q.Get("signal"), timeout, nil
}

func (s *Server) containerStop(w http.ResponseWriter, r *http.Request) {
	sig, timeout, err := stopParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	noContent(w, s.eng.ContainerStop(r.Context(), r.PathValue("id"), sig, timeout))
}

func (s *Server) containerRestart(w http.ResponseWriter, r *http.Request) {
	sig, timeout, err := stopParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	err = s.eng.ContainerRestart(r.Context(), r.PathValue("id"), sig, timeout)
	if errors.Is(err, engine.ErrNotModified) {
		err = nil
	}
	noContent(w, err)
}

func (s *Server) containerKill(w http.ResponseWriter, r *http.Request) {
	noContent(w, s.eng.ContainerKill(r.Context(), r.PathValue("id"), r.URL.Query().Get("signal")))
}

// containerWait answers 200 at once and writes the exit status when the
// condition is met, as Docker does, so clients know the wait is in place.
func (s *Server) containerWait(w http.ResponseWriter, r *http.Request) {
	ch, err := s.eng.ContainerWaitChan(r.Context(), r.PathValue("id"), r.URL.Query().Get("condition"))
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	code, ok := <-ch
	if !ok {
		return
	}
	_ = json.NewEncoder(w).Encode(container.WaitResponse{StatusCode: int64(code)})
}

func (s *Server) containerDelete(w http.ResponseWriter, r *http.Request) {
	if boolValue(r, "link") {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("links are not supported")))
		return
	}
	noContent(w, s.eng.ContainerRemove(r.Context(), r.PathValue("id"), boolValue(r, "force"), boolValue(r, "v")))
}

func (s *Server) containerResize(w http.ResponseWriter, r *http.Request) {
	h, w2, err := sizeParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.eng.ContainerResize(r.Context(), r.PathValue("id"), h, w2); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func sizeParams(r *http.Request) (uint16, uint16, error) {
	q := r.URL.Query()
	h, err1 := strconv.ParseUint(q.Get("h"), 10, 16)
	wd, err2 := strconv.ParseUint(q.Get("w"), 10, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, errdefs.InvalidArgument(fmt.Errorf("invalid terminal size h=%q w=%q", q.Get("h"), q.Get("w")))
	}
	return uint16(h), uint16(wd), nil
}

func (s *Server) containerPause(w http.ResponseWriter, r *http.Request) {
	noContent(w, s.eng.ContainerPause(r.Context(), r.PathValue("id")))
}

func (s *Server) containerUnpause(w http.ResponseWriter, r *http.Request) {
	noContent(w, s.eng.ContainerUnpause(r.Context(), r.PathValue("id")))
}

func (s *Server) containerRename(w http.ResponseWriter, r *http.Request) {
	noContent(w, s.eng.ContainerRename(r.Context(), r.PathValue("id"), r.URL.Query().Get("name")))
}

func (s *Server) containerPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := s.eng.ContainerPrune(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tty, err := s.eng.ContainerAttachable(id)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	// The client starts the container as soon as it has our answer: hold
	// that start until the attach is registered.
	release, err := s.eng.ContainerAttachReserve(id)
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	conn, brw, err := hijack(w, r, streamContentType(r, tty))
	if err != nil {
		s.log.Warn("attach", "id", id, "err", err)
		return
	}
	defer conn.Close()
	out := flushWriter{brw.Writer}
	stdout, stderr := streamWriters(out, tty)
	opts := engine.AttachOptions{Logs: boolValue(r, "logs"), Stream: boolValue(r, "stream"), DetachKeys: q.Get("detachKeys"), Registered: release}
	if boolValue(r, "stdin") {
		opts.Stdin = brw.Reader
	}
	if boolValue(r, "stdout") {
		opts.Stdout = stdout
	}
	if boolValue(r, "stderr") {
		opts.Stderr = stderr
	}
	// The request's context ends when the client half-closes its side
	// (end of stdin); the stream lives until the output ends or a write
	// to the client fails.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	if err := s.eng.ContainerAttach(ctx, id, opts); err != nil && !errors.Is(err, engine.ErrDetached) {
		s.log.Debug("attach ended", "id", id, "err", err)
		// A container removed before it ran (its start failed, and it
		// was to be removed) ends the stream quietly, as Docker's: the
		// client has the start's error to show.
		if !tty && !errdefs.IsNotFound(err) {
			fmt.Fprintf(stderr, "Error: %v\n", err)
		}
	}
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wantOut, wantErr := boolValue(r, "stdout"), boolValue(r, "stderr")
	if !wantOut && !wantErr {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("Bad parameters: you must choose at least one stream")))
		return
	}
	now := time.Now()
	since, err := parseTime(q.Get("since"), now)
	if err != nil {
		writeError(w, err)
		return
	}
	until, err := parseTime(q.Get("until"), now)
	if err != nil {
		writeError(w, err)
		return
	}
	// As Docker: a tail that is not a number means all of the log.
	tail := -1
	if n, err := strconv.Atoi(q.Get("tail")); err == nil {
		tail = n
	}
	tty, entries, err := s.eng.ContainerLogs(r.Context(), r.PathValue("id"), engine.LogsOptions{
		Follow: boolValue(r, "follow"), Since: since, Until: until, Tail: tail,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", streamContentType(r, tty))
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	stdout, stderr := streamWriters(&lockedWriter{mu: new(sync.Mutex), w: w}, tty)
	timestamps, details := boolValue(r, "timestamps"), boolValue(r, "details")
	for e, err := range entries {
		if err != nil {
			s.log.Debug("read logs", "id", r.PathValue("id"), "err", err)
			return
		}
		dst := stdout
		if e.Stream == "stderr" {
			if !wantErr {
				continue
			}
			dst = stderr
		} else if !wantOut {
			continue
		}
		if _, err := dst.Write(logLine(e, timestamps, details)); err != nil {
			return
		}
	}
}

// logLine renders a log entry as Docker's logs endpoint does: with details,
// the entry's attributes (Berth's json-file log keeps none) and a space before
// the line; with timestamps, the time in RFC 3339 with nanoseconds padded to
// nine digits and a space before that.
func logLine(e shim.LogEntry, timestamps, details bool) []byte {
	var b []byte
	if timestamps {
		b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
		b = append(b, ' ')
	}
	if details {
		b = append(b, ' ')
	}
	return append(b, e.Line...)
}

func (s *Server) execCreate(w http.ResponseWriter, r *http.Request) {
	var req container.ExecCreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	id, err := s.eng.ExecCreate(r.Context(), r.PathValue("id"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: id})
}

func (s *Server) execStart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req container.ExecStartRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	tty, err := s.eng.ExecTty(id)
	if err != nil {
		writeError(w, err)
		return
	}
	opts := engine.ExecStartOptions{Detach: req.Detach}
	if req.ConsoleSize != nil {
		opts.Height, opts.Width = uint16(req.ConsoleSize[0]), uint16(req.ConsoleSize[1])
	}
	if req.Detach {
		if err := s.eng.ExecStart(r.Context(), id, opts); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	conn, brw, err := hijack(w, r, streamContentType(r, tty))
	if err != nil {
		s.log.Warn("exec start", "id", id, "err", err)
		return
	}
	defer conn.Close()
	opts.Stdout, opts.Stderr = streamWriters(flushWriter{brw.Writer}, tty)
	opts.Stdin = brw.Reader
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context())) // as in containerAttach
	defer cancel()
	if err := s.eng.ExecStart(ctx, id, opts); err != nil && !errors.Is(err, engine.ErrDetached) {
		s.log.Debug("exec ended", "id", id, "err", err)
		// As Docker: the reason is written to the exec's output stream
		// (its status, 126, is in the exec's inspect).
		fmt.Fprintf(opts.Stdout, "%v\r\n", err)
	}
}

func (s *Server) execResize(w http.ResponseWriter, r *http.Request) {
	h, wd, err := sizeParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.eng.ExecResize(r.Context(), r.PathValue("id"), h, wd); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) execInspect(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.ExecInspect(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// eventFilters are the filter keys Docker's events endpoint accepts.
var eventFilters = map[string]bool{
	"config": true, "container": true, "daemon": true, "event": true, "image": true, "label": true,
	"network": true, "node": true, "plugin": true, "scope": true, "secret": true, "service": true,
	"type": true, "volume": true,
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now()
	since, err := parseTime(q.Get("since"), now)
	if err != nil {
		writeError(w, err)
		return
	}
	until, err := parseTime(q.Get("until"), now)
	if err != nil {
		writeError(w, err)
		return
	}
	f, err := parseFilters(q.Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	for k := range f {
		if !eventFilters[k] {
			writeError(w, errdefs.InvalidArgument(fmt.Errorf("invalid filter '%s'", k)))
			return
		}
	}
	past, live := s.eng.Events(r.Context(), since, until, engine.EventFilter(f))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := func() {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	for _, m := range past {
		_ = enc.Encode(legacyEvent(m))
	}
	flush()
	if live == nil {
		return
	}
	for m := range live {
		if err := enc.Encode(legacyEvent(m)); err != nil {
			return
		}
		flush()
	}
}

// eventMessage is an event as API versions before 1.52 send it: with the
// deprecated status, id and from fields Docker still fills for container
// and image events, which `docker events --format '{{.Status}}'` reads.
type eventMessage struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

func legacyEvent(m events.Message) eventMessage {
	out := eventMessage{Message: m}
	switch m.Type {
	case events.ContainerEventType:
		out.Status, out.ID, out.From = string(m.Action), m.Actor.ID, m.Actor.Attributes["image"]
	case events.ImageEventType:
		out.Status, out.ID = string(m.Action), m.Actor.ID
	}
	return out
}

func (s *Server) containerTop(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.ContainerTop(r.Context(), r.PathValue("id"), r.URL.Query().Get("ps_args"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) containerStats(w http.ResponseWriter, r *http.Request) {
	stream := true
	if v := r.URL.Query().Get("stream"); v != "" {
		stream = boolValue(r, "stream")
	}
	started := false
	enc := json.NewEncoder(w)
	err := s.eng.ContainerStats(r.Context(), r.PathValue("id"), stream, boolValue(r, "one-shot"), func(st container.StatsResponse) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	})
	if err != nil && !started {
		writeError(w, err)
	}
}

func (s *Server) containerUpdate(w http.ResponseWriter, r *http.Request) {
	var upd container.UpdateConfig
	if err := decodeBody(r, &upd); err != nil {
		writeError(w, err)
		return
	}
	warnings, err := s.eng.ContainerUpdate(r.Context(), r.PathValue("id"), upd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, container.UpdateResponse{Warnings: warnings})
}
