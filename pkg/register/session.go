package register

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// keepRegistered registers, keeps the lease alive and registers again with a
// new lease whenever it is lost, until ctx is done. etcd being down is never
// fatal: the sidecar may start before etcd, and etcd may restart or lose its
// data under it.
func (r *Registrar) keepRegistered(ctx context.Context, cli *clientv3.Client) {
	bo := backoff{min: r.t.backoffMin, max: r.t.backoffMax}
	for ctx.Err() == nil {
		id, err := r.register(ctx, cli)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := bo.next()
			r.lg.Warn("cannot register, retrying", zap.Error(err), zap.Duration("retry_in", wait))
			sleep(ctx, wait)
			continue
		}
		r.lg.Info("registered", zap.String("lease", leaseHex(id)), zap.String("version", r.Version()))
		start := time.Now()
		r.keepAlive(ctx, cli, id)
		if ctx.Err() != nil {
			return
		}
		// A lease that survived a whole TTL was healthy: start the next
		// round of retries from the shortest wait. One lost at once (someone
		// keeps revoking it) must not turn this loop into a busy one.
		if time.Since(start) >= r.cfg.TTL {
			bo.reset()
		}
		wait := bo.next()
		r.lg.Warn("lease lost, registering again", zap.String("lease", leaseHex(id)), zap.Duration("retry_in", wait))
		sleep(ctx, wait)
	}
}

// register grants a lease and writes both keys in one transaction, so that
// readers see either the whole registration or none of it.
func (r *Registrar) register(ctx context.Context, cli *clientv3.Client) (clientv3.LeaseID, error) {
	if r.cfg.Version == "" && r.Version() == UnknownVersion {
		r.learnVersion(ctx)
	}
	info, err := r.infoValue(r.Version())
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.t.request)
	defer cancel()
	g, err := cli.Grant(rctx, int64(r.cfg.TTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	r.lease.Store(int64(g.ID))
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	_, err = cli.Txn(rctx).Then(
		clientv3.OpPut(r.cfg.infoKey(), info), // no lease, like TiDB: liveness is the ttl key
		clientv3.OpPut(r.cfg.ttlKey(), now, clientv3.WithLease(g.ID)),
	).Commit()
	if err != nil {
		// The lease expires on its own; deregister revokes it if it is the last.
		return 0, fmt.Errorf("put %s: %w", r.cfg.infoKey(), err)
	}
	return g.ID, nil
}

// keepAlive returns when the lease is lost (expired during an etcd outage,
// revoked, or gone with a wiped etcd) or ctx is done. While the version is
// not configured it also re-reads the backend's greeting and rewrites the
// info key when the version changes.
func (r *Registrar) keepAlive(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := cli.KeepAlive(kctx, id)
	if err != nil {
		r.lg.Warn("cannot keep the lease alive", zap.String("lease", leaseHex(id)), zap.Error(err))
		return
	}
	published := r.Version()
	var versionC <-chan time.Time // nil, never ready, when the version is configured
	var timer *time.Timer
	if r.cfg.Version == "" {
		timer = time.NewTimer(r.versionInterval())
		defer timer.Stop()
		versionC = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch: // drained so that the client never drops responses
			if !ok {
				return
			}
		case <-versionC:
			r.learnVersion(ctx)
			if v := r.Version(); v != published && r.putInfo(ctx, cli, v) {
				published = v
			}
			timer.Reset(r.versionInterval())
		}
	}
}

func (r *Registrar) versionInterval() time.Duration {
	if r.Version() == UnknownVersion {
		return r.t.versionRetry
	}
	return r.t.versionRefresh
}

// learnVersion reads the backend's greeting; failures keep the last version.
func (r *Registrar) learnVersion(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, r.t.probe)
	defer cancel()
	v, err := greetingVersion(pctx, r.dialer, r.cfg.Addr)
	if err != nil {
		r.lg.Debug("cannot read the backend's version", zap.Error(err))
		return
	}
	if old := r.Version(); old != v {
		r.lg.Info("backend version", zap.String("version", v), zap.String("previous", old))
		r.version.Store(&v)
	}
}

// putInfo rewrites the info key; a failure is retried at the next tick.
func (r *Registrar) putInfo(ctx context.Context, cli *clientv3.Client, version string) bool {
	info, err := r.infoValue(version)
	if err != nil {
		r.lg.Warn("cannot update the info key", zap.Error(err))
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, r.t.request)
	defer cancel()
	if _, err := cli.Put(rctx, r.cfg.infoKey(), info); err != nil {
		r.lg.Warn("cannot update the info key", zap.Error(err))
		return false
	}
	return true
}

// deregister removes this backend's two keys and revokes the last lease,
// bounded by r.t.cleanup. The keys are deleted only while the ttl key is
// still ours (or gone): a successor registered for the same address keeps
// its registration.
func (r *Registrar) deregister(cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), r.t.cleanup)
	defer cancel()
	id := clientv3.LeaseID(r.lease.Load())
	info, ttl := r.cfg.infoKey(), r.cfg.ttlKey()
	resp, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.LeaseValue(ttl), "=", id),
	).Then(
		clientv3.OpDelete(info), clientv3.OpDelete(ttl),
	).Else(
		clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ttl), "=", 0)},
			[]clientv3.Op{clientv3.OpDelete(info)}, nil),
	).Commit()
	switch {
	case err != nil:
		r.lg.Warn("cannot remove the keys; the ttl key goes with its lease", zap.Error(err))
	case !resp.Succeeded && !resp.Responses[0].GetResponseTxn().GetSucceeded():
		r.lg.Warn("another registration holds this address; its keys are left alone")
	default:
		r.lg.Info("keys removed")
	}
	if id == 0 {
		return
	}
	if _, err := cli.Revoke(ctx, id); err != nil {
		r.lg.Debug("cannot revoke the lease", zap.String("lease", leaseHex(id)), zap.Error(err))
	}
}

func leaseHex(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }

// backoff is exponential with jitter: [cur/2, cur], cur doubling up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
