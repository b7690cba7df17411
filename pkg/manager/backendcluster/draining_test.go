package backendcluster

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// drainer stands in for the proxy's session registry: the test decides when
// a cluster's sessions have ended.
type drainer struct {
	mu       sync.Mutex
	started  map[string]time.Duration
	done     map[string]chan struct{}
	drained  []string
	whenDone func()
}

type draining struct{ done chan struct{} }

func (d draining) Done() <-chan struct{} { return d.done }
func (d draining) Sessions() int         { return 1 }
func (d draining) Forced() int           { return 0 }

func (d *drainer) DrainCluster(cluster string, timeout time.Duration) Draining {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started[cluster] = timeout
	ch := make(chan struct{})
	d.done[cluster] = ch
	return draining{ch}
}

func (d *drainer) Drained(cluster string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drained = append(d.drained, cluster)
}

func (d *drainer) finish(cluster string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.done[cluster])
}

func (d *drainer) drainedList() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.drained...)
}

// A removed cluster is "draining" in the topology, owned by the manager,
// while its sessions end: its runtime is closed, the view stays until the
// drainer reports the sessions gone, then it leaves the topology (and its
// series are dropped, through Drained).
func TestRemovedClusterDrains(t *testing.T) {
	east := config.Cluster{Name: "east", Instances: []string{"127.0.0.1:1"}, DrainTimeout: config.NewDuration(7 * time.Second)}
	west := config.Cluster{Name: "west", Instances: []string{"127.0.0.1:2"}}
	e := newEnv(t, east, west)
	d := &drainer{started: map[string]time.Duration{}, done: map[string]chan struct{}{}}
	e.mgr.SetDrainer(d)
	e.mgr.Apply(e.cfg)
	old := e.mgr.Cluster("east")

	cfg2 := *e.cfg
	cfg2.Clusters = []config.Cluster{west}
	cfg2.Proxy.DefaultCluster = "west"
	res := e.mgr.Apply(&cfg2)
	require.Equal(t, []string{"east"}, res.Removed)
	require.True(t, old.Closed(), "the removed cluster's runtime is retired")
	require.Nil(t, e.mgr.Cluster("east"))
	v := e.agg.Topology().Cluster("east")
	require.NotNil(t, v, "the removed cluster stays in the topology while it drains")
	require.Equal(t, observer.StateDraining, v.State)
	require.Empty(t, v.Backends)
	require.Greater(t, v.Generation, old.Generation())
	require.Equal(t, map[string]time.Duration{"east": 7 * time.Second}, d.started, "the drain-timeout of the config that had it")

	d.finish("east")
	require.Eventually(t, func() bool { return e.agg.Topology().Cluster("east") == nil }, 5*time.Second, 5*time.Millisecond,
		"drained: it leaves the topology")
	require.Eventually(t, func() bool { return len(d.drainedList()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"east"}, d.drainedList())
}

// A cluster added back while its old sessions drain is served by a new
// runtime at once; the end of the old drain neither removes the new view nor
// drops its series.
func TestReAddedWhileDraining(t *testing.T) {
	east := config.Cluster{Name: "east", Instances: []string{"127.0.0.1:1"}}
	west := config.Cluster{Name: "west", Instances: []string{"127.0.0.1:2"}}
	e := newEnv(t, east, west)
	d := &drainer{started: map[string]time.Duration{}, done: map[string]chan struct{}{}}
	e.mgr.SetDrainer(d)
	e.mgr.Apply(e.cfg)

	cfg2 := *e.cfg
	cfg2.Clusters = []config.Cluster{west}
	cfg2.Proxy.DefaultCluster = "west"
	e.mgr.Apply(&cfg2)
	require.Equal(t, config.DefaultDrainTimeout, d.started["east"], "no drain-timeout given: the default")
	require.Equal(t, observer.StateDraining, e.agg.Topology().Cluster("east").State)

	res := e.mgr.Apply(e.cfg)
	require.Equal(t, []string{"east"}, res.Added)
	back := e.mgr.Cluster("east")
	require.Equal(t, back.Generation(), e.agg.Topology().Cluster("east").Generation, "the new runtime's view replaces the draining one")

	d.finish("east")
	time.Sleep(100 * time.Millisecond)
	v := e.agg.Topology().Cluster("east")
	require.NotNil(t, v, "the old drain's end leaves the new runtime's view alone")
	require.Equal(t, back.Generation(), v.Generation)
	require.Empty(t, d.drainedList(), "the series of a cluster served again are kept")
}

// rules records what a reload's rules swap saw.
type rules struct {
	m *Manager
	// old is the runtime the reload replaces.
	old                   *Cluster
	newExists, oldRunning bool
	calls                 int
}

func (r *rules) Update(*config.Config) {
	r.calls++
	c := r.m.Cluster("east")
	r.newExists = c != nil && c != r.old
	r.oldRunning = r.old != nil && !r.old.Closed()
}

// Reload order: the new runtimes exist before the router's rules are
// swapped, and the old ones are retired only after.
func TestReloadOrderBuildSwapRetire(t *testing.T) {
	east := config.Cluster{Name: "east", Instances: []string{"127.0.0.1:1"}}
	e := newEnv(t, east)
	r := &rules{m: e.mgr}
	e.mgr.SetRules(r)
	e.mgr.Apply(e.cfg)
	require.Equal(t, 1, r.calls)
	require.True(t, r.newExists, "a new cluster's runtime exists when the rules route to it")

	r.old = e.mgr.Cluster("east")
	cfg2 := *e.cfg
	changed := east
	changed.Labels = map[string]string{"v": "2"}
	cfg2.Clusters = []config.Cluster{changed}
	res := e.mgr.Apply(&cfg2)
	require.Equal(t, []string{"east"}, res.Replaced)
	require.True(t, r.newExists, "the replacement exists when the rules are swapped")
	require.True(t, r.oldRunning, "the replaced runtime is retired after the swap")
	require.True(t, r.old.Closed())
}
