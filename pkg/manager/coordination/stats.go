package coordination

import "time"

// Term end reasons, as counted in Stats.TermEnds.
const (
	EndGuard       = "guard_expired"
	EndLeaseLost   = "lease_not_found"
	EndSession     = "session_done"
	EndKeyDeleted  = "key_deleted"
	EndRoleRemoved = "role_removed"
	EndShutdown    = "shutdown"
)

// RoleStats describe this node's standing for one role it campaigns for.
type RoleStats struct {
	Role string
	// Leader and Term: whether this node holds the role now, and its term.
	Leader bool
	Term   int64
	// LeaderChanges counts how often this node won or lost the role.
	LeaderChanges uint64
	// GuardRemaining is, at the last successful renewal of the current (or
	// last) term, how long until the lease could expire on the server: the
	// renew guard's headroom. Zero before any term.
	GuardRemaining time.Duration
}

// Stats are the counters and gauges the server exports as metrics.
type Stats struct {
	Roles []RoleStats // sorted by role
	// TermEnds counts ended terms by reason (End* constants).
	TermEnds map[string]uint64
	// Stuck counts terms whose work outlived StopBudget.
	Stuck uint64
	// CampaignErrors counts failed campaign attempts (including phantom wins
	// that the check after Campaign caught).
	CampaignErrors uint64
	// Registrations counts successful (re-)registrations of this node.
	Registrations uint64
}
