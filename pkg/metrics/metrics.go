package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Label names.
const (
	labelCluster = "cluster"
	labelCommand = "command"
	labelBackend = "backend"
	labelState   = "state"
	labelResult  = "result"
)

// Values of the result label of switchyard_config_reloads_total.
const (
	resultOK    = "ok"
	resultError = "error"
)

// queryDurationBuckets double from 0.5ms up to 131s (19 buckets): sub-ms
// point lookups and multi-minute reports both land in a bucket of their own
// order of magnitude, and a cluster×command series stays at 22 samples.
var queryDurationBuckets = prometheus.ExponentialBuckets(0.0005, 2, 19)

// Source is what the state collectors read at scrape time. Its methods are
// called concurrently from scrapes and must not block for long; every value
// returned is only read.
type Source interface {
	// Topology is the current topology snapshot; nil before the first one.
	Topology() *observer.Topology
	// BackendSessions is the number of client sessions per backend ID
	// ("<cluster>/<addr>").
	BackendSessions() map[string]int64
	// EtcdErrors is the number of etcd errors per cluster since start-up. It
	// only ever grows for a given cluster.
	EtcdErrors() map[string]uint64
}

// Metrics owns the proxy's registry and collectors. The recording methods
// (ForCluster, DeleteCluster, ObserveReload and those of the ClusterMetrics
// they return) accept a nil *Metrics and do nothing, so that components can
// run without metrics in tests.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	sessions      *prometheus.GaugeVec
	queryDuration *prometheus.HistogramVec
	migr          *migrationMetrics

	reloads        *prometheus.CounterVec
	lastReloadOK   prometheus.Gauge
	lastReloadTime prometheus.Gauge
	reloadMu       sync.Mutex
	lastReloadAt   time.Time // guarded by reloadMu

	// mu guards clusters and every ClusterMetrics.deleted, so that a series
	// created lazily by Observe can never outlive DeleteCluster.
	mu       sync.RWMutex
	clusters map[string]*ClusterMetrics
}

// New builds the registry with every switchyard_* collector plus the Go and
// process collectors. src may be nil, in which case the state series (backend,
// cluster state, topology, etcd) are absent. version and gitHash label
// switchyard_build_info; empty values read "unknown".
func New(src Source, version, gitHash string) *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		clusters: make(map[string]*ClusterMetrics),
		migr:     newMigrationMetrics(),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_sessions",
			Help: "Client sessions currently routed to the cluster.",
		}, []string{labelCluster}),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_query_duration_seconds",
			Help:    "Time from a client command's arrival to the end of its response, by cluster and MySQL command.",
			Buckets: queryDurationBuckets,
		}, []string{labelCluster, labelCommand}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_config_reloads_total",
			Help: "Config reloads attempted, by result (ok or error).",
		}, []string{labelResult}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_config_last_reload_successful",
			Help: "Whether the last config reload was applied (1) or rejected (0).",
		}),
		lastReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last config reload that was applied; 0 before the first.",
		}),
	}
	// Both results exist from the start, so that increase() sees the first
	// failure instead of a series appearing at 1.
	m.reloads.WithLabelValues(resultOK)
	m.reloads.WithLabelValues(resultError)

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchyard_build_info",
		Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version":    orUnknown(version),
			"git_hash":   orUnknown(gitHash),
			"go_version": runtime.Version(),
		},
	})
	buildInfo.Set(1)

	m.reg.MustRegister(
		m.sessions, m.queryDuration,
		m.migr.total, m.migr.duration, m.migr,
		m.reloads, m.lastReloadOK, m.lastReloadTime,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src != nil {
		m.reg.MustRegister(newStateCollector(src))
	}
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails must not hide every other series.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Registry is the private registry, for promhttp.HandlerFor or tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveReload records the result of applying a config. The start-up config
// counts as a reload: call ObserveReload(true, t) once it is loaded, since
// switchyard_config_last_reload_successful reads 0 until then. A result older
// than the last recorded one still counts in switchyard_config_reloads_total
// but does not overwrite the "last reload" gauges.
func (m *Metrics) ObserveReload(ok bool, at time.Time) {
	if m == nil {
		return
	}
	result := resultError
	if ok {
		result = resultOK
	}
	m.reloads.WithLabelValues(result).Inc()

	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if at.Before(m.lastReloadAt) {
		return
	}
	m.lastReloadAt = at
	if ok {
		m.lastReloadOK.Set(1)
		m.lastReloadTime.Set(unixSeconds(at))
	} else {
		m.lastReloadOK.Set(0)
	}
}

// unixSeconds converts without going through UnixNano, whose float64 value
// loses the sub-second digits.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
