package router

import (
	"time"

	"go.uber.org/zap"
)

// What a migration was for and how it ended: reported by the sessions,
// recorded for /api/v1/migrations and fed to the metrics.

// MigrationObserver records finished migrations (pkg/metrics).
type MigrationObserver interface {
	Migration(cluster, reason, result string, d time.Duration)
}

// Why a session is moved.
const (
	ReasonDrain        = "drain"
	ReasonUnhealthy    = "unhealthy"
	ReasonVotedDown    = "voted-down"
	ReasonRemoved      = "removed"
	ReasonLoadSessions = "load-sessions"
	ReasonLoadCPU      = "load-cpu"
	ReasonLoadMemory   = "load-memory"
	// ReasonFailover is a session that re-established itself after its
	// backend died (reported by the session, not asked by the rebalancer).
	ReasonFailover = "failover"
	reasonOther    = "other"
)

// Results of a migration.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"  // tried and failed; the session stayed
	ResultRefused = "refused" // the session held state that cannot move
	// ResultClosed is a session of a drained backend that could not move
	// before the drain's deadline and was closed.
	ResultClosed = "closed"
)

// MigrationResult is what a session reports when a move it was asked for (or
// started itself) ends.
type MigrationResult struct {
	SessionID uint64
	Cluster   string
	From, To  string // backend addresses
	Result    string // ResultOK, ResultFailed or ResultRefused
	// Reason is set by the session for moves it started itself
	// (ReasonFailover); empty when the rebalancer asked.
	Reason   string
	Err      error // never carries secrets
	Duration time.Duration
}

// MigrationEvent is one finished migration, for the status page.
type MigrationEvent struct {
	Time      time.Time     `json:"time"`
	SessionID uint64        `json:"session_id"`
	Cluster   string        `json:"cluster"`
	From      string        `json:"from"`
	To        string        `json:"to,omitempty"`
	Reason    string        `json:"reason"`
	Result    string        `json:"result"`
	Duration  time.Duration `json:"duration_ns"`
	Error     string        `json:"error,omitempty"`
}

// MigrationDone records a finished migration: metrics, the recent list, and
// a pause before the session is asked again if it failed.
func (rb *Rebalancer) MigrationDone(res MigrationResult) {
	rb.mu.Lock()
	p := rb.pending[res.SessionID]
	delete(rb.pending, res.SessionID)
	reason := res.Reason
	if reason == "" && p != nil {
		reason = p.reason
	}
	if reason == "" {
		reason = reasonOther
	}
	now := rb.now()
	if res.Result != ResultOK {
		rb.failedAt[res.SessionID] = now
		if res.Err != nil {
			rb.lastErr[res.SessionID] = res.Err.Error()
		}
	} else {
		delete(rb.lastErr, res.SessionID)
	}
	ev := MigrationEvent{Time: now, SessionID: res.SessionID, Cluster: res.Cluster, From: res.From, To: res.To,
		Reason: reason, Result: res.Result, Duration: res.Duration}
	if res.Err != nil {
		ev.Error = res.Err.Error()
	}
	rb.record(ev)
	rb.mu.Unlock()
	if res.Result == ResultOK {
		rb.lg.Debug("session moved", zap.Uint64("conn", res.SessionID), zap.String("cluster", res.Cluster),
			zap.String("from", res.From), zap.String("to", res.To), zap.String("reason", reason))
	} else {
		rb.lg.Info("session did not move", zap.Uint64("conn", res.SessionID), zap.String("cluster", res.Cluster),
			zap.String("from", res.From), zap.String("to", res.To), zap.String("reason", reason),
			zap.String("result", res.Result), zap.Error(res.Err))
	}
}

// record keeps ev and feeds the observer. Callers hold rb.mu.
func (rb *Rebalancer) record(ev MigrationEvent) {
	if len(rb.recent) == recentEvents {
		copy(rb.recent, rb.recent[1:])
		rb.recent = rb.recent[:recentEvents-1]
	}
	rb.recent = append(rb.recent, ev)
	rb.totals[ev.Result]++
	if rb.obs != nil {
		rb.obs.Migration(ev.Cluster, ev.Reason, ev.Result, ev.Duration)
	}
}

// Recent returns the last finished migrations, newest first, and the totals
// by result since start.
func (rb *Rebalancer) Recent() ([]MigrationEvent, map[string]int64) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	out := make([]MigrationEvent, len(rb.recent))
	for i, ev := range rb.recent {
		out[len(out)-1-i] = ev
	}
	totals := make(map[string]int64, len(rb.totals))
	for k, v := range rb.totals {
		totals[k] = v
	}
	return out, totals
}

// Pending is the number of moves asked for and not yet reported.
func (rb *Rebalancer) Pending() int {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return len(rb.pending)
}
