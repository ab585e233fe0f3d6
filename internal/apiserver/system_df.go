package apiserver

import (
	"fmt"
	"net/http"

	"github.com/moby/moby/api/types/container"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/volume"

	"github.com/berth-project/berth/internal/errdefs"
)

// diskUsage is GET /system/df's answer as API versions before 1.52 (the
// docker CLI up to 28) read it.
type diskUsage struct {
	LayersSize int64                `json:"LayersSize,omitempty"`
	Images     []imagetypes.Summary `json:"Images"`
	Containers []container.Summary  `json:"Containers"`
	Volumes    []volume.Volume      `json:"Volumes"`
	BuildCache []struct{}           `json:"BuildCache"`
}

// systemDF answers `docker system df`; ?type= (API 1.42) narrows it to
// container, image, volume or build-cache.
func (s *Server) systemDF(w http.ResponseWriter, r *http.Request) {
	want := map[string]bool{}
	for _, t := range r.URL.Query()["type"] {
		switch t {
		case "container", "image", "volume", "build-cache":
			want[t] = true
		default:
			writeError(w, errdefs.InvalidArgument(fmt.Errorf("unknown object type: %s", t)))
			return
		}
	}
	all := len(want) == 0
	du, err := s.eng.DiskUsage(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := diskUsage{}
	if all || want["image"] {
		out.LayersSize, out.Images = du.LayersSize, du.Images
	}
	if all || want["container"] {
		out.Containers = du.Containers
	}
	if all || want["volume"] {
		out.Volumes = du.Volumes
	}
	if all || want["build-cache"] {
		// Berth keeps no build cache.
		out.BuildCache = []struct{}{}
	}
	writeJSON(w, http.StatusOK, out)
}

// networksPrune answers the network step of `docker system prune`: Berth
// has no user-defined networks, so there is none to remove.
func (s *Server) networksPrune(w http.ResponseWriter, r *http.Request) {
	if _, err := parseFilters(r.URL.Query().Get("filters")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"NetworksDeleted": {}})
}

// buildPrune answers the build-cache step of `docker system prune` and
// `docker builder prune`: Berth keeps no build cache.
func (s *Server) buildPrune(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"CachesDeleted": []string{}, "SpaceReclaimed": 0})
}
