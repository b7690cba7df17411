package lifecycle

import (
	"context"
	"sync"
)

// Loop owns one goroutine of a component: Start launches it once under a
// context derived from the caller's, Close cancels that context and waits
// for the goroutine to return. Start after Close launches nothing, Close
// without Start returns at once, and both are safe from any goroutine and
// idempotent. The zero value is ready to use.
type Loop struct {
	mu      sync.Mutex
	started bool // Start launched the goroutine
	closed  bool // Close ran: no Start launches anything after it
	cancel  context.CancelFunc
	done    chan struct{}
}

// Start runs run(ctx) in a new goroutine, where ctx ends when the caller's
// ctx does or at Close. It reports whether it launched it: false after an
// earlier Start or after Close.
func (l *Loop) Start(ctx context.Context, run func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return false
	}
	l.started = true
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		run(ctx)
	}()
	return true
}

// Close cancels the goroutine's context and waits for it to return.
func (l *Loop) Close() {
	l.mu.Lock()
	l.closed = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Done is closed once the goroutine has returned (its context ended, or
// Close). Before Start it is nil, which never receives.
func (l *Loop) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}
