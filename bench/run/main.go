// Command run is the driver of Berth's run benchmark (bench/run.sh): it
// writes the busybox image (the static busybox of the test fixtures, one
// layer) as a docker-archive tarball that berth, docker and podman all
// load, and it turns hyperfine's JSON results (one file per round) into the
// Markdown table of docs/benchmarks-run.md with each engine's mean time and
// its ratio to berth's.
//
//	run image -o busybox.tar -tag berth-bench/busybox:latest
//	run report [-summary FILE] round1.json round2.json ...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-project/berth/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: run image -o FILE -tag REF | run report [-summary FILE] RESULTS.json...")
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
		Command string    `json:"command"`
		Times   []float64 `json:"times"`
	} `json:"results"`
}

// merged is one command's timed runs over every round.
type merged struct {
	command string
	times   []float64
	// roundMeans holds the command's mean in each round.
	roundMeans []float64
}

// reportCmd reads one hyperfine result file per round (the same commands in
// the same order in each) and prints a Markdown table of each command's
// mean, standard deviation, min and max over all rounds, its mean relative
// to the first command's (berth's), and the lowest and highest of that
// ratio among the rounds. With -summary it also writes each command's
// ratio with the lowest and highest among the rounds, one command a line,
// for the script.
func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	summary := fs.String("summary", "", "file to write each command's ratio to berth's (mean, lowest and highest round) to, one a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("report wants at least one results file")
	}
	var cmds []*merged
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		var r hyperfineResults
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("parse results %s: %w", f, err)
		}
		if cmds == nil {
			for _, c := range r.Results {
				cmds = append(cmds, &merged{command: c.Command})
			}
		}
		if len(r.Results) != len(cmds) || len(cmds) == 0 {
			return fmt.Errorf("results %s hold %d commands, want %d (and at least one)", f, len(r.Results), len(cmds))
		}
		for i, c := range r.Results {
			if c.Command != cmds[i].command {
				return fmt.Errorf("results %s: command %d is %q, want %q", f, i, c.Command, cmds[i].command)
			}
			if len(c.Times) == 0 {
				return fmt.Errorf("results %s: command %q has no timed runs", f, c.Command)
			}
			cmds[i].times = append(cmds[i].times, c.Times...)
			cmds[i].roundMeans = append(cmds[i].roundMeans, mean(c.Times))
		}
	}
	base := mean(cmds[0].times)
	var sum strings.Builder
	fmt.Println("| command | runs | mean | stddev | min | max | mean / berth's | lowest and highest among the rounds |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, c := range cmds {
		m := mean(c.times)
		lo, hi := math.Inf(1), math.Inf(-1)
		for i, rm := range c.roundMeans {
			r := rm / cmds[0].roundMeans[i]
			lo, hi = math.Min(lo, r), math.Max(hi, r)
		}
		fmt.Printf("| `%s` | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2fx | %.2fx - %.2fx |\n",
			c.command, len(c.times), m*1e3, stddev(c.times, m)*1e3, slices.Min(c.times)*1e3, slices.Max(c.times)*1e3, m/base, lo, hi)
		fmt.Fprintf(&sum, "%.2f %.2f %.2f\n", m/base, lo, hi)
	}
	if *summary != "" {
		if err := os.WriteFile(*summary, []byte(sum.String()), 0o644); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// stddev is the sample standard deviation of xs around m (0 for one run).
func stddev(xs []float64, m float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(xs)-1))
}
