package router

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Errors of Drain and Claim that callers branch on (the API answers 404 for
// an unknown backend). Claim's errors also wrap ErrNoBackend.
var (
	ErrUnknownBackend = errors.New("unknown backend")
	ErrNotRoutable    = errors.New("backend cannot take sessions")
)

// Drain is an operator's request that a backend take no new sessions and
// that its sessions move away by Deadline.
type Drain struct {
	// ID is the backend ID, "<cluster>/<addr>".
	ID       string    `json:"id"`
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline"`
}

// Drain marks the backend id of the current topology as drained for timeout.
// Draining an already drained backend sets a new deadline and keeps Since.
// Drains live in this proxy's memory only and survive the backend leaving and
// rejoining the topology, until Undrain.
func (r *Balanced) Drain(id string, timeout time.Duration) (Drain, error) {
	if timeout <= 0 {
		return Drain{}, fmt.Errorf("drain %s: the timeout must be positive", id)
	}
	if r.topo.Topology().Backend(id) == nil {
		return Drain{}, fmt.Errorf("%w: %s is not a backend of any cluster (want <cluster>/<addr> as in /api/v1/backends)", ErrUnknownBackend, id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	d, ok := r.drains[id]
	if !ok {
		d = Drain{ID: id, Since: now}
	}
	d.Deadline = now.Add(timeout)
	next := maps.Clone(r.drains)
	if next == nil {
		next = map[string]Drain{}
	}
	next[id] = d
	r.drains = next
	return d, nil
}

// Undrain lets the backend take sessions again. It reports whether the
// backend was drained.
func (r *Balanced) Undrain(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.drains[id]; !ok {
		return false
	}
	next := maps.Clone(r.drains)
	delete(next, id)
	r.drains = next
	return true
}

// Drains returns the drained backends by ID. The map is shared: do not
// modify it.
func (r *Balanced) Drains() map[string]Drain {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drains
}

// canTake reports whether backend b may take a session (a new one, or one
// moving in), and why not. Callers hold r.mu.
func (r *Balanced) canTake(b *observer.Backend, voted map[string]bool) (bool, string) {
	switch {
	case !b.Health.Healthy:
		return false, "unhealthy: " + orNone(b.Health.Reason)
	case voted[b.ID]:
		return false, "voted down by the fleet"
	}
	if _, ok := r.drains[b.ID]; ok {
		return false, "drained by an operator"
	}
	if st := r.backends[b.ID]; st != nil && r.now().Before(st.downUntil) {
		return false, "this proxy failed to reach it moments ago"
	}
	return true, ""
}

func (r *Balanced) fleetVoted() map[string]bool {
	if p := r.fleetDown.Load(); p != nil {
		return *p
	}
	return nil
}

// Claim gives a lease on the backend addr of cluster, for a session that
// moves there. It refuses a backend of another cluster (a session never
// leaves its cluster), one that is unknown, unhealthy, voted down or drained.
func (r *Balanced) Claim(cluster, addr string) (Lease, error) {
	id := observer.BackendID(cluster, addr)
	b := r.topo.Topology().Backend(id)
	if b == nil || b.Cluster != cluster {
		return nil, fmt.Errorf("%w (%w): %s is not a backend of cluster %s", ErrNoBackend, ErrUnknownBackend, addr, cluster)
	}
	voted := r.fleetVoted()
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok, why := r.canTake(b, voted); !ok {
		return nil, fmt.Errorf("%w (%w): %s is %s", ErrNoBackend, ErrNotRoutable, id, why)
	}
	r.state(id).sessions++
	return &lease{r: r, b: b, user: ""}, nil
}
