package vote

import (
	"context"
	"slices"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// voteSettleHold is how long Reconcile trusts an approved verdict to show up in
// the verdicts it is given before it proposes the same thing again.
const voteSettleHold = 10 * time.Second

// voteRecord is the last decision Reconcile got on one backend.
type voteRecord struct {
	state string
	until time.Time // no new proposal of state before this
}

// Reconcile brings the fleet's verdicts on cluster in line with what this
// node sees, while it leads ProberRole(cluster): a backend the local prober
// finds unhealthy without a down verdict is proposed down, one with a down
// verdict that the local prober finds healthy is proposed up (recoveries
// first). local maps each backend addr of the cluster to its local health;
// verdicts are Backend.Verdicts(). The server calls it whenever either
// changes; it runs the rounds one after another and returns their
// decisions. A proposal that was just blocked is not made again for
// Backoff (a rate-limited one until the limit allows it), nor one just
// approved until its verdict had time to show up, so frequent calls do not
// turn into a stream of rounds.
func (c *Coordinator) Reconcile(ctx context.Context, cluster string, local map[string]bool, verdicts map[string]coordination.Verdict) []Decision {
	if _, _, ok := c.backend.Term(coordination.ProberRole(cluster)); !ok {
		return nil
	}
	down := map[string]bool{}
	for _, v := range verdicts {
		if v.Cluster == cluster && v.State == coordination.VerdictDown {
			down[v.Backend] = true
		}
	}
	addrs := make([]string, 0, len(local))
	for addr := range local {
		addrs = append(addrs, addr)
	}
	slices.Sort(addrs)
	var ups, downs []string
	for _, addr := range addrs {
		switch healthy := local[addr]; {
		case healthy && down[addr]:
			ups = append(ups, addr)
		case !healthy && !down[addr]:
			downs = append(downs, addr)
		}
	}
	c.forget(cluster, local)
	// Backends other than except that stay routable: no down verdict, and
	// healthy here. Approvals below update down, so later rounds see them.
	healthyOthers := func(except string) int {
		n := 0
		for addr, healthy := range local {
			if healthy && !down[addr] && addr != except {
				n++
			}
		}
		return n
	}
	var out []Decision
	for _, p := range slices.Concat(voteProposals(ups, coordination.VerdictUp), voteProposals(downs, coordination.VerdictDown)) {
		if ctx.Err() != nil {
			break
		}
		if c.holding(cluster, p.addr, p.state) {
			continue
		}
		d, _ := c.propose(ctx, cluster, p.addr, p.state, healthyOthers)
		if d.Round == "" {
			break // ctx ended while waiting for the cluster
		}
		out = append(out, d)
		c.hold(cluster, d)
		if d.Approved {
			down[p.addr] = p.state == coordination.VerdictDown
		}
		if d.BlockedReason == BlockedNotLeader || d.BlockedReason == BlockedStaleTerm {
			break // the term is over: the next leader takes it from here
		}
	}
	return out
}

type voteProposal struct{ addr, state string }

func voteProposals(addrs []string, state string) []voteProposal {
	out := make([]voteProposal, len(addrs))
	for i, a := range addrs {
		out[i] = voteProposal{a, state}
	}
	return out
}

// holding reports whether proposing state for addr must wait.
func (c *Coordinator) holding(cluster, addr, state string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recent[cluster][addr]
	return ok && r.state == state && c.now().Before(r.until)
}

// hold remembers d so that the same proposal is not made again at once.
func (c *Coordinator) hold(cluster string, d Decision) {
	now := c.now()
	until := now.Add(c.opts.Backoff)
	switch d.BlockedReason {
	case "":
		until = now.Add(max(voteSettleHold, c.opts.Backoff))
	case BlockedRateLimit:
		if _, free := c.downsInWindow(cluster); free.After(until) {
			until = free
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recent[cluster] == nil {
		c.recent[cluster] = map[string]voteRecord{}
	}
	c.recent[cluster][d.Backend] = voteRecord{state: d.State, until: until}
}

// forget drops what is remembered of backends that left the cluster or
// whose hold is over, so the memory stays the size of the topology.
func (c *Coordinator) forget(cluster string, local map[string]bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, r := range c.recent[cluster] {
		if _, ok := local[addr]; !ok || !now.Before(r.until) {
			delete(c.recent[cluster], addr)
		}
	}
}
