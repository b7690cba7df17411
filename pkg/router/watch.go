package router

import (
	"context"
	"sync"
)

// TopologyFeed is a TopologySource that also wakes subscribers after each
// change (observer.Aggregator). Start watches it; a source that is not a
// feed (NewForAddrs's fixed topology) never changes and needs no watch.
type TopologyFeed interface {
	TopologySource
	Subscribe() (<-chan struct{}, func())
}

// watch is the router's one goroutine: it keeps the per-backend state in
// step with the topology, so that nobody else has to tell the router that a
// backend left.
type watch struct {
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the goroutine that forgets the state of backends that left
// the topology (see syncTopology), until ctx ends or Close. Start after
// Close, or a second Start, does nothing.
func (r *Balanced) Start(ctx context.Context) {
	feed, ok := r.topo.(TopologyFeed)
	r.watch.once.Do(func() {
		if !ok {
			return
		}
		ctx, r.watch.cancel = context.WithCancel(ctx)
		r.watch.done = make(chan struct{})
		updates, stop := feed.Subscribe()
		go func() {
			defer close(r.watch.done)
			defer stop()
			r.syncTopology(feed.Topology())
			for {
				select {
				case <-ctx.Done():
					return
				case <-updates:
					r.syncTopology(feed.Topology())
				}
			}
		}()
	})
}

// Close stops the watch and waits for it. It is idempotent and safe without
// Start.
func (r *Balanced) Close() {
	r.watch.once.Do(func() {}) // a later Start does nothing
	if r.watch.cancel != nil {
		r.watch.cancel()
		<-r.watch.done
	}
}
