package querylog

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the query log's counters.
type Collector struct {
	c                             *Counters
	written, dropped, writeErrors *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector exports c.
func NewCollector(c *Counters) *Collector {
	return &Collector{
		c:           c,
		written:     prometheus.NewDesc("switchyard_query_log_written_total", "Statements written to the query log.", nil, nil),
		dropped:     prometheus.NewDesc("switchyard_query_log_dropped_total", "Statements the query log dropped because its writer was behind (the queue was full) or closing.", nil, nil),
		writeErrors: prometheus.NewDesc("switchyard_query_log_write_errors_total", "Failed writes to the query log file.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.written
	ch <- c.dropped
	ch <- c.writeErrors
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(c.c.Written.Load()))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.c.Dropped.Load()))
	ch <- prometheus.MustNewConstMetric(c.writeErrors, prometheus.CounterValue, float64(c.c.WriteErrors.Load()))
}
