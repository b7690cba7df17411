package etcdstore

import (
	"context"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// cancelledCtx is the context of a term that is not held.
var cancelledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// termState is one term this node holds. Leader-only work registers in wg
// (Go, Hold) while the term is not ended; the term waits for it before it
// resigns.
type termState struct {
	term   coordination.Term
	key    string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ended  bool // under Store.mu; no work registers once set
}

// hold runs a won term until its first end condition (ha.md 6.4), then
// stops its work and resigns. It returns how long the term lasted.
func (r *roleRunner) hold(ctx context.Context, s *concurrency.Session, el *concurrency.Election,
	key string, rev, fromRev int64, validUntil time.Time) time.Duration {
	e := r.e
	ttl := time.Duration(e.ttl) * time.Second
	margin := guardMargin(ttl)
	period := renewPeriod(ttl)

	gctx, gcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	renewed := make(chan time.Time, 1)
	lost := make(chan struct{})
	gone := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.renewLoop(gctx, s.Lease(), period, renewTimeout(ttl), renewed, lost)
	}()
	go func() {
		defer wg.Done()
		r.watchKeyGone(gctx, key, rev, fromRev, gone)
	}()

	ts := e.beginTerm(coordination.Term{Role: r.role, Rev: rev}, key, validUntil)
	begun := time.Now()
	r.lg.Info("leadership term began", zap.Int64("term", rev), zap.String("key", key))

	expire := time.NewTimer(time.Until(validUntil.Add(-margin)))
	defer expire.Stop()
	var reason string
	for reason == "" {
		select {
		case v := <-renewed:
			if left := time.Until(validUntil.Add(-margin)); left < (ttl-margin)/2 {
				r.lg.Warn("leadership renewal came late", zap.Int64("term", rev),
					zap.Duration("guard_left", left))
			}
			if v.After(validUntil) {
				validUntil = v
				expire.Reset(time.Until(validUntil.Add(-margin)))
			}
			e.setGuardRemaining(r.role, time.Until(v))
		case <-expire.C:
			reason = coordination.EndGuard
		case <-lost:
			reason = coordination.EndLeaseLost
		case <-s.Done():
			reason = coordination.EndSession
		case <-gone:
			reason = coordination.EndKeyDeleted
		case <-ctx.Done():
			reason = coordination.EndRoleRemoved
			if e.isClosing() || e.ctx.Err() != nil {
				reason = coordination.EndShutdown
			}
		}
	}
	e.endTerm(ts, reason)
	r.lg.Info("leadership term ended", zap.Int64("term", rev), zap.String("reason", reason),
		zap.Duration("held", time.Since(begun)))
	gcancel()
	wg.Wait()
	// Work has stopped: now let the next leader in at once.
	r.resign(el)
	r.endSession(s)
	return time.Since(begun)
}

// renewLoop is the renew guard's source: it starts a KeepAliveOnce every
// period (each bounded by timeout) whether or not the ones before have
// answered, and publishes each new validUntil; lost closes when the server
// says the lease is gone.
//
// Attempts overlap so that neither a slow answer nor an attempt parked on
// an etcd member that is still electing delays the next one: after an etcd
// leader election the first attempt sent to a member that knows the new
// leader renews at once (TestEtcdTermOutlivesShortOutage). At most
// timeout/period+1 are in flight.
func (r *roleRunner) renewLoop(ctx context.Context, lease clientv3.LeaseID, period, timeout time.Duration,
	renewed chan time.Time, lost chan struct{}) {
	type result struct {
		v   time.Time
		err error
	}
	results := make(chan result)
	var attempts sync.WaitGroup
	defer attempts.Wait()
	t := time.NewTicker(period)
	defer t.Stop()
	var latest time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			attempts.Go(func() {
				v, err := r.renew(ctx, lease, timeout)
				select {
				case results <- result{v, err}:
				case <-ctx.Done():
				}
			})
		case res := <-results:
			if isLeaseNotFound(res.err) {
				close(lost)
				return
			}
			if res.err != nil || !res.v.After(latest) {
				continue
			}
			latest = res.v
			// Latest value wins; this goroutine is the only sender.
			select {
			case <-renewed:
			default:
			}
			renewed <- res.v
		}
	}
}

// watchKeyGone closes gone when our election key (create revision rev) is
// deleted, watching from fromRev+1 and re-checking with a Get whenever the
// watch is disrupted.
func (r *roleRunner) watchKeyGone(ctx context.Context, key string, rev, fromRev int64, gone chan struct{}) {
	bo := newBackoff()
	next := fromRev + 1
	for ctx.Err() == nil {
		wch := r.e.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(next), clientv3.WithFilterPut())
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					close(gone)
					return
				}
			}
			next = wr.Header.Revision + 1
		}
		if ctx.Err() != nil {
			return
		}
		gctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := r.e.cli.Get(gctx, key)
		cancel()
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev {
				close(gone)
				return
			}
			next = resp.Header.Revision + 1
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

func (e *Store) isClosing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closing
}

func (e *Store) beginTerm(t coordination.Term, key string, validUntil time.Time) *termState {
	ctx, cancel := context.WithCancel(context.Background())
	ts := &termState{term: t, key: key, ctx: ctx, cancel: cancel}
	if h := e.hooks.term; h != nil {
		h(t, true)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.terms[t.Role] = ts
	if rs := e.roleStat[t.Role]; rs != nil {
		rs.Leader, rs.Term = true, t.Rev
		rs.LeaderChanges++
		rs.GuardRemaining = time.Until(validUntil)
	}
	e.subs.Notify()
	return ts
}

// endTerm marks the term over (Term, Go, Hold and WriteVerdict refuse it),
// cancels its context and waits for its work, fail-stopping through OnStuck
// if the work outlives StopBudget.
func (e *Store) endTerm(ts *termState, reason string) {
	e.mu.Lock()
	ts.ended = true
	if e.terms[ts.term.Role] == ts {
		delete(e.terms, ts.term.Role)
	}
	if rs := e.roleStat[ts.term.Role]; rs != nil && rs.Term == ts.term.Rev && rs.Leader {
		rs.Leader = false
		rs.LeaderChanges++
	}
	e.termEnds[reason]++
	e.subs.Notify()
	e.mu.Unlock()
	ts.cancel()
	if h := e.hooks.term; h != nil {
		h(ts.term, false)
	}
	if !lifecycle.WaitTimeout(&ts.wg, e.opts.StopBudget) {
		e.mu.Lock()
		e.counters.stuck++
		e.mu.Unlock()
		e.lg.Error("leader-only work did not stop within the stop budget",
			zap.String("role", ts.term.Role), zap.Int64("term", ts.term.Rev),
			zap.Duration("stop_budget", e.opts.StopBudget))
		e.opts.OnStuck()
	}
}

func (e *Store) setGuardRemaining(role string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rs := e.roleStat[role]; rs != nil {
		rs.GuardRemaining = d
	}
}

// current returns the live term state for term, or nil.
func (e *Store) currentLocked(t coordination.Term) *termState {
	ts := e.terms[t.Role]
	if ts == nil || ts.ended || ts.term != t {
		return nil
	}
	return ts
}

// Term implements Store. When the node does not lead role, the context
// returned is already cancelled.
func (e *Store) Term(role string) (coordination.Term, context.Context, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.terms[role]
	if ts == nil || ts.ended {
		return coordination.Term{}, cancelledCtx, false
	}
	return ts.term, ts.ctx, true
}

// Go implements TermWorker.
func (e *Store) Go(term coordination.Term, fn func(ctx context.Context)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.currentLocked(term)
	if ts == nil {
		return coordination.ErrNotLeader
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		fn(ts.ctx)
	}()
	return nil
}

// Hold implements TermWorker.
func (e *Store) Hold(term coordination.Term) (context.Context, func(), error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ts := e.currentLocked(term)
	if ts == nil {
		return cancelledCtx, func() {}, coordination.ErrNotLeader
	}
	ts.wg.Add(1)
	return ts.ctx, sync.OnceFunc(ts.wg.Done), nil
}
