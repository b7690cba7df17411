package shadow

import "github.com/prometheus/client_golang/prometheus"

// collector exports every mirror's totals at scrape time, labelled by
// shadow name, source and target only: never by digest.
type collector struct {
	m                                                             *Manager
	sampled, dropped, skipped, errors, compared, mismatches, qlen *prometheus.Desc
}

// NewCollector returns the Prometheus collector of m's mirrors.
func NewCollector(m *Manager) prometheus.Collector {
	labels := []string{"shadow", "source", "target"}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("switchyard_shadow_"+name, help, labels, nil)
	}
	return &collector{m: m,
		sampled:    d("sampled_total", "Statements sessions sampled for shadowing."),
		dropped:    d("dropped_total", "Sampled statements dropped because the shadow queue was full."),
		skipped:    d("skipped_total", "Sampled statements not mirrored: refused as not repeatable, or the schema is missing on the target."),
		errors:     d("errors_total", "Sampled statements not compared because the target was unreachable, refused the login, timed out or broke the connection."),
		compared:   d("compared_total", "Statements run on both clusters and compared."),
		mismatches: d("mismatches_total", "Compared statements whose row count, row checksum or error code differed."),
		qlen:       d("queue_length", "Statements waiting in the shadow queue."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sampled, c.dropped, c.skipped, c.errors, c.compared, c.mismatches, c.qlen} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	mirrors := make([]*mirror, 0, len(c.m.byName))
	for _, mr := range c.m.byName {
		mirrors = append(mirrors, mr)
	}
	c.m.mu.Unlock()
	for _, mr := range mirrors {
		l := []string{mr.opt.Name, mr.opt.Source, mr.opt.Target}
		k := &mr.st.counters
		for _, v := range []struct {
			d *prometheus.Desc
			n uint64
		}{{c.sampled, k.Sampled.Load()}, {c.dropped, k.Dropped.Load()}, {c.skipped, k.Skipped.Load()},
			{c.errors, k.Errors.Load()}, {c.compared, k.Compared.Load()}, {c.mismatches, k.Mismatches.Load()}} {
			ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), l...)
		}
		ch <- prometheus.MustNewConstMetric(c.qlen, prometheus.GaugeValue, float64(len(mr.queue)), l...)
	}
}
