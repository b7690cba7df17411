package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// migrationDurationBuckets run from 1 ms to about 16 s: a move is a dial, a
// login and a state replay on the new backend.
var migrationDurationBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

const labelReason = "reason"

// migrationMetrics are the session migration series.
type migrationMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu    sync.Mutex
	stuck func() map[NotMigratableKey]int
	desc  *prometheus.Desc
}

// NotMigratableKey groups the sessions that could not move now.
type NotMigratableKey struct{ Cluster, Reason string }

func newMigrationMetrics() *migrationMetrics {
	return &migrationMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_migrations_total",
			Help: "Session migrations between backends of one cluster, by why (drain, unhealthy, voted-down, removed, load-sessions, load-cpu, load-memory, failover) and result (ok, failed, refused, closed).",
		}, []string{labelCluster, labelReason, labelResult}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_migration_duration_seconds",
			Help:    "Time a session migration took, from the safe point to the new backend holding the session, by result.",
			Buckets: migrationDurationBuckets,
		}, []string{labelCluster, labelResult}),
		desc: prometheus.NewDesc("switchyard_sessions_not_migratable",
			"Sessions that could not move to another backend now, by reason (transaction, lock, temporary table, credential ...).",
			[]string{labelCluster, labelReason}, nil),
	}
}

// Migration records one finished migration; it implements the rebalancer's
// observer. A nil *Metrics records nothing.
func (m *Metrics) Migration(cluster, reason, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.migr.total.WithLabelValues(cluster, reason, result).Inc()
	if d > 0 {
		m.migr.duration.WithLabelValues(cluster, result).Observe(d.Seconds())
	}
}

// SetNotMigratable makes every scrape export switchyard_sessions_not_migratable
// from f, which counts the live sessions that could not move now by cluster
// and reason.
func (m *Metrics) SetNotMigratable(f func() map[NotMigratableKey]int) {
	if m == nil {
		return
	}
	m.migr.mu.Lock()
	defer m.migr.mu.Unlock()
	m.migr.stuck = f
}

// Describe implements prometheus.Collector for the not-migratable gauge.
func (mm *migrationMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- mm.desc }

// Collect implements prometheus.Collector for the not-migratable gauge.
func (mm *migrationMetrics) Collect(ch chan<- prometheus.Metric) {
	mm.mu.Lock()
	f := mm.stuck
	mm.mu.Unlock()
	if f == nil {
		return
	}
	for k, n := range f() {
		ch <- prometheus.MustNewConstMetric(mm.desc, prometheus.GaugeValue, float64(n), k.Cluster, k.Reason)
	}
}
