package vote

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

const voteTestAddr = "10.0.0.1:4000"

// voteHealthy is a HealthyCount with n other routable backends.
func voteHealthy(n int) func(string, string) int { return func(string, string) int { return n } }

func voteResults(r voteProbeResult) map[string]voteProbeResult {
	return map[string]voteProbeResult{voteTestAddr: r}
}

func voteValues(votes []coordination.Vote) map[string]string {
	out := map[string]string{}
	for _, v := range votes {
		out[v.Node] = v.Vote
	}
	return out
}

func TestProposeAllDownApproved(t *testing.T) {
	rec := &voteRecorder{rounds: map[string]int{}, votes: map[string]int{}}
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(2), Metrics: rec}, voteResults(voteDownResult),
		newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult)),
		newVotePeer(t, "n2", voteTestToken, voteResults(voteDownResult)))

	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.True(t, d.Approved, "%+v", d)
	require.Equal(t, ResultApproved, d.Result())
	require.Equal(t, int64(7), d.Term)
	require.Len(t, d.Round, 32)
	require.Equal(t, map[string]string{"n0": coordination.VoteDown, "n1": coordination.VoteDown, "n2": coordination.VoteDown}, voteValues(d.Votes))
	require.Equal(t, "n0", d.Votes[0].Node, "the leader votes first")

	attempts, writes := f.backend.written()
	require.Equal(t, 1, attempts)
	require.Len(t, writes, 1)
	w := writes[0]
	require.Equal(t, coordination.Verdict{Cluster: voteTestCluster, Backend: voteTestAddr, State: coordination.VerdictDown, Term: 7, Round: d.Round, DecidedAt: w.DecidedAt, Votes: d.Votes}, w)
	for _, v := range w.Votes {
		require.Equal(t, "connection refused", v.Reason)
	}
	for _, p := range f.peers {
		require.EqualValues(t, 1, p.prober.calls.Load(), "each peer probed afresh")
	}

	s := f.coord.Stats()
	require.Equal(t, map[string]uint64{ResultApproved: 1}, s.Rounds)
	require.Equal(t, map[string]uint64{coordination.VoteDown: 3}, s.Votes)
	require.Equal(t, map[string]int{"down approved": 1}, rec.rounds)
	require.Equal(t, map[string]int{coordination.VoteDown: 3}, rec.votes)
}

// Scenario 9: only the leader cannot reach the backend.
func TestProposeLeaderOnlyFailureBlocked(t *testing.T) {
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(2)}, voteResults(voteDownResult),
		newVotePeer(t, "n1", voteTestToken, voteResults(voteUpResult)),
		newVotePeer(t, "n2", voteTestToken, voteResults(voteUpResult)))

	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.False(t, d.Approved)
	require.Equal(t, BlockedPeerUp, d.BlockedReason)
	require.Equal(t, map[string]string{"n0": coordination.VoteDown, "n1": coordination.VoteUp, "n2": coordination.VoteUp}, voteValues(d.Votes))
	attempts, _ := f.backend.written()
	require.Zero(t, attempts)
	require.Equal(t, map[string]uint64{BlockedPeerUp: 1}, f.coord.Stats().Rounds)
}

// Scenario 10: a minority of voters cannot be reached; the majority decides.
func TestProposeMajorityNotUnanimity(t *testing.T) {
	for name, bad := range map[string]func(t *testing.T) *votePeer{
		"refused": func(t *testing.T) *votePeer { return newDeadVotePeer(t, "n2") },
		"hung":    func(t *testing.T) *votePeer { return newHungVotePeer(t, "n2") },
	} {
		t.Run(name, func(t *testing.T) {
			f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)},
				voteResults(voteDownResult),
				newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult)), bad(t))
			d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
			require.NoError(t, err)
			require.True(t, d.Approved, "%+v", d)
			require.Equal(t, map[string]string{"n0": coordination.VoteDown, "n1": coordination.VoteDown, "n2": coordination.VoteUnknown}, voteValues(d.Votes))
			require.NotEmpty(t, d.Votes[2].Reason)
			_, writes := f.backend.written()
			require.Len(t, writes, 1)
			require.Less(t, d.Duration, DefaultRoundTimeout)
		})
	}
}

func TestProposeNoQuorum(t *testing.T) {
	t.Run("two voters, one unreachable", func(t *testing.T) {
		f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult), newDeadVotePeer(t, "n1"))
		d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		require.NoError(t, err)
		require.Equal(t, BlockedNoQuorum, d.BlockedReason)
		require.Equal(t, map[string]string{"n0": coordination.VoteDown, "n1": coordination.VoteUnknown}, voteValues(d.Votes))
		attempts, _ := f.backend.written()
		require.Zero(t, attempts)
	})
	t.Run("peer does not serve the cluster", func(t *testing.T) {
		f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult),
			newVotePeer(t, "n1", voteTestToken, nil))
		d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		require.NoError(t, err)
		require.Equal(t, BlockedNoQuorum, d.BlockedReason)
		require.Equal(t, ErrNotServed.Error(), d.Votes[1].Reason)
	})
	t.Run("members cannot be listed", func(t *testing.T) {
		f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult))
		f.backend.membersErr = coordination.ErrUnavailable
		d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		require.ErrorIs(t, err, coordination.ErrUnavailable)
		require.Equal(t, BlockedNoQuorum, d.BlockedReason)
	})
}

func TestProposeVoterSet(t *testing.T) {
	// Only live members that are up and serve the cluster vote; the leader
	// votes even when its registration is missing.
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult))
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult), n1)
	other := newVotePeer(t, "n2", voteTestToken, voteResults(voteUpResult))
	draining := newVotePeer(t, "n3", voteTestToken, voteResults(voteUpResult))
	dm := draining.member(t, voteTestCluster)
	dm.Info.State = coordination.NodeDraining
	f.backend.members = []coordination.Member{
		n1.member(t, voteTestCluster),
		other.member(t, "west"),
		dm,
		{ID: "n4", Err: "invalid node info"},
	}
	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.True(t, d.Approved, "%+v", d)
	require.Equal(t, map[string]string{"n0": coordination.VoteDown, "n1": coordination.VoteDown}, voteValues(d.Votes))
	require.Zero(t, other.prober.calls.Load())
	require.Zero(t, draining.prober.calls.Load())

	// A peer answering under another node's name does not count.
	impostor := newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult))
	m := impostor.member(t, voteTestCluster)
	m.ID, m.Info.ID = "n5", "n5"
	f.backend.members = []coordination.Member{m}
	d, err = f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.Equal(t, BlockedNoQuorum, d.BlockedReason, "%+v", d)
	require.Equal(t, coordination.Vote{Node: "n5", Vote: coordination.VoteUnknown, Reason: `answered as node "n1"`}, d.Votes[1])
}

func TestProposeSingleVoter(t *testing.T) {
	for _, allow := range []bool{false, true} {
		f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1), AllowSingleVoter: allow}, voteResults(voteDownResult))
		d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		require.NoError(t, err)
		_, writes := f.backend.written()
		if allow {
			require.True(t, d.Approved)
			require.Len(t, writes, 1)
			require.Equal(t, []coordination.Vote{{Node: "n0", Vote: coordination.VoteDown, Reason: "connection refused"}}, writes[0].Votes)
		} else {
			require.Equal(t, BlockedNoQuorum, d.BlockedReason)
			require.Empty(t, writes)
			require.Zero(t, f.local.calls.Load())
		}
	}
}

func TestProposeNotLeader(t *testing.T) {
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult))
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult), n1)
	f.backend.loseTerm()
	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.ErrorIs(t, err, coordination.ErrNotLeader)
	require.Equal(t, BlockedNotLeader, d.BlockedReason)
	require.Zero(t, f.local.calls.Load())
	require.Zero(t, n1.prober.calls.Load())

	// Leading another cluster's role is not leading this one.
	_, err = f.coord.Propose(context.Background(), "west", voteTestAddr, coordination.VerdictDown)
	require.ErrorIs(t, err, coordination.ErrNotLeader)
	_, err = f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, "sideways")
	require.ErrorContains(t, err, "unknown state")
}

// A voter that has seen a newer term refuses, and the round is discarded.
func TestProposeStaleTermAtVoters(t *testing.T) {
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult))
	n2 := newVotePeer(t, "n2", voteTestToken, voteResults(voteDownResult))
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult), n1, n2)
	n2.voter.ObserveTerm(voteTestCluster, 8) // a successor's term

	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.ErrorIs(t, err, coordination.ErrNotLeader)
	require.Equal(t, BlockedStaleTerm, d.BlockedReason)
	require.Equal(t, coordination.Vote{Node: "n2", Vote: coordination.VoteUnknown, Reason: ReasonStaleTerm}, d.Votes[2])
	attempts, _ := f.backend.written()
	require.Zero(t, attempts, "a two-vote majority from a deposed leader is not written")
}

// The term ends while the voters are probing: the round is discarded
// without trying to write.
func TestProposeTermEndsMidRound(t *testing.T) {
	release := make(chan struct{})
	slow := voteProbeResult{healthy: false, reason: "refused", block: release}
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(slow))
	n2 := newVotePeer(t, "n2", voteTestToken, voteResults(slow))
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult), n1, n2)

	type result struct {
		d   Decision
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		done <- result{d, err}
	}()
	require.Eventually(t, func() bool { return n1.prober.calls.Load() == 1 && n2.prober.calls.Load() == 1 },
		5*time.Second, 5*time.Millisecond)
	f.backend.loseTerm()
	close(release)
	r := <-done
	require.ErrorIs(t, r.err, coordination.ErrNotLeader)
	require.Equal(t, BlockedStaleTerm, r.d.BlockedReason)
	attempts, _ := f.backend.written()
	require.Zero(t, attempts)
}

func TestProposeWriteRefused(t *testing.T) {
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(1)}, voteResults(voteDownResult),
		newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult)))
	f.backend.writeErr = errors.New("etcdserver: request timed out")
	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.ErrorContains(t, err, "request timed out")
	require.Equal(t, BlockedWriteFailed, d.BlockedReason)
	// A failed write does not use up the rate limit.
	f.backend.writeErr = nil
	for range DefaultMaxDownPerMinute {
		d, err = f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
		require.NoError(t, err)
		require.True(t, d.Approved)
	}
}

func TestProposeLastBackend(t *testing.T) {
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(voteDownResult))
	for name, opts := range map[string]CoordinatorOptions{
		"no other healthy":   {HealthyCount: voteHealthy(0)},
		"count not provided": {},
	} {
		t.Run(name, func(t *testing.T) {
			f := newVoteFleet(t, opts, voteResults(voteDownResult), n1)
			d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
			require.NoError(t, err)
			require.Equal(t, BlockedLastBackend, d.BlockedReason)
			require.Zero(t, f.local.calls.Load(), "no round is run for a proposal the guard refuses")
			attempts, _ := f.backend.written()
			require.Zero(t, attempts)
			// The guard is only about down verdicts.
			f.local.set(voteTestAddr, voteUpResult)
			n1.prober.set(voteTestAddr, voteUpResult)
			d, err = f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictUp)
			require.NoError(t, err)
			require.True(t, d.Approved)
			n1.prober.set(voteTestAddr, voteDownResult)
		})
	}
	require.EqualValues(t, 2, n1.prober.calls.Load())

	// The count is taken again after the votes: it may have moved.
	healthy := 1
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: func(cluster, except string) int {
		require.Equal(t, voteTestCluster, cluster)
		require.Equal(t, voteTestAddr, except)
		n := healthy
		healthy = 0
		return n
	}}, voteResults(voteDownResult), n1)
	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.Equal(t, BlockedLastBackend, d.BlockedReason)
	require.Len(t, d.Votes, 2)
	attempts, _ := f.backend.written()
	require.Zero(t, attempts)
}

func TestProposeRateLimit(t *testing.T) {
	n1 := newVotePeer(t, "n1", voteTestToken, map[string]voteProbeResult{"a:1": voteDownResult, "b:1": voteDownResult, "c:1": voteDownResult})
	f := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(3), MaxDownPerMinute: 1},
		map[string]voteProbeResult{"a:1": voteDownResult, "b:1": voteDownResult, "c:1": voteDownResult}, n1)
	ctx := context.Background()
	d, err := f.coord.Propose(ctx, voteTestCluster, "a:1", coordination.VerdictDown)
	require.NoError(t, err)
	require.True(t, d.Approved)
	f.clock.advance(30 * time.Second)
	d, err = f.coord.Propose(ctx, voteTestCluster, "b:1", coordination.VerdictDown)
	require.NoError(t, err)
	require.Equal(t, BlockedRateLimit, d.BlockedReason)
	require.EqualValues(t, 1, n1.prober.calls.Load(), "a rate-limited proposal asks nobody")
	f.clock.advance(31 * time.Second)
	d, err = f.coord.Propose(ctx, voteTestCluster, "b:1", coordination.VerdictDown)
	require.NoError(t, err)
	require.True(t, d.Approved, "the window moved on")

	// The limit is the fleet's: a down verdict an earlier leader wrote
	// counts for a new coordinator too.
	g := newVoteFleet(t, CoordinatorOptions{HealthyCount: voteHealthy(3), MaxDownPerMinute: 1},
		map[string]voteProbeResult{"c:1": voteDownResult}, n1)
	g.backend.setVerdict(coordination.Verdict{Cluster: voteTestCluster, Backend: "a:1", State: coordination.VerdictDown, Term: 6, Round: "old",
		DecidedAt: g.clock.now().Add(-10 * time.Second)})
	g.backend.setVerdict(coordination.Verdict{Cluster: "west", Backend: "w:1", State: coordination.VerdictDown, Term: 6, Round: "west",
		DecidedAt: g.clock.now()})
	d, err = g.coord.Propose(ctx, voteTestCluster, "c:1", coordination.VerdictDown)
	require.NoError(t, err)
	require.Equal(t, BlockedRateLimit, d.BlockedReason)
	// Up verdicts are never limited.
	g.local.set("a:1", voteUpResult)
	n1.prober.set("a:1", voteUpResult)
	d, err = g.coord.Propose(ctx, voteTestCluster, "a:1", coordination.VerdictUp)
	require.NoError(t, err)
	require.True(t, d.Approved)
}

func TestProposeUpAfterRecovery(t *testing.T) {
	n1 := newVotePeer(t, "n1", voteTestToken, voteResults(voteUpResult))
	n2 := newVotePeer(t, "n2", voteTestToken, voteResults(voteDownResult))
	f := newVoteFleet(t, CoordinatorOptions{}, voteResults(voteUpResult), n1, n2)
	f.backend.setVerdict(coordination.Verdict{Cluster: voteTestCluster, Backend: voteTestAddr, State: coordination.VerdictDown, Term: 7, Round: "r0"})

	d, err := f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictUp)
	require.NoError(t, err)
	require.True(t, d.Approved, "two of three is a majority")
	require.Equal(t, coordination.VerdictUp, f.backend.Verdicts()[voteTestCluster+"/"+voteTestAddr].State)

	// With a majority still failing, the backend stays down.
	n1.prober.set(voteTestAddr, voteDownResult)
	d, err = f.coord.Propose(context.Background(), voteTestCluster, voteTestAddr, coordination.VerdictUp)
	require.NoError(t, err)
	require.Equal(t, BlockedPeerDown, d.BlockedReason)
	_, writes := f.backend.written()
	require.Len(t, writes, 1)
}
