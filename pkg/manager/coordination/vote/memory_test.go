package vote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.uber.org/zap/zaptest"
)

// The single-node store: one voter, the node itself, always the leader.
func TestProposeWithMemoryBackend(t *testing.T) {
	self := coordination.NodeInfo{ID: "n0", Host: "127.0.0.1", SQLPort: 6000, APIPort: 6080, State: coordination.NodeUp, Clusters: []string{voteTestCluster}}
	m := coordination.NewMemory(self)
	m.SetStopPolicy(5*time.Second, func() { t.Error("the round did not stop with its term") })
	m.SetRoles([]string{coordination.ProberRole(voteTestCluster)})
	require.NoError(t, m.Start(context.Background()))
	defer m.Close()
	local := newVoteFakeProber(voteResults(voteDownResult))
	ctx := context.Background()

	strict := NewCoordinator(zaptest.NewLogger(t), m, self, local, nil, CoordinatorOptions{HealthyCount: voteHealthy(1)})
	d, err := strict.Propose(ctx, voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.Equal(t, BlockedNoQuorum, d.BlockedReason)
	require.Empty(t, m.Verdicts())

	c := NewCoordinator(zaptest.NewLogger(t), m, self, local, nil, CoordinatorOptions{HealthyCount: voteHealthy(1), AllowSingleVoter: true})
	d, err = c.Propose(ctx, voteTestCluster, voteTestAddr, coordination.VerdictDown)
	require.NoError(t, err)
	require.True(t, d.Approved, "%+v", d)
	v := m.Verdicts()[coordination.BackendID(voteTestCluster, voteTestAddr)]
	require.Equal(t, coordination.VerdictDown, v.State)
	require.Equal(t, d.Term, v.Term)
	require.Equal(t, d.Round, v.Round)
	require.Equal(t, []coordination.Vote{{Node: "n0", Vote: coordination.VoteDown, Reason: "connection refused"}}, v.Votes)

	// The role goes away during a round: the round stops, writes nothing,
	// and the term's end waits for it.
	release := make(chan struct{})
	defer close(release)
	local.set(voteTestAddr, voteProbeResult{healthy: true, block: release})
	calls := local.calls.Load()
	done := make(chan error, 1)
	go func() {
		d, err := c.Propose(ctx, voteTestCluster, voteTestAddr, coordination.VerdictUp)
		if err == nil || d.BlockedReason != BlockedStaleTerm {
			t.Errorf("round outlived its term: %+v, %v", d, err)
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return local.calls.Load() == calls+1 }, 5*time.Second, time.Millisecond)
	m.SetRoles(nil)
	require.ErrorIs(t, <-done, coordination.ErrNotLeader)
	require.Equal(t, coordination.VerdictDown, m.Verdicts()[coordination.BackendID(voteTestCluster, voteTestAddr)].State)

	_, err = c.Propose(ctx, voteTestCluster, voteTestAddr, coordination.VerdictUp)
	require.ErrorIs(t, err, coordination.ErrNotLeader)
}
