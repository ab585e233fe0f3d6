// Package errdefs defines Berth's error classes. Every layer wraps its errors
// with one of these classes so that callers (and, at the very top, the API
// server and the command-line tools) can decide what an error means without
// matching strings. It is a leaf package: it imports nothing from Berth.
package errdefs

import "errors"

// The error classes. Test with errors.Is(err, errdefs.ErrNotFound).
var (
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrConflict        = errors.New("conflict")
	ErrFailedPrecond   = errors.New("failed precondition")
	ErrNotImplemented  = errors.New("not implemented")
	ErrUnavailable     = errors.New("unavailable")
	ErrPermission      = errors.New("permission denied")
	ErrUnauthorized    = errors.New("unauthorized")
	ErrDataLoss        = errors.New("data loss")
)

// classed is an error that carries a class while keeping its own message.
type classed struct {
	class error
	err   error
}

func (c *classed) Error() string { return c.err.Error() }
func (c *classed) Unwrap() []error {
	return []error{c.err, c.class}
}

// With returns err classified as class; errors.Is(result, class) holds and
// the message is err's own. A nil err stays nil.
func With(class, err error) error {
	if err == nil {
		return nil
	}
	return &classed{class: class, err: err}
}

// NotFound classifies err as ErrNotFound.
func NotFound(err error) error { return With(ErrNotFound, err) }

// AlreadyExists classifies err as ErrAlreadyExists.
func AlreadyExists(err error) error { return With(ErrAlreadyExists, err) }

// InvalidArgument classifies err as ErrInvalidArgument.
func InvalidArgument(err error) error { return With(ErrInvalidArgument, err) }

// Conflict classifies err as ErrConflict.
func Conflict(err error) error { return With(ErrConflict, err) }

// FailedPrecondition classifies err as ErrFailedPrecond.
func FailedPrecondition(err error) error { return With(ErrFailedPrecond, err) }

// NotImplemented classifies err as ErrNotImplemented.
func NotImplemented(err error) error { return With(ErrNotImplemented, err) }

// Unavailable classifies err as ErrUnavailable.
func Unavailable(err error) error { return With(ErrUnavailable, err) }

// IsNotFound reports whether err is of class ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is of class ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsInvalidArgument reports whether err is of class ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsConflict reports whether err is of class ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }
