// Package etcdclient builds etcd clients the way every part of Switchyard
// needs them: lazy (creating one never waits for etcd, so start-up never
// blocks on an unreachable cluster), with bounded dial and keepalive times so
// that a dead endpoint is noticed, and logging through the caller's logger.
//
// Its users: each cluster runtime (pkg/manager/backendcluster: the client
// its topology watcher reads TiDB's registrations through), the fleet's
// coordination store (the fleet etcd, built in pkg/server), `proxy register`
// (pkg/register) and the playground. It is the one lib package that links
// the etcd client and gRPC; proxyctl must not import it (see lib/api).
package etcdclient
