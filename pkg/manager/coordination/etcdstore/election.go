package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// campaignValue is the value of an election key.
type campaignValue struct {
	NodeID string `json:"node_id"`
}

// maxStaleLeases bounds the leases kept for a later revoke; beyond it they
// are left to expire.
const maxStaleLeases = 16

var (
	errSessionEnded = errors.New("election session ended before the campaign was won")
	errPhantom      = errors.New("campaign returned but our key is not the leader key (ha.md P1)")
)

// roleRunner campaigns for one role, one etcd session per term (ha.md 6.4).
type roleRunner struct {
	e      *Store
	role   string
	lg     *zap.Logger
	cancel context.CancelFunc
	// stale are leases of ended sessions that could not be revoked (etcd was
	// unreachable). They are revoked before the next campaign: after an etcd
	// restart the server renews every lease (ha.md P5), and an old key would
	// otherwise block the election for another TTL.
	stale []clientv3.LeaseID
}

// run campaigns at once, holds each won term until it ends, and campaigns
// again with a new session, backing off while etcd is unreachable.
func (r *roleRunner) run(ctx context.Context) {
	r.lg = r.e.lg.With(zap.String("role", r.role))
	bo := newBackoff()
	for ctx.Err() == nil {
		// Campaigning while an old key of ours may still stand would queue
		// the new key behind it for the old lease's whole (renewed) TTL.
		if err := r.revokeStale(ctx); err != nil {
			if !bo.wait(ctx) {
				break
			}
			continue
		}
		held, err := r.campaign(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			r.e.mu.Lock()
			r.e.counters.campaignErrs++
			r.e.mu.Unlock()
			r.lg.Warn("campaign failed; retrying with a new session", zap.Error(err))
		}
		// Only a term that lasted resets the backoff, so that a term lost
		// right after winning cannot turn into a hot loop.
		if held > r.e.opts.ElectionTTL {
			bo.reset()
		}
		if !bo.wait(ctx) {
			break
		}
	}
	// Leases that could not be revoked expire on their own.
}

// campaign runs one session: it campaigns and, if it wins, holds the term
// until it ends. held is how long the term lasted (0 if none began).
func (r *roleRunner) campaign(ctx context.Context) (held time.Duration, _ error) {
	e := r.e
	// Grant with a timeout ourselves: NewSession would use the session's
	// context, which must stay alive for the keepalive.
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	grant, err := e.cli.Grant(gctx, e.ttl)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("grant election lease: %w", err)
	}
	s, err := concurrency.NewSession(e.cli,
		concurrency.WithLease(grant.ID),
		concurrency.WithTTL(int(e.ttl)),
		concurrency.WithContext(clientv3.WithRequireLeader(ctx)))
	if err != nil {
		r.revoke(grant.ID)
		return 0, fmt.Errorf("new session: %w", err)
	}
	el := concurrency.NewElection(s, e.electionPrefix(r.role))
	val, err := json.Marshal(campaignValue{NodeID: e.id})
	if err != nil {
		r.endSession(s)
		return 0, err
	}

	// Campaign runs aside and is never waited on to step down (ha.md P2);
	// its context ends with the session, so it cannot win on a dead lease
	// unnoticed (P1), and the check below catches it if it does.
	cctx, ccancel := context.WithCancel(s.Ctx())
	defer ccancel()
	won := make(chan error, 1)
	e.campaignWG.Add(1)
	go func() {
		defer e.campaignWG.Done()
		won <- el.Campaign(cctx, string(val))
	}()
	select {
	case err = <-won:
	case <-s.Done():
		err = errSessionEnded
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		ccancel()
		r.endSession(s)
		return 0, err
	}

	key, rev := el.Key(), el.Rev()
	margin := guardMargin(time.Duration(e.ttl) * time.Second)
	validUntil, err := r.renew(ctx, s.Lease(), opTimeout)
	if err == nil {
		var hdrRev int64
		hdrRev, err = r.verify(ctx, key, rev)
		if err == nil && time.Until(validUntil.Add(-margin)) <= 0 {
			err = errors.New("won, but the lease is too close to expiry to begin a term")
		}
		if err == nil {
			return r.hold(ctx, s, el, key, rev, hdrRev, validUntil), nil
		}
	}
	r.resign(el)
	r.endSession(s)
	return 0, err
}

// verify checks that the first key of the election is ours, with our create
// revision (ha.md rule 2). It returns the revision it read at.
func (r *roleRunner) verify(ctx context.Context, key string, rev int64) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := r.e.cli.Get(gctx, r.e.electionPrefix(r.role)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return 0, fmt.Errorf("check leader key: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%w: no key", errPhantom)
	}
	kv := resp.Kvs[0]
	if string(kv.Key) != key || kv.CreateRevision != rev {
		return 0, fmt.Errorf("%w: leader key %s@%d, ours %s@%d", errPhantom, kv.Key, kv.CreateRevision, key, rev)
	}
	return resp.Header.Revision, nil
}

// renew sends one keepalive for lease. The server refreshes the lease after
// the send, so send time + granted TTL is a lower bound of its expiry there
// (ha.md 1.5).
func (r *roleRunner) renew(ctx context.Context, lease clientv3.LeaseID, timeout time.Duration) (time.Time, error) {
	send := time.Now()
	kctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.e.cli.KeepAliveOnce(kctx, lease)
	if err != nil {
		return time.Time{}, err
	}
	return send.Add(time.Duration(resp.TTL) * time.Second), nil
}

// resign deletes our election key if it is still ours, for a fast handoff.
func (r *roleRunner) resign(el *concurrency.Election) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := el.Resign(ctx); err != nil {
		r.lg.Debug("resign failed; the key goes with its lease", zap.Error(err))
	}
}

// endSession stops the session's keepalive and revokes its lease (which
// deletes its key), remembering the lease if etcd cannot be reached.
func (r *roleRunner) endSession(s *concurrency.Session) {
	s.Orphan()
	r.revoke(s.Lease())
}

func (r *roleRunner) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := r.e.cli.Revoke(ctx, lease); err != nil && !isLeaseNotFound(err) && len(r.stale) < maxStaleLeases {
		r.stale = append(r.stale, lease)
	}
}

// revokeStale revokes the leases of ended sessions; it fails while etcd
// cannot confirm one of them is gone.
func (r *roleRunner) revokeStale(ctx context.Context) error {
	for len(r.stale) > 0 {
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := r.e.cli.Revoke(rctx, r.stale[0])
		cancel()
		if err != nil && !isLeaseNotFound(err) {
			return err // still unreachable: no campaign until it is gone
		}
		r.stale = r.stale[1:]
	}
	return nil
}

func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound)
}
