package api

import "time"

// LeaderAnswer is the 200 body of GET /api/v1/ha/leader.
type LeaderAnswer struct {
	Role         string    `json:"role"`
	LeaderID     string    `json:"leader_id"`
	Term         int64     `json:"term"`
	Endpoints    Endpoints `json:"endpoints"`
	ServedBy     string    `json:"served_by"`
	SelfIsLeader bool      `json:"self_is_leader"`
	Mode         string    `json:"mode"`
}

// Endpoints are a node's addresses.
type Endpoints struct {
	SQL string `json:"sql"`
	API string `json:"api"`
}

// LeaderError is the 503 body of GET /api/v1/ha/leader.
type LeaderError struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Role     string `json:"role"`
	LeaderID string `json:"leader_id,omitempty"`
	ServedBy string `json:"served_by"`
}

// MemberAnswer is one element of GET /api/v1/ha/members.
type MemberAnswer struct {
	ID string `json:"id"`
	// Valid is false when the member's info is missing or does not parse;
	// Error says why, and no endpoints are given.
	Valid     bool       `json:"valid"`
	Error     string     `json:"error,omitempty"`
	Endpoints *Endpoints `json:"endpoints,omitempty"`
	State     string     `json:"state,omitempty"`
	Version   string     `json:"version,omitempty"`
	Zone      string     `json:"zone,omitempty"`
	Clusters  []string   `json:"clusters,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	// LeaseTTL is the seconds left on the member's registration lease, -1
	// when there is none (single-node mode keeps no lease).
	LeaseTTL int64 `json:"lease_ttl_seconds"`
}
