package fleet

import (
	"context"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Store is what the fleet needs of the coordination store (an etcd-backed
// one, or the single-node one in memory).
type Store interface {
	// Start begins registering this node and campaigning; it never waits
	// for the store.
	Start(ctx context.Context) error
	SetInfo(info coordination.NodeInfo)
	SetRoles(roles []string)
	// Term is this node's current term for role, if it leads it.
	Term(role string) (coordination.Term, context.Context, bool)
	// Subscribe wakes (one pending signal) when terms or verdicts change.
	Subscribe() (<-chan struct{}, func())
	// Verdicts are the fleet's verdicts by backend ID; a shared snapshot.
	Verdicts() map[string]coordination.Verdict
	// Close resigns every term (after its work stopped) and deregisters.
	Close()
}

// Terms runs leader-only work under a term: fn's context ends with the term,
// and the term waits for fn to return before it resigns.
type Terms interface {
	Go(term coordination.Term, fn func(ctx context.Context)) error
}

// Rounds runs the vote rounds of a cluster whose prober role this node leads:
// it compares this node's own view (local: addr → healthy) with the fleet's
// verdicts, asks the members to probe afresh and writes what a majority
// agrees on, fenced by the term behind ctx.
type Rounds interface {
	Reconcile(ctx context.Context, cluster string, local map[string]bool, verdicts map[string]coordination.Verdict)
}

// TermObserver learns the prober terms this node holds, so that it refuses
// vote requests from older terms (the voter).
type TermObserver interface {
	ObserveTerm(cluster string, term int64)
}

// Routing is the router: backends the fleet voted down take no new sessions.
type Routing interface {
	SetFleetDown(ids map[string]bool)
}

// Topology is the merged topology and its change notifications
// (observer.Aggregator).
type Topology interface {
	Topology() *observer.Topology
	Subscribe() (<-chan struct{}, func())
}

// Sessions are the live client sessions.
type Sessions interface {
	// EndIdle ends the sessions on the backend addr of cluster that cannot
	// migrate, each at its next transaction boundary, and returns how many
	// it asked. Sessions that can migrate are left to move instead.
	EndIdle(cluster, addr string) int
}

// Deps are the parts the fleet drives; all are required.
type Deps struct {
	Store    Store
	Terms    Terms
	Rounds   Rounds
	Voter    TermObserver
	Routing  Routing
	Topology Topology
	Sessions Sessions
}
