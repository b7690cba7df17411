package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// regStatus is the registrar's state as Health reports it.
type regStatus struct {
	everRegistered bool
	lease          clientv3.LeaseID // current registration lease, 0 when none
	err            error            // why the node is not registered now
	lastAck        time.Time        // last keepalive answer (or registration)
}

var errLeaseLost = errors.New("registration lease lost")

// runRegistry keeps nodes/<id> present under the node's own lease: it
// registers, keeps the lease alive, re-puts on SetInfo or when the key is
// deleted, and registers again (new lease) when the lease is lost. When ctx
// ends it deletes its own key and revokes its lease, nothing else.
func (e *Store) runRegistry(ctx context.Context) {
	bo := newBackoff()
	for {
		registered, err := e.registerOnce(ctx, bo)
		if ctx.Err() != nil {
			return
		}
		if registered {
			e.lg.Warn("node registration lost; registering again", zap.Error(err))
		} else {
			e.lg.Warn("node registration failed", zap.Error(err))
		}
		e.mu.Lock()
		e.reg.lease, e.reg.err = 0, err
		e.mu.Unlock()
		if !bo.wait(ctx) {
			return
		}
	}
}

// registerOnce runs one registration lease until it is lost (or ctx ends,
// then it deregisters). registered says whether the key was written.
func (e *Store) registerOnce(ctx context.Context, bo *backoff) (registered bool, _ error) {
	key := e.nodeKey(e.id)
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	grant, err := e.cli.Grant(gctx, e.nodeTTL)
	cancel()
	if err != nil {
		return false, fmt.Errorf("grant lease: %w", err)
	}
	lease := grant.ID
	defer func() {
		// A lost lease may still exist (e.g. etcd came back with it): revoke
		// it so that it cannot hold a stale copy of the key.
		rctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_, _ = e.cli.Revoke(rctx, lease)
		cancel()
	}()
	putRev, err := e.putInfo(ctx, key, lease)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	e.reg = regStatus{everRegistered: true, lease: lease, lastAck: time.Now()}
	e.counters.registrations++
	e.mu.Unlock()
	bo.reset()
	e.lg.Info("node registered", zap.String("key", key), zap.String("lease", fmt.Sprintf("%x", lease)))

	kctx, kcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer kcancel()
	ka, err := e.cli.KeepAlive(kctx, lease)
	if err != nil {
		return true, fmt.Errorf("keepalive: %w", err)
	}
	// Watch the key: if someone deletes it while our lease lives, put it back.
	watch := func() clientv3.WatchChan {
		return e.cli.Watch(kctx, key, clientv3.WithFilterPut(), clientv3.WithRev(putRev+1))
	}
	wch := watch()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			e.deregister(key, lease)
			return true, ctx.Err()
		case _, ok := <-ka:
			if !ok {
				return true, errLeaseLost
			}
			e.mu.Lock()
			e.reg.lastAck = time.Now()
			e.mu.Unlock()
			continue
		case wr, ok := <-wch:
			if ok && wr.Err() == nil {
				deleted := false
				for _, ev := range wr.Events {
					deleted = deleted || ev.Type == mvccpb.DELETE
				}
				if !deleted {
					continue
				}
			} else {
				// Disrupted (compacted, no etcd leader): the key may have
				// gone meanwhile. Put it again and watch from that put.
				wch = nil
			}
		case <-e.infoCh.C():
		case <-retry.C:
		}
		rev, err := e.putInfo(ctx, key, lease)
		if err == nil {
			if wch == nil {
				putRev = rev
				wch = watch()
			}
		} else {
			if errors.Is(err, errLeaseLost) {
				return true, err
			}
			e.lg.Warn("re-putting node info failed; retrying", zap.Error(err))
			retry.Reset(time.Second)
		}
	}
}

// putInfo writes the node's info under lease and returns the revision.
func (e *Store) putInfo(ctx context.Context, key string, lease clientv3.LeaseID) (int64, error) {
	val, err := json.Marshal(e.info())
	if err != nil {
		return 0, fmt.Errorf("encode node info: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := e.cli.Put(pctx, key, string(val), clientv3.WithLease(lease))
	if err != nil {
		if isLeaseNotFound(err) {
			return 0, errLeaseLost
		}
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return resp.Header.Revision, nil
}

// deregister deletes this node's key if it is still under our lease, then
// the deferred revoke ends the lease. Never a prefix delete (TiProxy's
// removeTopology flaw, ha.md 2.4).
func (e *Store) deregister(key string, lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		e.lg.Warn("deleting node registration failed; it expires with its lease", zap.Error(err))
	}
}

// Members implements Store.
func (e *Store) Members(ctx context.Context) ([]coordination.Member, error) {
	gctx, cancel := context.WithTimeout(ctx, readTimeout)
	resp, err := e.cli.Get(gctx, e.nodesPrefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: list nodes: %v", coordination.ErrUnavailable, err)
	}
	members := make([]coordination.Member, 0, len(resp.Kvs))
	tctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), e.nodesPrefix())
		m := coordination.Member{ID: id, TTL: -1}
		info, err := parseNodeInfo(kv.Value, id)
		if err != nil {
			m.Err = err.Error()
		} else {
			m.Info = info
		}
		if kv.Lease != 0 {
			if ttl, err := e.cli.TimeToLive(tctx, clientv3.LeaseID(kv.Lease)); err == nil && ttl.TTL >= 0 {
				m.TTL = ttl.TTL
			}
		}
		members = append(members, m)
	}
	return members, nil
}

// parseNodeInfo decodes and validates a nodes/<id> value.
func parseNodeInfo(val []byte, id string) (*coordination.NodeInfo, error) {
	var info coordination.NodeInfo
	if err := json.Unmarshal(val, &info); err != nil {
		return nil, fmt.Errorf("node %s: info does not parse: %v", id, err)
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	if info.ID != id {
		return nil, fmt.Errorf("node %s: info names node %q", id, info.ID)
	}
	return &info, nil
}
