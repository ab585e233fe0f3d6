package apiserver

import (
	"fmt"
	"net/http"

	"github.com/moby/moby/api/types/volume"

	"github.com/berth-project/berth/internal/errdefs"
)

func (s *Server) volumeList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	vols, err := s.eng.VolumeList(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, volume.ListResponse{Volumes: vols, Warnings: []string{}})
}

func (s *Server) volumeCreate(w http.ResponseWriter, r *http.Request) {
	var req volume.CreateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Driver != "" && req.Driver != "local" {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("volume driver %q is not supported (only local)", req.Driver)))
		return
	}
	v, err := s.eng.VolumeCreate(r.Context(), req.Name, req.Labels, req.DriverOpts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) volumeInspect(w http.ResponseWriter, r *http.Request) {
	v, err := s.eng.VolumeInspect(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) volumeDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.eng.VolumeRemove(r.Context(), r.PathValue("name"), boolValue(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) volumePrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := s.eng.VolumePrune(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	if rep.VolumesDeleted == nil {
		rep.VolumesDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
}
