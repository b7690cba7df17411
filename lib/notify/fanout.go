package notify

import "sync"

// Fanout wakes every subscriber, each through its own one-slot Signal, so a
// slow subscriber never blocks the publisher or the other subscribers. The
// zero value is ready to use. Notify may be called with the publisher's own
// lock held: Fanout never calls out.
type Fanout struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives after each Notify (at most one
// wake-up pending) and a function, idempotent, that ends the subscription.
func (f *Fanout) Subscribe() (<-chan struct{}, func()) {
	s := NewSignal()
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[chan struct{}]struct{}{}
	}
	f.subs[s.ch] = struct{}{}
	f.mu.Unlock()
	return s.ch, sync.OnceFunc(func() {
		f.mu.Lock()
		delete(f.subs, s.ch)
		f.mu.Unlock()
	})
}

// Notify wakes every subscriber without blocking.
func (f *Fanout) Notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		Signal{ch: ch}.Notify()
	}
}

// Len is the number of subscribers.
func (f *Fanout) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}
