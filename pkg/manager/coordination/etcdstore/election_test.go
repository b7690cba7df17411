package etcdstore

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

func TestEtcdOneLeaderPerRole(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	roles := []string{coordination.RoleFleet, coordination.ProberRole("east")}
	a := newNode(t, etcd, "a", nodeOpts{rec: rec, roles: roles})
	b := newNode(t, etcd, "b", nodeOpts{rec: rec, roles: roles})

	for _, role := range roles {
		leader := waitLeader(t, role, a, b)
		tm := leader.term(t, role)
		// Every node answers the same, read from etcd.
		for _, n := range []*node{a, b} {
			var li coordination.LeaderInfo
			require.Eventually(t, func() bool {
				var err error
				li, err = n.Leader(testCtx(t), role)
				return err == nil && li.Node != nil
			}, waitFor, tick)
			require.Equal(t, leader.id, li.LeaderID)
			require.Equal(t, tm.Rev, li.Term)
			require.Equal(t, leader.id, li.Node.ID)
			require.Empty(t, li.NodeErr)
		}
		key, crev, _, ok := firstKey(t, etcd.Client, role)
		require.True(t, ok)
		require.Equal(t, tm.Rev, crev, "the term is the leader key's create revision (%s)", key)
	}
	rec.requireNoOverlap(t)
	s := a.Stats()
	require.Len(t, s.Roles, 2)
}

// A leader that closes resigns: the other node takes over long before the
// election TTL could run out.
func TestEtcdCloseHandsOverByResigning(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	// A 20 s TTL: a handoff by expiry would take 20 s.
	opts := Options{ElectionTTL: 20 * time.Second}
	a := newNode(t, etcd, "a", nodeOpts{rec: rec, opts: opts, roles: []string{coordination.RoleFleet}})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	b := newNode(t, etcd, "b", nodeOpts{rec: rec, opts: opts, roles: []string{coordination.RoleFleet}})

	// A node key that belongs to neither: Close must leave it alone.
	_, err := etcd.Client.Put(testCtx(t), "/switchyard/"+testFleet+"/nodes/other", `{"id":"other"}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, _ := b.Health()
		return st == coordination.StateHealthy
	}, waitFor, tick)

	var work atomic.Bool
	tm := a.term(t, coordination.RoleFleet)
	require.NoError(t, a.Go(tm, func(ctx context.Context) {
		work.Store(true)
		<-ctx.Done()
		work.Store(false)
	}))
	require.Eventually(t, work.Load, waitFor, tick)

	start := time.Now()
	a.Close()
	require.False(t, work.Load(), "Close returns after leader-only work stopped")
	st, _ := a.Health()
	require.Equal(t, coordination.StateStopping, st)
	require.Eventually(t, func() bool { return b.leads(coordination.RoleFleet) }, 10*time.Second, tick,
		"b should win by a's resignation, well within the 20 s TTL")
	t.Logf("handoff took %v", time.Since(start))
	require.Greater(t, b.term(t, coordination.RoleFleet).Rev, tm.Rev)

	resp, err := etcd.Client.Get(testCtx(t), "/switchyard/"+testFleet+"/nodes/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	require.NoError(t, err)
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	require.ElementsMatch(t, []string{
		"/switchyard/" + testFleet + "/nodes/b",
		"/switchyard/" + testFleet + "/nodes/other",
	}, keys)
	rec.requireNoOverlap(t)
	require.Equal(t, uint64(1), a.Stats().TermEnds[coordination.EndShutdown])
}

// Work that ignores its context makes the term call OnStuck (fail-stop).
func TestEtcdStuckWorkCallsOnStuck(t *testing.T) {
	etcd := etcdtest.Start(t)
	var stuck atomic.Int32
	a := newNode(t, etcd, "a", nodeOpts{
		roles: []string{coordination.RoleFleet},
		opts:  Options{StopBudget: 300 * time.Millisecond, OnStuck: func() { stuck.Add(1) }},
	})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	tm := a.term(t, coordination.RoleFleet)

	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	defer wg.Wait()
	defer close(release)
	require.NoError(t, a.Go(tm, func(context.Context) {
		defer wg.Done()
		<-release // ignores its context
	}))
	// Hold: work the caller runs itself.
	hctx, done, err := a.Hold(tm)
	require.NoError(t, err)

	a.SetRoles(nil)
	<-hctx.Done()
	done()
	done() // idempotent
	require.Eventually(t, func() bool { return stuck.Load() == 1 }, waitFor, tick)
	require.Equal(t, uint64(1), a.Stats().Stuck)
	// The ended term takes no more work.
	require.ErrorIs(t, a.Go(tm, func(context.Context) {}), coordination.ErrNotLeader)
	_, _, err = a.Hold(tm)
	require.ErrorIs(t, err, coordination.ErrNotLeader)
	_, tctx, ok := a.Term(coordination.RoleFleet)
	require.False(t, ok)
	require.Error(t, tctx.Err())
	// It still resigned after the budget: the key is gone.
	require.Eventually(t, func() bool {
		_, _, _, ok := firstKey(t, etcd.Client, coordination.RoleFleet)
		return !ok
	}, waitFor, tick)
}

// A leader whose key is deleted under it ends its term; a removed and
// re-added role starts a new, higher term.
func TestEtcdKeyDeletedEndsTerm(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	a := newNode(t, etcd, "a", nodeOpts{rec: rec, roles: []string{coordination.RoleFleet}})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	t1 := a.term(t, coordination.RoleFleet)
	key, _, _, ok := firstKey(t, etcd.Client, coordination.RoleFleet)
	require.True(t, ok)
	sub, unsub := a.Subscribe()
	defer unsub()
	_, err := etcd.Client.Delete(testCtx(t), key)
	require.NoError(t, err)
	select {
	case <-sub:
	case <-time.After(waitFor):
		t.Fatal("Subscribe did not wake on a term change")
	}
	require.Eventually(t, func() bool {
		tm, _, ok := a.Term(coordination.RoleFleet)
		return ok && tm.Rev > t1.Rev
	}, waitFor, tick)
	require.Equal(t, uint64(1), a.Stats().TermEnds[coordination.EndKeyDeleted])
	rec.requireNoOverlap(t)
}

func TestEtcdStartTwiceAndCloseIdempotent(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := newNode(t, etcd, "a", nodeOpts{})
	require.Error(t, a.Start(context.Background()))
	a.Close()
	a.Close()
	require.Error(t, a.Start(context.Background()))

	// Never started: Close does nothing, Health says initializing.
	n := New(a.lg, a.cli, testFleet, testInfo("x"), Options{})
	st, _ := n.Health()
	require.Equal(t, coordination.StateInitializing, st)
	n.Close()
	bad := New(a.lg, a.cli, testFleet, coordination.NodeInfo{ID: "y"}, Options{})
	require.Error(t, bad.Start(context.Background()))
	bad.Close()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
