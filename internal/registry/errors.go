package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// checkResponse returns nil when resp has one of the codes, else an error
// describing the registry's answer (its error codes and messages), classified
// by status: 404 NotFound, 401 Unauthorized, 403 Permission, 408/429/5xx
// Unavailable, other InvalidArgument. The body is consumed on error.
func checkResponse(resp *http.Response, what string, codes ...int) error {
	if err := transport.CheckError(resp, codes...); err != nil {
		err = fmt.Errorf("%s: %w", what, err)
		if d, ok := retryAfter(resp); ok {
			err = &retryAfterError{err: err, after: d}
		}
		return classify(err)
	}
	return nil
}

// retryAfterError carries the delay a registry asked for (Retry-After on a
// 429 or 503).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After")))
	if err != nil || secs < 0 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// classify gives err the errdefs class its HTTP status implies.
func classify(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		if errors.Is(err, ErrPlainHTTP) {
			return errdefs.With(errdefs.ErrPermission, err)
		}
		if transient(err) {
			return errdefs.Unavailable(err)
		}
		return err
	}
	switch code := terr.StatusCode; {
	case code == http.StatusNotFound:
		return errdefs.NotFound(err)
	case code == http.StatusUnauthorized:
		return errdefs.With(errdefs.ErrUnauthorized, err)
	case code == http.StatusForbidden:
		return errdefs.With(errdefs.ErrPermission, err)
	case retryableStatus(code):
		return errdefs.Unavailable(err)
	default:
		return errdefs.InvalidArgument(err)
	}
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// transient reports whether err is worth retrying: a 408, 429 or 5xx from the
// registry, or a connection that broke (reset, closed early, timed out) while
// the caller's context is still live. A refused connection is not: nothing is
// listening, and saying so at once is more useful than waiting.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, ErrPlainHTTP) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return retryableStatus(terr.StatusCode)
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// retry runs fn until it succeeds, fails with a non-transient error, or the
// retries are used up, sleeping with exponential back-off between attempts.
func (c *Client) retry(ctx context.Context, what string, fn func() error) error {
	delay := c.backoff
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if !transient(err) || attempt >= c.retries || ctx.Err() != nil {
			if attempt > 0 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return err
		}
		c.emit(ctx, Progress{Action: ActionRetry, Object: what, Attempt: attempt + 1, Err: err})
		wait := delay
		var ra *retryAfterError
		if errors.As(err, &ra) && ra.after > wait {
			wait = min(ra.after, maxBackoff)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: waiting to retry: %w (last error: %v)", what, serr, err)
		}
		delay *= 2
		if delay > maxBackoff {
			delay = maxBackoff
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
