package router

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap"
)

// Migrant is a live session as the rebalancer sees it. pkg/server adapts the
// proxy's sessions to it; tests use fakes.
type Migrant interface {
	ID() uint64
	// Placement is the session's cluster and backend address; "" before the
	// session is routed.
	Placement() (cluster, addr string)
	// Migratable reports whether the session could move now, and why not.
	Migratable() (ok bool, reason string)
	// Redirect asks the session to move to addr, a backend of its own
	// cluster, at its next safe point. It does not block; false means the
	// session cannot take the request now (already moving, ending).
	Redirect(addr string) bool
	// Evict ends the session, telling the client msg in an ERR packet.
	Evict(msg string)
}

// MigrantSource lists the live sessions.
type MigrantSource interface {
	Migrants() []Migrant
}

const (
	// rebalanceTick is how often the rebalancer looks at the sessions.
	rebalanceTick = 100 * time.Millisecond
	// retryAfterFailure keeps a session whose move failed from being asked
	// again at once (TiProxy: redirectFailMinInterval).
	retryAfterFailure = 3 * time.Second
	// pendingTTL forgets a move the session never reported (it may be held in
	// a long transaction); the session may be asked again after it.
	pendingTTL = 2 * time.Minute
	// recentEvents is how many finished migrations Recent keeps.
	recentEvents = 100
)

type rebalanceSettings struct {
	enabled          bool
	policy, zone     string
	rate, evictRate  float64
	ratio, cpuGap    float64
	defaultDrainTime time.Duration
}

type pendingMove struct {
	cluster, from, to, reason string
	at                        time.Time
}

// Rebalancer decides which sessions should move, and where, inside their own
// cluster: away from drained, unhealthy, voted-down and removed backends
// (every session, at evictions-per-second), then from loaded backends to idle
// ones by the balance factors, with deadbands and a rate per factor so that
// nothing moves back and forth. It only asks (Migrant.Redirect): the session
// moves at its next safe point and reports through MigrationDone.
type Rebalancer struct {
	lg  *zap.Logger
	r   *Balanced
	src MigrantSource
	obs MigrationObserver
	now func() time.Time
	set atomic.Pointer[rebalanceSettings]

	mu       sync.Mutex
	pending  map[uint64]*pendingMove
	failedAt map[uint64]time.Time
	lastErr  map[uint64]string // why the session's last move failed
	evicted  map[uint64]bool
	buckets  map[string]*bucket
	cpuDelta map[string]cpuDelta // by backend ID
	recent   []MigrationEvent
	totals   map[string]int64 // by result

	loop lifecycle.Loop // the round ticker
}

// cpuDelta is the CPU the rebalancer moved onto (+) or off (-) a backend
// since its metrics were read at `at`: CPU readings lag, and moving on a
// stale reading moves far too many sessions (TiProxy #559).
type cpuDelta struct {
	at    time.Time
	delta float64
}

// NewRebalancer builds a rebalancer over the sessions of src, routed by r.
// obs may be nil.
func NewRebalancer(lg *zap.Logger, r *Balanced, src MigrantSource, obs MigrationObserver, cfg *config.Config) *Rebalancer {
	rb := &Rebalancer{
		lg: lg.Named("rebalance"), r: r, src: src, obs: obs, now: time.Now,
		pending: map[uint64]*pendingMove{}, failedAt: map[uint64]time.Time{}, evicted: map[uint64]bool{},
		lastErr: map[uint64]string{},
		buckets: map[string]*bucket{}, cpuDelta: map[string]cpuDelta{}, totals: map[string]int64{},
	}
	rb.Update(cfg)
	return rb
}

// Update applies the [balance] settings of cfg from the next round on.
func (rb *Rebalancer) Update(cfg *config.Config) {
	b := cfg.Balance
	rb.set.Store(&rebalanceSettings{
		enabled: b.EnableRebalance, policy: b.Policy, zone: cfg.Proxy.Labels["zone"],
		rate: b.MigrationsPerSecond, evictRate: b.EvictionsPerSecond,
		ratio: b.RebalanceRatio, cpuGap: b.CPUGap,
		defaultDrainTime: b.BackendDrainTimeout.Duration,
	})
}

// DrainTimeout is the configured time a drained backend's sessions get.
func (rb *Rebalancer) DrainTimeout() time.Duration { return rb.set.Load().defaultDrainTime }

// Start runs a round every 100 ms until ctx ends or Close. A second Start,
// or one after Close, does nothing.
func (rb *Rebalancer) Start(ctx context.Context) {
	rb.loop.Start(ctx, func(ctx context.Context) {
		t := time.NewTicker(rebalanceTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				rb.Step()
			}
		}
	})
}

// Close stops the rounds and waits for the one in progress. Idempotent.
func (rb *Rebalancer) Close() { rb.loop.Close() }

// placed is one session in a round.
type placed struct {
	m    Migrant
	id   uint64
	addr string
}

// Step runs one round. Start calls it every 100 ms; tests call it directly.
func (rb *Rebalancer) Step() {
	set := rb.set.Load()
	topo := rb.r.topo.Topology()
	migrants := rb.src.Migrants()
	now := rb.now()

	rb.mu.Lock()
	defer rb.mu.Unlock()
	byCluster := map[string][]placed{}
	live := make(map[uint64]bool, len(migrants))
	for _, m := range migrants {
		cluster, addr := m.Placement()
		if cluster == "" {
			continue
		}
		id := m.ID()
		live[id] = true
		if p := rb.pending[id]; p != nil && (p.from != addr || now.Sub(p.at) > pendingTTL) {
			// Moved without a report, or never reached a safe point.
			delete(rb.pending, id)
		}
		byCluster[cluster] = append(byCluster[cluster], placed{m: m, id: id, addr: addr})
	}
	for id := range rb.pending {
		if !live[id] {
			delete(rb.pending, id)
		}
	}
	for id, at := range rb.failedAt {
		if !live[id] || now.Sub(at) > retryAfterFailure {
			delete(rb.failedAt, id)
		}
	}
	for id := range rb.evicted {
		if !live[id] {
			delete(rb.evicted, id)
		}
	}
	for id := range rb.lastErr {
		if !live[id] {
			delete(rb.lastErr, id)
		}
	}
	for cluster, ms := range byCluster {
		// Only the session's own cluster is ever looked at: a session never
		// moves to another cluster, whatever the state of its own.
		view := topo.Cluster(cluster)
		if view == nil || view.State == observer.StateDraining {
			continue
		}
		rb.balanceCluster(now, set, view, ms)
	}
}

// clusterRound is one cluster's view during a round.
type clusterRound struct {
	rb      *Rebalancer
	now     time.Time
	set     *rebalanceSettings
	view    *observer.ClusterView
	byAddr  map[string]*observer.Backend
	targets []*observer.Backend // backends that may take sessions
	counts  map[string]int64    // sessions per addr, counting moves asked for
	ms      []placed
}

func (rb *Rebalancer) balanceCluster(now time.Time, set *rebalanceSettings, view *observer.ClusterView, ms []placed) {
	c := &clusterRound{rb: rb, now: now, set: set, view: view, ms: ms,
		byAddr: map[string]*observer.Backend{}, counts: map[string]int64{}}
	for _, b := range view.Backends {
		c.byAddr[b.Addr] = b
	}
	for _, pm := range ms {
		c.counts[pm.addr]++
	}
	for _, p := range rb.pending {
		if p.cluster == view.Name {
			c.counts[p.from]--
			c.counts[p.to]++
		}
	}
	drains := rb.r.Drains()
	voted := rb.r.fleetVoted()
	c.targets = rb.r.takers(view, voted)

	c.closeTimedOut(drains)
	if !set.enabled {
		return
	}
	c.evict(drains, voted)
	c.balanceLoad()
}

// takers lists the backends of view that may take sessions.
func (r *Balanced) takers(view *observer.ClusterView, voted map[string]bool) []*observer.Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*observer.Backend
	for _, b := range view.Backends {
		if ok, _ := r.canTake(b, voted); ok {
			out = append(out, b)
		}
	}
	return out
}

// closeTimedOut closes the sessions still on a drained backend after its
// deadline, telling each client why it could not move.
func (c *clusterRound) closeTimedOut(drains map[string]Drain) {
	for _, pm := range c.ms {
		d, ok := drains[observer.BackendID(c.view.Name, pm.addr)]
		if !ok || !c.now.After(d.Deadline) || c.rb.evicted[pm.id] {
			continue
		}
		why := "it was still moving"
		if ok, reason := pm.m.Migratable(); !ok {
			why = reason
		} else if e := c.rb.lastErr[pm.id]; e != "" {
			why = "its last attempt failed: " + e
		} else if len(c.targets) == 0 {
			why = "no other backend of cluster " + c.view.Name + " could take it"
		}
		msg := fmt.Sprintf("backend %s was drained by an operator and this session could not move to another backend of cluster %s within %s: %s",
			d.ID, c.view.Name, d.Deadline.Sub(d.Since).Round(time.Second), why)
		pm.m.Evict(msg)
		c.rb.evicted[pm.id] = true
		c.rb.record(MigrationEvent{Time: c.now, SessionID: pm.id, Cluster: c.view.Name, From: pm.addr,
			Reason: ReasonDrain, Result: ResultClosed, Error: why})
	}
}

// evictReason says why the sessions on addr must leave it, or "".
func (c *clusterRound) evictReason(addr string, drains map[string]Drain, voted map[string]bool) string {
	id := observer.BackendID(c.view.Name, addr)
	b := c.byAddr[addr]
	switch {
	case b == nil:
		return ReasonRemoved
	case drains[id].ID != "":
		return ReasonDrain
	case voted[id]:
		return ReasonVotedDown
	case !b.Health.Healthy:
		return ReasonUnhealthy
	}
	return ""
}

// movable reports whether pm may be asked to move in this round.
func (c *clusterRound) movable(pm placed) bool {
	if c.rb.pending[pm.id] != nil || c.rb.evicted[pm.id] {
		return false
	}
	if _, failed := c.rb.failedAt[pm.id]; failed {
		return false
	}
	ok, _ := pm.m.Migratable()
	return ok
}

func (c *clusterRound) evict(drains map[string]Drain, voted map[string]bool) {
	if len(c.targets) == 0 {
		return
	}
	for _, pm := range c.ms {
		reason := c.evictReason(pm.addr, drains, voted)
		if reason == "" || !c.movable(pm) {
			continue
		}
		if !c.rb.take(c.view.Name, "evict", c.set.evictRate, c.now) {
			return
		}
		to := c.bestTarget(pm.addr)
		if to == nil {
			return
		}
		c.redirect(pm, to.Addr, reason)
	}
}

// bestTarget is the best backend to take one more session, other than from.
func (c *clusterRound) bestTarget(from string) *observer.Backend {
	var best *observer.Backend
	var bestScore scoreKey
	for _, b := range c.targets {
		if b.Addr == from {
			continue
		}
		s := c.score(b)
		if best == nil || lessScore(s, bestScore) {
			best, bestScore = b, s
		}
	}
	return best
}

// redirect asks pm to move to addr and books the move.
func (c *clusterRound) redirect(pm placed, addr, reason string) bool {
	if !pm.m.Redirect(addr) {
		c.rb.failedAt[pm.id] = c.now
		return false
	}
	c.rb.pending[pm.id] = &pendingMove{cluster: c.view.Name, from: pm.addr, to: addr, reason: reason, at: c.now}
	c.counts[pm.addr]--
	c.counts[addr]++
	return true
}
