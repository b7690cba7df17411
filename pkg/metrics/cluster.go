package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterMetrics records the event series of one cluster. Sessions keep the
// value ForCluster returned for their whole life, so the per-command path
// never looks the cluster up. A nil *ClusterMetrics records nothing.
type ClusterMetrics struct {
	m        *Metrics
	name     string
	sessions prometheus.Gauge
	// observers caches the histogram child of each command byte. Children are
	// created on first use rather than up front, so a cluster only exports the
	// commands its clients actually send.
	observers [256]atomic.Pointer[observerRef]
	// deleted is set by DeleteCluster (under m.mu): from then on, new commands
	// record nowhere instead of re-creating the cluster's series.
	deleted bool
}

// observerRef boxes an Observer so that it fits an atomic.Pointer.
type observerRef struct{ prometheus.Observer }

// discard takes the observations of a deleted cluster.
var discard = &observerRef{prometheus.ObserverFunc(func(float64) {})}

// ForCluster returns the cluster's recorder, creating it (and its
// switchyard_sessions series, at 0) on first use. It is safe for concurrent
// use and returns the same value until DeleteCluster(cluster).
func (m *Metrics) ForCluster(cluster string) *ClusterMetrics {
	if m == nil {
		return nil
	}
	m.mu.RLock()
	c := m.clusters[cluster]
	m.mu.RUnlock()
	if c != nil {
		return c
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clusters[cluster]; c != nil {
		return c
	}
	c = &ClusterMetrics{
		m:        m,
		name:     cluster,
		sessions: m.sessions.WithLabelValues(cluster),
	}
	m.clusters[cluster] = c
	return c
}

// DeleteCluster removes every event series labelled with the cluster and
// forgets its ClusterMetrics; the state series go by themselves once the
// cluster leaves the topology. Call it when the cluster's last session has
// ended: a ClusterMetrics still held by a session keeps working but no longer
// exports anything, and a later ForCluster starts the cluster from zero.
func (m *Metrics) DeleteCluster(cluster string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clusters[cluster]; c != nil {
		c.deleted = true
		delete(m.clusters, cluster)
	}
	m.sessions.DeleteLabelValues(cluster)
	m.queryDuration.DeletePartialMatch(prometheus.Labels{labelCluster: cluster})
	m.migr.total.DeletePartialMatch(prometheus.Labels{labelCluster: cluster})
	m.migr.duration.DeletePartialMatch(prometheus.Labels{labelCluster: cluster})
}

// Observe records the duration of one command. It runs once per client
// command: after the first command of each type it costs one atomic load and
// one histogram observation, and never allocates.
func (c *ClusterMetrics) Observe(cmd byte, d time.Duration) {
	if c == nil {
		return
	}
	o := c.observers[cmd].Load()
	if o == nil {
		o = c.resolve(cmd)
	}
	o.Observe(d.Seconds())
}

// resolve is Observe's slow path: the first command of a type.
func (c *ClusterMetrics) resolve(cmd byte) *observerRef {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if o := c.observers[cmd].Load(); o != nil {
		return o
	}
	o := discard
	if !c.deleted {
		o = &observerRef{c.m.queryDuration.WithLabelValues(c.name, CommandName(cmd))}
	}
	c.observers[cmd].Store(o)
	return o
}

// SessionStarted counts a client session routed to the cluster.
func (c *ClusterMetrics) SessionStarted() {
	if c != nil {
		c.sessions.Inc()
	}
}

// SessionEnded uncounts a session that SessionStarted counted.
func (c *ClusterMetrics) SessionEnded() {
	if c != nil {
		c.sessions.Dec()
	}
}
