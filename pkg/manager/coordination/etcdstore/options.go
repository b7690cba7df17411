package etcdstore

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// Defaults of Options (ha.md 6.3).
const (
	DefaultElectionTTL = 5 * time.Second
	DefaultNodeTTL     = 10 * time.Second
)

// Fixed timings. Every etcd call has its own timeout so that an unreachable
// etcd never blocks a caller for long.
const (
	// readTimeout bounds Leader and Members: a node that cannot answer in
	// this time says ErrUnavailable rather than anything stale.
	readTimeout = time.Second
	// opTimeout bounds the writes and housekeeping calls of the loops.
	opTimeout = 2 * time.Second
	// cleanupTimeout bounds resign and revoke at the end of a term.
	cleanupTimeout = 2 * time.Second
	// campaignDrain bounds how long Close waits for abandoned Campaign
	// calls: while etcd is unreachable they cannot return (ha.md P2), and
	// they do once the client is closed.
	campaignDrain = 2 * time.Second
	// minGuardMargin is the least time the renew guard ends a term before
	// the lease could expire on the server (ha.md rule 4).
	minGuardMargin = 500 * time.Millisecond
)

// Options tune the etcd store. Zero values take the defaults.
type Options struct {
	// ElectionTTL is the lease of a leadership term, rounded up to whole
	// seconds: a crashed leader is replaced after about this long.
	ElectionTTL time.Duration
	// NodeTTL is the lease of the node's registration.
	NodeTTL time.Duration
	// StopBudget is how long leader-only work may take to stop after its
	// term context is cancelled.
	StopBudget time.Duration
	// OnStuck is called when leader-only work has not stopped within
	// StopBudget. The default logs and exits the process (fail-stop): work
	// that outlives its term could act beside the next leader.
	OnStuck func()
}

func (o Options) withDefaults() Options {
	if o.ElectionTTL <= 0 {
		o.ElectionTTL = DefaultElectionTTL
	}
	if o.NodeTTL <= 0 {
		o.NodeTTL = DefaultNodeTTL
	}
	if o.StopBudget <= 0 {
		o.StopBudget = coordination.DefaultStopBudget
	}
	return o
}

// ttlSeconds rounds d up to whole seconds, at least 1 (etcd raises lease
// TTLs below its minimum, 2 s with default settings, on its own).
func ttlSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// renewPeriod is how often a leader renews its term's lease: TTL/10. The
// guard ends a term at most TTL - margin after the send of the last renewal
// that answered, so the more recent that renewal, the longer an etcd leader
// election the term outlives (ha.md's TTL/4 left 2.75 s at TTL 5 s, which a
// loaded 3-member etcd overran in CI; TTL/10 leaves 3.5 s).
func renewPeriod(ttl time.Duration) time.Duration { return ttl / 10 }

// renewTimeout bounds one renewal: TTL/4 (2.5 periods), long enough for an
// etcd that answers slowly; later attempts do not wait for it.
func renewTimeout(ttl time.Duration) time.Duration { return ttl / 4 }

// guardMargin is how long before the server could expire a term's lease
// the term ends: max(500ms, TTL/5).
func guardMargin(ttl time.Duration) time.Duration {
	return max(minGuardMargin, ttl/5)
}
