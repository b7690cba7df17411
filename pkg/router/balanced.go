package router

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/balance"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// downFor is how long a backend that this proxy failed to reach is skipped
// by new sessions, before the prober has had time to say so.
const downFor = 2 * time.Second

// TopologySource gives the latest topology (observer.Aggregator).
type TopologySource interface {
	Topology() *observer.Topology
}

// Balanced routes a client to a cluster by Rules, then to the best backend of
// that cluster by balance scores. It never looks outside the chosen cluster,
// so a session of cluster A cannot reach a backend of cluster B, even when
// every backend of A is down.
type Balanced struct {
	topo     TopologySource
	rules    atomic.Pointer[Rules]
	settings atomic.Pointer[settings]
	// fleetDown holds the backend IDs the fleet voted down: no new sessions,
	// like an unhealthy backend, whatever this node's own probes say.
	fleetDown atomic.Pointer[map[string]bool]
	now       func() time.Time

	mu       sync.Mutex
	backends map[string]*backendState // by backend ID
	rr       int                      // rotates ties between equal backends
	// drains are the backends an operator drained, by ID; replaced, never
	// modified, so Drains can hand it out.
	drains map[string]Drain

	watch watch // Start, Close
}

type settings struct{ policy, zone string }

// backendState is what the router itself knows about a backend.
type backendState struct {
	sessions  int64
	atMetrics int64     // sessions when the metrics were last read
	metricsAt time.Time // Metrics.UpdatedAt of that reading
	downUntil time.Time // set when a dial failed
}

var _ Router = (*Balanced)(nil)

// NewBalanced returns a router over topo configured by cfg.
func NewBalanced(topo TopologySource, cfg *config.Config) *Balanced {
	r := &Balanced{topo: topo, now: time.Now, backends: map[string]*backendState{}}
	r.Update(cfg)
	return r
}

// Update swaps in the routing rules and balance settings of cfg. Sessions
// already routed are not affected.
func (r *Balanced) Update(cfg *config.Config) {
	r.rules.Store(NewRules(cfg))
	r.settings.Store(&settings{policy: cfg.Balance.Policy, zone: cfg.Proxy.Labels["zone"]})
}

// SetFleetDown replaces the set of backend IDs the fleet has voted down.
func (r *Balanced) SetFleetDown(ids map[string]bool) { r.fleetDown.Store(&ids) }

// MapUser implements Router.
func (r *Balanced) MapUser(cluster, user string) (string, error) {
	return r.rules.Load().MapUser(cluster, user)
}

// Route implements Router.
func (r *Balanced) Route(ci ClientInfo, exclude []string) (Lease, error) {
	cluster, user, err := r.rules.Load().Match(ci)
	if err != nil {
		return nil, err
	}
	view := r.topo.Topology().Cluster(cluster)
	switch {
	case view == nil:
		return nil, fmt.Errorf("%w: cluster %s is not running (its runtime failed to start; see the proxy log)", ErrNoBackend, cluster)
	case view.State == observer.StateDraining:
		return nil, fmt.Errorf("%w: cluster %s is being removed", ErrNoBackend, cluster)
	}
	set := r.settings.Load()
	var voted map[string]bool
	if p := r.fleetDown.Load(); p != nil {
		voted = *p
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	cands := make([]balance.Candidate, 0, len(view.Backends))
	var failed []balance.Candidate
	n := len(view.Backends)
	r.rr++
	drained := 0
	for i := range n {
		b := view.Backends[(i+r.rr)%n]
		if _, ok := r.drains[b.ID]; ok {
			drained++
			continue
		}
		if excluded(b.ID, exclude) || voted[b.ID] {
			continue
		}
		st := r.state(b.ID)
		if !b.Metrics.UpdatedAt.Equal(st.metricsAt) {
			st.metricsAt, st.atMetrics = b.Metrics.UpdatedAt, st.sessions
		}
		c := balance.Candidate{Backend: b, Sessions: st.sessions, SessionsAtMetrics: st.atMetrics}
		if now.Before(st.downUntil) {
			failed = append(failed, c)
		} else {
			cands = append(cands, c)
		}
	}
	i := balance.Pick(set.policy, set.zone, cands)
	if i < 0 {
		// Backends this proxy just failed to reach are a last resort: the
		// failure may have been the client's network blip, not theirs.
		cands = failed
		i = balance.Pick(set.policy, set.zone, cands)
	}
	if i < 0 {
		if drained > 0 && drained == n {
			return nil, fmt.Errorf("%w: every backend of cluster %s is drained by an operator", ErrNoBackend, view.Name)
		}
		return nil, noBackendError(view, len(exclude))
	}
	b := cands[i].Backend
	r.backends[b.ID].sessions++
	return &lease{r: r, b: b, user: user}, nil
}

func (r *Balanced) state(id string) *backendState {
	st := r.backends[id]
	if st == nil {
		st = &backendState{}
		r.backends[id] = st
	}
	return st
}

// noBackendError explains why a cluster has nothing to offer.
func noBackendError(v *observer.ClusterView, tried int) error {
	switch {
	case len(v.Backends) == 0 && v.State == observer.StateConnecting:
		return fmt.Errorf("%w: cluster %s is still connecting to its etcd (%s)", ErrNoBackend, v.Name, orNone(v.LastError))
	case len(v.Backends) == 0:
		return fmt.Errorf("%w: cluster %s has no registered backends", ErrNoBackend, v.Name)
	case tried >= len(v.Backends):
		return fmt.Errorf("%w: all %d backends of cluster %s failed", ErrNoBackend, len(v.Backends), v.Name)
	}
	reason := ""
	for _, b := range v.Backends {
		if !b.Health.Healthy {
			reason = fmt.Sprintf("; %s: %s", b.Addr, b.Health.Reason)
			break
		}
	}
	return fmt.Errorf("%w: no healthy backend in cluster %s (%d known%s)", ErrNoBackend, v.Name, len(v.Backends), reason)
}

func orNone(s string) string {
	if s == "" {
		return "no answer yet"
	}
	return s
}

// syncTopology forgets what the router learned about backends that left t:
// a backend that registers again starts afresh, without the skip a failed
// dial set, so it is routable as soon as it is back. The router's own watch
// (Start) calls it after each topology change.
func (r *Balanced) syncTopology(t *observer.Topology) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, st := range r.backends {
		if t.Backend(id) != nil {
			continue
		}
		st.downUntil = time.Time{}
		if st.sessions == 0 {
			delete(r.backends, id)
		}
	}
}

// Sessions returns the number of routed sessions per backend ID.
func (r *Balanced) Sessions() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.backends))
	for id, st := range r.backends {
		if st.sessions > 0 {
			out[id] = st.sessions
		}
	}
	return out
}

func (r *Balanced) release(id string, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.backends[id]
	if st == nil {
		return
	}
	st.sessions--
	if failed {
		st.downUntil = r.now().Add(downFor)
	}
	// Forget backends that left the topology once their last session ends.
	if st.sessions == 0 && !failed && r.topo.Topology().Backend(id) == nil {
		delete(r.backends, id)
	}
}

func excluded(id string, exclude []string) bool {
	for _, e := range exclude {
		if e == id {
			return true
		}
	}
	return false
}

type lease struct {
	r    *Balanced
	b    *observer.Backend
	user string
	once sync.Once
}

func (l *lease) ID() string      { return l.b.ID }
func (l *lease) Addr() string    { return l.b.Addr }
func (l *lease) Cluster() string { return l.b.Cluster }
func (l *lease) User() string    { return l.user }

func (l *lease) Failed(error) { l.once.Do(func() { l.r.release(l.b.ID, true) }) }
func (l *lease) Release()     { l.once.Do(func() { l.r.release(l.b.ID, false) }) }
