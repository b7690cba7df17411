package server

import (
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// movable is what a session offers the rebalancer (pkg/proxy/backend).
type movable interface {
	Migratable() (bool, string)
	Redirect(addr string) bool
}

// sessionMigrant adapts a live session to router.Migrant.
type sessionMigrant struct{ s *backend.Session }

var _ router.Migrant = sessionMigrant{}

func (m sessionMigrant) ID() uint64 { return m.s.ID() }

func (m sessionMigrant) Placement() (string, string) {
	in := m.s.Info()
	return in.Cluster, in.Backend
}

func (m sessionMigrant) Migratable() (bool, string) {
	if mv, ok := any(m.s).(movable); ok {
		return mv.Migratable()
	}
	return false, "this build cannot move sessions"
}

func (m sessionMigrant) Redirect(addr string) bool {
	if mv, ok := any(m.s).(movable); ok {
		return mv.Redirect(addr)
	}
	return false
}

// Evict closes the session with msg, at once if it is idle (inside a
// transaction or not), or after the command it is running.
func (m sessionMigrant) Evict(msg string) {
	m.s.CloseWithError(&mysql.MySQLError{Code: mysql.ErServerShutdown, State: "08S01",
		Message: "Switchyard: " + msg + "; reconnect"})
}

// migrants lists the routed sessions for the rebalancer.
type migrants struct{ s *Server }

func (ms migrants) Migrants() []router.Migrant {
	live := ms.s.sql.RoutedSessions()
	out := make([]router.Migrant, len(live))
	for i, ss := range live {
		out[i] = sessionMigrant{ss}
	}
	return out
}

// migrationAPI is the API's view of drains (the router's) and migrations
// (the rebalancer's).
type migrationAPI struct {
	*router.Balanced
	*router.Rebalancer
}

// notMigratable counts the routed sessions that could not move now, by
// cluster and reason, for switchyard_sessions_not_migratable.
func (s *Server) notMigratable() map[metrics.NotMigratableKey]int {
	out := map[metrics.NotMigratableKey]int{}
	for _, m := range (migrants{s}).Migrants() {
		if ok, why := m.Migratable(); !ok {
			cluster, _ := m.Placement()
			out[metrics.NotMigratableKey{Cluster: cluster, Reason: why}]++
		}
	}
	return out
}
