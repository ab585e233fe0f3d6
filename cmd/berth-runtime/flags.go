package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-project/berth/internal/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var runtimeSpecVersion = specs.Version

// globals are the flags that come before the command.
type globals struct {
	root          string
	logPath       string
	logFormat     string
	debug         bool
	systemdCgroup bool
	rootless      string
	criu          string
	version, help bool
	log           io.Writer
}

func parseGlobals(args []string) (*globals, []string, error) {
	g := &globals{}
	fs := flag.NewFlagSet("berth-runtime", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.root, "root", runtime.DefaultStateRoot(), "state directory")
	fs.StringVar(&g.logPath, "log", "", "log file")
	fs.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&g.debug, "debug", false, "debug logging")
	fs.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "use the systemd cgroup driver")
	fs.StringVar(&g.rootless, "rootless", "auto", "ignored: rootless mode is detected")
	fs.StringVar(&g.criu, "criu", "criu", "path to criu")
	fs.BoolVar(&g.version, "version", false, "print the version")
	fs.BoolVar(&g.version, "v", false, "print the version")
	fs.BoolVar(&g.help, "help", false, "print usage")
	fs.BoolVar(&g.help, "h", false, "print usage")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return nil, nil, fmt.Errorf("invalid --log-format %q: want text or json", g.logFormat)
	}
	if g.logPath != "" {
		f, err := os.OpenFile(g.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_SYNC, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("open log %s: %w", g.logPath, err)
		}
		g.log = f
	}
	return g, fs.Args(), nil
}

// logf writes one entry to the log file, in the chosen format.
func (g *globals) logf(level, format string, a ...any) {
	if g.log == nil || (level == "debug" && !g.debug) {
		return
	}
	msg := fmt.Sprintf(format, a...)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if g.logFormat == "json" {
		line, _ := json.Marshal(map[string]string{"level": level, "msg": msg, "time": now})
		g.log.Write(append(line, '\n'))
		return
	}
	fmt.Fprintf(g.log, "time=%q level=%s msg=%q\n", now, level, msg)
}

// fail reports a command's error on stderr and in the log.
func (g *globals) fail(err error) {
	fmt.Fprintf(os.Stderr, "berth-runtime: %v\n", err)
	g.logf("error", "%v", err)
}

// warn reports a problem that does not fail the command.
func (g *globals) warn(err error) {
	fmt.Fprintf(os.Stderr, "berth-runtime: warning: %v\n", err)
	g.logf("warning", "%v", err)
}

// flags is a command's flag set that also takes flags after arguments, and
// short aliases, as runc's command line does.
type flags struct {
	fs *flag.FlagSet
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{fs: fs}
}

func (f *flags) str(p *string, value string, names ...string) {
	for _, n := range names {
		f.fs.StringVar(p, n, value, "")
	}
}

func (f *flags) boolean(p *bool, names ...string) {
	for _, n := range names {
		f.fs.BoolVar(p, n, false, "")
	}
}

func (f *flags) integer(p *int, names ...string) {
	for _, n := range names {
		f.fs.IntVar(p, n, 0, "")
	}
}

// strings is a flag that may be given many times.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (f *flags) list(p *[]string, names ...string) {
	for _, n := range names {
		f.fs.Var((*stringList)(p), n, "")
	}
}

// parseUntilArgs parses flags up to the first positional argument and
// returns it with everything after it untouched (a command and its flags).
func (f *flags) parseUntilArgs(args []string) ([]string, error) {
	if err := f.fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%s: %w", f.fs.Name(), err)
	}
	return f.fs.Args(), nil
}

// parse returns the positional arguments; flags may come between them.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %w", f.fs.Name(), err)
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// needID returns the one container ID the command takes.
func needID(cmd string, pos []string, extra int) (string, error) {
	if len(pos) < 1 || len(pos) > 1+extra {
		return "", fmt.Errorf("%s: %s", cmd, "usage: berth-runtime "+usages[cmd])
	}
	return pos[0], nil
}
