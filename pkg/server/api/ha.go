package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// Coordination is what the HA endpoints need from the fleet backend.
type Coordination interface {
	Mode() string
	Leader(ctx context.Context, role string) (coordination.LeaderInfo, error)
	Members(ctx context.Context) ([]coordination.Member, error)
	Health() (state, reason string)
}

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

// retryAfter is the Retry-After of discovery 503s, in seconds.
const retryAfter = "1"

// haTimeout bounds one discovery lookup.
const haTimeout = 2 * time.Second

func (s *Server) haLeader(w http.ResponseWriter, r *http.Request) {
	role := r.URL.Query().Get("role")
	if role == "" {
		role = coordination.RoleFleet
	}
	ctx, cancel := context.WithTimeout(r.Context(), haTimeout)
	defer cancel()
	li, err := s.coord.Leader(ctx, role)
	fail := func(code, msg string) {
		w.Header().Set("Retry-After", retryAfter)
		writeJSON(w, http.StatusServiceUnavailable, LeaderError{Code: code, Message: msg, Role: role, LeaderID: li.LeaderID, ServedBy: s.nodeID})
	}
	switch {
	case errors.Is(err, coordination.ErrNoLeader):
		fail("NO_LEADER", "no node holds the role "+role)
		return
	case err != nil:
		li.LeaderID = ""
		fail("COORDINATION_UNAVAILABLE", "this node cannot reach the coordination store: "+err.Error())
		return
	case li.Node == nil:
		fail("LEADER_ENDPOINT_UNAVAILABLE", "leader "+li.LeaderID+" exists but its node info is unusable: "+li.NodeErr)
		return
	}
	writeJSON(w, http.StatusOK, LeaderAnswer{
		Role:         role,
		LeaderID:     li.LeaderID,
		Term:         li.Term,
		Endpoints:    Endpoints{SQL: li.Node.SQLAddr(), API: li.Node.APIAddr()},
		ServedBy:     s.nodeID,
		SelfIsLeader: li.LeaderID == s.nodeID,
		Mode:         s.coord.Mode(),
	})
}

func (s *Server) haMembers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), haTimeout)
	defer cancel()
	ms, err := s.coord.Members(ctx)
	if err != nil {
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, "COORDINATION_UNAVAILABLE", "this node cannot reach the coordination store: "+err.Error())
		return
	}
	out := make([]MemberAnswer, 0, len(ms))
	for _, m := range ms {
		a := MemberAnswer{ID: m.ID, LeaseTTL: m.TTL, Error: m.Err}
		if m.Info != nil {
			st := m.Info.StartTime
			a.Valid = true
			a.Endpoints = &Endpoints{SQL: m.Info.SQLAddr(), API: m.Info.APIAddr()}
			a.State, a.Version, a.Zone, a.Clusters, a.StartTime = m.Info.State, m.Info.Version, m.Info.Zone, m.Info.Clusters, &st
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, out)
}
