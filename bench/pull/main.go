// Command pull is the driver of Berth's pull benchmark (bench/pull.sh): it
// builds the benchmark images (busybox, the multi-layer fixture and a
// Debian root filesystem) and pushes them to a local registry, and it turns
// hyperfine's JSON results into the Markdown table of docs/benchmarks-pull.md
// with each tool's time relative to berth.
//
//	pull push -registry 127.0.0.1:5000 [-debian /var/cache/berth-test/debian-rootfs]
//	pull report results/*.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berth-project/berth/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pull push -registry HOST:PORT [-debian DIR] | pull report FILE.json...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = push(os.Args[2:])
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
// the command named berth (hyperfine's -n names).
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
		var base float64
		for _, res := range r.Results {
			if res.Command == "berth" {
				base = res.Mean
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
	}
	return nil
}
