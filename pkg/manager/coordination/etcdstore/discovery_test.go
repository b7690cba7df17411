package etcdstore

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

// Leader discovery never reports a leader's endpoints it cannot vouch for.
func TestEtcdLeaderNodeInfoProblems(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := newNode(t, etcd, "a", nodeOpts{})
	ctx := testCtx(t)

	_, err := a.Leader(ctx, "ghost-role")
	require.ErrorIs(t, err, coordination.ErrNoLeader)

	// An election key of a node that is not registered, under the test's
	// own lease.
	lease, err := etcd.Client.Grant(ctx, 60)
	require.NoError(t, err)
	key := fmt.Sprintf("/switchyard/%s/election/%s/%x", testFleet, "ghost-role", lease.ID)
	put, err := etcd.Client.Put(ctx, key, `{"node_id":"ghost"}`, clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	crev := put.Header.Revision

	cases := []struct {
		name  string
		value string // nodes/ghost; "" = deleted
	}{
		{"missing", ""},
		{"corrupt", "{oops"},
		{"invalid", `{"id":"ghost","host":"","sql_port":1,"api_port":2,"state":"up"}`},
		{"other id", mustJSON(t, testInfo("not-ghost"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.value == "" {
				_, err = etcd.Client.Delete(ctx, nodesPfx+"ghost")
			} else {
				_, err = etcd.Client.Put(ctx, nodesPfx+"ghost", tc.value)
			}
			require.NoError(t, err)
			li, err := a.Leader(testCtx(t), "ghost-role")
			require.NoError(t, err)
			require.Equal(t, "ghost", li.LeaderID)
			require.Equal(t, crev, li.Term)
			require.Nil(t, li.Node)
			require.NotEmpty(t, li.NodeErr)
		})
	}

	// Valid info: reported.
	_, err = etcd.Client.Put(ctx, nodesPfx+"ghost", mustJSON(t, testInfo("ghost")))
	require.NoError(t, err)
	li, err := a.Leader(ctx, "ghost-role")
	require.NoError(t, err)
	require.NotNil(t, li.Node)
	require.Equal(t, "127.0.0.1:7000", li.Node.APIAddr())

	// A campaign value that names nobody.
	_, err = etcd.Client.Put(ctx, key, `garbage`, clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	li, err = a.Leader(ctx, "ghost-role")
	require.NoError(t, err)
	require.Nil(t, li.Node)
	require.Empty(t, li.LeaderID)
	require.NotEmpty(t, li.NodeErr)

	// The real leader's own node key deleted and corrupted. The node puts
	// a deleted key back, so corrupt it instead (it does not watch puts).
	a.SetRoles([]string{coordination.RoleFleet})
	require.Eventually(t, func() bool { return a.leads(coordination.RoleFleet) }, waitFor, tick)
	_, err = etcd.Client.Put(ctx, nodesPfx+"a", "corrupt")
	require.NoError(t, err)
	li, err = a.Leader(ctx, coordination.RoleFleet)
	require.NoError(t, err)
	require.Equal(t, "a", li.LeaderID)
	require.Nil(t, li.Node)
	require.Contains(t, li.NodeErr, "unusable")
}
