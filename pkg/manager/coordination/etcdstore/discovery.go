package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader implements Store. It reads etcd linearizably, so a node cut off
// from etcd answers ErrUnavailable, never a stale leader. The leader's node
// info is read at the revision of the election read, so the two agree.
func (e *Store) Leader(ctx context.Context, role string) (coordination.LeaderInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.electionPrefix(role)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return coordination.LeaderInfo{}, fmt.Errorf("%w: read leader of %s: %v", coordination.ErrUnavailable, role, err)
	}
	if len(resp.Kvs) == 0 {
		return coordination.LeaderInfo{}, coordination.ErrNoLeader
	}
	kv := resp.Kvs[0]
	li := coordination.LeaderInfo{Role: role, Term: kv.CreateRevision}
	var cv campaignValue
	if err := json.Unmarshal(kv.Value, &cv); err != nil || cv.NodeID == "" {
		li.NodeErr = fmt.Sprintf("leader key %s has no node id (value %q)", kv.Key, kv.Value)
		return li, nil
	}
	li.LeaderID = cv.NodeID
	nresp, err := e.cli.Get(ctx, e.nodeKey(cv.NodeID), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		return coordination.LeaderInfo{}, fmt.Errorf("%w: read node info of leader %s: %v", coordination.ErrUnavailable, cv.NodeID, err)
	}
	if len(nresp.Kvs) == 0 {
		li.NodeErr = fmt.Sprintf("leader %s exists but has no node info", cv.NodeID)
		return li, nil
	}
	info, err := parseNodeInfo(nresp.Kvs[0].Value, cv.NodeID)
	if err != nil {
		li.NodeErr = "leader exists but its node info is unusable: " + err.Error()
		return li, nil
	}
	li.Node = info
	return li, nil
}
