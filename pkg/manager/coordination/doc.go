// Package coordination lets several Switchyard proxies act as one fleet: a
// node registry (each node's info under its own lease), leader elections
// per role with per-term discipline (fencing token = the leader key's create
// revision; leader-only work runs under a context that ends before the lease
// can expire), leader discovery that any node answers, and fleet-wide
// backend verdicts written only by the elected prober of a cluster after a
// vote of its peers.
//
// This package holds the shared vocabulary (NodeInfo, Term, Verdict, ...),
// the Store interface and Memory, the single-node Store (the node is always
// the leader of every role; the proxy warns that it runs without
// coordination). Subpackages:
//
//   - etcdstore: the Store of a fleet, kept in the fleet etcd;
//   - vote: the probe votes (a Voter answers a leader's request with a fresh
//     probe; a Coordinator runs the rounds of the prober roles this node
//     leads and writes the verdicts through a Store).
package coordination
