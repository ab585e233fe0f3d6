package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassSurvivesWrapping(t *testing.T) {
	base := errors.New("container abc")
	err := fmt.Errorf("delete: %w", NotFound(base))
	if !IsNotFound(err) {
		t.Fatalf("class lost through wrapping: %v", err)
	}
	if !errors.Is(err, base) {
		t.Fatalf("original error lost: %v", err)
	}
	if IsConflict(err) {
		t.Fatalf("wrong class matched")
	}
	if got, want := err.Error(), "delete: container abc"; got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
	if With(ErrConflict, nil) != nil {
		t.Fatalf("nil error must stay nil")
	}
}
