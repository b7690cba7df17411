package etcdstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

// The leader is cut off from etcd: its term context ends before the other
// node's term begins, it answers ErrUnavailable, and after the partition
// heals it campaigns again behind the new leader.
func TestEtcdPartitionedLeaderStopsFirst(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	roles := []string{coordination.RoleFleet}
	a := newNode(t, etcd, "a", nodeOpts{viaProxy: true, rec: rec, roles: roles})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	b := newNode(t, etcd, "b", nodeOpts{rec: rec, roles: roles})
	ta := a.term(t, coordination.RoleFleet)

	// Leader-only work records when it sees its context end.
	var workEnd atomic.Pointer[time.Time]
	require.NoError(t, a.Go(ta, func(ctx context.Context) {
		<-ctx.Done()
		now := time.Now()
		workEnd.Store(&now)
	}))
	// b is a registered candidate before the cut.
	require.Eventually(t, func() bool {
		resp, err := etcd.Client.Get(testCtx(t), "/switchyard/"+testFleet+"/election/"+coordination.RoleFleet+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	}, waitFor, tick)

	a.partition()
	cut := time.Now()
	require.Eventually(t, func() bool { return b.leads(coordination.RoleFleet) }, waitFor, tick)
	t.Logf("failover took %v", time.Since(cut))
	tb := b.term(t, coordination.RoleFleet)
	require.Greater(t, tb.Rev, ta.Rev)
	require.False(t, a.leads(coordination.RoleFleet))

	// The hook saw a's term end before b's began; the work itself saw its
	// context end before b's term began too.
	rec.requireNoOverlap(t)
	var bBegan time.Time
	for _, ev := range rec.snapshot() {
		if ev.node == "b" && ev.began {
			bBegan = ev.at
		}
	}
	we := workEnd.Load()
	require.NotNil(t, we, "a's work must have stopped")
	require.True(t, we.Before(bBegan), "a's work stopped %v after b's term began", we.Sub(bBegan))
	t.Logf("a's work stopped %v before b's term began", bBegan.Sub(*we))
	require.Equal(t, uint64(1), a.Stats().TermEnds[coordination.EndGuard]+a.Stats().TermEnds[coordination.EndSession])

	// Cut off, a never answers with a stale leader.
	_, err := a.Leader(testCtx(t), coordination.RoleFleet)
	require.ErrorIs(t, err, coordination.ErrUnavailable)
	_, err = a.Members(testCtx(t))
	require.ErrorIs(t, err, coordination.ErrUnavailable)
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateAbnormal
	}, waitFor, tick)

	a.heal()
	// a campaigns again with a new key, behind b, and does not lead.
	require.Eventually(t, func() bool {
		resp, err := etcd.Client.Get(testCtx(t), "/switchyard/"+testFleet+"/election/"+coordination.RoleFleet+"/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 2 {
			return false
		}
		for _, kv := range resp.Kvs {
			if kv.CreateRevision > tb.Rev {
				return true
			}
		}
		return false
	}, waitFor, tick)
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateHealthy
	}, waitFor, tick)
	require.False(t, a.leads(coordination.RoleFleet))
	li, err := a.Leader(testCtx(t), coordination.RoleFleet)
	require.NoError(t, err)
	require.Equal(t, "b", li.LeaderID)
	require.Equal(t, tb.Rev, li.Term)

	// And when b goes, a leads again with a higher term.
	b.Close()
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	require.Greater(t, a.term(t, coordination.RoleFleet).Rev, tb.Rev)
	rec.requireNoOverlap(t)
}

// P1: a candidate whose session expired during a partition must not become
// leader without its own key when the leader resigns.
func TestEtcdNoPhantomLeaderAfterPartition(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	a := newNode(t, etcd, "a", nodeOpts{rec: rec, roles: []string{coordination.RoleFleet}})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	b := newNode(t, etcd, "b", nodeOpts{viaProxy: true, rec: rec, roles: []string{coordination.RoleFleet}})
	prefix := "/switchyard/" + testFleet + "/election/" + coordination.RoleFleet + "/"
	countKeys := func() int64 {
		resp, err := etcd.Client.Get(testCtx(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		return resp.Count
	}
	require.Eventually(t, func() bool { return countKeys() == 2 }, waitFor, tick)

	b.partition()
	// b's candidate key goes with its lease, after more than a TTL.
	require.Eventually(t, func() bool { return countKeys() == 1 }, waitFor, tick)
	// b's client sees its session end as well and gives up that campaign.
	require.Eventually(t, func() bool { return b.Stats().CampaignErrors > 0 }, waitFor, tick)
	b.heal()
	// b campaigns anew (a new key) and does not claim the role meanwhile.
	require.Eventually(t, func() bool { return countKeys() == 2 }, waitFor, tick)
	require.Never(t, func() bool { return b.leads(coordination.RoleFleet) }, time.Second, tick)

	// a resigns; b must lead with its own key in etcd.
	a.SetRoles(nil)
	require.Eventually(t, func() bool { return b.leads(coordination.RoleFleet) }, waitFor, tick)
	tb := b.term(t, coordination.RoleFleet)
	key, crev, value, ok := firstKey(t, etcd.Client, coordination.RoleFleet)
	require.True(t, ok, "b leads without any key in etcd")
	require.Equal(t, tb.Rev, crev, "b leads with key %s", key)
	require.JSONEq(t, `{"node_id":"b"}`, value)
	rec.requireNoOverlap(t)
	require.Equal(t, uint64(1), a.Stats().TermEnds[coordination.EndRoleRemoved])
}

// The whole etcd goes away: after the guard nobody holds a term; when it
// comes back (same data, leases renewed by the restart) a leader is elected
// within TTL and a few seconds.
func TestEtcdOutageAndRecovery(t *testing.T) {
	etcd := etcdtest.Start(t)
	rec := &recorder{}
	roles := []string{coordination.RoleFleet}
	a := newNode(t, etcd, "a", nodeOpts{rec: rec, roles: roles})
	b := newNode(t, etcd, "b", nodeOpts{rec: rec, roles: roles})
	waitLeader(t, coordination.RoleFleet, a, b)
	term, err := a.Leader(testCtx(t), coordination.RoleFleet)
	require.NoError(t, err)

	// A verdict both nodes know.
	v := coordination.Verdict{Cluster: "east", Backend: "127.0.0.1:4000", State: coordination.VerdictDown, Round: "r1"}
	_, err = etcd.Client.Put(testCtx(t), "/switchyard/"+testFleet+"/clusters/east/backends/127.0.0.1:4000/state", mustJSON(t, v))
	require.NoError(t, err)
	for _, n := range []*node{a, b} {
		require.Eventually(t, func() bool { return len(n.Verdicts()) == 1 }, waitFor, tick)
	}

	etcd.Stop()
	stopped := time.Now()
	require.Eventually(t, func() bool { return !a.leads(coordination.RoleFleet) && !b.leads(coordination.RoleFleet) }, waitFor, tick)
	t.Logf("no term held %v after the stop", time.Since(stopped))
	for _, n := range []*node{a, b} {
		_, err := n.Leader(testCtx(t), coordination.RoleFleet)
		require.ErrorIs(t, err, coordination.ErrUnavailable)
		require.Len(t, n.Verdicts(), 1, "verdicts are kept while etcd is down")
	}
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateAbnormal
	}, waitFor, tick)
	require.Never(t, func() bool { return a.leads(coordination.RoleFleet) || b.leads(coordination.RoleFleet) }, time.Second, tick)

	etcd.Launch(t)
	restarted := time.Now()
	leader := waitLeader(t, coordination.RoleFleet, a, b)
	took := time.Since(restarted)
	t.Logf("leader %s %v after the restart", leader.id, took)
	require.Less(t, took, testTTL+12*time.Second)
	require.Greater(t, leader.term(t, coordination.RoleFleet).Rev, term.Term)
	rec.requireNoOverlap(t)
	for _, n := range []*node{a, b} {
		require.Len(t, n.Verdicts(), 1)
		require.Eventually(t, func() bool {
			st, _ := n.Health()
			return st == coordination.StateHealthy
		}, waitFor, tick)
	}
}

// The renew guard ends a term at most TTL − margin − renewPeriod after
// etcd stops answering (3.5 s at TTL 5 s), whenever in the renewal cycle
// the outage begins. So the leader keeps its term through a 3-second
// outage, the length of a slow etcd leader election, and renews as soon as
// etcd answers again. (The node lease has its default TTL, 10 s: a lease
// that expires during the outage makes etcd hold the client's shared
// keepalive stream until it is revoked, and that would end the session.)
func TestEtcdTermOutlivesShortOutage(t *testing.T) {
	const ttl = 5 * time.Second
	outage := ttl - guardMargin(ttl) - renewPeriod(ttl) - 500*time.Millisecond
	require.Equal(t, 3*time.Second, outage)
	etcd := etcdtest.Start(t)
	a := newNode(t, etcd, "a", nodeOpts{viaProxy: true, roles: []string{coordination.RoleFleet},
		opts: Options{ElectionTTL: ttl, NodeTTL: DefaultNodeTTL}})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	ta := a.term(t, coordination.RoleFleet)
	// GuardRemaining changes at each renewal.
	guardLeft := func() time.Duration { return a.Stats().Roles[0].GuardRemaining }
	renewal := func() {
		last := guardLeft()
		require.Eventually(t, func() bool { return guardLeft() != last }, 2*time.Second, time.Millisecond)
	}
	renewal()
	for round := range 4 {
		// Each round cuts at another time after a renewal, up to 1.2 s (the
		// period was TTL/4, 1.25 s, and a cut just before the next renewal
		// ended the term at 2.75 s).
		renewal()
		time.Sleep(time.Duration(round) * 400 * time.Millisecond)
		a.partition()
		time.Sleep(outage)
		before := guardLeft()
		a.heal()
		require.Eventually(t, func() bool { return guardLeft() != before }, 2*time.Second, time.Millisecond,
			"round %d: no renewal after the outage", round)
		require.True(t, a.leads(coordination.RoleFleet), "round %d: the term ended during a %v outage", round, outage)
		require.Equal(t, ta, a.term(t, coordination.RoleFleet))
	}
	require.Zero(t, a.Stats().TermEnds[coordination.EndGuard])
}
