// Command berth-shim is Berth's per-container monitor: berthd starts one
// per container, detached, and it keeps the container's stdio, log and
// exit status while berthd comes and goes. Everything it does lives in
// internal/shim; this is only its entry point.
package main

import (
	"fmt"
	"os"

	"github.com/berth-project/berth/internal/shim"
)

func main() {
	var dir string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--state-dir" && i+1 < len(args):
			dir = args[i+1]
			i++
		case len(a) > len("--state-dir=") && a[:len("--state-dir=")] == "--state-dir=":
			dir = a[len("--state-dir="):]
		case a == "--version":
			fmt.Println("berth-shim")
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: berth-shim --state-dir DIR\n")
			os.Exit(2)
		}
	}
	if dir == "" {
		fmt.Fprintf(os.Stderr, "usage: berth-shim --state-dir DIR\n")
		os.Exit(2)
	}
	if err := shim.Serve(dir); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
		os.Exit(1)
	}
}
