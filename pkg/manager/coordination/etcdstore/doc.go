// Package etcdstore is the coordination.Store of a fleet, kept in the
// fleet etcd: the node registry under a node lease, one election loop per
// role with one session per term, leader discovery, fenced verdict writes
// and the verdict watch.
//
// Each won term runs under a renew guard: the term ends at the first of
// validUntil − margin (validUntil = send time of the last successful
// keepalive + granted TTL), the session's end, the deletion of its election
// key, or shutdown. Renewals start every TTL/10 and overlap, so a term
// outlives an etcd outage of up to TTL − margin − TTL/10. Ending cancels
// the term's context, waits for the work registered with
// coordination.TermWorker (Go, Hold) up to a stop budget
// (else fail-stop through OnStuck), and only then resigns, so that the next
// leader never begins while this one's work still runs.
//
// A Campaign call blocked on an unreachable etcd cannot be interrupted by
// its context (ha.md P2): Close abandons it, waits for it at most
// campaignDrain, and it returns once the caller closes the etcd client.
package etcdstore
