package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func statusErr(code int) error {
	return fmt.Errorf("get thing: %w", &transport.Error{StatusCode: code})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestTransientAndClassify(t *testing.T) {
	reset := &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	refused := &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	for _, tc := range []struct {
		err       error
		transient bool
		class     error
	}{
		{statusErr(http.StatusServiceUnavailable), true, errdefs.ErrUnavailable},
		{statusErr(http.StatusBadGateway), true, errdefs.ErrUnavailable},
		{statusErr(http.StatusInternalServerError), true, errdefs.ErrUnavailable},
		{statusErr(http.StatusTooManyRequests), true, errdefs.ErrUnavailable},
		{statusErr(http.StatusRequestTimeout), true, errdefs.ErrUnavailable},
		{statusErr(http.StatusNotFound), false, errdefs.ErrNotFound},
		{statusErr(http.StatusUnauthorized), false, errdefs.ErrUnauthorized},
		{statusErr(http.StatusForbidden), false, errdefs.ErrPermission},
		{statusErr(http.StatusBadRequest), false, errdefs.ErrInvalidArgument},
		{reset, true, errdefs.ErrUnavailable},
		{fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true, errdefs.ErrUnavailable},
		{&url.Error{Op: "Get", URL: "https://r/", Err: timeoutErr{}}, true, errdefs.ErrUnavailable},
		{refused, false, nil},
		{context.Canceled, false, nil},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false, nil},
		{errors.New("certificate signed by unknown authority"), false, nil},
	} {
		if got := transient(tc.err); got != tc.transient {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.transient)
		}
		c := classify(tc.err)
		if tc.class != nil && !errors.Is(c, tc.class) {
			t.Errorf("classify(%v) = %v, not of class %v", tc.err, c, tc.class)
		}
		if c.Error() != tc.err.Error() {
			t.Errorf("classify changed the message %q to %q", tc.err, c)
		}
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := New(WithRetry(10, 0))
	calls := 0
	err := c.retry(ctx, "op", func() error {
		calls++
		if calls == 2 {
			cancel()
		}
		return statusErr(http.StatusServiceUnavailable)
	})
	if err == nil || calls != 2 {
		t.Errorf("retry after cancel: %v after %d calls, want an error after 2", err, calls)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		code   int
		header string
		want   int
		ok     bool
	}{
		{http.StatusTooManyRequests, "3", 3, true},
		{http.StatusServiceUnavailable, " 0 ", 0, true},
		{http.StatusTooManyRequests, "Wed, 21 Oct 2015 07:28:00 GMT", 0, false},
		{http.StatusInternalServerError, "3", 0, false},
		{http.StatusTooManyRequests, "", 0, false},
	} {
		resp := &http.Response{StatusCode: tc.code, Header: http.Header{"Retry-After": {tc.header}}}
		d, ok := retryAfter(resp)
		if ok != tc.ok || int(d.Seconds()) != tc.want {
			t.Errorf("retryAfter(%d, %q) = %v, %v; want %ds, %v", tc.code, tc.header, d, ok, tc.want, tc.ok)
		}
	}
}
