// Package metrics holds the proxy's Prometheus collectors, all named
// switchyard_* and registered on a private registry (never the global one, so
// that tests and several proxies in one process stay isolated). Two kinds of
// series live here. Event series (query durations, sessions by cluster,
// config reloads) are updated by the data plane and the config manager; the
// per-command cost is one atomic load and a histogram observation. State
// series (backend health, sessions and load, cluster state, topology age,
// etcd revision and errors) are computed at scrape time from a Source, so a
// backend or cluster that leaves the topology loses its series without anyone
// having to delete them.
package metrics
