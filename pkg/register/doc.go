// Package register is the "proxy register" sidecar: it makes a generic
// MySQL or MariaDB server look like a TiDB instance to anything that reads
// TiDB's topology from etcd, Switchyard's own topology watcher included.
//
// Such servers never write to etcd, so a Registrar does it for one backend
// exactly as TiDB's infosync does: <prefix>/<addr>/info holds the JSON server
// info without a lease, and <prefix>/<addr>/ttl holds a timestamp under a
// kept-alive lease, so that the backend disappears from readers when the
// sidecar dies. It also serves the status port TiDB would: /status answers
// 200 only while the backend accepts MySQL connections, and /metrics exposes
// the backend process's CPU and memory under TiDB's metric names, so the
// proxy's health checks and metrics reader work unchanged.
//
// Registration never gives up: the sidecar may start before etcd, and a lost
// lease (expiry during an etcd outage, a wiped etcd) is answered with a new
// lease and both keys written again. On shutdown it removes its own two keys
// and nothing else.
package register
