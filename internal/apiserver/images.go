package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
)

// streamWriter writes a JSON progress stream, flushing every message.
// Once the first message is out the status is 200; later errors travel in
// the stream as {"errorDetail":..., "error":...}, as Docker does.
type streamWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	enc     *json.Encoder
	started bool
}

func newStream(w http.ResponseWriter) *streamWriter {
	return &streamWriter{w: w, enc: json.NewEncoder(w)}
}

func (s *streamWriter) start() {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
	}
}

// Send writes one message.
func (s *streamWriter) Send(m jsonstream.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start()
	_ = s.enc.Encode(m)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// streamMessage is jsonstream.Message plus the legacy top-level "error"
// string older clients read.
type streamMessage struct {
	jsonstream.Message
	ErrorMessage string `json:"error,omitempty"`
}

// Fail ends the stream with err: as an HTTP error if nothing was sent yet,
// else as an error message in the stream.
func (s *streamWriter) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		writeError(s.w, err)
		return
	}
	_ = s.enc.Encode(streamMessage{
		Message:      jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}},
		ErrorMessage: err.Error(),
	})
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) imageList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filters, err := parseFilters(q.Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if f := q.Get("filter"); f != "" { // API < 1.41 reference filter
		filters["reference"] = append(filters["reference"], f)
	}
	list, err := s.eng.Images(r.Context(), engine.ListOptions{
		All:     boolValue(r, "all"),
		Filters: filters,
		Digests: boolValue(r, "digests"),
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// imageCreate pulls (fromImage) or imports (fromSrc) an image.
func (s *Server) imageCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	platform, err := platformParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	st := newStream(w)
	if src := q.Get("fromSrc"); src != "" {
		ref := q.Get("repo")
		if ref != "" && q.Get("tag") != "" {
			ref += ":" + q.Get("tag")
		}
		opts := engine.ImportOptions{
			Ref:      ref,
			Changes:  q["changes"],
			Message:  q.Get("message"),
			Platform: platform,
		}
		var id digest.Digest
		if src == "-" {
			id, err = s.eng.Import(r.Context(), r.Body, opts)
		} else {
			// A URL: berthd downloads the tarball.
			id, err = s.eng.ImportURL(r.Context(), src, opts, st.Send)
		}
		if err != nil {
			st.Fail(err)
			return
		}
		st.Send(jsonstream.Message{Status: id.String()})
		return
	}
	from := q.Get("fromImage")
	if from == "" {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("fromImage or fromSrc is required")))
		return
	}
	ref := from
	if tag := q.Get("tag"); tag != "" {
		if strings.Contains(tag, ":") { // a digest
			ref = from + "@" + tag
		} else {
			ref = from + ":" + tag
		}
	}
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !hasTagOrDigest(ref) {
		// No tag anywhere: every tag of the repository, as Docker does
		// for docker pull --all-tags (the client then sends no tag).
		if _, err := s.eng.PullAllTags(r.Context(), ref, engine.PullOptions{Platform: platform, Auth: auth, Progress: st.Send}); err != nil {
			s.log.Info("pull failed", "repository", ref, "err", err)
			st.Fail(err)
		}
		return
	}
	if _, err := s.eng.Pull(r.Context(), ref, engine.PullOptions{Platform: platform, Auth: auth, Progress: st.Send}); err != nil {
		s.log.Info("pull failed", "ref", ref, "err", err)
		st.Fail(err)
	}
}

func (s *Server) imageLoad(w http.ResponseWriter, r *http.Request) {
	platform, err := platformParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	st := newStream(w)
	quiet := boolValue(r, "quiet")
	err = s.eng.Load(r.Context(), r.Body, engine.LoadOptions{Platform: platform, Progress: func(m jsonstream.Message) {
		if quiet && m.Stream == "" {
			return
		}
		st.Send(m)
	}})
	if err != nil {
		st.Fail(err)
		return
	}
	st.start()
}

func (s *Server) imageSaveMany(w http.ResponseWriter, r *http.Request) {
	s.imageSave(w, r, r.URL.Query()["names"])
}

func (s *Server) imageSave(w http.ResponseWriter, r *http.Request, names []string) {
	if len(names) == 0 {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("no image names given")))
		return
	}
	// Resolve first so that a missing image is a 404, not a broken tar.
	plan, err := s.eng.PlanSave(r.Context(), names)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := s.eng.Save(r.Context(), w, plan); err != nil {
		s.log.Error("save images", "names", names, "err", err)
	}
}

func (s *Server) imagePrune(w http.ResponseWriter, r *http.Request) {
	filters, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := s.eng.Prune(r.Context(), filters)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// imageByName dispatches /images/{name}/{action} and DELETE /images/{name}.
func (s *Server) imageByName(w http.ResponseWriter, r *http.Request) {
	rest := r.PathValue("rest")
	name, action := rest, ""
	if i := strings.LastIndex(rest, "/"); i > 0 && r.Method != http.MethodDelete {
		switch rest[i+1:] {
		case "json", "history", "tag", "push", "get":
			name, action = rest[:i], rest[i+1:]
		}
	}
	switch {
	case r.Method == http.MethodGet && action == "json":
		s.imageInspect(w, r, name)
	case r.Method == http.MethodGet && action == "history":
		h, err := s.eng.History(r.Context(), name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h)
	case r.Method == http.MethodPost && action == "tag":
		target := r.URL.Query().Get("repo")
		if t := r.URL.Query().Get("tag"); t != "" {
			target += ":" + t
		}
		if err := s.eng.Tag(r.Context(), name, target); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPost && action == "push":
		s.imagePush(w, r, name)
	case r.Method == http.MethodGet && action == "get":
		s.imageSave(w, r, []string{name})
	case r.Method == http.MethodDelete && action == "":
		resp, err := s.eng.Remove(r.Context(), name, engine.RemoveOptions{Force: boolValue(r, "force"), NoPrune: boolValue(r, "noprune")})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	default:
		writeError(w, errdefs.NotFound(fmt.Errorf("page not found")))
	}
}

// imageInspectResponse is an image's inspect as Docker sends it at berthd's
// API version (1.47): with Parent and DockerVersion, which
// Docker sends empty for an image pulled, loaded or built by other tools
// (Berth records no parent image and no Docker version, so both are
// empty), Comment and Author even when empty, and Config in the shape of a
// container's config.
type imageInspectResponse struct {
	imagetypes.InspectResponse
	Parent        string
	Comment       string
	DockerVersion string
	Author        string
	Config        *legacyImageConfig
}

// legacyImageConfig is the image config as a container config, the shape
// of Docker's image inspect at that version: the fields the image format
// lacks are sent empty, and those it has are sent even when empty (null,
// "") rather than left out.
type legacyImageConfig struct {
	*dockerspec.DockerOCIImageConfig
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
}

func newImageInspectResponse(in imagetypes.InspectResponse) imageInspectResponse {
	out := imageInspectResponse{InspectResponse: in, Comment: in.Comment, Author: in.Author}
	if c := in.Config; c != nil {
		out.Config = &legacyImageConfig{
			DockerOCIImageConfig: c,
			User:                 c.User,
			Env:                  c.Env,
			Cmd:                  c.Cmd,
			Volumes:              c.Volumes,
			WorkingDir:           c.WorkingDir,
			Entrypoint:           c.Entrypoint,
			OnBuild:              c.OnBuild,
			Labels:               c.Labels,
		}
	}
	return out
}

func (s *Server) imageInspect(w http.ResponseWriter, r *http.Request, name string) {
	resp, err := s.eng.Inspect(r.Context(), name)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newImageInspectResponse(resp))
}

func (s *Server) imagePush(w http.ResponseWriter, r *http.Request, name string) {
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	ref := name
	if tag := r.URL.Query().Get("tag"); tag != "" {
		ref = name + ":" + tag
	}
	platform, err := platformParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	st := newStream(w)
	if err := s.eng.Push(r.Context(), ref, engine.PushOptions{Auth: auth, Progress: st.Send, Platform: platform}); err != nil {
		s.log.Info("push failed", "ref", ref, "err", err)
		st.Fail(err)
	}
}

// hasTagOrDigest reports whether an image name carries a tag or digest
// (a colon after the last slash, or an @).
func hasTagOrDigest(name string) bool {
	if strings.Contains(name, "@") {
		return true
	}
	last := name[strings.LastIndex(name, "/")+1:]
	return strings.Contains(last, ":")
}
