// Package ctxerr renders the failures of network exchanges bounded by a
// context the same way each time.
package ctxerr

import (
	"context"
	"errors"
	"os"
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
