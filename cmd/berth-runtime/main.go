// Command berth-runtime is Berth's OCI runtime. Its command line is runc's,
// so that containerd, Podman and Docker can run it in runc's place: global
// flags first, then a command and its flags and arguments.
//
// The same binary is the container's init: `create` starts a sealed copy of
// it with _BERTH_INITPIPE set, the nsenter constructor moves that process
// into the container's namespaces before Go starts, and main hands it to
// runtime.Init.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/berth-project/berth/internal/runtime"
	_ "github.com/berth-project/berth/internal/runtime/nsenter"
)

func init() {
	// Every command is short-lived: no garbage collection below a
	// bounded heap keeps the collector off a container's start path.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(64 << 20)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

// usages documents each command; run maps it to its implementation.
var usages = map[string]string{
	"create":   "create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID",
	"start":    "start ID",
	"state":    "state ID",
	"kill":     "kill [--all] ID [SIGNAL]",
	"delete":   "delete [--force] ID",
	"run":      "run [--bundle DIR] [--detach] [--pid-file FILE] [--console-socket SOCK] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID",
	"list":     "list [--quiet] [--format table|json]",
	"spec":     "spec [--bundle DIR] [--rootless]",
	"features": "features",
	"pause":    "pause ID",
	"resume":   "resume ID",
	"exec":     "exec [--process FILE] [--tty] [--console-socket SOCK] [--detach] [--pid-file FILE] [--cwd DIR] [--env K=V] [--user UID[:GID]] [--additional-gids GID] [--cap CAP] [--no-new-privs] [--preserve-fds N] ID [COMMAND [ARG...]]",

	"ps":         "ps [--format table|json] ID [PS OPTIONS...]",
	"update":     "update [--resources FILE|-] [--memory N] [--memory-reservation N] [--memory-swap N] [--cpu-share N] [--cpu-quota N] [--cpu-period N] [--cpu-burst N] [--cpu-rt-period N] [--cpu-rt-runtime N] [--cpu-idle N] [--cpuset-cpus LIST] [--cpuset-mems LIST] [--pids-limit N] [--blkio-weight N] ID",
	"events":     "events [--stats] [--interval DURATION] ID",
	"checkpoint": "checkpoint [--image-path DIR] [--work-path DIR] [--leave-running] [--tcp-established] [--ext-unix-sk] [--shell-job] [--file-locks] ID",
	"restore":    "restore [--image-path DIR] [--work-path DIR] [--bundle DIR] [--detach] [--pid-file FILE] [--console-socket SOCK] ID",
}

func commandFor(name string) func(*globals, []string) error {
	return map[string]func(*globals, []string) error{
		"create": cmdCreate, "start": cmdStart, "state": cmdState, "kill": cmdKill,
		"delete": cmdDelete, "run": cmdRun, "list": cmdList, "spec": cmdSpec,
		"features": cmdFeatures, "pause": cmdPause, "resume": cmdResume, "exec": cmdExec,
		"ps": cmdPs, "update": cmdUpdate, "events": cmdEvents, "checkpoint": cmdCheckpoint, "restore": cmdRestore,
	}[name]
}

func main() {
	if runtime.IsInit() {
		if err := runtime.Init(); !errors.Is(err, runtime.ErrReported) {
			fmt.Fprintf(os.Stderr, "berth-runtime init: %v\n", err)
		}
		os.Exit(1)
	}
	os.Exit(mainWithCode(os.Args[1:]))
}

func mainWithCode(args []string) int {
	g, rest, err := parseGlobals(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-runtime: %v\n", err)
		return 1
	}
	if g.version {
		fmt.Printf("berth-runtime version %s\nspec: %s\n", version, specVersion())
		return 0
	}
	if len(rest) == 0 || g.help {
		usage(os.Stdout)
		if len(rest) == 0 && !g.help {
			return 1
		}
		return 0
	}
	name := rest[0]
	if name == "help" {
		usage(os.Stdout)
		return 0
	}
	g.logf("debug", "berth-runtime %s %v (root %s)", name, rest[1:], g.root)
	cmd := commandFor(name)
	if cmd == nil {
		g.fail(fmt.Errorf("unknown command %q", name))
		return 1
	}
	if err := cmd(g, rest[1:]); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		g.fail(err)
		return 1
	}
	return 0
}

// exitCode ends the program with a status and no message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage(w *os.File) {
	fmt.Fprintf(w, "usage: berth-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup] COMMAND\n\ncommands:\n")
	names := make([]string, 0, len(usages))
	for n := range usages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", usages[n])
	}
}

func ctx() context.Context { return context.Background() }

func specVersion() string {
	return strings.TrimSpace(runtimeSpecVersion)
}
