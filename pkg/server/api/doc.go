// Package api is the HTTP status and admin API: health and readiness,
// clusters, backends, sessions, the config (read, replace, reload status),
// Prometheus metrics, pprof and a self-contained status page. It is built on
// the standard library's ServeMux and answers JSON; mutating endpoints need
// the configured bearer token.
package api
