// Package backendcluster owns one runtime per configured backend cluster and
// the Manager that keeps them in step with the config.
//
// A Cluster runtime has its own etcd client (created lazily, so start-up
// never waits for an unreachable etcd), topology watcher, health prober and
// metrics reader, and one goroutine that merges their results into an
// observer.ClusterView and publishes it. A static cluster (instances = [...])
// has the same runtime without etcd.
//
// Manager.Apply diffs the configured clusters by name: unchanged clusters keep
// the same runtime object; added and changed ones are built without holding
// any lock readers need and published in one swap; then the Rules (the
// router) learn the new config; then replaced and removed runtimes are closed,
// outside the manager's locks. A removed cluster stays in the topology as
// "draining" while the Drainer ends its sessions, and leaves it after. A build that fails keeps the old runtime (if
// any) and is retried with backoff in the background, without delaying the
// other clusters. Every runtime carries a generation and a closed flag, so a
// caller holding a runtime from before a reload fails cleanly instead of
// using a closed etcd client.
package backendcluster
