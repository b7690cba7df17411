package vote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.uber.org/zap"
)

// Coordinator defaults.
const (
	DefaultMaxDownPerMinute = 2
	DefaultPeerTimeout      = time.Second
	DefaultRoundTimeout     = 2 * time.Second
	DefaultProposeBackoff   = 2 * time.Second
)

// Results of a round: ResultApproved, or the reason it was blocked.
const (
	ResultApproved = "approved"
	// BlockedPeerUp: a down proposal lost because voters still reach the
	// backend (the leader alone cannot, or too few others agree).
	BlockedPeerUp = "peer_up"
	// BlockedPeerDown: an up proposal lost because voters still fail to
	// reach the backend.
	BlockedPeerDown = "peer_down"
	// BlockedNoQuorum: not enough voters answered either way (unreachable
	// peers, unknown votes, a lone voter without AllowSingleVoter).
	BlockedNoQuorum    = "no_quorum"
	BlockedStaleTerm   = "stale_term"
	BlockedRateLimit   = "rate_limit"
	BlockedLastBackend = "last_backend"
	BlockedNotLeader   = "not_leader"
	BlockedWriteFailed = "write_failed"
)

// CoordinatorOptions tune a Coordinator. Zero values mean the defaults.
type CoordinatorOptions struct {
	// AllowSingleVoter lets a round with one voter (this node) decide.
	AllowSingleVoter bool
	// MaxDownPerMinute bounds the down verdicts per cluster (default 2).
	MaxDownPerMinute int
	// PeerTimeout bounds one peer's answer (default 1s); voters are asked to
	// probe for 3/4 of it so that their answer arrives in time.
	PeerTimeout time.Duration
	// RoundTimeout bounds a whole round, the verdict write included
	// (default 2s).
	RoundTimeout time.Duration
	// Backoff is how long Reconcile waits before proposing again what a
	// round just blocked (default 2s).
	Backoff time.Duration
	// HealthyCount returns how many backends of cluster other than except
	// have no down verdict and are healthy to the local prober. Propose
	// needs it to never mark the last one down: without it, Propose blocks
	// every down proposal (Reconcile counts from its own inputs).
	HealthyCount func(cluster, except string) int
	// Metrics, when not nil, observes rounds and votes.
	Metrics Metrics
}

func (o CoordinatorOptions) withDefaults() CoordinatorOptions {
	if o.MaxDownPerMinute <= 0 {
		o.MaxDownPerMinute = DefaultMaxDownPerMinute
	}
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = DefaultPeerTimeout
	}
	if o.RoundTimeout <= 0 {
		o.RoundTimeout = DefaultRoundTimeout
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultProposeBackoff
	}
	return o
}

// Decision is the outcome of one round.
type Decision struct {
	Cluster string
	Backend string
	// State is the proposed verdict state: VerdictDown or VerdictUp.
	State    string
	Approved bool
	// BlockedReason is one of the Blocked* constants when not Approved.
	BlockedReason string
	Votes         []coordination.Vote
	Round         string
	Term          int64
	Duration      time.Duration
}

// Result is ResultApproved or the BlockedReason.
func (d Decision) Result() string {
	if d.Approved {
		return ResultApproved
	}
	return d.BlockedReason
}

// Coordinator runs the vote rounds of the prober roles this node leads: it
// proposes a verdict on a backend, collects fresh votes from every live
// member serving the cluster (itself included), and writes the verdict,
// fenced by its term, when a majority agrees and the guards allow it.
type Coordinator struct {
	lg      *zap.Logger
	backend coordination.Store
	self    coordination.NodeInfo
	local   Prober
	peers   *PeerClient
	opts    CoordinatorOptions
	now     func() time.Time // test seam

	mu     sync.Mutex
	locks  map[string]chan struct{}         // cluster → one round at a time
	downs  map[string][]downMark            // cluster → down verdicts written in the window
	recent map[string]map[string]voteRecord // cluster → addr → last Reconcile decision
	stats  Stats
}

type downMark struct {
	round string
	at    time.Time
}

// NewCoordinator builds a coordinator for node self without doing any I/O.
// local gives this node's own votes; peers asks the others (nil: every peer
// votes unknown).
func NewCoordinator(lg *zap.Logger, backend coordination.Store, self coordination.NodeInfo, local Prober, peers *PeerClient, opts CoordinatorOptions) *Coordinator {
	return &Coordinator{
		lg:      lg.Named("vote"),
		backend: backend,
		self:    self,
		local:   local,
		peers:   peers,
		opts:    opts.withDefaults(),
		now:     time.Now,
		locks:   map[string]chan struct{}{},
		downs:   map[string][]downMark{},
		recent:  map[string]map[string]voteRecord{},
		stats:   newStats(),
	}
}

// Propose runs one round on backend addr of cluster for state (VerdictDown
// or VerdictUp). This node must hold the term of ProberRole(cluster): if not,
// the decision is blocked not_leader and the error wraps ErrNotLeader. The
// error is also set when the term ended during the round (stale_term), the
// write failed (write_failed) or the voters could not be listed; a round
// that the votes or guards block returns a nil error.
func (c *Coordinator) Propose(ctx context.Context, cluster, addr, state string) (Decision, error) {
	healthy := func(string) int { return 0 }
	if c.opts.HealthyCount != nil {
		healthy = func(except string) int { return c.opts.HealthyCount(cluster, except) }
	}
	return c.propose(ctx, cluster, addr, state, healthy)
}

func (c *Coordinator) propose(ctx context.Context, cluster, addr, state string, healthy func(except string) int) (Decision, error) {
	if state != coordination.VerdictDown && state != coordination.VerdictUp {
		return Decision{}, fmt.Errorf("propose %s/%s: unknown state %q", cluster, addr, state)
	}
	unlock, err := c.lockCluster(ctx, cluster)
	if err != nil {
		return Decision{}, fmt.Errorf("propose %s/%s: %w", cluster, addr, err)
	}
	defer unlock()

	start := c.now()
	d := Decision{Cluster: cluster, Backend: addr, State: state, Round: newRoundID()}
	term, termCtx, ok := c.backend.Term(coordination.ProberRole(cluster))
	if !ok {
		return c.finish(d, start, BlockedNotLeader, fmt.Errorf("propose %s/%s: %w", cluster, addr, coordination.ErrNotLeader))
	}
	d.Term = term.Rev
	if tw, ok := c.backend.(coordination.TermWorker); ok {
		// The round is leader-only work: the term waits for it to stop
		// before its successor can begin.
		hctx, done, err := tw.Hold(term)
		if err != nil {
			return c.finish(d, start, BlockedNotLeader, fmt.Errorf("propose %s/%s: %w", cluster, addr, err))
		}
		defer done()
		termCtx = hctx
	}
	// Leader-only work: the round ends with the term, or after RoundTimeout.
	rctx, cancel := context.WithTimeout(ctx, c.opts.RoundTimeout)
	defer cancel()
	defer context.AfterFunc(termCtx, cancel)()

	if reason := c.guard(cluster, addr, state, healthy); reason != "" {
		return c.finish(d, start, reason, nil)
	}
	voters, err := c.voters(rctx, cluster)
	if err != nil {
		if termCtx.Err() != nil {
			return c.finish(d, start, BlockedStaleTerm, fmt.Errorf("propose %s/%s: %w", cluster, addr, coordination.ErrNotLeader))
		}
		return c.finish(d, start, BlockedNoQuorum, fmt.Errorf("propose %s/%s: list voters: %w", cluster, addr, err))
	}
	if len(voters) == 1 && !c.opts.AllowSingleVoter {
		d.Votes = []coordination.Vote{{Node: c.self.ID, Vote: coordination.VoteUnknown, Reason: "single voter not allowed"}}
		return c.finish(d, start, BlockedNoQuorum, nil)
	}
	var newest int64
	d.Votes, newest = c.collect(rctx, d, voters)
	// A round that outlived its term is discarded: its votes may have been
	// given to a successor's world, and its write must not even be tried.
	if termCtx.Err() != nil || newest > d.Term {
		return c.finish(d, start, BlockedStaleTerm, fmt.Errorf("propose %s/%s: term %d ended during the round: %w", cluster, addr, d.Term, coordination.ErrNotLeader))
	}
	if reason := voteTally(state, d.Votes); reason != "" {
		return c.finish(d, start, reason, nil)
	}
	// The guards again: the healthy count may have moved during the round.
	if reason := c.guard(cluster, addr, state, healthy); reason != "" {
		return c.finish(d, start, reason, nil)
	}
	if termCtx.Err() != nil {
		return c.finish(d, start, BlockedStaleTerm, fmt.Errorf("propose %s/%s: %w", cluster, addr, coordination.ErrNotLeader))
	}
	v := coordination.Verdict{Cluster: cluster, Backend: addr, State: state, Term: d.Term, Round: d.Round, DecidedAt: c.now(), Votes: d.Votes}
	if err := c.backend.WriteVerdict(rctx, term, v); err != nil {
		reason := BlockedWriteFailed
		if errors.Is(err, coordination.ErrNotLeader) || termCtx.Err() != nil {
			reason = BlockedStaleTerm
		}
		return c.finish(d, start, reason, fmt.Errorf("propose %s/%s: write verdict: %w", cluster, addr, err))
	}
	if state == coordination.VerdictDown {
		c.mu.Lock()
		c.downs[cluster] = append(c.downs[cluster], downMark{round: d.Round, at: v.DecidedAt})
		c.mu.Unlock()
	}
	return c.finish(d, start, "", nil)
}

// lockCluster waits for the cluster's round in progress, if any: rounds of
// one cluster run one at a time so that their guards see each other.
func (c *Coordinator) lockCluster(ctx context.Context, cluster string) (func(), error) {
	c.mu.Lock()
	ch, ok := c.locks[cluster]
	if !ok {
		ch = make(chan struct{}, 1)
		c.locks[cluster] = ch
	}
	c.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finish completes d with its result, records it and logs it.
func (c *Coordinator) finish(d Decision, start time.Time, reason string, err error) (Decision, error) {
	d.Approved = reason == ""
	d.BlockedReason = reason
	d.Duration = c.now().Sub(start)
	c.record(d)
	fields := []zap.Field{
		zap.String("cluster", d.Cluster), zap.String("backend", d.Backend), zap.String("state", d.State),
		zap.String("result", d.Result()), zap.Int64("term", d.Term), zap.String("round", d.Round),
		zap.Int("voters", len(d.Votes)), zap.Any("votes", d.Votes), zap.Duration("duration", d.Duration),
	}
	switch {
	case err != nil:
		c.lg.Warn("vote round failed", append(fields, zap.Error(err))...)
	case d.Approved:
		c.lg.Info("vote round approved a verdict", fields...)
	default:
		c.lg.Info("vote round blocked", fields...)
	}
	return d, err
}

func newRoundID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
