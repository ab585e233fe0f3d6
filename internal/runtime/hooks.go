package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runHooks runs hooks in order with the container state on their standard
// input, as the runtime spec describes: each with its own args and env only
// (nothing inherited), killed when its timeout passes. It stops at the first
// failure and returns it, naming the hook.
func runHooks(kind string, hooks []specs.Hook, st specs.State) error {
	var first error
	forEachHook(kind, hooks, st, func(err error) bool { first = err; return false })
	return first
}

// runHooksWarn runs every hook even when some fail, reporting each failure
// to warn: the spec's rule for poststart and poststop hooks.
func runHooksWarn(kind string, hooks []specs.Hook, st specs.State, warn func(error)) {
	forEachHook(kind, hooks, st, func(err error) bool {
		if warn != nil {
			warn(err)
		}
		return true
	})
}

// forEachHook runs hooks until one fails and onErr says to stop.
func forEachHook(kind string, hooks []specs.Hook, st specs.State, onErr func(error) bool) {
	if len(hooks) == 0 {
		return
	}
	state, err := json.Marshal(st)
	if err != nil {
		onErr(fmt.Errorf("%s hook: encode state: %w", kind, err))
		return
	}
	for i, h := range hooks {
		if err := runHook(h, state); err != nil && !onErr(fmt.Errorf("%s hook #%d (%s): %w", kind, i, h.Path, err)) {
			return
		}
	}
}

func runHook(h specs.Hook, state []byte) error {
	ctx := context.Background()
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout %d is not positive", *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A hook that leaves children holding its output must not hang us.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %ds", *h.Timeout)
	}
	if err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}
