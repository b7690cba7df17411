package vote

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// roundVoter is one node asked in a round. info is nil for this node, which votes
// through the local prober.
type roundVoter struct {
	id   string
	info *coordination.NodeInfo
}

// voters lists the round's electorate: this node first, then every live
// member that is up and serves cluster, by id. A member without valid info
// cannot be reached and is left out rather than counted as unknown, like a
// member whose lease is gone.
func (c *Coordinator) voters(ctx context.Context, cluster string) ([]roundVoter, error) {
	members, err := c.backend.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := []roundVoter{{id: c.self.ID}}
	for _, m := range members {
		if m.Info == nil || m.ID == c.self.ID || m.Info.State != coordination.NodeUp || !slices.Contains(m.Info.Clusters, cluster) {
			continue
		}
		if slices.ContainsFunc(out, func(v roundVoter) bool { return v.id == m.ID }) {
			continue
		}
		out = append(out, roundVoter{id: m.ID, info: m.Info})
	}
	slices.SortFunc(out[1:], func(a, b roundVoter) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out, nil
}

// probeBudget is the probe time a voter is given: enough less than the peer
// timeout that its answer arrives before the leader gives up on it.
func (c *Coordinator) probeBudget() time.Duration {
	return min(c.opts.PeerTimeout*3/4, MaxProbe)
}

// collect asks every voter in parallel, each within PeerTimeout, and returns
// their votes in voter order with the newest term any of them has seen.
func (c *Coordinator) collect(ctx context.Context, d Decision, voters []roundVoter) ([]coordination.Vote, int64) {
	req := Request{
		Cluster: d.Cluster, Backend: d.Backend, Term: d.Term, Round: d.Round,
		LeaderID: c.self.ID, DeadlineMS: int(c.probeBudget() / time.Millisecond),
	}
	votes := make([]coordination.Vote, len(voters))
	terms := make([]int64, len(voters))
	var wg sync.WaitGroup
	for i, v := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, c.opts.PeerTimeout)
			defer cancel()
			if v.info == nil {
				votes[i] = c.localVote(pctx, req)
				return
			}
			votes[i], terms[i] = c.peerVote(pctx, v, req)
		}()
	}
	wg.Wait()
	return votes, slices.Max(terms)
}

// localVote is this node's own vote: a fresh probe, like any voter's.
func (c *Coordinator) localVote(ctx context.Context, req Request) coordination.Vote {
	vote := coordination.Vote{Node: c.self.ID, Vote: coordination.VoteUnknown}
	if c.local == nil {
		vote.Reason = "no local prober"
		return vote
	}
	ctx, cancel := context.WithTimeout(ctx, c.probeBudget())
	defer cancel()
	healthy, reason, err := c.local.ProbeNow(ctx, req.Cluster, req.Backend)
	switch {
	case err != nil:
		vote.Reason = err.Error()
	case healthy:
		vote.Vote = coordination.VoteUp
	default:
		vote.Vote, vote.Reason = coordination.VoteDown, reason
	}
	return vote
}

// peerVote asks one peer. Whatever goes wrong makes its vote unknown: an
// unreachable peer neither blocks nor helps a round.
func (c *Coordinator) peerVote(ctx context.Context, v roundVoter, req Request) (coordination.Vote, int64) {
	vote := coordination.Vote{Node: v.id, Vote: coordination.VoteUnknown}
	if c.peers == nil {
		vote.Reason = "no peer client"
		return vote, 0
	}
	resp, err := c.peers.RequestVote(ctx, v.info.APIAddr(), req)
	switch {
	case err != nil:
		vote.Reason = err.Error()
		return vote, 0
	case resp.Node != v.id:
		// Another node behind the member's address: its vote is not the
		// member's, and counting it could count one node twice.
		vote.Reason = fmt.Sprintf("answered as node %q", resp.Node)
		return vote, 0
	}
	vote.Vote, vote.Reason = resp.Vote, resp.Reason
	return vote, resp.Term
}

// voteTally returns "" when state has a majority of the voters, else why not:
// the opposite vote when any voter gave it, else no_quorum. N is every voter
// asked, so an unknown vote counts against; unanimity is not required.
func voteTally(state string, votes []coordination.Vote) string {
	want, against := coordination.VoteDown, coordination.VoteUp
	blocked := BlockedPeerUp
	if state == coordination.VerdictUp {
		want, against, blocked = coordination.VoteUp, coordination.VoteDown, BlockedPeerDown
	}
	var yes, no int
	for _, v := range votes {
		switch v.Vote {
		case want:
			yes++
		case against:
			no++
		}
	}
	switch {
	case yes >= len(votes)/2+1:
		return ""
	case no > 0:
		return blocked
	}
	return BlockedNoQuorum
}
