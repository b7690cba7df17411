package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// Coordination is what the HA endpoints need from the coordination store.
type Coordination interface {
	Mode() string
	Leader(ctx context.Context, role string) (coordination.LeaderInfo, error)
	Members(ctx context.Context) ([]coordination.Member, error)
	Health() (state, reason string)
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
		writeJSON(w, http.StatusServiceUnavailable, libapi.LeaderError{Code: code, Message: msg, Role: role, LeaderID: li.LeaderID, ServedBy: s.nodeID})
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
	writeJSON(w, http.StatusOK, libapi.LeaderAnswer{
		Role:         role,
		LeaderID:     li.LeaderID,
		Term:         li.Term,
		Endpoints:    libapi.Endpoints{SQL: li.Node.SQLAddr(), API: li.Node.APIAddr()},
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
	out := make([]libapi.MemberAnswer, 0, len(ms))
	for _, m := range ms {
		a := libapi.MemberAnswer{ID: m.ID, LeaseTTL: m.TTL, Error: m.Err}
		if m.Info != nil {
			st := m.Info.StartTime
			a.Valid = true
			a.Endpoints = &libapi.Endpoints{SQL: m.Info.SQLAddr(), API: m.Info.APIAddr()}
			a.State, a.Version, a.Zone, a.Clusters, a.StartTime = m.Info.State, m.Info.Version, m.Info.Zone, m.Info.Clusters, &st
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, out)
}
