package server

import (
	"strings"

	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// sessionMigrant adapts a live session to router.Migrant.
type sessionMigrant struct{ s *backend.Session }

var _ router.Migrant = sessionMigrant{}

func (m sessionMigrant) ID() uint64 { return m.s.ID() }

func (m sessionMigrant) Placement() (string, string) { return m.s.Placement() }

func (m sessionMigrant) Migratable() (bool, string) { return m.s.Migratable() }

func (m sessionMigrant) Redirect(addr string) bool { return m.s.Redirect(addr) }

// Evict closes the session with msg, at once if it is idle (inside a
// transaction or not), or after the command it is running.
func (m sessionMigrant) Evict(msg string) {
	m.s.CloseWithError(&mysql.MySQLError{Code: mysql.ErServerShutdown, State: "08S01",
		Message: "Switchyard: " + msg + "; reconnect"})
}

// migrants lists the routed sessions for the rebalancer.
type migrants struct{ s *Server }

func (ms migrants) SessionCount() int { return ms.s.sql.SessionCount() }

func (ms migrants) Migrants(dst []router.Migrant) []router.Migrant {
	ms.s.sql.RangeRouted(func(ss *backend.Session) { dst = append(dst, sessionMigrant{ss}) })
	return dst
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
	for _, m := range (migrants{s}).Migrants(nil) {
		if ok, why := m.Migratable(); !ok {
			cluster, _ := m.Placement()
			out[metrics.NotMigratableKey{Cluster: cluster, Reason: reasonCategory(why)}]++
		}
	}
	return out
}

// migrationResults hands the sessions' migration results to the rebalancer.
type migrationResults struct{ rb *router.Rebalancer }

var _ backend.MigrationObserver = migrationResults{}

func (m migrationResults) MigrationDone(r backend.MigrationResult) {
	m.rb.MigrationDone(router.MigrationResult{
		SessionID: r.SessionID, Cluster: r.Cluster, From: r.From, To: r.To,
		Result: r.Result, Reason: r.Reason, Err: r.Err, Duration: r.Duration,
	})
}

// reasonCategory turns a session's reason for not moving (which may name
// users, tables or clusters) into one of a few label values, so that the
// metric's cardinality stays bounded.
func reasonCategory(why string) string {
	l := strings.ToLower(why)
	for _, c := range []struct{ substr, category string }{
		{"transaction", "transaction"},
		{"cursor", "cursor"},
		{"long_data", "long-data"},
		{"lock tables", "table-lock"},
		{"advisory", "advisory-lock"},
		{"temporary", "temporary-table"},
		{"not configured", "not-configured"},
		{"migration-user", "not-configured"},
		{"authenticates with", "credential"},
		{"hash", "credential"},
		{"login", "credential"},
		{"session_track_system_variables", "untrackable"},
		{"more than", "untrackable"},
		{"too large", "untrackable"},
		{"cannot move sessions", "unsupported"},
	} {
		if strings.Contains(l, c.substr) {
			return c.category
		}
	}
	return "other"
}
