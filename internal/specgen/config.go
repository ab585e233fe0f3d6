package specgen

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"
)

// Merge completes a create request's config with its image's, as Docker
// does at create: the request's User, WorkingDir and StopSignal win when
// set; its Env wins key by key over the image's; image labels fill those the
// request lacks; an Entrypoint in the request clears the image's Cmd unless
// the request gives a Cmd too; an Entrypoint of [""] means none; the
// image's exposed ports join the request's. It fails when no command is
// left.
func Merge(img dockerspec.DockerOCIImage, cfg container.Config) (container.Config, error) {
	ic := img.Config
	if cfg.User == "" {
		cfg.User = ic.User
	}
	env := append([]string(nil), cfg.Env...)
	if len(env) == 0 {
		env = append(env, ic.Env...)
	} else {
		for _, ie := range ic.Env {
			key, _, _ := strings.Cut(ie, "=")
			found := false
			for _, ue := range cfg.Env {
				if k, _, _ := strings.Cut(ue, "="); k == key {
					found = true
					break
				}
			}
			if !found {
				env = append(env, ie)
			}
		}
	}
	cfg.Env = env
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range ic.Labels {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
	cfg.Labels = labels
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = append([]string(nil), ic.Cmd...)
			cfg.ArgsEscaped = ic.ArgsEscaped //nolint:staticcheck // Docker carries it over
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = append([]string(nil), ic.Entrypoint...)
		}
	}
	if img.Config.Healthcheck != nil {
		if cfg.Healthcheck == nil {
			h := *img.Config.Healthcheck
			cfg.Healthcheck = &h
		} else {
			h := *cfg.Healthcheck
			if len(h.Test) == 0 {
				h.Test = img.Config.Healthcheck.Test
			}
			if h.Interval == 0 {
				h.Interval = img.Config.Healthcheck.Interval
			}
			if h.Timeout == 0 {
				h.Timeout = img.Config.Healthcheck.Timeout
			}
			if h.StartPeriod == 0 {
				h.StartPeriod = img.Config.Healthcheck.StartPeriod
			}
			if h.StartInterval == 0 {
				h.StartInterval = img.Config.Healthcheck.StartInterval
			}
			if h.Retries == 0 {
				h.Retries = img.Config.Healthcheck.Retries
			}
			cfg.Healthcheck = &h
		}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = ic.WorkingDir
	}
	vols := maps.Clone(cfg.Volumes)
	for k := range ic.Volumes {
		if vols == nil {
			vols = map[string]struct{}{}
		}
		vols[k] = struct{}{}
	}
	if len(vols) == 0 {
		vols = nil // Docker's inspect shows no volumes as null
	}
	cfg.Volumes = vols
	if cfg.StopSignal == "" {
		cfg.StopSignal = ic.StopSignal
	}
	if len(ic.ExposedPorts) > 0 {
		ports := maps.Clone(cfg.ExposedPorts)
		if ports == nil {
			ports = network.PortSet{}
		}
		for p := range ic.ExposedPorts {
			// A port the image names wrongly cannot be exposed; Docker
			// carries it as text and it does nothing either.
			if port, err := network.ParsePort(p); err == nil {
				ports[port] = struct{}{}
			}
		}
		cfg.ExposedPorts = ports
	}
	if len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "" {
		cfg.Entrypoint = nil
	}
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		return cfg, errdefs.InvalidArgument(errors.New("no command specified"))
	}
	return cfg, nil
}

// Command is the process's argument list for a merged config: the
// entrypoint followed by the command.
func Command(cfg container.Config) ([]string, error) {
	args := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(args) == 0 {
		return nil, errdefs.InvalidArgument(errors.New("no command specified"))
	}
	if args[0] == "" {
		return nil, errdefs.InvalidArgument(fmt.Errorf("empty executable name in command %q", args))
	}
	return args, nil
}

// Env is the process environment for a merged config, as Docker builds it:
// PATH, HOSTNAME and (with a terminal) TERM=xterm first, then the config's
// variables, which replace those defaults in place; a variable named without
// "=" removes a default of that name.
func Env(cfg container.Config) []string {
	env := []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + cfg.Hostname}
	if cfg.Tty {
		env = append(env, "TERM=xterm")
	}
	index := make(map[string]int, len(env))
	for i, e := range env {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	removed := map[int]bool{}
	for _, e := range cfg.Env {
		k, _, hasValue := strings.Cut(e, "=")
		i, isDefault := index[k]
		switch {
		case !hasValue:
			if isDefault {
				removed[i] = true
			}
		case isDefault:
			env[i] = e
			delete(removed, i)
		default:
			env = append(env, e)
		}
	}
	out := env[:0]
	for i, e := range env {
		if !removed[i] {
			out = append(out, e)
		}
	}
	return out
}

// StopSignal is the signal that stops the container: the request's, else
// the image's, else SIGTERM.
func StopSignal(img dockerspec.DockerOCIImage, cfg container.Config) (unix.Signal, error) {
	name := cfg.StopSignal
	if name == "" {
		name = img.Config.StopSignal
	}
	if name == "" {
		return unix.SIGTERM, nil
	}
	return ParseSignal(name)
}

// ParseSignal parses a signal as Docker accepts it: a number, or a name with
// or without SIG, in any case ("TERM", "sigkill", "SIGRTMIN+3", "9").
func ParseSignal(raw string) (unix.Signal, error) {
	if n, err := strconv.Atoi(raw); err == nil {
		if n <= 0 || n > sigRTMAX {
			return 0, invalid("invalid signal: %s", raw)
		}
		return unix.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(raw), "SIG")
	if rest, ok := strings.CutPrefix(name, "RTMIN"); ok {
		return rtSignal(raw, sigRTMIN, rest)
	}
	if rest, ok := strings.CutPrefix(name, "RTMAX"); ok {
		return rtSignal(raw, sigRTMAX, rest)
	}
	if sig := unix.SignalNum("SIG" + name); sig != 0 {
		return sig, nil
	}
	return 0, invalid("invalid signal: %s", raw)
}

// The real-time signal range as the C library exposes it (glibc and musl
// keep 32 and 33 for themselves).
const (
	sigRTMIN = 34
	sigRTMAX = 64
)

func rtSignal(raw string, base int, rest string) (unix.Signal, error) {
	if rest == "" {
		return unix.Signal(base), nil
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 0, invalid("invalid signal: %s", raw)
	}
	sig := base + n
	if sig < sigRTMIN || sig > sigRTMAX {
		return 0, invalid("invalid signal: %s", raw)
	}
	return unix.Signal(sig), nil
}
