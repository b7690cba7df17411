package topology

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/cadence"
	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/lib/notify"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// DefaultPrefix is where TiDB registers itself in PD's etcd.
const DefaultPrefix = "/topology/tidb"

const (
	defaultGetTimeout    = 5 * time.Second
	defaultProbeInterval = 5 * time.Second
	// defaultReadEvery is how often the liveness check also reads from
	// etcd; in between it looks at the client's connection only.
	defaultReadEvery = 30 * time.Second
	backoffStart     = 100 * time.Millisecond
	backoffCap       = 5 * time.Second
)

// ErrWatchClosed is recorded when etcd closes the watch channel without an
// error, which the client does when its context ends or the stream breaks.
var ErrWatchClosed = errors.New("topology: watch channel closed")

// Watcher keeps a Snapshot of the live TiDB backends under one prefix.
type Watcher struct {
	lg     *zap.Logger
	cli    *clientv3.Client
	prefix string

	// Tunables; tests shorten them before Start.
	getTimeout    time.Duration
	probeInterval time.Duration
	readEvery     time.Duration
	afterList     func() // test hook: runs between a list and its watch
	follow        string // Follow's prefix; empty: none

	snap     atomic.Pointer[Snapshot]
	followed atomic.Pointer[[]byte] // Followed's value; nil until the first list
	err      atomic.Pointer[error]
	errors   atomic.Uint64
	updates  notify.Signal

	loop lifecycle.Loop // the watch goroutine
}

// NewWatcher builds a Watcher without doing any I/O. An empty prefix means
// DefaultPrefix.
func NewWatcher(lg *zap.Logger, cli *clientv3.Client, prefix string) *Watcher {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	prefix = strings.TrimSuffix(prefix, "/")
	return &Watcher{
		lg:            lg.Named("topology").With(zap.String("prefix", prefix)),
		cli:           cli,
		prefix:        prefix,
		getTimeout:    defaultGetTimeout,
		probeInterval: defaultProbeInterval,
		readEvery:     defaultReadEvery,
		updates:       notify.NewSignal(),
	}
}

// SetTimings sets how often a healthy watch checks that etcd is still
// reachable and how long each read may take; call it before Start. Zero
// keeps the default. An etcd that closes or refuses the connection is
// noticed within about probe + get; one that stops answering (frozen, or
// behind a dead link), once the client's gRPC keepalive gives up on the
// connection (lib/etcdclient: 13 s at most) and within probe + get after.
func (w *Watcher) SetTimings(probe, get time.Duration) {
	if probe > 0 {
		w.probeInterval = probe
	}
	if get > 0 {
		w.getTimeout = get
	}
}

// Follow makes the watcher also follow the keys under prefix, which may lie
// outside the topology prefix (PD's /topology/prometheus, say); Followed
// returns the value of the first. They ride on the topology's list and
// watch, so they cost no read of their own, and a change to them neither
// publishes a snapshot nor signals Updates. Call it before Start.
func (w *Watcher) Follow(prefix string) { w.follow = prefix }

// Followed returns the value of the first key (in key order) under Follow's
// prefix as of the latest list or watch event, nil when there is none.
// listed is false until the first list, while the value is not known. While
// etcd is unreachable it is the last value etcd gave.
func (w *Watcher) Followed() (value []byte, listed bool) {
	p := w.followed.Load()
	if p == nil {
		return nil, false
	}
	return *p, true
}

// Start launches the watcher goroutine. Calls after the first, or after Close,
// do nothing.
func (w *Watcher) Start(ctx context.Context) { w.loop.Start(ctx, w.run) }

// Updates signals that Snapshot or Err may have changed. It holds at most one
// pending signal; readers should call Snapshot after each receive.
func (w *Watcher) Updates() <-chan struct{} { return w.updates.C() }

// Snapshot returns the latest snapshot, or nil before the first successful list.
func (w *Watcher) Snapshot() *Snapshot { return w.snap.Load() }

// Err returns the last error talking to etcd, or nil while the watch is healthy.
// A non-nil Err with a non-nil Snapshot means the snapshot may be stale.
func (w *Watcher) Err() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// ErrorCount is the number of failed etcd operations (list, watch, probe)
// so far; compactions are not failures.
func (w *Watcher) ErrorCount() uint64 { return w.errors.Load() }

// Close stops the goroutine and waits for it. It is safe to call many times
// and without Start.
func (w *Watcher) Close() { w.loop.Close() }

func (w *Watcher) notify() { w.updates.Notify() }

func (w *Watcher) setErr(err error) {
	old := w.Err()
	if err == nil {
		if old != nil {
			w.err.Store(nil)
			w.lg.Info("etcd reachable again")
			w.notify()
		}
		return
	}
	w.err.Store(&err)
	w.errors.Add(1)
	if old == nil {
		w.lg.Warn("topology stale: etcd error", zap.Error(err))
		w.notify()
	}
}

// run alternates list and watch until ctx ends. Every return from watch goes
// through a fresh list, which is how compaction and broken streams are healed.
func (w *Watcher) run(ctx context.Context) {
	backoff := backoffStart
	for {
		st, rev, err := w.list(ctx)
		if err == nil {
			if w.afterList != nil {
				w.afterList()
			}
			var healthy bool
			healthy, err = w.watch(ctx, st, rev)
			if healthy {
				backoff = backoffStart
			}
		}
		if ctx.Err() != nil {
			return
		}
		// Compaction is routine housekeeping, not an outage: re-list without
		// marking the topology stale.
		if !errors.Is(err, rpctypes.ErrCompacted) {
			w.setErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, backoffCap)
	}
}

// list reads the whole prefix, and Follow's, at one revision and publishes
// the result, replacing whatever the previous snapshot said (this is the diff
// after a broken watch).
func (w *Watcher) list(ctx context.Context) (*state, int64, error) {
	gctx, cancel := context.WithTimeout(ctx, w.getTimeout)
	defer cancel()
	ops := []clientv3.Op{clientv3.OpGet(w.prefix+"/", clientv3.WithPrefix())}
	if w.follow != "" {
		ops = append(ops, clientv3.OpGet(w.follow, clientv3.WithPrefix()))
	}
	resp, err := w.cli.Txn(gctx).Then(ops...).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", w.prefix, err)
	}
	st := newState()
	for i, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().GetKvs() {
			if i == 0 {
				w.applyPut(st, kv)
			} else {
				st.followed[string(kv.Key)] = kv.Value
			}
		}
	}
	w.setErr(nil)
	w.publish(st, resp.Header.Revision)
	w.publishFollowed(st)
	return st, resp.Header.Revision, nil
}

// watch follows changes after rev. It returns when the watch breaks; healthy
// reports whether at least one batch was applied, which resets the backoff.
func (w *Watcher) watch(ctx context.Context, st *state, rev int64) (healthy bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Watch returns once the client has a stream to etcd, and it re-dials an
	// etcd that went away since the list for ever: bound that wait as a read.
	opened := time.AfterFunc(w.getTimeout, cancel)
	ch := w.cli.Watch(wctx, w.prefix+"/", clientv3.WithPrefix(),
		clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	var followCh clientv3.WatchChan // nil, and so never ready, without Follow
	if w.follow != "" {
		// On the same stream as the topology's: the client shares one per context.
		followCh = w.cli.Watch(wctx, w.follow, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	}
	if !opened.Stop() && ctx.Err() == nil {
		return healthy, fmt.Errorf("watch %s: no stream to etcd within %s: %w", w.prefix, w.getTimeout, context.DeadlineExceeded)
	}
	// The client re-dials a dead endpoint forever without closing the watch
	// channel, so a periodic check is what notices that etcd is gone (see
	// probe). On the process's cadence grid, so that the watchers of many
	// clusters, and the probers, share their wake-ups.
	probe := cadence.NewTimer(w.probeInterval)
	defer probe.Stop()
	lastRead := time.Now() // the list
	for {
		select {
		case <-ctx.Done():
			return healthy, ctx.Err()
		case now := <-probe.C():
			read := now.Sub(lastRead) >= w.readEvery
			if err := w.probe(ctx, read); err != nil {
				return healthy, err
			}
			if read {
				lastRead = now
			}
			probe.Rearm()
		case resp, ok := <-ch:
			if err := w.checkWatch(w.prefix, resp, ok); err != nil {
				return healthy, err
			}
			if resp.IsProgressNotify() {
				continue
			}
			for _, ev := range resp.Events {
				switch ev.Type {
				case mvccpb.PUT:
					w.applyPut(st, ev.Kv)
				case mvccpb.DELETE:
					w.applyDelete(st, ev.Kv)
				}
			}
			healthy = true
			w.setErr(nil)
			w.publish(st, resp.Header.Revision)
		case resp, ok := <-followCh:
			if err := w.checkWatch(w.follow, resp, ok); err != nil {
				return healthy, err
			}
			for _, ev := range resp.Events {
				switch ev.Type {
				case mvccpb.PUT:
					st.followed[string(ev.Kv.Key)] = ev.Kv.Value
				case mvccpb.DELETE:
					delete(st.followed, string(ev.Kv.Key))
				}
			}
			healthy = true
			w.setErr(nil)
			w.publishFollowed(st)
		}
	}
}

// checkWatch says why a watch response ends the watch, if it does: the
// channel closed, the revision compacted, or an error.
func (w *Watcher) checkWatch(prefix string, resp clientv3.WatchResponse, ok bool) error {
	switch {
	case !ok:
		return ErrWatchClosed
	case resp.CompactRevision != 0:
		w.lg.Info("watch compacted, re-listing", zap.Int64("compact-revision", resp.CompactRevision))
		return fmt.Errorf("watch %s: %w", prefix, rpctypes.ErrCompacted)
	default:
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", prefix, err)
		}
		return nil
	}
}

// probe checks that etcd is still reachable, bounded by getTimeout. Most
// rounds look at the client's gRPC connection only: it must be ready, or
// become ready in time. That costs nothing, where a read costs a stream, a
// request and a reply on both sides (with 100 clusters, a read each round was
// a tenth of the proxy's idle CPU). A connection etcd closed, reset or
// refuses is not ready; one whose etcd stopped answering is closed by the
// client's keepalive (lib/etcdclient). read also reads from etcd (a
// count-only Get): that catches an etcd that answers the keepalive's pings
// but serves no request.
func (w *Watcher) probe(ctx context.Context, read bool) error {
	conn := w.cli.ActiveConnection()
	if !read && conn != nil && conn.GetState() == connectivity.Ready {
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, w.getTimeout)
	defer cancel()
	if !read && conn != nil {
		for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
			if st == connectivity.Idle {
				conn.Connect()
			}
			if !conn.WaitForStateChange(gctx, st) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("probe %s: the connection to etcd is %s, not ready within %s", w.prefix, strings.ToLower(st.String()), w.getTimeout)
			}
		}
		return nil
	}
	if _, err := w.cli.Get(gctx, w.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("probe %s: %w", w.prefix, err)
	}
	return nil
}

func (w *Watcher) applyPut(st *state, kv *mvccpb.KeyValue) {
	addr, kind, ok := parseKey(w.prefix, string(kv.Key))
	if !ok {
		return
	}
	if kind == keyTTL {
		st.putTTL(addr)
		return
	}
	if err := st.putInfo(addr, kv.Value); err != nil {
		w.lg.Warn("skipping backend with malformed info", zap.String("addr", addr), zap.Error(err))
	}
}

func (w *Watcher) applyDelete(st *state, kv *mvccpb.KeyValue) {
	addr, kind, ok := parseKey(w.prefix, string(kv.Key))
	if !ok {
		return
	}
	if kind == keyTTL {
		st.deleteTTL(addr)
	} else {
		st.deleteInfo(addr)
	}
}

// publishFollowed stores the value of the first followed key.
func (w *Watcher) publishFollowed(st *state) {
	var first []byte
	if len(st.followed) > 0 {
		keys := slices.Sorted(maps.Keys(st.followed))
		first = st.followed[keys[0]]
	}
	w.followed.Store(&first)
}

// publish swaps in a new snapshot and wakes subscribers only when the live set
// changed (or on the first publish).
func (w *Watcher) publish(st *state, rev int64) {
	next := &Snapshot{Backends: st.backends(), Revision: rev}
	prev := w.snap.Swap(next)
	if prev == nil || !sameBackends(prev.Backends, next.Backends) {
		w.lg.Debug("topology changed", zap.Int("backends", len(next.Backends)), zap.Int64("revision", rev))
		w.notify()
	}
}
