package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

const verdictPfx = "/switchyard/" + testFleet + "/clusters/"

func verdictKeyOf(cluster, addr string) string {
	return verdictPfx + cluster + "/backends/" + addr + "/state"
}

func getValue(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(testCtx(t), key)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// A verdict is written only under a live term; an ended term's write is
// refused, locally and by etcd's fence.
func TestEtcdFencedVerdict(t *testing.T) {
	etcd := etcdtest.Start(t)
	role := coordination.ProberRole("east")
	a := newNode(t, etcd, "a", nodeOpts{roles: []string{role}})
	require.Eventually(t, func() bool { return a.leads(role) }, waitFor, tick)
	b := newNode(t, etcd, "b", nodeOpts{roles: []string{role}})
	sub, unsub := b.Subscribe()
	defer unsub()
	t1 := a.term(t, role)
	oldKey, crev, _, ok := firstKey(t, etcd.Client, role)
	require.True(t, ok)
	require.Equal(t, t1.Rev, crev)

	v := coordination.Verdict{Cluster: "east", Backend: "127.0.0.1:4000", State: coordination.VerdictDown, Round: "r1",
		DecidedAt: time.Unix(1700000000, 0).UTC(), Votes: []coordination.Vote{{Node: "a", Vote: coordination.VoteDown}}}
	require.NoError(t, a.WriteVerdict(testCtx(t), t1, v))
	want := v
	want.Term = t1.Rev
	for _, n := range []*node{a, b} {
		require.Eventually(t, func() bool {
			got, ok := n.Verdicts()[coordination.BackendID("east", "127.0.0.1:4000")]
			return ok && fmt.Sprint(got) == fmt.Sprint(want)
		}, waitFor, tick)
	}
	select {
	case <-sub:
	case <-time.After(waitFor):
		t.Fatal("Subscribe did not wake on a verdict")
	}
	key := verdictKeyOf("east", "127.0.0.1:4000")
	stored := getValue(t, etcd.Client, key)

	// Wrong role or bad verdicts are refused outright.
	require.Error(t, a.WriteVerdict(testCtx(t), coordination.Term{Role: coordination.RoleFleet, Rev: t1.Rev}, v))
	bad := v
	bad.State = "sideways"
	require.Error(t, a.WriteVerdict(testCtx(t), t1, bad))

	// a's term ends; b takes over.
	a.SetRoles(nil)
	require.Eventually(t, func() bool { return b.leads(role) }, waitFor, tick)
	up := v
	up.State = coordination.VerdictUp
	require.ErrorIs(t, a.WriteVerdict(testCtx(t), t1, up), coordination.ErrNotLeader, "refused locally")

	// Even if a still believed in t1 (a GC pause, say), etcd refuses it.
	a.mu.Lock()
	a.terms[role] = &termState{term: t1, key: oldKey, ctx: context.Background()}
	a.mu.Unlock()
	require.ErrorIs(t, a.WriteVerdict(testCtx(t), t1, up), coordination.ErrNotLeader, "refused by the fence")
	require.Equal(t, stored, getValue(t, etcd.Client, key), "the value in etcd is unchanged")
	a.mu.Lock()
	delete(a.terms, role)
	a.mu.Unlock()

	t2 := b.term(t, role)
	require.Greater(t, t2.Rev, t1.Rev)
	require.NoError(t, b.WriteVerdict(testCtx(t), t2, up))
	require.Eventually(t, func() bool {
		got := a.Verdicts()[coordination.BackendID("east", "127.0.0.1:4000")]
		return got.State == coordination.VerdictUp && got.Term == t2.Rev
	}, waitFor, tick)
}

// The verdict watch is compacted between its list and its watch: it lists
// again and misses nothing, deletes included.
func TestEtcdVerdictWatchSurvivesCompaction(t *testing.T) {
	etcd := etcdtest.Start(t)
	ctx := testCtx(t)
	put := func(cluster, addr, state string) {
		v := coordination.Verdict{Cluster: cluster, Backend: addr, State: state}
		_, err := etcd.Client.Put(ctx, verdictKeyOf(cluster, addr), mustJSON(t, v))
		require.NoError(t, err)
	}
	put("east", "h1:1", coordination.VerdictDown)
	put("east", "h2:1", coordination.VerdictDown)

	var once sync.Once
	churned := make(chan struct{})
	a := newNodeWith(t, etcd, "a", func(n *Store) {
		n.hooks.afterList = func() {
			// Runs on the watch goroutine: assert, not require.
			once.Do(func() {
				defer close(churned)
				_, err := etcd.Client.Delete(ctx, verdictKeyOf("east", "h1:1"))
				assert.NoError(t, err)
				for _, kv := range [][2]string{
					{verdictKeyOf("east", "h2:1"), mustJSON(t, coordination.Verdict{State: coordination.VerdictUp})},
					{verdictKeyOf("west", "h3:1"), mustJSON(t, coordination.Verdict{State: coordination.VerdictDown})},
					{verdictPfx + "west/garbage", "x"}, // not a verdict key
					{verdictKeyOf("west", "h4:1"), "{corrupt"},
				} {
					_, err = etcd.Client.Put(ctx, kv[0], kv[1])
					assert.NoError(t, err)
				}
				resp, err := etcd.Client.Get(ctx, "any")
				if assert.NoError(t, err) {
					_, err = etcd.Client.Compact(ctx, resp.Header.Revision)
					assert.NoError(t, err)
				}
			})
		}
	})
	<-churned
	require.Eventually(t, func() bool {
		m := a.Verdicts()
		return len(m) == 2 && m["east/h2:1"].State == coordination.VerdictUp && m["west/h3:1"].State == coordination.VerdictDown
	}, waitFor, tick)
	// And the watch works after the re-list.
	put("west", "h5:1", coordination.VerdictDown)
	_, err := etcd.Client.Delete(ctx, verdictKeyOf("east", "h2:1"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m := a.Verdicts()
		_, gone := m["east/h2:1"]
		return len(m) == 2 && !gone && m["west/h5:1"].Backend == "h5:1" && m["west/h5:1"].Cluster == "west"
	}, waitFor, tick)
}

// newNodeWith starts a direct node after letting the test adjust it.
func newNodeWith(t *testing.T, etcd *etcdtest.Etcd, id string, adjust func(*Store)) *Store {
	t.Helper()
	cli := etcd.Client
	n := New(testLogger(t, id), cli, testFleet, testInfo(id), Options{ElectionTTL: testTTL, NodeTTL: testNodeTTL})
	adjust(n)
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(n.Close)
	return n
}
