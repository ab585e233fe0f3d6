package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
)

// setPathStat sets the X-Docker-Container-Path-Stat header (base64 JSON).
func setPathStat(w http.ResponseWriter, st container.PathStat) {
	data, err := json.Marshal(st)
	if err == nil {
		w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(data))
	}
}

func pathParam(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", errdefs.InvalidArgument(fmt.Errorf("path parameter is required"))
	}
	return p, nil
}

// containerArchive answers HEAD (the path's stat) and GET (a tar of it).
func (s *Server) containerArchive(w http.ResponseWriter, r *http.Request) {
	p, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if r.Method == http.MethodHead {
		st, err := s.eng.ContainerStatPath(r.Context(), id, p)
		if err != nil {
			w.WriteHeader(StatusCode(err))
			return
		}
		setPathStat(w, st)
		w.WriteHeader(http.StatusOK)
		return
	}
	started := false
	err = s.eng.ContainerArchive(r.Context(), id, p, func(st container.PathStat) {
		setPathStat(w, st)
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		started = true
	}, w)
	if err != nil {
		if !started {
			writeError(w, err)
			return
		}
		s.log.Warn("archive", "id", id, "path", p, "err", err)
	}
}

func (s *Server) containerExtract(w http.ResponseWriter, r *http.Request) {
	p, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var opts []engine.ExtractOpt
	if boolValue(r, "noOverwriteDirNonDir") {
		opts = append(opts, engine.WithNoOverwriteDirNonDir())
	}
	if boolValue(r, "copyUIDGID") {
		opts = append(opts, engine.WithCopyUIDGID())
	}
	if err := s.eng.ContainerExtract(r.Context(), r.PathValue("id"), p, r.Body, opts...); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) containerExport(w http.ResponseWriter, r *http.Request) {
	started := false
	sw := &startOnWrite{w: w, start: func() {
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		started = true
	}}
	if err := s.eng.ContainerExport(r.Context(), r.PathValue("id"), sw); err != nil {
		if !started {
			writeError(w, err)
			return
		}
		s.log.Warn("export", "id", r.PathValue("id"), "err", err)
	}
	if !started {
		sw.start()
	}
}

// startOnWrite calls start before the first write, so an error before any
// output can still be answered with its status.
type startOnWrite struct {
	w       http.ResponseWriter
	start   func()
	started bool
}

func (s *startOnWrite) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	return s.w.Write(p)
}

func (s *Server) containerChanges(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.ContainerChanges(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ref := q.Get("repo")
	if ref != "" && q.Get("tag") != "" {
		ref += ":" + q.Get("tag")
	}
	opts := engine.CommitOptions{
		Ref: ref, Comment: q.Get("comment"), Author: q.Get("author"), Changes: q["changes"],
		Pause: q.Get("pause") == "" || boolValue(r, "pause"),
	}
	var cfg container.Config
	if r.ContentLength != 0 {
		if err := decodeBody(r, &cfg); err != nil {
			writeError(w, err)
			return
		}
		if cfg.Cmd != nil || cfg.Entrypoint != nil || cfg.Env != nil || cfg.Labels != nil || cfg.User != "" || cfg.WorkingDir != "" {
			opts.Config = &cfg
		}
	}
	id, err := s.eng.ContainerCommit(r.Context(), q.Get("container"), opts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.CommitResponse{ID: id.String()})
}
