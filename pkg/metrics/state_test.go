package metrics

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

var updatedAt = time.Unix(1700000000, 250_000_000)

func backend(cluster, addr string, healthy bool) *observer.Backend {
	return &observer.Backend{
		ID:      observer.BackendID(cluster, addr),
		Cluster: cluster,
		Addr:    addr,
		Health:  observer.Health{Healthy: healthy},
	}
}

// sampleTopology has an etcd cluster "east" with two backends (one with load
// figures, one unhealthy) and a static cluster "west" with one.
func sampleTopology() *observer.Topology {
	e1 := backend("east", "10.0.0.1:4000", true)
	e1.Metrics = observer.Metrics{CPU: 0.25, HasCPU: true, Memory: 0.5, HasMemory: true}
	e2 := backend("east", "10.0.0.2:4000", false)
	e2.Health.Reason = "connection refused"
	return &observer.Topology{
		Version: 7,
		Clusters: map[string]*observer.ClusterView{
			"east": {
				Name: "east", State: observer.StateReady, Source: observer.SourceEtcd,
				Revision: 42, UpdatedAt: updatedAt,
				Backends: []*observer.Backend{e1, e2},
			},
			"west": {
				Name: "west", State: observer.StateStale, Source: observer.SourceStatic,
				UpdatedAt: updatedAt,
				Backends:  []*observer.Backend{backend("west", "10.1.0.1:3306", true)},
			},
		},
	}
}

var stateFamilies = []string{
	"switchyard_backend_healthy",
	"switchyard_backend_sessions",
	"switchyard_backend_cpu_ratio",
	"switchyard_backend_memory_ratio",
	"switchyard_cluster_state",
	"switchyard_topology_updated_timestamp_seconds",
	"switchyard_topology_etcd_revision",
	"switchyard_etcd_errors_total",
}

func TestStateCollector(t *testing.T) {
	src := &fakeSource{}
	src.set(sampleTopology(),
		map[string]int64{"east/10.0.0.1:4000": 5, "west/10.1.0.1:3306": 2, "gone/10.9.9.9:4000": 9},
		map[string]uint64{"east": 3, "gone": 1})
	m := New(src, "", "")

	requireText(t, m.Registry(), `
		# HELP switchyard_backend_cpu_ratio CPU usage of the backend over its CPU quota (1 = all of it); absent while unknown.
		# TYPE switchyard_backend_cpu_ratio gauge
		switchyard_backend_cpu_ratio{backend="10.0.0.1:4000",cluster="east"} 0.25
		# HELP switchyard_backend_healthy Whether the backend passes its health probes (1) or not (0).
		# TYPE switchyard_backend_healthy gauge
		switchyard_backend_healthy{backend="10.0.0.1:4000",cluster="east"} 1
		switchyard_backend_healthy{backend="10.0.0.2:4000",cluster="east"} 0
		switchyard_backend_healthy{backend="10.1.0.1:3306",cluster="west"} 1
		# HELP switchyard_backend_memory_ratio Resident memory of the backend over its memory quota; absent while unknown.
		# TYPE switchyard_backend_memory_ratio gauge
		switchyard_backend_memory_ratio{backend="10.0.0.1:4000",cluster="east"} 0.5
		# HELP switchyard_backend_sessions Client sessions currently connected to the backend.
		# TYPE switchyard_backend_sessions gauge
		switchyard_backend_sessions{backend="10.0.0.1:4000",cluster="east"} 5
		switchyard_backend_sessions{backend="10.0.0.2:4000",cluster="east"} 0
		switchyard_backend_sessions{backend="10.1.0.1:3306",cluster="west"} 2
		# HELP switchyard_cluster_state 1 for the cluster's current topology state (connecting, ready, stale, draining), 0 for the others.
		# TYPE switchyard_cluster_state gauge
		switchyard_cluster_state{cluster="east",state="connecting"} 0
		switchyard_cluster_state{cluster="east",state="draining"} 0
		switchyard_cluster_state{cluster="east",state="ready"} 1
		switchyard_cluster_state{cluster="east",state="stale"} 0
		switchyard_cluster_state{cluster="west",state="connecting"} 0
		switchyard_cluster_state{cluster="west",state="draining"} 0
		switchyard_cluster_state{cluster="west",state="ready"} 0
		switchyard_cluster_state{cluster="west",state="stale"} 1
		# HELP switchyard_etcd_errors_total Errors talking to the cluster's etcd since start-up.
		# TYPE switchyard_etcd_errors_total counter
		switchyard_etcd_errors_total{cluster="east"} 3
		# HELP switchyard_topology_etcd_revision etcd revision the cluster's backends reflect (etcd-sourced clusters only).
		# TYPE switchyard_topology_etcd_revision gauge
		switchyard_topology_etcd_revision{cluster="east"} 42
		# HELP switchyard_topology_updated_timestamp_seconds Unix time the cluster's topology view was last rebuilt.
		# TYPE switchyard_topology_updated_timestamp_seconds gauge
		switchyard_topology_updated_timestamp_seconds{cluster="east"} 1.70000000025e+09
		switchyard_topology_updated_timestamp_seconds{cluster="west"} 1.70000000025e+09
	`, stateFamilies...)
}

func TestStateCollectorEtcdErrors(t *testing.T) {
	src := &fakeSource{}
	m := New(src, "", "")
	topo := sampleTopology()

	// An etcd cluster exports its counter from 0; a static one only when the
	// source reports errors for it.
	src.set(topo, nil, nil)
	require.Equal(t, 0.0, value(t, m.Registry(), "switchyard_etcd_errors_total", "cluster", "east"))
	require.Nil(t, find(t, m.Registry(), "switchyard_etcd_errors_total", "cluster", "west"))

	src.set(topo, nil, map[string]uint64{"east": 4, "west": 1})
	require.Equal(t, 4.0, value(t, m.Registry(), "switchyard_etcd_errors_total", "cluster", "east"))
	require.Equal(t, 1.0, value(t, m.Registry(), "switchyard_etcd_errors_total", "cluster", "west"))
}

func TestBackendSeriesGoneWhenBackendLeaves(t *testing.T) {
	src := &fakeSource{}
	m := New(src, "", "")
	reg := m.Registry()
	topo := sampleTopology()
	src.set(topo, map[string]int64{"east/10.0.0.1:4000": 5}, nil)

	const leaving = "10.0.0.1:4000"
	for _, name := range []string{"switchyard_backend_healthy", "switchyard_backend_sessions",
		"switchyard_backend_cpu_ratio", "switchyard_backend_memory_ratio"} {
		require.NotNil(t, find(t, reg, name, "cluster", "east", "backend", leaving), name)
	}

	// The backend leaves the topology; the session count still names it (its
	// sessions have not ended yet) but the topology decides what is exported.
	next := *topo
	next.Clusters = map[string]*observer.ClusterView{"west": topo.Clusters["west"]}
	east := *topo.Clusters["east"]
	east.Backends = east.Backends[1:]
	next.Clusters["east"] = &east
	src.set(&next, map[string]int64{"east/10.0.0.1:4000": 5}, nil)

	for _, name := range []string{"switchyard_backend_healthy", "switchyard_backend_sessions",
		"switchyard_backend_cpu_ratio", "switchyard_backend_memory_ratio"} {
		require.Nil(t, find(t, reg, name, "cluster", "east", "backend", leaving), name)
	}
	require.Equal(t, 2, seriesCount(t, reg, "switchyard_backend_healthy"))
	require.Equal(t, 0, seriesCount(t, reg, "switchyard_backend_cpu_ratio"))
	require.Equal(t, 0.0, value(t, reg, "switchyard_backend_healthy", "cluster", "east", "backend", "10.0.0.2:4000"))
}

func TestClusterSeriesGoneWhenClusterLeaves(t *testing.T) {
	src := &fakeSource{}
	m := New(src, "", "")
	reg := m.Registry()
	topo := sampleTopology()
	src.set(topo, nil, map[string]uint64{"east": 1})
	require.NotNil(t, find(t, reg, "switchyard_topology_etcd_revision", "cluster", "east"))

	src.set(&observer.Topology{Version: 8, Clusters: map[string]*observer.ClusterView{
		"west": topo.Clusters["west"],
	}}, nil, map[string]uint64{"east": 1})
	for _, name := range stateFamilies {
		mf := family(t, reg, name)
		if mf == nil {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == labelCluster {
					require.Equal(t, "west", l.GetValue(), name)
				}
			}
		}
	}
	require.Equal(t, 4, seriesCount(t, reg, "switchyard_cluster_state"))
}

func TestStateCollectorEdgeCases(t *testing.T) {
	t.Run("no topology yet", func(t *testing.T) {
		m := New(&fakeSource{}, "", "")
		for _, name := range stateFamilies {
			require.Nil(t, family(t, m.Registry(), name), name)
		}
	})
	t.Run("unknown state and no update time", func(t *testing.T) {
		src := &fakeSource{}
		src.set(&observer.Topology{Clusters: map[string]*observer.ClusterView{
			"north": {Name: "north", State: "resharding", Source: observer.SourceEtcd},
			"nil":   nil,
		}}, nil, nil)
		m := New(src, "", "")
		reg := m.Registry()
		require.Equal(t, 1.0, value(t, reg, "switchyard_cluster_state", "cluster", "north", "state", "resharding"))
		require.Equal(t, 0.0, value(t, reg, "switchyard_cluster_state", "cluster", "north", "state", "ready"))
		require.Equal(t, 5, seriesCount(t, reg, "switchyard_cluster_state"))
		require.Nil(t, family(t, reg, "switchyard_topology_updated_timestamp_seconds"))
	})
}
