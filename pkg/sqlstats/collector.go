package sqlstats

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a Store's running totals per cluster, computed at
// scrape time. No series carries a digest label: digests are unbounded in
// number, and their table is served by the API instead.
type Collector struct {
	s                                              *Store
	execs, errors, rows, latency, evictions, texts *prometheus.Desc
	digests                                        *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector builds the collector over s.
func NewCollector(s *Store) *Collector {
	l := []string{"cluster"}
	return &Collector{
		s:         s,
		execs:     prometheus.NewDesc("switchyard_statements_total", "Statements (COM_QUERY and COM_STMT_EXECUTE) recorded in the digest tables.", l, nil),
		errors:    prometheus.NewDesc("switchyard_statement_errors_total", "Recorded statements answered with an ERR packet.", l, nil),
		rows:      prometheus.NewDesc("switchyard_statement_rows_sent_total", "Result-set rows sent to clients by recorded statements.", l, nil),
		latency:   prometheus.NewDesc("switchyard_statement_latency_seconds_total", "Summed latency of recorded statements.", l, nil),
		evictions: prometheus.NewDesc("switchyard_digest_evictions_total", "Digest rows folded into the cluster's \"others\" row to keep the table within digests.max-per-cluster.", l, nil),
		digests:   prometheus.NewDesc("switchyard_digests", "Digest rows currently held for the cluster (without \"others\").", l, nil),
		texts:     prometheus.NewDesc("switchyard_digest_normalizations_total", "Statement texts normalised (misses of the normaliser cache).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.execs, c.errors, c.rows, c.latency, c.evictions, c.digests, c.texts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.Totals() {
		ch <- prometheus.MustNewConstMetric(c.execs, prometheus.CounterValue, float64(t.Statements), t.Cluster)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(t.Errors), t.Cluster)
		ch <- prometheus.MustNewConstMetric(c.rows, prometheus.CounterValue, float64(t.Rows), t.Cluster)
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.CounterValue, t.Latency.Seconds(), t.Cluster)
		ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(t.Evictions), t.Cluster)
		ch <- prometheus.MustNewConstMetric(c.digests, prometheus.GaugeValue, float64(t.Digests), t.Cluster)
	}
	ch <- prometheus.MustNewConstMetric(c.texts, prometheus.CounterValue, float64(c.s.norm.misses.Load()))
}
