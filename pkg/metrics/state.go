package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// clusterStates are the states switchyard_cluster_state always exports, at 0
// or 1, so that a state change shows as two series flipping rather than one
// series vanishing (which "for:" clauses and graphs handle badly).
var clusterStates = []observer.ClusterState{
	observer.StateConnecting,
	observer.StateReady,
	observer.StateStale,
	observer.StateDraining,
}

// stateCollector computes the backend and cluster series from a Source at
// every scrape. Nothing is stored between scrapes, so whatever left the
// topology is simply not exported any more.
type stateCollector struct {
	src Source

	backendHealthy  *prometheus.Desc
	backendSessions *prometheus.Desc
	backendCPU      *prometheus.Desc
	backendMemory   *prometheus.Desc
	clusterState    *prometheus.Desc
	topologyUpdated *prometheus.Desc
	etcdRevision    *prometheus.Desc
	etcdErrors      *prometheus.Desc
}

var _ prometheus.Collector = (*stateCollector)(nil)

func newStateCollector(src Source) *stateCollector {
	backend := []string{labelCluster, labelBackend}
	cluster := []string{labelCluster}
	return &stateCollector{
		src: src,
		backendHealthy: prometheus.NewDesc("switchyard_backend_healthy",
			"Whether the backend passes its health probes (1) or not (0).", backend, nil),
		backendSessions: prometheus.NewDesc("switchyard_backend_sessions",
			"Client sessions currently connected to the backend.", backend, nil),
		backendCPU: prometheus.NewDesc("switchyard_backend_cpu_ratio",
			"CPU usage of the backend over its CPU quota (1 = all of it); absent while unknown.", backend, nil),
		backendMemory: prometheus.NewDesc("switchyard_backend_memory_ratio",
			"Resident memory of the backend over its memory quota; absent while unknown.", backend, nil),
		clusterState: prometheus.NewDesc("switchyard_cluster_state",
			"1 for the cluster's current topology state (connecting, ready, stale, draining), 0 for the others.",
			[]string{labelCluster, labelState}, nil),
		topologyUpdated: prometheus.NewDesc("switchyard_topology_updated_timestamp_seconds",
			"Unix time the cluster's topology view was last rebuilt.", cluster, nil),
		etcdRevision: prometheus.NewDesc("switchyard_topology_etcd_revision",
			"etcd revision the cluster's backends reflect (etcd-sourced clusters only).", cluster, nil),
		etcdErrors: prometheus.NewDesc("switchyard_etcd_errors_total",
			"Errors talking to the cluster's etcd since start-up.", cluster, nil),
	}
}

// Describe implements prometheus.Collector.
func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.backendHealthy
	ch <- s.backendSessions
	ch <- s.backendCPU
	ch <- s.backendMemory
	ch <- s.clusterState
	ch <- s.topologyUpdated
	ch <- s.etcdRevision
	ch <- s.etcdErrors
}

// Collect implements prometheus.Collector.
func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	topo := s.src.Topology()
	if topo == nil {
		return
	}
	sessions := s.src.BackendSessions()
	etcdErrors := s.src.EtcdErrors()
	for name, v := range topo.Clusters {
		if v == nil {
			continue
		}
		s.collectCluster(ch, name, v, etcdErrors)
		for _, b := range v.Backends {
			s.collectBackend(ch, name, b, sessions)
		}
	}
}

func (s *stateCollector) collectCluster(ch chan<- prometheus.Metric, name string, v *observer.ClusterView, etcdErrors map[string]uint64) {
	known := false
	for _, st := range clusterStates {
		known = known || st == v.State
		ch <- prometheus.MustNewConstMetric(s.clusterState, prometheus.GaugeValue, boolValue(st == v.State), name, string(st))
	}
	if !known && v.State != "" {
		// A state added to the observer later still shows, as itself.
		ch <- prometheus.MustNewConstMetric(s.clusterState, prometheus.GaugeValue, 1, name, string(v.State))
	}
	if !v.UpdatedAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(s.topologyUpdated, prometheus.GaugeValue,
			unixSeconds(v.UpdatedAt), name)
	}
	errs, hasErrs := etcdErrors[name]
	if v.Source != observer.SourceStatic {
		ch <- prometheus.MustNewConstMetric(s.etcdRevision, prometheus.GaugeValue, float64(v.Revision), name)
		// An etcd cluster exports its error counter from 0, so the first
		// error is an increase and not a new series.
		hasErrs = true
	}
	if hasErrs {
		ch <- prometheus.MustNewConstMetric(s.etcdErrors, prometheus.CounterValue, float64(errs), name)
	}
}

func (s *stateCollector) collectBackend(ch chan<- prometheus.Metric, cluster string, b *observer.Backend, sessions map[string]int64) {
	if b == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(s.backendHealthy, prometheus.GaugeValue, boolValue(b.Health.Healthy), cluster, b.Addr)
	ch <- prometheus.MustNewConstMetric(s.backendSessions, prometheus.GaugeValue,
		float64(sessions[observer.BackendID(cluster, b.Addr)]), cluster, b.Addr)
	if b.Metrics.HasCPU {
		ch <- prometheus.MustNewConstMetric(s.backendCPU, prometheus.GaugeValue, b.Metrics.CPU, cluster, b.Addr)
	}
	if b.Metrics.HasMemory {
		ch <- prometheus.MustNewConstMetric(s.backendMemory, prometheus.GaugeValue, b.Metrics.Memory, cluster, b.Addr)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
