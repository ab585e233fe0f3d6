// Command run is the driver of Berth's run benchmark (bench/run.sh): it
// writes the busybox image (the static busybox of the test fixtures, one
// layer) as a docker-archive tarball that berth, docker and podman all
// load, and it turns hyperfine's JSON results into the Markdown table of
// docs/benchmarks-run.md with each engine's mean time and its ratio to
// berth's.
//
//	run image -o busybox.tar -tag berth-bench/busybox:latest
//	run report results.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: run image -o FILE -tag REF | run report RESULTS.json")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "image":
		err = imageCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

// imageCmd builds the busybox root file system in a temporary directory and
// writes it as a one-layer image to a docker-archive tarball.
func imageCmd(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("o", "busybox.tar", "archive to write")
	tag := fs.String("tag", "berth-bench/busybox:latest", "reference the archive names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(*out), "rootfs.")
	if err != nil {
		return fmt.Errorf("make rootfs directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := testutil.MakeBusyboxRootfs(rootfs); err != nil {
		return fmt.Errorf("make busybox rootfs %s: %w", rootfs, err)
	}
	img, err := testutil.DirImage(rootfs, "sh")
	if err != nil {
		return fmt.Errorf("image of %s: %w", rootfs, err)
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("parse tag %s: %w", *tag, err)
	}
	if err := tarball.WriteToFile(*out, ref, img); err != nil {
		return fmt.Errorf("write image archive %s: %w", *out, err)
	}
	return nil
}

// hyperfineResults is the part of hyperfine's --export-json output the
// report reads.
type hyperfineResults struct {
	Results []struct {
		Command string  `json:"command"`
		Mean    float64 `json:"mean"`
		Stddev  float64 `json:"stddev"`
		Min     float64 `json:"min"`
		Max     float64 `json:"max"`
		Times   []float64
	} `json:"results"`
}

// reportCmd prints a Markdown table of the commands' mean, standard
// deviation, min and max, and each mean relative to the first command's
// (berth's).
func reportCmd(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("report wants one results file, got %d", len(args))
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	var r hyperfineResults
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("parse results %s: %w", args[0], err)
	}
	if len(r.Results) == 0 {
		return fmt.Errorf("results %s hold no commands", args[0])
	}
	base := r.Results[0].Mean
	fmt.Println("| command | runs | mean | stddev | min | max | mean / berth's |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range r.Results {
		fmt.Printf("| `%s` | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2fx |\n",
			c.Command, len(c.Times), c.Mean*1e3, c.Stddev*1e3, c.Min*1e3, c.Max*1e3, c.Mean/base)
	}
	return nil
}
