package observer

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/lib/notify"
)

// Aggregator merges the views that cluster runtimes publish into one
// Topology. Publishing costs a copy of the cluster map (not of the backends),
// and subscribers are woken through one-slot channels, so a slow subscriber
// never blocks a runtime: it just sees the latest Topology when it looks.
type Aggregator struct {
	mu   sync.Mutex // serializes writers; readers use topo
	topo atomic.Pointer[Topology]
	subs notify.Fanout
}

// NewAggregator returns an Aggregator with an empty Topology.
func NewAggregator() *Aggregator {
	a := &Aggregator{}
	a.topo.Store(&Topology{Clusters: map[string]*ClusterView{}})
	return a
}

// Topology returns the latest snapshot. It is never nil and never mutated.
func (a *Aggregator) Topology() *Topology { return a.topo.Load() }

// Publish replaces the view of v.Name. A view from an older generation than
// the one published is dropped: a runtime that was replaced by a reload may
// still be finishing its last update, and must not overwrite its successor.
func (a *Aggregator) Publish(v *ClusterView) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.topo.Load()
	if cur := old.Clusters[v.Name]; cur != nil && cur.Generation > v.Generation {
		return
	}
	a.swap(old, func(m map[string]*ClusterView) { m[v.Name] = v })
}

// Remove deletes the named cluster if generation is the one published, so a
// closing runtime cannot remove its replacement.
func (a *Aggregator) Remove(name string, generation uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.topo.Load()
	if cur := old.Clusters[name]; cur == nil || cur.Generation != generation {
		return
	}
	a.swap(old, func(m map[string]*ClusterView) { delete(m, name) })
}

// swap publishes a copy of old changed by edit and wakes subscribers. The
// caller holds mu.
func (a *Aggregator) swap(old *Topology, edit func(map[string]*ClusterView)) {
	clusters := maps.Clone(old.Clusters)
	edit(clusters)
	a.topo.Store(&Topology{Version: old.Version + 1, Clusters: clusters})
	a.subs.Notify()
}

// Subscribe returns a channel that receives a value after each change (at
// most one pending), and a function that ends the subscription.
func (a *Aggregator) Subscribe() (<-chan struct{}, func()) { return a.subs.Subscribe() }
