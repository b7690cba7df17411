package router

import (
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/balance"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Load balancing of live sessions. Each factor moves sessions only from the
// backend it rates worst to the one it rates best, only while the gap is
// wider than its deadband, and only when the target is not worse in any
// factor of higher priority (health, memory, CPU, zone, then sessions): a
// move one factor makes can then never be undone by another, and no factor's
// move makes its own reverse move worthwhile. Sessions on backends that must
// be left (drained, unhealthy ...) are not counted here; evict moves them.

// scoreKey is a backend's score during a round.
type scoreKey = balance.Score

func (c *clusterRound) score(b *observer.Backend) scoreKey {
	n := c.counts[b.Addr]
	s := balance.ScoreOf(c.set.policy, c.set.zone, balance.Candidate{Backend: b, Sessions: n, SessionsAtMetrics: n})
	if c.set.policy != config.PolicyConnection && b.Metrics.HasCPU {
		s.CPU = balance.CPUStep(c.cpu(b))
	}
	return s
}

func lessScore(a, b scoreKey) bool { return a.Compare(b) < 0 }

// notWorseAbove reports whether to is not worse than from in the factors
// above sessions.
func (c *clusterRound) notWorseAbove(to, from *observer.Backend) bool {
	st, sf := c.score(to), c.score(from)
	st.Sessions, sf.Sessions = 0, 0
	return st.Compare(sf) <= 0
}

// cpu is the backend's CPU estimate: its last reading plus what this
// rebalancer moved since that reading.
func (c *clusterRound) cpu(b *observer.Backend) float64 {
	d := c.rb.cpuDelta[b.ID]
	if !d.at.Equal(b.Metrics.UpdatedAt) {
		return b.Metrics.CPU
	}
	return b.Metrics.CPU + d.delta
}

func (c *clusterRound) shiftCPU(b *observer.Backend, by float64) {
	d := c.rb.cpuDelta[b.ID]
	if !d.at.Equal(b.Metrics.UpdatedAt) {
		d = cpuDelta{at: b.Metrics.UpdatedAt}
	}
	d.delta += by
	c.rb.cpuDelta[b.ID] = d
}

// cpuPerSession is what one session of b is estimated to cost.
func (c *clusterRound) cpuPerSession(b *observer.Backend) float64 {
	return c.cpu(b) / float64(max(1, c.counts[b.Addr]))
}

func (c *clusterRound) balanceLoad() {
	if len(c.targets) < 2 {
		return
	}
	if c.set.policy != config.PolicyConnection {
		c.loadFactor(ReasonLoadMemory, "memory", c.memoryPair)
		c.loadFactor(ReasonLoadCPU, "cpu", c.cpuPair)
	}
	c.loadFactor(ReasonLoadSessions, "sessions", c.sessionsPair)
}

// loadFactor moves sessions for one factor while pair finds a move worth
// making and the factor's rate allows.
func (c *clusterRound) loadFactor(reason, factor string, pair func() (from, to *observer.Backend)) {
	for {
		from, to := pair()
		if from == nil {
			return
		}
		c.busy = true
		pm, ok := c.pickSession(from.Addr)
		if !ok {
			return
		}
		if !c.rb.take(c.view.Name, factor, c.set.rate, c.now) {
			return
		}
		per := c.cpuPerSession(from)
		if c.redirect(pm, to.Addr, reason) && factor == "cpu" {
			c.shiftCPU(from, -per)
			c.shiftCPU(to, per)
		}
	}
}

// pickSession is a session on addr that may be asked to move.
func (c *clusterRound) pickSession(addr string) (placed, bool) {
	for _, pm := range c.ms {
		if pm.addr == addr && c.movable(pm) {
			return pm, true
		}
	}
	return placed{}, false
}

// sessionsPair: from the target with the most sessions to the one with the
// fewest, while from > (to+1) * rebalance-ratio. After a move from has one
// less and to one more, so the reverse condition (to+1 > (from-1+1)*ratio)
// cannot hold: sessions never swing back.
func (c *clusterRound) sessionsPair() (from, to *observer.Backend) {
	for _, b := range c.targets {
		if from == nil || c.counts[b.Addr] > c.counts[from.Addr] {
			from = b
		}
	}
	for _, b := range c.targets {
		if b == from || !c.notWorseAbove(b, from) {
			continue
		}
		if to == nil || c.counts[b.Addr] < c.counts[to.Addr] {
			to = b
		}
	}
	if from == nil || to == nil {
		return nil, nil
	}
	if float64(c.counts[from.Addr]) <= float64(c.counts[to.Addr]+1)*c.set.ratio {
		return nil, nil
	}
	return from, to
}

// cpuPair: from the busiest backend to the idlest, while the gap exceeds
// cpu-gap and moving one session cannot reverse the order (TiProxy's guard
// against a target that would end up busier).
func (c *clusterRound) cpuPair() (from, to *observer.Backend) {
	for _, b := range c.targets {
		if !b.Metrics.HasCPU {
			continue
		}
		if from == nil || c.cpu(b) > c.cpu(from) {
			from = b
		}
		if to == nil || c.cpu(b) < c.cpu(to) {
			to = b
		}
	}
	if from == nil || to == nil || from == to || c.counts[from.Addr] == 0 {
		return nil, nil
	}
	gap := c.cpu(from) - c.cpu(to)
	if gap <= c.set.cpuGap || 2*c.cpuPerSession(from) >= gap {
		return nil, nil
	}
	sf, st := c.score(from), c.score(to)
	if st.Health > sf.Health || st.Memory > sf.Memory {
		return nil, nil
	}
	return from, to
}

// memoryPair: from a backend at high risk of running out of memory (score 2)
// to one at no risk (0); a gap of one step is not worth a move.
func (c *clusterRound) memoryPair() (from, to *observer.Backend) {
	for _, b := range c.targets {
		s := c.score(b)
		switch {
		case s.Memory == 2 && c.counts[b.Addr] > 0 && (from == nil || lessScore(c.score(from), s)):
			from = b
		case s.Memory == 0 && (to == nil || lessScore(s, c.score(to))):
			to = b
		}
	}
	if from == nil || to == nil || c.score(to).Health > c.score(from).Health {
		return nil, nil
	}
	return from, to
}

// bucket is a token bucket: rate tokens a second, at most one round's worth
// (at least one) saved up, so that no second sees more than the rate plus one.
type bucket struct {
	tokens float64
	at     time.Time
}

func (rb *Rebalancer) take(cluster, factor string, rate float64, now time.Time) bool {
	key := cluster + "/" + factor
	burst := max(1, rate*rebalanceTick.Seconds())
	b := rb.buckets[key]
	if b == nil {
		b = &bucket{tokens: burst, at: now}
		rb.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
