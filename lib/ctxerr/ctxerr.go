// Package ctxerr renders the failures of network exchanges bounded by a
// context the same way each time.
package ctxerr

import (
	"context"
	"errors"
	"os"
	"time"
)

// Stable reports a peer that did not answer in time as the context's error
// rather than the socket's, whose text carries the ephemeral local port and
// so would differ on every exchange (a health check's reason would change,
// and signal an update, on every failed probe).
func Stable(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// Deadliner is a connection whose I/O a deadline bounds.
type Deadliner interface{ SetDeadline(time.Time) error }

// Bound makes ctx's deadline conn's (none when ctx has none), and ctx's end
// unblock conn's I/O at once: the deadline alone does not see a
// cancellation. stop undoes the latter; it reports false when ctx ended
// first, and its past deadline may then be set at any moment.
func Bound(ctx context.Context, conn Deadliner) (stop func() bool) {
	dl, _ := ctx.Deadline() // zero: none
	_ = conn.SetDeadline(dl)
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
}
