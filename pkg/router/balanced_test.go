package router

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// topoVar is a TopologySource a test can change.
type topoVar struct {
	p atomic.Pointer[observer.Topology]
}

func (v *topoVar) Topology() *observer.Topology { return v.p.Load() }

type bk struct {
	addr    string
	healthy bool
}

func clusterView(name string, state observer.ClusterState, bs ...bk) *observer.ClusterView {
	v := &observer.ClusterView{Name: name, State: state, Source: observer.SourceEtcd}
	for _, b := range bs {
		v.Backends = append(v.Backends, &observer.Backend{
			ID: observer.BackendID(name, b.addr), Cluster: name, Addr: b.addr,
			Health: observer.Health{Healthy: b.healthy, Reason: map[bool]string{false: "connect: refused"}[b.healthy]},
		})
	}
	return v
}

func (v *topoVar) set(views ...*observer.ClusterView) {
	t := &observer.Topology{Clusters: map[string]*observer.ClusterView{}}
	for _, cv := range views {
		t.Clusters[cv.Name] = cv
	}
	v.p.Store(t)
}

func twoClusters(t *testing.T) (*topoVar, *Balanced) {
	tv := &topoVar{}
	// The same address in both clusters: two distinct backends.
	tv.set(clusterView("east", observer.StateReady, bk{"10.0.0.1:4000", true}, bk{"10.0.0.2:4000", true}),
		clusterView("west", observer.StateReady, bk{"10.0.0.1:4000", true}))
	cfg := config.NewDefault()
	cfg.Proxy.UserPrefixRouting = true
	cfg.Proxy.DefaultCluster = "east"
	cfg.Clusters = []config.Cluster{{Name: "east", EtcdEndpoints: []string{"h:1"}}, {Name: "west", EtcdEndpoints: []string{"h:1"}}}
	return tv, NewBalanced(tv, cfg)
}

func TestBalancedSpreadsSessions(t *testing.T) {
	_, r := twoClusters(t)
	seen := map[string]int{}
	var leases []Lease
	for range 10 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.Equal(t, "east", l.Cluster())
		require.Equal(t, "east/"+l.Addr(), l.ID())
		seen[l.Addr()]++
		leases = append(leases, l)
	}
	require.Equal(t, map[string]int{"10.0.0.1:4000": 5, "10.0.0.2:4000": 5}, seen)
	require.Equal(t, map[string]int64{"east/10.0.0.1:4000": 5, "east/10.0.0.2:4000": 5}, r.Sessions())
	for _, l := range leases {
		l.Release()
		l.Release() // idempotent
	}
	require.Empty(t, r.Sessions())
}

func TestBalancedNeverCrossesClusters(t *testing.T) {
	tv, r := twoClusters(t)
	l, err := r.Route(ClientInfo{User: "west.alice"}, nil)
	require.NoError(t, err)
	require.Equal(t, "west/10.0.0.1:4000", l.ID())
	require.Equal(t, "alice", l.User())
	l.Release()

	// West's only backend failed for this session: east's backend with the
	// same address is not an option.
	_, err = r.Route(ClientInfo{User: "west.alice"}, []string{"west/10.0.0.1:4000"})
	require.ErrorIs(t, err, ErrNoBackend)
	require.ErrorContains(t, err, "all 1 backends of cluster west failed")

	// West unhealthy: still nothing from east.
	tv.set(clusterView("east", observer.StateReady, bk{"10.0.0.1:4000", true}),
		clusterView("west", observer.StateReady, bk{"10.0.0.1:4000", false}))
	_, err = r.Route(ClientInfo{User: "west.alice"}, nil)
	require.ErrorIs(t, err, ErrNoBackend)
	require.ErrorContains(t, err, "no healthy backend in cluster west (1 known; 10.0.0.1:4000: connect: refused)")
}

func TestBalancedClusterStates(t *testing.T) {
	tv, r := twoClusters(t)
	tv.set(clusterView("east", observer.StateConnecting))
	_, err := r.Route(ClientInfo{User: "app"}, nil)
	require.ErrorContains(t, err, "cluster east is still connecting to its etcd")

	tv.set(clusterView("east", observer.StateReady))
	_, err = r.Route(ClientInfo{User: "app"}, nil)
	require.ErrorContains(t, err, "cluster east has no registered backends")

	tv.set(clusterView("east", observer.StateDraining, bk{"h:1", true}))
	_, err = r.Route(ClientInfo{User: "app"}, nil)
	require.ErrorContains(t, err, "cluster east is being removed")

	tv.set()
	_, err = r.Route(ClientInfo{User: "app"}, nil)
	require.ErrorContains(t, err, "cluster east is not running")

	// A stale cluster keeps serving its last known backends.
	tv.set(clusterView("east", observer.StateStale, bk{"h:1", true}))
	l, err := r.Route(ClientInfo{User: "app"}, nil)
	require.NoError(t, err)
	l.Release()
}

func TestBalancedSkipsFailedBackendForAWhile(t *testing.T) {
	tv, r := twoClusters(t)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	l, err := r.Route(ClientInfo{User: "app"}, nil)
	require.NoError(t, err)
	failed := l.Addr()
	l.Failed(errors.New("dial: refused"))
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.NotEqual(t, failed, l.Addr(), "a backend that just failed is skipped")
		l.Release()
	}
	// With the other one gone, the failed one is better than nothing.
	tv.set(clusterView("east", observer.StateReady, bk{failed, true}))
	l, err = r.Route(ClientInfo{User: "app"}, nil)
	require.NoError(t, err)
	require.Equal(t, failed, l.Addr())
	l.Release()
	// And after downFor it is a normal candidate again.
	now = now.Add(downFor + time.Second)
	tv.set(clusterView("east", observer.StateReady, bk{failed, true}, bk{"10.9.9.9:1", true}))
	got := map[string]bool{}
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		got[l.Addr()] = true
	}
	require.True(t, got[failed])
}

func TestBalancedForgetsRemovedBackends(t *testing.T) {
	tv, r := twoClusters(t)
	l, err := r.Route(ClientInfo{User: "west.x"}, nil)
	require.NoError(t, err)
	tv.set(clusterView("east", observer.StateReady, bk{"10.0.0.1:4000", true}))
	require.Equal(t, map[string]int64{"west/10.0.0.1:4000": 1}, r.Sessions(), "a removed backend keeps its session count while sessions last")
	l.Release()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotContains(t, r.backends, "west/10.0.0.1:4000")
}

func TestBalancedUpdateRules(t *testing.T) {
	_, r := twoClusters(t)
	cfg := config.NewDefault()
	cfg.Clusters = []config.Cluster{{Name: "east", EtcdEndpoints: []string{"h:1"}}, {Name: "west", EtcdEndpoints: []string{"h:1"}}}
	cfg.Proxy.DefaultCluster = "west"
	r.Update(cfg)
	l, err := r.Route(ClientInfo{User: "east.bob"}, nil)
	require.NoError(t, err)
	require.Equal(t, "west", l.Cluster(), "prefix routing is off after the update")
	require.Equal(t, "east.bob", l.User())
	l.Release()
}

// A backend the fleet voted down takes no new sessions, even though this
// node's prober finds it healthy.
func TestBalancedFleetDown(t *testing.T) {
	_, r := twoClusters(t)
	r.SetFleetDown(map[string]bool{"east/10.0.0.1:4000": true})
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.Equal(t, "east/10.0.0.2:4000", l.ID())
		l.Release()
	}
	r.SetFleetDown(nil)
	got := map[string]bool{}
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		got[l.ID()] = true
	}
	require.True(t, got["east/10.0.0.1:4000"], "routable again once the verdict is lifted")
}

// A backend that fails a dial, leaves the topology and registers again is
// routable at once: its skip is forgotten with its absence.
func TestBalancedReRegisteredBackendRoutableAtOnce(t *testing.T) {
	tv, r := twoClusters(t)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	for {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		if l.Addr() == "10.0.0.1:4000" {
			l.Failed(errors.New("refused"))
			break
		}
		l.Release()
	}
	// Deregistered, then registered again, while the skip would still run.
	tv.set(clusterView("east", observer.StateReady, bk{"10.0.0.2:4000", true}))
	r.syncTopology(tv.Topology())
	tv.set(clusterView("east", observer.StateReady, bk{"10.0.0.1:4000", true}, bk{"10.0.0.2:4000", true}))
	r.syncTopology(tv.Topology())
	got := map[string]bool{}
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		got[l.Addr()] = true
	}
	require.True(t, got["10.0.0.1:4000"], "the re-registered backend takes sessions without waiting out the skip")
}
