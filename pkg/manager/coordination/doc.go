// Package coordination lets several Switchyard proxies act as one fleet over
// etcd: a node registry (each node's info under its own lease), leader
// elections per role with per-term discipline (fencing token = the leader
// key's create revision; leader-only work runs under a context that ends
// before the lease can expire), leader discovery that any node answers, and
// fleet-wide backend verdicts written only by the elected prober of a
// cluster after a vote of its peers.
//
// Backend has two implementations: etcd (a fleet) and memory (a single node,
// which is always the leader of every role; the proxy warns that it runs
// without coordination).
//
// In the etcd backend each won term runs under a renew guard: the term ends
// at the first of validUntil − margin (validUntil = send time of the last
// successful keepalive + granted TTL), the session's end, the deletion of
// its election key, or shutdown. Ending cancels the term's context, waits
// for the work registered with TermWorker (Go, Hold) up to a stop budget
// (else fail-stop through OnStuck), and only then resigns, so that the next
// leader never begins while this one's work still runs.
package coordination
