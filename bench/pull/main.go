// Command pull is the driver of Berth's pull benchmark (bench/pull.sh): it
// builds the benchmark images (busybox, the multi-layer fixture and a
// Debian root filesystem) and pushes them to a local registry, lists an
// image's layers (media type and digest, in order) for the "floor"
// contender that fetches and untars them with curl, a decompressor and tar,
// and it turns hyperfine's JSON results into the Markdown table of
// docs/benchmarks-pull.md with each tool's time relative to berth and
// berth's time relative to the floor.
//
//	pull push -registry 127.0.0.1:5000 [-debian /var/cache/berth-test/debian-rootfs]
//	pull layers 127.0.0.1:5000/bench/debian:12 sha256:...
//	pull report results/*.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth-project/berth/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pull push -registry HOST:PORT [-debian DIR] | pull layers REF DIGEST | pull report FILE.json...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = push(os.Args[2:])
	case "layers":
		err = layers(context.Background(), os.Args[2:])
	case "report":
		err = report(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pull:", err)
		os.Exit(1)
	}
}

// push builds the images and pushes them, printing "name ref digest" lines.
func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	registry := fs.String("registry", "", "registry host:port (plain HTTP)")
	debian := fs.String("debian", "", "Debian root filesystem directory (scripts/make-debian-rootfs.sh); skipped when empty")
	fs.Parse(args)
	if *registry == "" {
		return fmt.Errorf("push: -registry is required")
	}
	type item struct {
		name, repo string
		build      func() (v1.Image, error)
	}
	items := []item{
		{"busybox", "bench/busybox:1", testutil.BusyboxImage},
		{"multi-layer", "bench/multi:1", testutil.MultiLayerImage},
	}
	if *debian != "" {
		dir := *debian
		items = append(items, item{"debian", "bench/debian:12", func() (v1.Image, error) { return testutil.DirImage(dir, "bash") }})
	}
	ctx := context.Background()
	for _, it := range items {
		img, err := it.build()
		if err != nil {
			return fmt.Errorf("build %s: %w", it.name, err)
		}
		ref := *registry + "/" + it.repo
		d, err := testutil.Push(ctx, ref, img)
		if err != nil {
			return err
		}
		size, layers, err := imageSize(img)
		if err != nil {
			return fmt.Errorf("size of %s: %w", it.name, err)
		}
		fmt.Printf("%s %s %s %d %d\n", it.name, ref, d, layers, size)
	}
	return nil
}

// imageSize sums the compressed layer sizes.
func imageSize(img v1.Image) (int64, int, error) {
	ls, err := img.Layers()
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for _, l := range ls {
		s, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		total += s
	}
	return total, len(ls), nil
}

// layers prints "<kind> <digest>" for every layer of the manifest DIGEST in
// the repository of REF (host:port/repo:tag, plain HTTP), in order, where
// kind is gzip, zstd or tar from the layer's media type. The floor
// contender of bench/pull.sh reads this list.
func layers(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("layers: want REF DIGEST, got %d arguments", len(args))
	}
	ref, digest := args[0], args[1]
	host, repo, ok := strings.Cut(ref, "/")
	if !ok {
		return fmt.Errorf("layers: reference %q has no registry host", ref)
	}
	if i := strings.LastIndexAny(repo, ":@"); i > 0 {
		repo = repo[:i]
	}
	url := "http://" + host + "/v2/" + repo + "/manifests/" + digest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("layers: request %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("layers: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("layers: get %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("layers: read manifest %s: %w", url, err)
	}
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("layers: decode manifest %s: %w", url, err)
	}
	if len(m.Layers) == 0 {
		return fmt.Errorf("layers: manifest %s lists no layers (an index?)", url)
	}
	for _, l := range m.Layers {
		kind, err := layerKind(l.MediaType)
		if err != nil {
			return fmt.Errorf("layers: layer %s: %w", l.Digest, err)
		}
		if !strings.HasPrefix(l.Digest, "sha256:") || strings.ContainsAny(l.Digest, "/ \n") {
			return fmt.Errorf("layers: layer digest %q is not a sha256 digest", l.Digest)
		}
		fmt.Printf("%s %s\n", kind, l.Digest)
	}
	return nil
}

// layerKind maps a layer media type to the decompressor the floor runs.
func layerKind(mt string) (string, error) {
	switch {
	case strings.HasSuffix(mt, "tar+gzip"), strings.HasSuffix(mt, "tar.gzip"):
		return "gzip", nil
	case strings.HasSuffix(mt, "tar+zstd"):
		return "zstd", nil
	case strings.HasSuffix(mt, ".tar"), mt == "application/vnd.docker.image.rootfs.diff.tar":
		return "tar", nil
	}
	return "", fmt.Errorf("unsupported layer media type %q", mt)
}

// hyperfineResult is the part of hyperfine's --export-json output used here.
type hyperfineResult struct {
	Results []struct {
		Command string    `json:"command"`
		Mean    float64   `json:"mean"`
		Stddev  float64   `json:"stddev"`
		Median  float64   `json:"median"`
		Min     float64   `json:"min"`
		Max     float64   `json:"max"`
		Times   []float64 `json:"times"`
	} `json:"results"`
}

// report prints one Markdown table per JSON file (named <image>.json): every
// command's mean, standard deviation and median, and its mean relative to
// the command named berth (hyperfine's -n names), then berth's mean relative
// to the command named floor when there is one.
func report(files []string) error {
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		var r hyperfineResult
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decode %s: %w", f, err)
		}
		var base, floor float64
		for _, res := range r.Results {
			switch res.Command {
			case "berth":
				base = res.Mean
			case "floor":
				floor = res.Mean
			}
		}
		fmt.Printf("\n#### %s\n\n", strings.TrimSuffix(filepath.Base(f), ".json"))
		fmt.Println("| tool | runs | mean (s) | stddev (s) | median (s) | min (s) | max (s) | mean / berth |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
		for _, res := range r.Results {
			ratio := "n/a"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f×", res.Mean/base)
			}
			fmt.Printf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n",
				res.Command, len(res.Times), res.Mean, res.Stddev, res.Median, res.Min, res.Max, ratio)
		}
		if base > 0 && floor > 0 {
			fmt.Printf("\nberth / floor: %.2f× (goal: at most 1.20×)\n", base/floor)
		}
	}
	return nil
}
