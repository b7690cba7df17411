package etcdstore

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retry timings of the loops: 100 ms doubling to 5 s, ±20 % jitter (ha.md
// 6.3). Typed durations everywhere (ha.md P10).
const (
	backoffBase   time.Duration = 100 * time.Millisecond
	backoffMax    time.Duration = 5 * time.Second
	backoffJitter               = 0.2
)

// backoff is an exponential retry delay. Not safe for concurrent use; each
// loop owns one.
type backoff struct {
	next time.Duration
}

func newBackoff() *backoff { return &backoff{next: backoffBase} }

// delay returns the next wait and doubles the one after it.
func (b *backoff) delay() time.Duration {
	d := b.next
	b.next = min(2*b.next, backoffMax)
	j := 1 + backoffJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * j)
}

func (b *backoff) reset() { b.next = backoffBase }

// wait sleeps for the next delay; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	return sleepCtx(ctx, b.delay())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
