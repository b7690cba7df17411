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
	// Migrants appends the routed sessions to dst and returns it (the
	// rebalancer reuses one slice from round to round).
	Migrants(dst []Migrant) []Migrant
	// SessionCount is the number of live sessions, routed or not: cheap,
	// without a lock (a change wakes the rebalancer out of its quiet state).
	SessionCount() int
}

const (
	// rebalanceTick is how often the rebalancer looks at the sessions.
	rebalanceTick = 100 * time.Millisecond
	// quietRoundEvery is how often a quiet rebalancer still runs a round
	// (see tick): what a round depends on but tick does not compare (the
	// clock: a backend this proxy failed to reach becomes a target again;
	// a session that was not migratable becomes so) is seen this late at most.
	quietRoundEvery = time.Second
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

	// round holds what runRound rebuilds every round, kept between rounds
	// so that a round over many idle sessions allocates nothing. roundMu
	// serialises rounds (taken before mu and before the session source's
	// own lock).
	roundMu sync.Mutex
	round   roundBuffers
	quiet   quietState // tick's, under roundMu

	loop lifecycle.Loop // the round ticker
}

// quietState is what tick remembers of the last round: whether it found
// nothing to do, when it ran, and the inputs it ran on.
type quietState struct {
	quiet  bool
	at     time.Time
	inputs roundInputs
}

// roundInputs are what a round depends on, apart from the sessions'
// states and the clock: settings, topology (health, metrics, membership)
// and the number of sessions.
type roundInputs struct {
	set      *rebalanceSettings
	topo     *observer.Topology
	sessions int
}

// roundBuffers are runRound's working sets, reused from round to round.
type roundBuffers struct {
	migrants  []Migrant
	byCluster map[string][]placed
	live      map[uint64]bool
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
				rb.tick()
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

// tick is one beat of the ticker: a round, unless the last round was quiet
// (nothing to move, evict or close, nothing pending, no drain and no fleet
// vote), and its inputs are unchanged, and it ran less than quietRoundEvery
// ago. A round looks at every routed session, so idle sessions cost it
// their number at every beat; a quiet proxy now pays that once a second.
func (rb *Rebalancer) tick() {
	rb.roundMu.Lock()
	defer rb.roundMu.Unlock()
	now := rb.now()
	in := roundInputs{set: rb.set.Load(), topo: rb.r.topo.Topology(), sessions: rb.src.SessionCount()}
	if q := rb.quiet; q.quiet && q.inputs == in && now.Sub(q.at) < quietRoundEvery {
		return
	}
	rb.quiet = quietState{quiet: rb.runRound(in.set, in.topo), at: now, inputs: in}
}

// Step runs one round. The ticker runs them through tick; tests call it
// directly.
func (rb *Rebalancer) Step() {
	rb.roundMu.Lock()
	defer rb.roundMu.Unlock()
	rb.quiet = quietState{}
	rb.runRound(rb.set.Load(), rb.r.topo.Topology())
}

// runRound runs one round and reports whether it was quiet. The caller holds
// roundMu.
//
// A round looks at every routed session, so its cost per session counts:
// with 9,700 idle sessions, rounds that built their lists afresh were 95 %
// of the idle proxy's CPU (the scan and the garbage collection of what it
// allocated). The lists are now reused, and the set of live sessions is only
// built when there are per-session records to clear.
func (rb *Rebalancer) runRound(set *rebalanceSettings, topo *observer.Topology) (quiet bool) {
	buf := &rb.round
	clear(buf.migrants) // drop the last round's sessions, which may have ended
	buf.migrants = rb.src.Migrants(buf.migrants[:0])
	now := rb.now()

	rb.mu.Lock()
	defer rb.mu.Unlock()
	if buf.byCluster == nil {
		buf.byCluster = map[string][]placed{}
	}
	for cluster, ms := range buf.byCluster {
		clear(ms)
		buf.byCluster[cluster] = ms[:0]
	}
	var live map[uint64]bool
	if rb.tracksSessions() {
		if buf.live == nil {
			buf.live = map[uint64]bool{}
		}
		live = buf.live
		clear(live)
	}
	for _, m := range buf.migrants {
		cluster, addr := m.Placement()
		if cluster == "" {
			continue
		}
		id := m.ID()
		if live != nil {
			live[id] = true
		}
		if p := rb.pending[id]; p != nil && (p.from != addr || now.Sub(p.at) > pendingTTL) {
			// Moved without a report, or never reached a safe point.
			delete(rb.pending, id)
		}
		buf.byCluster[cluster] = append(buf.byCluster[cluster], placed{m: m, id: id, addr: addr})
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
	busy := false
	for cluster, ms := range buf.byCluster {
		if len(ms) == 0 {
			delete(buf.byCluster, cluster) // a cluster gone, or with no sessions left
			continue
		}
		// Only the session's own cluster is ever looked at: a session never
		// moves to another cluster, whatever the state of its own.
		view := topo.Cluster(cluster)
		if view == nil || view.State == observer.StateDraining {
			continue
		}
		if rb.balanceCluster(now, set, view, ms) {
			busy = true
		}
	}
	return !busy && len(rb.r.Drains()) == 0 && len(rb.r.fleetVoted()) == 0 && !rb.tracksSessions()
}

// tracksSessions reports whether the rebalancer holds records of particular
// sessions (moves pending, failures, evictions), which a round must clear
// of the sessions that ended. The caller holds mu.
func (rb *Rebalancer) tracksSessions() bool {
	return len(rb.pending)+len(rb.failedAt)+len(rb.evicted)+len(rb.lastErr) > 0
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
	// busy: the round found sessions that should move (or leave), whether
	// or not it could ask them to now.
	busy bool
}

// balanceCluster runs one cluster's round and reports whether it was busy.
func (rb *Rebalancer) balanceCluster(now time.Time, set *rebalanceSettings, view *observer.ClusterView, ms []placed) (busy bool) {
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
		return false
	}
	c.evict(drains, voted)
	c.balanceLoad()
	return c.busy
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
	if len(drains) == 0 {
		return
	}
	// By backend, not by session: a cluster's sessions share a few.
	expired := map[string]Drain{}
	for addr := range c.counts {
		if d, ok := drains[observer.BackendID(c.view.Name, addr)]; ok && c.now.After(d.Deadline) {
			expired[addr] = d
		}
	}
	if len(expired) == 0 {
		return
	}
	for _, pm := range c.ms {
		d, ok := expired[pm.addr]
		if !ok || c.rb.evicted[pm.id] {
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
	// By backend, not by session: a cluster's sessions share a few.
	reasons := map[string]string{}
	for addr := range c.counts {
		if r := c.evictReason(addr, drains, voted); r != "" {
			reasons[addr] = r
		}
	}
	if len(reasons) == 0 {
		return
	}
	c.busy = true
	for _, pm := range c.ms {
		reason := reasons[pm.addr]
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
