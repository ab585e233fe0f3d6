// Package apiserver serves the Docker Engine API over HTTP for berthd. It
// owns routing (with the optional /v1.NN version prefix), API version
// negotiation, request decoding, response encoding (including the JSON
// progress streams), and the one place where Berth's error classes become
// HTTP status codes. What the API does is the engine's business; this
// package only translates.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
)

// The API versions berthd speaks. Clients asking for a newer version than
// APIVersion are refused (as dockerd does); clients negotiating from /_ping
// settle on APIVersion.
const (
	APIVersion    = "1.47"
	MinAPIVersion = "1.24"
)

// Identity describes the daemon in /version and /info.
type Identity struct {
	ID            string // stable daemon ID
	Name          string // host name
	ServerVersion string // Berth version
	GitCommit     string
	DataRoot      string
	Debug         bool
	// InsecureRegistries and Mirrors as configured (CIDRs or host[:port]).
	InsecureRegistries []string
	Mirrors            []string
}

// Server is the Docker Engine API handler.
type Server struct {
	eng     *engine.Engine
	id      Identity
	log     *slog.Logger
	mux     *http.ServeMux
	started time.Time
}

// New returns the API handler over eng.
func New(eng *engine.Engine, id Identity, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{eng: eng, id: id, log: log, mux: http.NewServeMux(), started: time.Now()}
	s.routes()
	return s
}

type ctxKey int

const versionKey ctxKey = 0

var versionPrefix = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

// ServeHTTP strips and checks the /v1.NN prefix, then dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	version := APIVersion
	if m := versionPrefix.FindStringSubmatch(r.URL.Path); m != nil {
		version = m[1]
		if compareVersions(version, APIVersion) > 0 {
			writeError(w, errdefs.InvalidArgument(fmt.Errorf("client version %s is too new. Maximum supported API version is %s", version, APIVersion)))
			return
		}
		if compareVersions(version, MinAPIVersion) < 0 {
			writeError(w, errdefs.InvalidArgument(fmt.Errorf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", version, MinAPIVersion)))
			return
		}
		r2 := r.Clone(context.WithValue(r.Context(), versionKey, version))
		r2.URL.Path = m[2]
		r2.URL.RawPath = ""
		r = r2
	} else {
		r = r.WithContext(context.WithValue(r.Context(), versionKey, version))
	}
	w.Header().Set("Server", "Berth/"+s.id.ServerVersion+" (linux)")
	w.Header().Set("Api-Version", APIVersion)
	w.Header().Set("Ostype", "linux")
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r)
	s.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "version", version, "status", sw.status, "duration", time.Since(start))
}

// requestVersion is the API version the request was made for.
func requestVersion(r *http.Request) string {
	if v, ok := r.Context().Value(versionKey).(string); ok {
		return v
	}
	return APIVersion
}

// compareVersions compares dotted API versions numerically.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// StatusCode maps an error's class to the HTTP status Docker uses for it.
func StatusCode(err error) int {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrConflict), errors.Is(err, errdefs.ErrAlreadyExists):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrPermission):
		return http.StatusForbidden
	case errors.Is(err, errdefs.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errdefs.ErrFailedPrecond):
		return http.StatusPreconditionFailed
	}
	return http.StatusInternalServerError
}

// writeError answers with Docker's error body {"message": ...}.
func writeError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(StatusCode(err))
	_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// boolValue reads a Docker boolean query parameter ("1", "true", "True").
func boolValue(r *http.Request, name string) bool {
	v := strings.ToLower(strings.TrimSpace(r.URL.Query().Get(name)))
	return v != "" && v != "0" && v != "false" && v != "no" && v != "none"
}

// parseFilters decodes the filters query parameter in either of Docker's
// encodings: {"key":{"value":true}} or the older {"key":["value"]}.
func parseFilters(raw string) (map[string][]string, error) {
	out := map[string][]string{}
	if raw == "" {
		return out, nil
	}
	var modern map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &modern); err == nil {
		for k, vs := range modern {
			for v, on := range vs {
				if on {
					out[k] = append(out[k], v)
				}
			}
		}
		return out, nil
	}
	var legacy map[string][]string
	if err := json.Unmarshal([]byte(raw), &legacy); err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("invalid filters %q: %w", raw, err))
	}
	return legacy, nil
}

// platformParam reads a platform query parameter, given either as
// "os/arch[/variant]" or (API 1.46+) as a JSON OCI platform object.
func platformParam(r *http.Request) (string, error) {
	v := strings.TrimSpace(r.URL.Query().Get("platform"))
	if !strings.HasPrefix(v, "{") {
		return v, nil
	}
	var p struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return "", errdefs.InvalidArgument(fmt.Errorf("invalid platform %q: %w", v, err))
	}
	if p.OS == "" || p.Architecture == "" {
		return "", nil
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s, nil
}
