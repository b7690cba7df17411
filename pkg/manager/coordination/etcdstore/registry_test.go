package etcdstore

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

const nodesPfx = "/switchyard/" + testFleet + "/nodes/"

func readNode(t *testing.T, cli *clientv3.Client, id string) (*coordination.NodeInfo, int64) {
	t.Helper()
	resp, err := cli.Get(testCtx(t), nodesPfx+id)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return nil, 0
	}
	var info coordination.NodeInfo
	require.NoError(t, json.Unmarshal(resp.Kvs[0].Value, &info))
	return &info, resp.Kvs[0].Lease
}

func TestEtcdRegistration(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := newNode(t, etcd, "a", nodeOpts{})
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateHealthy
	}, waitFor, tick)
	info, lease := readNode(t, etcd.Client, "a")
	require.NotNil(t, info)
	require.Equal(t, testInfo("a"), *info)
	require.NotZero(t, lease)

	// SetInfo re-puts (the ID cannot change).
	ni := testInfo("other")
	ni.State = coordination.NodeDraining
	a.SetInfo(ni)
	require.Eventually(t, func() bool {
		info, _ := readNode(t, etcd.Client, "a")
		return info != nil && info.State == coordination.NodeDraining && info.ID == "a"
	}, waitFor, tick)

	// Deleted by someone else: put back under the same lease.
	_, err := etcd.Client.Delete(testCtx(t), nodesPfx+"a")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, l := readNode(t, etcd.Client, "a")
		return info != nil && l == lease
	}, waitFor, tick)

	// Lease lost: registered again under a new lease.
	_, err = etcd.Client.Revoke(testCtx(t), clientv3.LeaseID(lease))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, l := readNode(t, etcd.Client, "a")
		return info != nil && l != lease && l != 0
	}, waitFor, tick)
	require.Eventually(t, func() bool { return a.Stats().Registrations >= 2 }, waitFor, tick)

	a.Close()
	info, _ = readNode(t, etcd.Client, "a")
	require.Nil(t, info, "Close deletes the node's own key")
}

// Health: initializing until registered (etcd not up yet), healthy, then
// abnormal while etcd is unreachable.
func TestEtcdHealth(t *testing.T) {
	etcd := etcdtest.Reserve(t)
	a := newNode(t, etcd, "a", nodeOpts{})
	st, reason := a.Health()
	require.Equal(t, coordination.StateInitializing, st, reason)
	etcd.Launch(t)
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateHealthy
	}, waitFor, tick)
	etcd.Stop()
	require.Eventually(t, func() bool {
		st, reason := a.Health()
		return st == coordination.StateAbnormal && reason != ""
	}, waitFor, tick)
	etcd.Launch(t)
	require.Eventually(t, func() bool {
		st, _ := a.Health()
		return st == coordination.StateHealthy
	}, waitFor, tick)
}

func TestEtcdMembers(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := newNode(t, etcd, "a", nodeOpts{})
	b := newNode(t, etcd, "b", nodeOpts{})
	ctx := testCtx(t)
	_, err := etcd.Client.Put(ctx, nodesPfx+"garbage", "{not json")
	require.NoError(t, err)
	_, err = etcd.Client.Put(ctx, nodesPfx+"nohost", `{"id":"nohost","sql_port":1,"api_port":2,"state":"up"}`)
	require.NoError(t, err)
	mismatch := testInfo("someone-else")
	_, err = etcd.Client.Put(ctx, nodesPfx+"mismatch", mustJSON(t, mismatch))
	require.NoError(t, err)

	var members []coordination.Member
	require.Eventually(t, func() bool {
		members, err = b.Members(testCtx(t))
		return err == nil && len(members) == 5
	}, waitFor, tick)
	byID := map[string]coordination.Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	for _, id := range []string{"a", "b"} {
		m := byID[id]
		require.NotNil(t, m.Info, id)
		require.Empty(t, m.Err)
		require.Equal(t, id, m.Info.ID)
		require.Greater(t, m.TTL, int64(0))
		require.LessOrEqual(t, m.TTL, int64(testNodeTTL.Seconds()))
	}
	for _, id := range []string{"garbage", "nohost", "mismatch"} {
		m := byID[id]
		require.Nil(t, m.Info, id)
		require.NotEmpty(t, m.Err, id)
		require.Equal(t, int64(-1), m.TTL, "no lease")
	}
	_ = a
}
