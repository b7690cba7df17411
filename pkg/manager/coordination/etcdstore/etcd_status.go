package etcdstore

import (
	"fmt"
	"sort"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// Subscribe implements Store.
func (e *Store) Subscribe() (<-chan struct{}, func()) { return e.subs.Subscribe() }

// Stats returns the counters and gauges for metrics.
func (e *Store) Stats() coordination.Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := coordination.Stats{
		TermEnds:       make(map[string]uint64, len(e.termEnds)),
		Stuck:          e.counters.stuck,
		CampaignErrors: e.counters.campaignErrs,
		Registrations:  e.counters.registrations,
	}
	for k, v := range e.termEnds {
		s.TermEnds[k] = v
	}
	for role, rs := range e.roleStat {
		_, wanted := e.wanted[role]
		if !wanted && !rs.Leader {
			continue
		}
		s.Roles = append(s.Roles, *rs)
	}
	sort.Slice(s.Roles, func(i, j int) bool { return s.Roles[i].Role < s.Roles[j].Role })
	return s
}

// Health implements Store.
func (e *Store) Health() (string, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closing:
		return coordination.StateStopping, "closing"
	case !e.started:
		return coordination.StateInitializing, "not started"
	case !e.reg.everRegistered:
		if e.reg.err != nil {
			return coordination.StateInitializing, "registering: " + e.reg.err.Error()
		}
		return coordination.StateInitializing, "registering"
	case e.reg.err != nil:
		return coordination.StateAbnormal, "registration failing: " + e.reg.err.Error()
	}
	// The client sends keepalives every TTL/3 (checked every 500 ms).
	nodeTTL := time.Duration(e.nodeTTL) * time.Second
	if silent := time.Since(e.reg.lastAck); silent > min(nodeTTL, nodeTTL/3+2*time.Second) {
		return coordination.StateAbnormal, fmt.Sprintf("etcd unreachable: no lease keepalive answer for %s",
			silent.Truncate(100*time.Millisecond))
	}
	if e.watchErr != nil {
		return coordination.StateAbnormal, "verdict watch failing: " + e.watchErr.Error()
	}
	return coordination.StateHealthy, ""
}
