package topology

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

func newTestWatcher(t *testing.T, cli *clientv3.Client, lg *zap.Logger, hook func()) *Watcher {
	t.Helper()
	return newTestWatcherWith(t, cli, lg, func(w *Watcher) { w.afterList = hook })
}

// newTestWatcherWith starts a watcher with the tests' short timings, after
// set has changed what it needs. lg may be nil.
func newTestWatcherWith(t *testing.T, cli *clientv3.Client, lg *zap.Logger, set func(*Watcher)) *Watcher {
	t.Helper()
	if lg == nil {
		lg = zap.NewNop()
	}
	w := NewWatcher(lg, cli, "")
	w.getTimeout = time.Second
	w.probeInterval = 200 * time.Millisecond
	set(w)
	w.Start(context.Background())
	t.Cleanup(w.Close)
	return w
}

// firstErr waits up to within for the watcher to report an error and
// returns it as first seen: the liveness check's, before the lists that
// fail after it replace it.
func firstErr(t *testing.T, w *Watcher, within time.Duration) string {
	t.Helper()
	var first string
	require.Eventually(t, func() bool {
		if err := w.Err(); err != nil {
			first = err.Error()
			return true
		}
		return false
	}, within, tick, "no error reported")
	return first
}

func liveAddrs(w *Watcher) []string {
	s := w.Snapshot()
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.Backends))
}

func requireAddrs(t *testing.T, w *Watcher, want ...string) {
	t.Helper()
	slices.Sort(want)
	require.Eventually(t, func() bool {
		return w.Snapshot() != nil && slices.Equal(liveAddrs(w), want)
	}, waitFor, tick, "want backends %v", want)
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRegistrationAndRemoval(t *testing.T) {
	te := etcdtest.Start(t)
	w := newTestWatcher(t, te.Client, nil, nil)
	requireAddrs(t, w) // empty but listed
	require.NoError(t, w.Err())

	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{"zone":"z1"}`), 45)
	requireAddrs(t, w, "10.0.0.1:4000")
	b := w.Snapshot().Backends["10.0.0.1:4000"]
	require.Equal(t, Backend{Addr: "10.0.0.1:4000", StatusPort: 10080, Version: "8.5.0",
		Labels: map[string]string{"zone": "z1"}}, b)

	lease2 := etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.2:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	requireAddrs(t, w, "10.0.0.1:4000", "10.0.0.2:4000")

	// ttl key deleted: the info left behind by a crashed TiDB must be ignored.
	_, err := te.Client.Delete(ctx5s(t), DefaultPrefix+"/10.0.0.1:4000/ttl")
	require.NoError(t, err)
	requireAddrs(t, w, "10.0.0.2:4000")

	// Lease revoked: the ttl key goes with it.
	_, err = te.Client.Revoke(ctx5s(t), lease2)
	require.NoError(t, err)
	requireAddrs(t, w)
	require.NoError(t, w.Err())
}

func TestInfoWithoutTTLIgnored(t *testing.T) {
	te := etcdtest.Start(t)
	_, err := te.Client.Put(ctx5s(t), DefaultPrefix+"/10.0.0.9:4000/info", etcdtest.InfoJSON("8.5.0", 10080, `{}`))
	require.NoError(t, err)
	w := newTestWatcher(t, te.Client, nil, nil)
	requireAddrs(t, w)

	// Also through the watch path, with a live backend as a witness that the
	// watch has processed later events.
	_, err = te.Client.Put(ctx5s(t), DefaultPrefix+"/10.0.0.8:4000/info", etcdtest.InfoJSON("8.5.0", 10080, `{}`))
	require.NoError(t, err)
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	requireAddrs(t, w, "10.0.0.1:4000")
}

func TestMalformedInfoSkipped(t *testing.T) {
	tests := []struct {
		name        string
		beforeStart bool // list path vs watch path
	}{
		{"list", true},
		{"watch", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := etcdtest.Start(t)
			core, logs := observer.New(zap.WarnLevel)
			write := func() {
				etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
				etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.2:4000", `{"version":`, 45)
				etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.3:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
			}
			if tt.beforeStart {
				write()
			}
			w := newTestWatcher(t, te.Client, zap.New(core), nil)
			if !tt.beforeStart {
				requireAddrs(t, w)
				write()
			}
			requireAddrs(t, w, "10.0.0.1:4000", "10.0.0.3:4000")
			require.Eventually(t, func() bool {
				return logs.FilterMessage("skipping backend with malformed info").
					FilterField(zap.String("addr", "10.0.0.2:4000")).Len() > 0
			}, waitFor, tick)

			// A corrected info brings the backend in.
			_, err := te.Client.Put(ctx5s(t), DefaultPrefix+"/10.0.0.2:4000/info", etcdtest.InfoJSON("8.5.0", 10080, `{}`))
			require.NoError(t, err)
			requireAddrs(t, w, "10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.3:4000")
		})
	}
}

func TestUpdatesNotified(t *testing.T) {
	te := etcdtest.Start(t)
	w := newTestWatcher(t, te.Client, nil, nil)
	requireAddrs(t, w)
	// Drain whatever the first list left pending, then expect a signal per change.
	select {
	case <-w.Updates():
	default:
	}
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	select {
	case <-w.Updates():
	case <-time.After(waitFor):
		t.Fatal("no update after registration")
	}
	requireAddrs(t, w, "10.0.0.1:4000")
}

func TestCompactionRelists(t *testing.T) {
	te := etcdtest.Start(t)
	removed := etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	core, logs := observer.New(zap.InfoLevel)

	// Between the first list and its watch, change the topology and compact
	// past the listed revision, so the watch from rev+1 is refused as compacted
	// and the watcher must re-list to converge.
	// The hook runs on the watcher goroutine, where require must not be used.
	hookErr := make(chan error, 1)
	first := true
	hook := func() {
		if !first {
			return
		}
		first = false
		hookErr <- changeAndCompact(te.Client, removed)
	}
	w := newTestWatcher(t, te.Client, zap.New(core), hook)
	select {
	case err := <-hookErr:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("hook did not run")
	}
	requireAddrs(t, w, "10.0.0.2:4000")
	require.Positive(t, logs.FilterMessage("watch compacted, re-listing").Len())

	// The re-established watch keeps working.
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.3:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	requireAddrs(t, w, "10.0.0.2:4000", "10.0.0.3:4000")
	require.Eventually(t, func() bool { return w.Err() == nil }, waitFor, tick)
	require.Zero(t, w.ErrorCount(), "a compaction is not an etcd error")
}

// changeAndCompact adds 10.0.0.2, revokes the given lease, writes filler and
// compacts at the latest revision.
func changeAndCompact(cli *clientv3.Client, revoke clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 45)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, DefaultPrefix+"/10.0.0.2:4000/info", etcdtest.InfoJSON("8.5.0", 10080, `{}`)); err != nil {
		return err
	}
	if _, err := cli.Put(ctx, DefaultPrefix+"/10.0.0.2:4000/ttl", "1", clientv3.WithLease(lease.ID)); err != nil {
		return err
	}
	if _, err := cli.Revoke(ctx, revoke); err != nil {
		return err
	}
	var last *clientv3.PutResponse
	for i := range 50 {
		if last, err = cli.Put(ctx, "/unrelated/key", fmt.Sprint(i)); err != nil {
			return err
		}
	}
	_, err = cli.Compact(ctx, last.Header.Revision)
	return err
}

// An etcd that goes away is noticed by the watch's liveness check, whether
// the round looks at the connection or reads from etcd, and the last
// snapshot is kept.
func TestEtcdDownKeepsLastSnapshot(t *testing.T) {
	for _, c := range []struct {
		name      string
		readEvery time.Duration
		says      string
	}{
		{"connection", time.Hour, "the connection to etcd is"},
		{"read", 0, "probe " + DefaultPrefix},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each has an etcd of its own; stopping one takes seconds
			te := etcdtest.Start(t)
			etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
			w := newTestWatcherWith(t, te.Client, nil, func(w *Watcher) { w.readEvery = c.readEvery })
			requireAddrs(t, w, "10.0.0.1:4000")
			require.NoError(t, w.Err())
			require.Zero(t, w.ErrorCount())

			// Stop takes seconds (the embedded server waits for its
			// streams): the probe's error comes during it.
			stopped := make(chan struct{})
			go func() { te.Stop(); close(stopped) }()
			t.Cleanup(func() { <-stopped })
			require.Contains(t, firstErr(t, w, waitFor), c.says)
			require.Equal(t, []string{"10.0.0.1:4000"}, liveAddrs(w))
			require.Positive(t, w.ErrorCount())
		})
	}
}

// A healthy watch's rounds look at the client's connection and read from
// etcd only every readEvery: with 100 clusters, a read each round was a tenth
// of the proxy's idle CPU.
func TestLivenessReadsEtcdOnlyEveryReadEvery(t *testing.T) {
	te := etcdtest.Start(t)
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	var ranges atomic.Int32
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{te.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				if method == "/etcdserverpb.KV/Range" {
					ranges.Add(1)
				}
				return invoker(ctx, method, req, reply, cc, opts...)
			})},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	w := newTestWatcherWith(t, cli, nil, func(w *Watcher) {
		w.probeInterval = 50 * time.Millisecond
		w.readEvery = time.Second
	})
	requireAddrs(t, w, "10.0.0.1:4000")
	start := ranges.Load() // the list is a Txn, not a Range
	time.Sleep(2500 * time.Millisecond)
	reads := ranges.Load() - start
	// 50 rounds in 2.5 s; one read a second.
	require.GreaterOrEqual(t, reads, int32(1), "the rounds never read from etcd")
	require.LessOrEqual(t, reads, int32(3), "the rounds read from etcd more often than every readEvery")
	require.NoError(t, w.Err())
	require.Zero(t, w.ErrorCount())
}

func TestCloseWithoutStart(t *testing.T) {
	w := NewWatcher(zap.NewNop(), nil, "")
	require.Nil(t, w.Snapshot())
	w.Close()
	w.Close()
	w.Start(context.Background()) // after Close: no goroutine
	w.Close()
}

// A frozen etcd (SIGSTOP: its connections stay open and nothing answers) is
// noticed by the watch's liveness check: by a read that is not answered, or,
// in the rounds that look at the connection only, once the client's
// keepalive (the proxy's own settings, lib/etcdclient) has given up on the
// connection. The topology is marked stale and keeps its last snapshot, and
// it is fresh again once etcd answers.
func TestWatchNoticesFrozenEtcd(t *testing.T) {
	for _, c := range []struct {
		name      string
		readEvery time.Duration
		within    time.Duration
		says      string
	}{
		// Keepalive: a ping after 10 s without a frame, 3 s for its answer.
		{"connection", time.Hour, 25 * time.Second, "the connection to etcd is"},
		{"read", 0, waitFor, "probe " + DefaultPrefix + ": context deadline exceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each has an etcd of its own; the keepalive takes seconds
			e := testenv.StartEtcd(t, testenv.EtcdOptions{Name: "topo", LogLevel: "warn"})
			etcdtest.Register(t, e.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
			cli, err := etcdclient.New(zap.NewNop(), []string{e.ClientAddr}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = cli.Close() })
			w := newTestWatcherWith(t, cli, nil, func(w *Watcher) { w.readEvery = c.readEvery })
			requireAddrs(t, w, "10.0.0.1:4000")
			// Healthy, the watch's checks pass, round after round: one that
			// does not would end the watch after getTimeout.
			time.Sleep(2*w.getTimeout + 2*w.probeInterval)
			require.NoError(t, w.Err())
			require.Zero(t, w.ErrorCount())

			require.NoError(t, e.Signal(syscall.SIGSTOP))
			t.Cleanup(func() { _ = e.Signal(syscall.SIGCONT) })
			require.Contains(t, firstErr(t, w, c.within), c.says)
			require.Equal(t, []string{"10.0.0.1:4000"}, liveAddrs(w), "the last snapshot is kept")

			require.NoError(t, e.Signal(syscall.SIGCONT))
			require.Eventually(t, func() bool { return w.Err() == nil }, 3*waitFor, tick)
			requireAddrs(t, w, "10.0.0.1:4000")
		})
	}
}

// An etcd that goes away between the list and the watch: the client's Watch
// waits for a stream to etcd, which it re-dials for ever. The watcher bounds
// that wait, marks the topology stale, keeps its snapshot, and is fresh again
// once etcd is back.
func TestEtcdGoneBeforeTheWatch(t *testing.T) {
	te := etcdtest.Start(t)
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)
	var lists atomic.Int32
	w := newTestWatcher(t, te.Client, nil, func() {
		if lists.Add(1) == 1 {
			te.Stop()
		}
	})
	requireAddrs(t, w, "10.0.0.1:4000")
	require.Eventually(t, func() bool { return w.Err() != nil }, waitFor, tick, "the stale topology is reported")
	require.Equal(t, []string{"10.0.0.1:4000"}, liveAddrs(w))

	te.Launch(t)
	require.Eventually(t, func() bool { return w.Err() == nil && lists.Load() > 1 }, 3*waitFor, tick)
	requireAddrs(t, w, "10.0.0.1:4000")
}

// Follow's keys come with the list and the watch: the first key's value is
// Followed's, a change to them publishes no snapshot, and the last value
// stays while etcd is gone and is read again after it comes back.
func TestFollow(t *testing.T) {
	const key = "/topology/prometheus"
	te := etcdtest.Start(t)
	put := func(k, v string) {
		t.Helper()
		_, err := te.Client.Put(ctx5s(t), k, v)
		require.NoError(t, err)
	}
	del := func(k string) {
		t.Helper()
		_, err := te.Client.Delete(ctx5s(t), k)
		require.NoError(t, err)
	}
	requireFollowed := func(w *Watcher, want string) {
		t.Helper()
		require.Eventually(t, func() bool {
			v, listed := w.Followed()
			return listed && string(v) == want
		}, waitFor, tick, "want followed value %q", want)
	}
	put(key, "a")
	etcdtest.Register(t, te.Client, DefaultPrefix, "10.0.0.1:4000", etcdtest.InfoJSON("8.5.0", 10080, `{}`), 45)

	w := NewWatcher(zap.NewNop(), te.Client, "")
	w.getTimeout = time.Second
	w.probeInterval = 200 * time.Millisecond
	w.Follow(key)
	v, listed := w.Followed()
	require.False(t, listed, "known before the first list: %q", v)
	w.Start(context.Background())
	t.Cleanup(w.Close)
	requireFollowed(w, "a")
	requireAddrs(t, w, "10.0.0.1:4000")

	// A followed change is not a topology change.
	snap := w.Snapshot()
	select {
	case <-w.Updates():
	default:
	}
	put(key, "b")
	requireFollowed(w, "b")
	select {
	case <-w.Updates():
		t.Fatal("a followed key's change signalled a topology update")
	default:
	}
	require.Same(t, snap, w.Snapshot())

	// The first key in order is the one that counts.
	put(key+"/z", "c")
	put(key+"/a", "d")
	requireFollowed(w, "b")
	del(key)
	requireFollowed(w, "d")
	del(key + "/a")
	del(key + "/z")
	requireFollowed(w, "")
	v, _ = w.Followed()
	require.Nil(t, v)

	// etcd gone: the last value stays; back: listed and watched again.
	put(key, "e")
	requireFollowed(w, "e")
	te.Stop()
	require.Eventually(t, func() bool { return w.Err() != nil }, waitFor, tick)
	requireFollowed(w, "e")
	te.Restart(t)
	require.Eventually(t, func() bool { return w.Err() == nil }, waitFor, tick)
	put(key, "f")
	requireFollowed(w, "f")
	requireAddrs(t, w, "10.0.0.1:4000")
}
