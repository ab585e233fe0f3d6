package engine

import (
	"context"
	"strings"

	"github.com/moby/moby/api/types/container"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/volume"
)

// DiskUsage is what `docker system df` reports: the bytes of the unpacked
// layers (each counted once), the images with how many containers use them
// and how many of their bytes other images share, every container with the
// size of its writable layer, and the volumes with their size and users.
type DiskUsage struct {
	LayersSize int64
	Images     []imagetypes.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
}

// DiskUsage gathers the disk usage of images, containers and volumes.
func (e *Engine) DiskUsage(ctx context.Context) (DiskUsage, error) {
	var du DiskUsage
	imgs, err := e.Images(ctx, ListOptions{All: true})
	if err != nil {
		return du, err
	}
	views, err := e.views(ctx)
	if err != nil {
		return du, err
	}
	// A layer is named by its chain (the diff IDs up to it), so the same
	// layer under two images is counted once.
	type layer struct{ size int64 }
	layers := map[string]layer{}
	users := map[string]int{}
	chains := map[string][]string{}
	for _, v := range views {
		var chain []string
		for i, d := range v.config.RootFS.DiffIDs {
			if i >= len(v.rec.LayerSizes) {
				break
			}
			chain = append(chain, d.String())
			key := strings.Join(chain, ",")
			layers[key] = layer{v.rec.LayerSizes[i]}
			users[key]++
			chains[v.rec.ID.String()] = append(chains[v.rec.ID.String()], key)
		}
	}
	for _, l := range layers {
		du.LayersSize += l.size
	}
	cs, err := e.ContainerList(ctx, ContainerListOptions{All: true, Size: true})
	if err != nil {
		return du, err
	}
	for i := range imgs {
		var n int64
		for _, c := range cs {
			if c.ImageID == imgs[i].ID {
				n++
			}
		}
		imgs[i].Containers = n
		imgs[i].SharedSize = 0
		for _, key := range chains[imgs[i].ID] {
			if users[key] > 1 {
				imgs[i].SharedSize += layers[key].size
			}
		}
	}
	du.Images, du.Containers = imgs, cs
	vols, err := e.VolumeList(ctx, nil)
	if err != nil {
		return du, err
	}
	refs := e.volumeUsers()
	for i := range vols {
		vols[i].UsageData = &volume.UsageData{Size: dirSize(vols[i].Mountpoint), RefCount: int64(len(refs[vols[i].Name]))}
	}
	du.Volumes = vols
	return du, nil
}
