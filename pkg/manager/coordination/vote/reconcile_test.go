package vote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.uber.org/zap/zaptest"
)

func voteSummary(ds []Decision) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Backend+" "+d.State+" "+d.Result())
	}
	return out
}

func voteRounds(c *Coordinator) uint64 {
	var n uint64
	for _, v := range c.Stats().Rounds {
		n += v
	}
	return n
}

func TestReconcileProposesOnce(t *testing.T) {
	probes := map[string]voteProbeResult{"a:1": voteDownResult, "b:1": voteUpResult, "c:1": voteUpResult}
	f := newVoteFleet(t, CoordinatorOptions{}, probes,
		newVotePeer(t, "n1", voteTestToken, probes), newVotePeer(t, "n2", voteTestToken, probes))
	ctx := context.Background()
	local := map[string]bool{"a:1": false, "b:1": true, "c:1": true}

	require.Equal(t, []string{"a:1 down approved"}, voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, nil)))
	// The store has not shown the verdict yet: no second round for it.
	for range 5 {
		require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, local, nil))
	}
	require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, local, f.backend.Verdicts()))
	attempts, _ := f.backend.written()
	require.Equal(t, 1, attempts)
	require.EqualValues(t, 1, voteRounds(f.coord))
	// Verdicts of other clusters are not this one's.
	west := map[string]coordination.Verdict{"west/a:1": {Cluster: "west", Backend: "a:1", State: coordination.VerdictDown}}
	f.clock.advance(voteSettleHold)
	require.Equal(t, []string{"a:1 down approved"}, voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, west)))
}

func TestReconcileBacksOffAfterBlock(t *testing.T) {
	down := map[string]voteProbeResult{"a:1": voteDownResult}
	up := map[string]voteProbeResult{"a:1": voteUpResult}
	n1, n2 := newVotePeer(t, "n1", voteTestToken, up), newVotePeer(t, "n2", voteTestToken, up)
	f := newVoteFleet(t, CoordinatorOptions{}, down, n1, n2)
	ctx := context.Background()
	local := map[string]bool{"a:1": false, "b:1": true}

	require.Equal(t, []string{"a:1 down peer_up"}, voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, nil)))
	for range 10 {
		require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, local, nil))
	}
	require.EqualValues(t, 1, n1.prober.calls.Load(), "no proposal spam while the leader alone sees a failure")
	f.clock.advance(DefaultProposeBackoff - time.Millisecond)
	require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, local, nil))
	f.clock.advance(time.Millisecond)
	require.Equal(t, []string{"a:1 down peer_up"}, voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, nil)))
	require.Equal(t, map[string]uint64{BlockedPeerUp: 2}, f.coord.Stats().Rounds)

	// The hold is per proposal: once the peers agree and the backoff is
	// over, the round goes through.
	n1.prober.set("a:1", voteDownResult)
	f.clock.advance(DefaultProposeBackoff)
	require.Equal(t, []string{"a:1 down approved"}, voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, nil)))
}

func TestReconcileRateLimitHold(t *testing.T) {
	probes := map[string]voteProbeResult{"a:1": voteDownResult, "b:1": voteDownResult, "c:1": voteUpResult}
	f := newVoteFleet(t, CoordinatorOptions{MaxDownPerMinute: 1}, probes, newVotePeer(t, "n1", voteTestToken, probes))
	ctx := context.Background()
	local := map[string]bool{"a:1": false, "b:1": false, "c:1": true}

	require.Equal(t, []string{"a:1 down approved", "b:1 down rate_limit"},
		voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, f.backend.Verdicts())))
	// Held until the window lets another down verdict through, not merely
	// for the backoff.
	f.clock.advance(10 * time.Second)
	require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, local, f.backend.Verdicts()))
	f.clock.advance(50 * time.Second)
	require.Equal(t, []string{"b:1 down approved"},
		voteSummary(f.coord.Reconcile(ctx, voteTestCluster, local, f.backend.Verdicts())))
}

func TestReconcileRecoveryFirst(t *testing.T) {
	// a was voted down and is back; b just failed. Until a is up again b is
	// the last routable backend, so a's recovery goes first.
	probes := map[string]voteProbeResult{"a:1": voteUpResult, "b:1": voteDownResult}
	f := newVoteFleet(t, CoordinatorOptions{}, probes, newVotePeer(t, "n1", voteTestToken, probes))
	f.backend.setVerdict(coordination.Verdict{Cluster: voteTestCluster, Backend: "a:1", State: coordination.VerdictDown, Term: 6, Round: "r0",
		DecidedAt: f.clock.now().Add(-time.Hour)})
	local := map[string]bool{"a:1": true, "b:1": false}

	ds := f.coord.Reconcile(context.Background(), voteTestCluster, local, f.backend.Verdicts())
	require.Equal(t, []string{"a:1 up approved", "b:1 down approved"}, voteSummary(ds))
	_, writes := f.backend.written()
	require.Len(t, writes, 2)
	require.Equal(t, coordination.VerdictUp, writes[0].State)
	require.Equal(t, coordination.VerdictDown, writes[1].State)
}

func TestReconcileLastBackend(t *testing.T) {
	probes := map[string]voteProbeResult{"a:1": voteDownResult, "b:1": voteDownResult}
	n1 := newVotePeer(t, "n1", voteTestToken, probes)
	f := newVoteFleet(t, CoordinatorOptions{}, probes, n1)
	local := map[string]bool{"a:1": false, "b:1": false}
	ds := f.coord.Reconcile(context.Background(), voteTestCluster, local, nil)
	require.Equal(t, []string{"a:1 down last_backend", "b:1 down last_backend"}, voteSummary(ds))
	require.Zero(t, n1.prober.calls.Load())
	attempts, _ := f.backend.written()
	require.Zero(t, attempts)

	// One down already: the other one stays, even with votes against it.
	f.backend.setVerdict(coordination.Verdict{Cluster: voteTestCluster, Backend: "a:1", State: coordination.VerdictDown, Round: "r0"})
	local = map[string]bool{"a:1": false, "b:1": false, "c:1": false}
	f.clock.advance(time.Hour)
	ds = f.coord.Reconcile(context.Background(), voteTestCluster, local, f.backend.Verdicts())
	require.Equal(t, []string{"b:1 down last_backend", "c:1 down last_backend"}, voteSummary(ds))
}

func TestReconcileNotLeader(t *testing.T) {
	probes := map[string]voteProbeResult{"a:1": voteDownResult}
	n1 := newVotePeer(t, "n1", voteTestToken, probes)
	f := newVoteFleet(t, CoordinatorOptions{}, probes, n1)
	f.backend.loseTerm()
	require.Nil(t, f.coord.Reconcile(context.Background(), voteTestCluster, map[string]bool{"a:1": false, "b:1": true}, nil))
	require.Zero(t, f.local.calls.Load())
	require.Zero(t, voteRounds(f.coord))

	// A term lost during Reconcile stops it: the next leader takes over.
	f.backend.newTerm(9)
	lost := &voteLosingBackend{voteFakeBackend: f.backend}
	c := NewCoordinator(zaptest.NewLogger(t), lost, coordination.NodeInfo{ID: "n0"}, f.local, f.coord.peers, CoordinatorOptions{})
	local := map[string]bool{"a:1": false, "b:1": false, "c:1": true}
	ds := c.Reconcile(context.Background(), voteTestCluster, local, nil)
	require.Equal(t, []string{"a:1 down stale_term"}, voteSummary(ds))
}

// voteLosingBackend loses its term when the first round lists its voters.
type voteLosingBackend struct{ *voteFakeBackend }

func (b *voteLosingBackend) Members(ctx context.Context) ([]coordination.Member, error) {
	b.loseTerm()
	return b.voteFakeBackend.Members(ctx)
}

func TestReconcileForgetsRemovedBackends(t *testing.T) {
	probes := map[string]voteProbeResult{"a:1": voteDownResult}
	f := newVoteFleet(t, CoordinatorOptions{}, probes, newVotePeer(t, "n1", voteTestToken, nil))
	ctx := context.Background()
	require.Len(t, f.coord.Reconcile(ctx, voteTestCluster, map[string]bool{"a:1": false, "b:1": true}, nil), 1)
	require.Len(t, f.coord.recent[voteTestCluster], 1)
	require.Empty(t, f.coord.Reconcile(ctx, voteTestCluster, map[string]bool{"b:1": true}, nil))
	require.Empty(t, f.coord.recent[voteTestCluster])
	// Back again: proposed at once, no stale hold.
	require.Len(t, f.coord.Reconcile(ctx, voteTestCluster, map[string]bool{"a:1": false, "b:1": true}, nil), 1)
}
