package registry

import (
	"context"
	"io"

	"github.com/berth-project/berth/internal/image"
	digest "github.com/opencontainers/go-digest"
)

// Action says what a Progress event reports.
type Action string

// Progress actions.
const (
	ActionDownload Action = "download" // Current of Total bytes of a blob read
	ActionUpload   Action = "upload"   // Current of Total bytes of a blob sent
	ActionComplete Action = "complete" // a blob fully downloaded (verified) or uploaded
	ActionExists   Action = "exists"   // push: the registry already has the blob
	ActionMounted  Action = "mounted"  // push: the blob was mounted from From
	ActionRetry    Action = "retry"    // a transient failure of Object; attempt Attempt will follow
)

// Progress is one event of a transfer, for drawing Docker-style progress.
type Progress struct {
	Action  Action
	Ref     image.Reference // the image being pulled or pushed
	Digest  digest.Digest   // the blob or manifest concerned ("" for retries of other requests)
	Current int64           // bytes so far, counted from the start of the blob
	Total   int64           // the blob's size
	From    image.Reference // ActionMounted: the repository it came from
	Object  string          // ActionRetry: the operation being retried
	Attempt int             // ActionRetry: how many attempts failed so far
	Err     error           // ActionRetry: the transient error
}

type progressKey struct{}

// ContextWithProgress returns a context whose operations report progress to
// fn, in addition to any hook set with WithProgress. fn must not block.
func ContextWithProgress(ctx context.Context, fn func(Progress)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

func (c *Client) emit(ctx context.Context, ev Progress) {
	if c.progress != nil {
		c.progress(ev)
	}
	if fn, ok := ctx.Value(progressKey{}).(func(Progress)); ok && fn != nil {
		fn(ev)
	}
}

// progressStep is how many bytes pass between two progress events of one
// transfer.
const progressStep = 256 << 10

// countingReader reports upload progress of a blob's body.
type countingReader struct {
	r        io.Reader
	c        *Client
	ctx      context.Context
	ev       Progress
	reported int64
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.ev.Current += int64(n)
	if cr.ev.Current-cr.reported >= progressStep || (err == io.EOF && cr.ev.Current != cr.reported) {
		cr.reported = cr.ev.Current
		cr.c.emit(cr.ctx, cr.ev)
	}
	return n, err
}
