package backendcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/health"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

const prefix = config.DefaultTopologyPrefix

// env is a manager publishing into an aggregator, with a router on top.
type env struct {
	t   *testing.T
	agg *observer.Aggregator
	mgr *Manager
	cfg *config.Config
}

func newEnv(t *testing.T, clusters ...config.Cluster) *env {
	cfg := config.NewDefault()
	cfg.HealthCheck.Interval = config.NewDuration(100 * time.Millisecond)
	cfg.HealthCheck.Timeout = config.NewDuration(500 * time.Millisecond)
	cfg.HealthCheck.FailuresToUnhealthy = 2
	cfg.Proxy.UserPrefixRouting = true
	cfg.Clusters = clusters
	if len(clusters) > 0 {
		cfg.Proxy.DefaultCluster = clusters[0].Name
	}
	require.NoError(t, cfg.Check())
	e := &env{t: t, agg: observer.NewAggregator(), cfg: cfg}
	e.mgr = NewManager(zaptest.NewLogger(t), e.agg)
	e.mgr.retryStart = 50 * time.Millisecond
	t.Cleanup(e.mgr.Close)
	return e
}

func etcdCluster(name string, e *etcdtest.Etcd) config.Cluster {
	return config.Cluster{Name: name, EtcdEndpoints: []string{e.Endpoint}, TopologyPrefix: prefix}
}

func backend(t *testing.T) *mysqldouble.Server {
	return mysqldouble.Start(t, mysqldouble.Config{NativeUsers: map[string]string{"app": "pw"}})
}

// view waits until cluster's view satisfies ok and returns it.
func (e *env) view(cluster string, ok func(v *observer.ClusterView) bool, msg string) *observer.ClusterView {
	e.t.Helper()
	var last *observer.ClusterView
	require.Eventually(e.t, func() bool {
		last = e.agg.Topology().Cluster(cluster)
		return last != nil && ok(last)
	}, 15*time.Second, 10*time.Millisecond, "%s; last view: %+v", msg, last)
	return last
}

func hasBackend(addr string, healthy bool) func(v *observer.ClusterView) bool {
	return func(v *observer.ClusterView) bool {
		b := v.Backend(addr)
		return b != nil && b.Health.Healthy == healthy && b.Health.Reason != health.ErrNotProbed.Error()
	}
}

func lacksBackend(addr string) func(v *observer.ClusterView) bool {
	return func(v *observer.ClusterView) bool { return v.Backend(addr) == nil }
}

func TestRegistrationRoutesAndDeregistrationStopsRouting(t *testing.T) {
	etcd := etcdtest.Start(t)
	e := newEnv(t, etcdCluster("east", etcd))
	res := e.mgr.Apply(e.cfg)
	require.Equal(t, []string{"east"}, res.Added)
	r := router.NewBalanced(e.agg, e.cfg)

	e.view("east", func(v *observer.ClusterView) bool { return v.State == observer.StateReady }, "empty cluster becomes ready")
	_, err := r.Route(router.ClientInfo{User: "app"}, nil)
	require.ErrorContains(t, err, "cluster east has no registered backends")

	b1, b2 := backend(t), backend(t)
	etcdtest.Register(t, etcd.Client, prefix, b1.Addr(), etcdtest.InfoJSON("8.0.11-TiDB-v8.5.0", 0, `{"zone":"z1"}`), 30)
	etcdtest.Register(t, etcd.Client, prefix, b2.Addr(), etcdtest.InfoJSON("8.0.11-TiDB-v8.5.0", 0, ""), 30)
	v := e.view("east", func(v *observer.ClusterView) bool {
		return hasBackend(b1.Addr(), true)(v) && hasBackend(b2.Addr(), true)(v)
	}, "registered backends appear and are probed healthy")
	require.Equal(t, "8.0.11-TiDB-v8.5.0", v.Backend(b1.Addr()).Version)
	require.Equal(t, "z1", v.Backend(b1.Addr()).Labels["zone"])
	require.Equal(t, "east/"+b1.Addr(), v.Backend(b1.Addr()).ID)
	require.Positive(t, v.Revision)

	// Info without ttl (a crashed TiDB's leftover) and malformed info are
	// not backends.
	ctx := context.Background()
	_, err = etcd.Client.Put(ctx, prefix+"/127.0.0.1:1/info", etcdtest.InfoJSON("x", 0, ""))
	require.NoError(t, err)
	etcdtest.Register(t, etcd.Client, prefix, "127.0.0.1:2", "{not json", 30)

	etcdtest.Deregister(t, etcd.Client, prefix, b2.Addr())
	v = e.view("east", lacksBackend(b2.Addr()), "ttl deleted: the backend leaves the topology")
	require.Len(t, v.Backends, 1, "only b1: leftovers and malformed info are skipped: %+v", v.Backends)
	for range 5 {
		l, err := r.Route(router.ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.Equal(t, b1.Addr(), l.Addr(), "no new sessions to a deregistered backend")
		l.Release()
	}
}

func TestBackendKilledBecomesUnhealthy(t *testing.T) {
	b1, b2 := backend(t), backend(t)
	e := newEnv(t, config.Cluster{Name: "static", Instances: []string{b1.Addr(), b2.Addr()}})
	e.mgr.Apply(e.cfg)
	e.view("static", func(v *observer.ClusterView) bool {
		return v.Source == observer.SourceStatic && hasBackend(b1.Addr(), true)(v) && hasBackend(b2.Addr(), true)(v)
	}, "static backends probed healthy")

	require.NoError(t, b2.Close())
	start := time.Now()
	v := e.view("static", hasBackend(b2.Addr(), false), "killed backend becomes unhealthy")
	t.Logf("unhealthy after %v (interval 100ms x 2 failures)", time.Since(start))
	require.NotEmpty(t, v.Backend(b2.Addr()).Health.Reason)

	r := router.NewBalanced(e.agg, e.cfg)
	for range 4 {
		l, err := r.Route(router.ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.Equal(t, b1.Addr(), l.Addr())
		l.Release()
	}
}

// One etcd down: its cluster is stale and keeps its backends; the other
// cluster is untouched and keeps routing.
func TestEtcdDownMarksClusterStaleOnly(t *testing.T) {
	etcdA, etcdB := etcdtest.Start(t), etcdtest.Start(t)
	e := newEnv(t, etcdCluster("a", etcdA), etcdCluster("b", etcdB))
	e.mgr.Apply(e.cfg)
	ba, bb := backend(t), backend(t)
	etcdtest.Register(t, etcdA.Client, prefix, ba.Addr(), etcdtest.InfoJSON("v", 0, ""), 30)
	etcdtest.Register(t, etcdB.Client, prefix, bb.Addr(), etcdtest.InfoJSON("v", 0, ""), 30)
	e.view("a", hasBackend(ba.Addr(), true), "a's backend")
	e.view("b", hasBackend(bb.Addr(), true), "b's backend")

	etcdA.Stop()
	v := e.view("a", func(v *observer.ClusterView) bool { return v.State == observer.StateStale }, "a is stale")
	require.NotNil(t, v.Backend(ba.Addr()), "a stale cluster keeps its last known backends")
	require.NotEmpty(t, v.LastError)
	require.Equal(t, observer.StateReady, e.agg.Topology().Cluster("b").State)

	r := router.NewBalanced(e.agg, e.cfg)
	l, err := r.Route(router.ClientInfo{User: "a.app"}, nil)
	require.NoError(t, err, "the stale cluster still routes")
	require.Equal(t, ba.Addr(), l.Addr())
	l.Release()
	start := time.Now()
	l, err = r.Route(router.ClientInfo{User: "b.app"}, nil)
	require.NoError(t, err)
	require.Equal(t, bb.Addr(), l.Addr())
	l.Release()
	t.Logf("routing to the healthy cluster took %v", time.Since(start))

	// New registrations in b keep arriving while a is down.
	bb2 := backend(t)
	etcdtest.Register(t, etcdB.Client, prefix, bb2.Addr(), etcdtest.InfoJSON("v", 0, ""), 30)
	e.view("b", hasBackend(bb2.Addr(), true), "b follows its etcd while a's is down")

	etcdA.Restart(t)
	e.view("a", func(v *observer.ClusterView) bool { return v.State == observer.StateReady }, "a ready again")
}

// Start-up never waits for etcd.
func TestUnreachableEtcdIsConnecting(t *testing.T) {
	e := newEnv(t, config.Cluster{Name: "dead", EtcdEndpoints: []string{"127.0.0.1:1"}, TopologyPrefix: prefix})
	start := time.Now()
	res := e.mgr.Apply(e.cfg)
	require.Less(t, time.Since(start), 3*time.Second, "Apply must not wait for etcd")
	require.Equal(t, []string{"dead"}, res.Added)
	v := e.agg.Topology().Cluster("dead")
	require.NotNil(t, v)
	require.Equal(t, observer.StateConnecting, v.State)
	r := router.NewBalanced(e.agg, e.cfg)
	_, err := r.Route(router.ClientInfo{User: "x"}, nil)
	require.ErrorContains(t, err, "cluster dead is still connecting to its etcd")
}

func TestApplyDiff(t *testing.T) {
	etcd := etcdtest.Start(t)
	b := backend(t)
	east := config.Cluster{Name: "east", Instances: []string{b.Addr()}}
	west := etcdCluster("west", etcd)
	e := newEnv(t, east, west)

	res := e.mgr.Apply(e.cfg)
	require.ElementsMatch(t, []string{"east", "west"}, res.Added)
	eastRT, westRT := e.mgr.Cluster("east"), e.mgr.Cluster("west")

	// The same config again: the same objects.
	res = e.mgr.Apply(e.cfg)
	require.ElementsMatch(t, []string{"east", "west"}, res.Kept)
	require.Same(t, eastRT, e.mgr.Cluster("east"))
	require.Same(t, westRT, e.mgr.Cluster("west"))

	// Change west only: east stays, west is rebuilt with a higher generation
	// and the old runtime is closed.
	cfg2 := *e.cfg
	cfg2.Clusters = []config.Cluster{east, west}
	cfg2.Clusters[1].Labels = map[string]string{"zone": "z9"}
	res = e.mgr.Apply(&cfg2)
	require.Equal(t, []string{"east"}, res.Kept)
	require.Equal(t, []string{"west"}, res.Replaced)
	require.Same(t, eastRT, e.mgr.Cluster("east"))
	newWest := e.mgr.Cluster("west")
	require.NotSame(t, westRT, newWest)
	require.Greater(t, newWest.Generation(), westRT.Generation())
	require.True(t, westRT.Closed())
	// A handle from the old generation fails cleanly.
	err := westRT.WithEtcd(context.Background(), func(context.Context, *clientv3.Client) error {
		t.Fatal("a closed runtime must not hand out its client")
		return nil
	})
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, newWest.WithEtcd(context.Background(), func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Get(ctx, "x")
		return err
	}))
	require.ErrorIs(t, eastRT.WithEtcd(context.Background(), nil), ErrNoEtcd)
	e.view("west", func(v *observer.ClusterView) bool {
		return v.Generation == newWest.Generation() && v.Labels["zone"] == "z9"
	},
		"the new generation's view is published")

	// Remove west: closed and gone from the topology.
	cfg3 := *e.cfg
	cfg3.Clusters = []config.Cluster{east}
	res = e.mgr.Apply(&cfg3)
	require.Equal(t, []string{"west"}, res.Removed)
	require.True(t, newWest.Closed())
	require.Nil(t, e.mgr.Cluster("west"))
	require.Nil(t, e.agg.Topology().Cluster("west"))
	require.NotNil(t, e.agg.Topology().Cluster("east"))
}

func TestFailedRebuildKeepsOldAndRetries(t *testing.T) {
	etcd := etcdtest.Start(t)
	east := etcdCluster("east", etcd)
	e := newEnv(t, east)
	e.mgr.Apply(e.cfg)
	old := e.mgr.Cluster("east")

	// The next builds of east fail twice, then succeed.
	fails := 2
	var attempts []string
	e.mgr.newCluster = func(lg *zap.Logger, s spec, gen uint64, sink Sink) (*Cluster, error) {
		attempts = append(attempts, s.Cluster.Name)
		if s.Cluster.Name == "east" && fails > 0 {
			fails--
			return nil, errors.New("injected build failure")
		}
		return newCluster(lg, s, gen, sink)
	}
	cfg2 := *e.cfg
	changed := east
	changed.Labels = map[string]string{"v": "2"}
	other := config.Cluster{Name: "other", Instances: []string{"127.0.0.1:1"}}
	cfg2.Clusters = []config.Cluster{changed, other}
	res := e.mgr.Apply(&cfg2)
	require.Contains(t, res.Failed, "east")
	require.Equal(t, []string{"other"}, res.Added, "a failing cluster does not stop the others")
	require.Same(t, old, e.mgr.Cluster("east"), "the old runtime keeps serving")
	require.False(t, old.Closed())
	require.Equal(t, []string{"east"}, e.mgr.Pending())
	require.Equal(t, map[string]string{"east": "injected build failure"}, e.mgr.BuildErrors())

	require.Eventually(t, func() bool {
		c := e.mgr.Cluster("east")
		return c != old && c.Config().Labels["v"] == "2"
	}, 10*time.Second, 10*time.Millisecond, "the retry builds the new runtime")
	// The retry publishes the new runtime first and closes the old one after
	// it, outside the manager's lock: wait for the close, do not race it.
	require.Eventually(t, old.Closed, 10*time.Second, 10*time.Millisecond, "the old runtime is closed once replaced")
	require.Empty(t, e.mgr.Pending())
	require.Empty(t, e.mgr.BuildErrors())
	require.Equal(t, []string{"east", "other", "east", "east"}, attempts)
}

func TestRetryStopsWhenClusterRemoved(t *testing.T) {
	e := newEnv(t, config.Cluster{Name: "east", Instances: []string{"127.0.0.1:1"}})
	e.mgr.newCluster = func(*zap.Logger, spec, uint64, Sink) (*Cluster, error) {
		return nil, errors.New("always fails")
	}
	res := e.mgr.Apply(e.cfg)
	require.Contains(t, res.Failed, "east")
	require.Nil(t, e.mgr.Cluster("east"))
	require.Equal(t, []string{"east"}, e.mgr.Pending())
	cfg2 := *e.cfg
	cfg2.Clusters = []config.Cluster{{Name: "west", Instances: []string{"127.0.0.1:1"}}}
	cfg2.Proxy.DefaultCluster = ""
	e.mgr.newCluster = newCluster
	e.mgr.Apply(&cfg2)
	require.Empty(t, e.mgr.Pending(), "the retry of a removed cluster stops")
}

func TestCloseManagerClosesEverything(t *testing.T) {
	etcd := etcdtest.Start(t)
	var clusters []config.Cluster
	for i := range 5 {
		clusters = append(clusters, etcdCluster(fmt.Sprintf("c%d", i), etcd))
	}
	e := newEnv(t, clusters...)
	e.mgr.Apply(e.cfg)
	rts := e.mgr.Clusters()
	e.mgr.Close()
	for _, c := range rts {
		require.True(t, c.Closed())
	}
	require.Empty(t, e.agg.Topology().Clusters)
	res := e.mgr.Apply(e.cfg)
	require.Len(t, res.Failed, 5, "Apply after Close fails")
	// goleak in TestMain checks that nothing is left running.
}

// Every [health-check] setting reaches the probers, and a change to one
// rebuilds the runtimes (their specs differ).
func TestSpecsCarryHealthCheck(t *testing.T) {
	cfg := config.NewDefault()
	cfg.Clusters = []config.Cluster{{Name: "c", Instances: []string{"127.0.0.1:1"}}}
	cfg.HealthCheck = config.HealthCheck{
		Interval:            config.NewDuration(3 * time.Second),
		RetryInterval:       config.NewDuration(250 * time.Millisecond),
		Timeout:             config.NewDuration(700 * time.Millisecond),
		FailuresToUnhealthy: 4,
		SQLUser:             "probe",
		SQLPassword:         "pw",
	}
	require.Equal(t, health.HealthConfig{
		Interval:            3 * time.Second,
		RetryInterval:       250 * time.Millisecond,
		Timeout:             700 * time.Millisecond,
		FailuresToUnhealthy: 4,
		SQLUser:             "probe",
		SQLPassword:         "pw",
	}, specs(cfg)["c"].Health)
	before := specs(cfg)["c"]
	cfg.HealthCheck.RetryInterval = config.NewDuration(time.Second)
	require.NotEqual(t, before, specs(cfg)["c"])
}
