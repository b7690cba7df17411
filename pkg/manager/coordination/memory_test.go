package coordination

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemoryLeadsEveryRole(t *testing.T) {
	m := NewMemory(testInfo("solo"))
	defer m.Close()
	require.Equal(t, ModeSingleNode, m.Mode())
	st, _ := m.Health()
	require.Equal(t, StateInitializing, st)
	prober := ProberRole("east")
	m.SetRoles([]string{RoleFleet, prober})
	_, _, ok := m.Term(RoleFleet)
	require.False(t, ok, "no term before Start")

	sub, unsub := m.Subscribe()
	defer unsub()
	require.NoError(t, m.Start(context.Background()))
	require.Error(t, m.Start(context.Background()))
	st, _ = m.Health()
	require.Equal(t, StateHealthy, st)
	<-sub

	for _, role := range []string{RoleFleet, prober} {
		tm, ctx, ok := m.Term(role)
		require.True(t, ok)
		require.Equal(t, Term{Role: role, Rev: 1}, tm)
		require.NoError(t, ctx.Err())
		li, err := m.Leader(context.Background(), role)
		require.NoError(t, err)
		require.Equal(t, "solo", li.LeaderID)
		require.Equal(t, int64(1), li.Term)
		require.NotNil(t, li.Node)
	}
	_, err := m.Leader(context.Background(), ProberRole("west"))
	require.ErrorIs(t, err, ErrNoLeader)

	members, err := m.Members(context.Background())
	require.NoError(t, err)
	require.Len(t, members, 1)
	require.Equal(t, "solo", members[0].Info.ID)

	// Invalid info: reported, never used.
	bad := testInfo("ignored")
	bad.Host = ""
	m.SetInfo(bad)
	li, err := m.Leader(context.Background(), RoleFleet)
	require.NoError(t, err)
	require.Nil(t, li.Node)
	require.NotEmpty(t, li.NodeErr)
	members, _ = m.Members(context.Background())
	require.Nil(t, members[0].Info)
	require.Equal(t, "solo", members[0].ID)
	m.SetInfo(testInfo("solo"))
	require.Len(t, m.Stats().Roles, 2)
}

func TestMemoryTermsAndFencing(t *testing.T) {
	m := NewMemory(testInfo("solo"))
	defer m.Close()
	role := ProberRole("east")
	m.SetRoles([]string{role})
	require.NoError(t, m.Start(context.Background()))
	t1, ctx1, ok := m.Term(role)
	require.True(t, ok)

	var stopped atomic.Bool
	require.NoError(t, m.Go(t1, func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a slow stop; the next term waits
		stopped.Store(true)
	}))
	v := Verdict{Cluster: "east", Backend: "h:1", State: VerdictDown}
	require.NoError(t, m.WriteVerdict(context.Background(), t1, v))
	require.Equal(t, t1.Rev, m.Verdicts()["east/h:1"].Term)
	require.Error(t, m.WriteVerdict(context.Background(), Term{Role: RoleFleet, Rev: 1}, v))

	m.SetRoles(nil)
	require.Error(t, ctx1.Err())
	require.ErrorIs(t, m.WriteVerdict(context.Background(), t1, v), ErrNotLeader)
	require.ErrorIs(t, m.Go(t1, func(context.Context) {}), ErrNotLeader)
	_, err := m.Leader(context.Background(), role)
	require.ErrorIs(t, err, ErrNoLeader)

	m.SetRoles([]string{role})
	var t2 Term
	require.Eventually(t, func() bool {
		t2, _, ok = m.Term(role)
		return ok
	}, 5*time.Second, 20*time.Millisecond)
	require.True(t, stopped.Load(), "the new term began only after the old work stopped")
	require.Equal(t, int64(2), t2.Rev)
	up := v
	up.State = VerdictUp
	require.ErrorIs(t, m.WriteVerdict(context.Background(), t1, up), ErrNotLeader)
	require.NoError(t, m.WriteVerdict(context.Background(), t2, up))
	require.Equal(t, VerdictUp, m.Verdicts()["east/h:1"].State)

	hctx, done, err := m.Hold(t2)
	require.NoError(t, err)
	go func() {
		<-hctx.Done()
		done()
	}()
	m.Close()
	m.Close()
	st, _ := m.Health()
	require.Equal(t, StateStopping, st)
	_, _, ok = m.Term(role)
	require.False(t, ok)
	require.Equal(t, uint64(1), m.Stats().TermEnds[EndShutdown])
}

func TestMemoryStuckWork(t *testing.T) {
	m := NewMemory(testInfo("solo"))
	var stuck atomic.Int32
	m.SetStopPolicy(100*time.Millisecond, func() { stuck.Add(1) })
	m.SetRoles([]string{RoleFleet})
	require.NoError(t, m.Start(context.Background()))
	tm, _, _ := m.Term(RoleFleet)
	release := make(chan struct{})
	done := make(chan struct{})
	require.NoError(t, m.Go(tm, func(context.Context) {
		defer close(done)
		<-release
	}))
	m.Close()
	require.Equal(t, int32(1), stuck.Load())
	close(release)
	<-done
}

func testInfo(id string) NodeInfo {
	return NodeInfo{ID: id, Host: "127.0.0.1", SQLPort: 6000, APIPort: 7000, Version: "test",
		StartTime: time.Unix(1700000000, 0).UTC(), State: NodeUp, Clusters: []string{"east"}}
}
