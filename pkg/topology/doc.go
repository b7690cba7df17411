// Package topology follows the TiDB instances that register themselves in a
// cluster's PD etcd under /topology/tidb/<addr>/{info,ttl}. A Watcher lists the
// prefix once, then watches it and publishes an immutable Snapshot of the live
// backends after every batch of changes. A backend is live only while its ttl
// key (held by a lease) exists, because a crashed TiDB leaves its info key
// behind. When etcd is unreachable the last snapshot is kept and Err reports
// the failure, so callers can mark the cluster stale instead of empty.
package topology
