// Package metricsreader fetches the load of every backend in one cluster: CPU
// usage over the backend's CPU quota and resident memory over its memory
// quota. One Reader serves one cluster and runs one goroutine. It asks the
// cluster's Prometheus first (an explicit URL, or one found through
// Config.Discover, normally PD's /topology/prometheus key); when no Prometheus
// is known, or it fails or has no data for any backend, it scrapes each
// backend's status-port /metrics page directly and derives CPU from two
// consecutive scrapes. Results are an immutable map keyed by the backend's SQL
// address, swapped atomically and announced on a latest-value channel, so
// readers never wait on a slow backend.
package metricsreader
