package coordination

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Subscribe implements Backend.
func (e *Etcd) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subs, ch)
			e.mu.Unlock()
		})
	}
}

// notifyLocked wakes every subscriber without blocking.
func (e *Etcd) notifyLocked() {
	for ch := range e.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Stats returns the counters and gauges for metrics.
func (e *Etcd) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{
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

// Health implements Backend.
func (e *Etcd) Health() (string, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closing:
		return StateStopping, "closing"
	case !e.started:
		return StateInitializing, "not started"
	case !e.reg.everRegistered:
		if e.reg.err != nil {
			return StateInitializing, "registering: " + e.reg.err.Error()
		}
		return StateInitializing, "registering"
	case e.reg.err != nil:
		return StateAbnormal, "registration failing: " + e.reg.err.Error()
	}
	// The client sends keepalives every TTL/3 (checked every 500 ms).
	nodeTTL := time.Duration(e.nodeTTL) * time.Second
	if silent := time.Since(e.reg.lastAck); silent > min(nodeTTL, nodeTTL/3+2*time.Second) {
		return StateAbnormal, fmt.Sprintf("etcd unreachable: no lease keepalive answer for %s",
			silent.Truncate(100*time.Millisecond))
	}
	if e.watchErr != nil {
		return StateAbnormal, "verdict watch failing: " + e.watchErr.Error()
	}
	return StateHealthy, ""
}
