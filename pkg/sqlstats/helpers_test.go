package sqlstats

import "github.com/prometheus/client_golang/prometheus"

func registryOf(c prometheus.Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c)
	return r
}
