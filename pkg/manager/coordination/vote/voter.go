package vote

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.uber.org/zap"
)

// MaxProbe bounds the fresh probe a voter runs for one vote request,
// whatever deadline the leader asks for.
const MaxProbe = time.Second

// ErrNotServed is what a Prober returns for a cluster or backend this node
// does not probe. Any error makes the vote "unknown"; this one says why.
var ErrNotServed = errors.New("not served by this node")

// Reason a voter gives when it refuses a request of an old term.
const ReasonStaleTerm = "stale term"

// Prober gives a fresh opinion on one backend of one cluster: the server
// adapts each cluster's health.Prober.ProbeNow. A failed probe is
// healthy=false with its reason, not an error; err means no opinion (the
// cluster or backend is not served here, or the prober is closed).
type Prober interface {
	ProbeNow(ctx context.Context, cluster, addr string) (healthy bool, reason string, err error)
}

// Request is what the prober leader of a cluster asks each voter.
type Request struct {
	Cluster string `json:"cluster"`
	// Backend is the backend's addr.
	Backend string `json:"backend"`
	// Term is the leader's term of ProberRole(Cluster): a voter refuses a
	// term older than the newest it has seen, so a deposed leader gets no
	// votes.
	Term     int64  `json:"term"`
	Round    string `json:"round"`
	LeaderID string `json:"leader_id"`
	// DeadlineMS bounds the voter's probe (at most MaxProbe); 0 means
	// MaxProbe.
	DeadlineMS int `json:"deadline_ms"`
}

// Response is one voter's answer.
type Response struct {
	Node string `json:"node"`
	// Vote is VoteDown, VoteUp or VoteUnknown.
	Vote   string `json:"vote"`
	Reason string `json:"reason,omitempty"`
	// Term is the newest term the voter has seen for the role: greater than
	// the request's when it refused a stale term.
	Term int64 `json:"term"`
}

// Voter answers vote requests with fresh probes. It keeps, per prober role,
// the newest term it has seen, so that a leader that lost its term cannot
// collect votes once its successor has asked.
type Voter struct {
	lg     *zap.Logger
	nodeID string
	prober Prober

	mu     sync.Mutex
	newest map[string]int64 // role → newest term seen
}

// NewVoter builds a voter for this node; prober gives its fresh opinions.
func NewVoter(lg *zap.Logger, nodeID string, prober Prober) *Voter {
	return &Voter{
		lg:     lg.Named("voter"),
		nodeID: nodeID,
		prober: prober,
		newest: map[string]int64{},
	}
}

// ObserveTerm tells the voter about a term of cluster's prober role learned
// elsewhere (leader discovery, the election prefix): requests of older terms
// are refused from now on.
func (v *Voter) ObserveTerm(cluster string, term int64) {
	v.admit(coordination.ProberRole(cluster), term)
}

// admit records term for role and reports whether it is not older than the
// newest seen, with that newest term.
func (v *Voter) admit(role string, term int64) (bool, int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	newest, seen := v.newest[role]
	if seen && term < newest {
		return false, newest
	}
	v.newest[role] = term
	return true, term
}

// HandleVote answers one request: down when a fresh probe of the backend
// fails, up when it succeeds, unknown when this node cannot tell (it does not
// serve the cluster, the probe could not run) or the term is stale.
func (v *Voter) HandleVote(ctx context.Context, req Request) Response {
	resp := Response{Node: v.nodeID, Vote: coordination.VoteUnknown, Term: req.Term}
	if req.Cluster == "" || req.Backend == "" {
		resp.Reason = "invalid request: cluster and backend are required"
		return resp
	}
	lg := v.lg.With(zap.String("cluster", req.Cluster), zap.String("backend", req.Backend),
		zap.Int64("term", req.Term), zap.String("round", req.Round), zap.String("leader", req.LeaderID))
	ok, newest := v.admit(coordination.ProberRole(req.Cluster), req.Term)
	resp.Term = newest
	if !ok {
		resp.Reason = ReasonStaleTerm
		lg.Warn("refused a vote request of a stale term", zap.Int64("newest_term", newest))
		return resp
	}
	if v.prober == nil {
		resp.Reason = "no prober"
		return resp
	}
	budget := MaxProbe
	if d := time.Duration(req.DeadlineMS) * time.Millisecond; d > 0 && d < budget {
		budget = d
	}
	pctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	healthy, reason, err := v.prober.ProbeNow(pctx, req.Cluster, req.Backend)
	switch {
	case err != nil:
		resp.Reason = err.Error()
	case healthy:
		resp.Vote = coordination.VoteUp
	default:
		resp.Vote, resp.Reason = coordination.VoteDown, reason
	}
	lg.Debug("voted", zap.String("vote", resp.Vote), zap.String("reason", resp.Reason))
	return resp
}
