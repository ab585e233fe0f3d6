package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"golang.org/x/term"
)

// defaultDetachKeys is docker's detach sequence, Ctrl-P Ctrl-Q.
var defaultDetachKeys = []byte{0x10, 0x11}

// parseDetachKeys parses docker's --detach-keys: comma-separated single
// characters or ctrl-<char> (ctrl-a..z, ctrl-@, ctrl-[, ctrl-\, ctrl-],
// ctrl-^, ctrl-_). The empty string is the default sequence.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return defaultDetachKeys, nil
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if len(k) == 1 {
			keys = append(keys, k[0])
			continue
		}
		rest, ok := strings.CutPrefix(strings.ToLower(k), "ctrl-")
		if !ok || len(rest) != 1 {
			return nil, fmt.Errorf("invalid detach keys %q: unknown key %q (want a character or ctrl-<value>)", s, k)
		}
		ch := rest[0]
		switch {
		case ch >= 'a' && ch <= 'z':
			keys = append(keys, ch-'a'+1)
		case ch == '@':
			keys = append(keys, 0)
		case ch >= '[' && ch <= '_':
			keys = append(keys, ch-'['+27)
		default:
			return nil, fmt.Errorf("invalid detach keys %q: unknown key %q", s, k)
		}
	}
	return keys, nil
}

// errDetached reports that the user typed the detach sequence.
var errDetached = errors.New("read escape sequence")

// copyEscapable copies src to dst until EOF or until keys are read in
// sequence, which returns errDetached. Bytes that start the sequence are
// held back until it is complete or broken, as docker's escape proxy does.
func copyEscapable(dst io.Writer, src io.Reader, keys []byte) error {
	buf := make([]byte, 32*1024)
	matched := 0
	for {
		n, rerr := src.Read(buf)
		out := make([]byte, 0, n+len(keys))
		for _, b := range buf[:n] {
			if len(keys) > 0 && b == keys[matched] {
				matched++
				if matched == len(keys) {
					if len(out) > 0 {
						if _, err := dst.Write(out); err != nil {
							return err
						}
					}
					return errDetached
				}
				continue
			}
			if matched > 0 {
				out = append(out, keys[:matched]...)
				matched = 0
				if len(keys) > 0 && b == keys[0] {
					matched = 1
					continue
				}
			}
			out = append(out, b)
		}
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if matched > 0 {
				if _, err := dst.Write(keys[:matched]); err != nil {
					return err
				}
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

type streamOptions struct {
	tty            bool
	stdin          io.Reader // nil when stdin is not attached
	stdout, stderr io.Writer // nil when not attached
	detachKeys     []byte
}

// stream pumps a hijacked attach or exec connection: stdin to the
// container (raw terminal when a TTY is attached to a terminal), the
// container's output to stdout and stderr (demultiplexed unless it is a
// TTY). It returns when the output ends or the user detaches.
func (c *cli) stream(ctx context.Context, resp client.HijackedResponse, o streamOptions) (detached bool, err error) {
	if o.stdin != nil && o.tty {
		if f, ok := o.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			state, err := term.MakeRaw(int(f.Fd()))
			if err != nil {
				return false, fmt.Errorf("set terminal raw mode: %w", err)
			}
			defer func() { _ = term.Restore(int(f.Fd()), state) }()
		}
	}
	stdout, stderr := o.stdout, o.stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	outDone := make(chan error, 1)
	go func() {
		var err error
		if o.tty {
			_, err = io.Copy(stdout, resp.Reader)
		} else {
			_, err = stdcopy.StdCopy(stdout, stderr, resp.Reader)
		}
		outDone <- err
	}()
	inDone := make(chan error, 1)
	if o.stdin != nil {
		go func() {
			keys := o.detachKeys
			if !o.tty {
				// Without a terminal docker does not watch for the
				// sequence on the client.
				keys = nil
			}
			err := copyEscapable(resp.Conn, o.stdin, keys)
			if err == nil {
				_ = resp.CloseWrite()
			}
			inDone <- err
		}()
	}
	for {
		select {
		case err := <-outDone:
			if err != nil && !errors.Is(err, io.EOF) && !isClosedConn(err) {
				return false, fmt.Errorf("read container output: %w", err)
			}
			return false, nil
		case err := <-inDone:
			if errors.Is(err, errDetached) {
				resp.Close()
				return true, nil
			}
			// Stdin ended (or failed): keep reading the output.
			inDone = nil
		case <-ctx.Done():
			resp.Close()
			return false, ctx.Err()
		}
	}
}

func isClosedConn(err error) bool {
	return err != nil && strings.Contains(err.Error(), "use of closed network connection")
}

// monitorSize sets the remote terminal size to this terminal's now and on
// every SIGWINCH, until the returned function is called.
func (c *cli) monitorSize(ctx context.Context, resize func(h, w uint) error) func() {
	f, ok := c.out.(*os.File)
	if !ok {
		return func() {}
	}
	apply := func() error {
		w, h, err := term.GetSize(int(f.Fd()))
		if err != nil || w == 0 || h == 0 {
			return nil
		}
		return resize(uint(h), uint(w))
	}
	// The process may not be ready for a resize the moment it starts;
	// docker retries the first one a few times too.
	for i := 0; i < 10; i++ {
		if apply() == nil {
			break
		}
		time.Sleep(time.Duration(i+1) * 10 * time.Millisecond)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ch:
				_ = apply()
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
