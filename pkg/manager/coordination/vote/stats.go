package vote

import (
	"maps"
	"time"
)

// Metrics observes vote rounds; pkg/metrics implements it with
// Prometheus collectors. Calls come from the goroutine that ran the round.
type Metrics interface {
	// ObserveRound is called once per round: result is ResultApproved or a
	// Blocked* reason.
	ObserveRound(cluster, state, result string, d time.Duration)
	// ObserveVote is called once per vote of a round (VoteDown, VoteUp,
	// VoteUnknown).
	ObserveVote(cluster, vote string)
}

// Stats are a Coordinator's counters since it was built.
type Stats struct {
	// Rounds counts rounds by result (ResultApproved or a Blocked* reason).
	Rounds map[string]uint64
	// Votes counts votes by value.
	Votes map[string]uint64
	// RoundTime is the total duration of the rounds counted in Rounds.
	RoundTime time.Duration
}

func newStats() Stats {
	return Stats{Rounds: map[string]uint64{}, Votes: map[string]uint64{}}
}

// Stats returns a copy of the counters.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Rounds: maps.Clone(c.stats.Rounds), Votes: maps.Clone(c.stats.Votes), RoundTime: c.stats.RoundTime}
}

func (c *Coordinator) record(d Decision) {
	c.mu.Lock()
	c.stats.Rounds[d.Result()]++
	c.stats.RoundTime += d.Duration
	for _, v := range d.Votes {
		c.stats.Votes[v.Vote]++
	}
	c.mu.Unlock()
	if m := c.opts.Metrics; m != nil {
		m.ObserveRound(d.Cluster, d.State, d.Result(), d.Duration)
		for _, v := range d.Votes {
			m.ObserveVote(d.Cluster, v.Vote)
		}
	}
}
