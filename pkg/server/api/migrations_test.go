package api

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// fakeMigrations drains on t0's clock and reports fixed recent moves.
type fakeMigrations struct {
	mu     sync.Mutex
	proxy  *fakeProxy
	drains map[string]router.Drain
	asked  []time.Duration // timeouts Drain was called with
}

var _ Migrations = (*fakeMigrations)(nil)

func newFakeMigrations(p *fakeProxy) *fakeMigrations {
	return &fakeMigrations{proxy: p, drains: map[string]router.Drain{}}
}

func (m *fakeMigrations) Drain(id string, timeout time.Duration) (router.Drain, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, timeout)
	if m.proxy.Topology().Backend(id) == nil {
		return router.Drain{}, fmt.Errorf("%w: %s is not a backend of any cluster", router.ErrUnknownBackend, id)
	}
	d := router.Drain{ID: id, Since: t0, Deadline: t0.Add(timeout)}
	m.drains[id] = d
	return d, nil
}

func (m *fakeMigrations) Undrain(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.drains[id]
	delete(m.drains, id)
	return ok
}

func (m *fakeMigrations) Drains() map[string]router.Drain {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]router.Drain{}
	for k, v := range m.drains {
		out[k] = v
	}
	return out
}

func (m *fakeMigrations) DrainTimeout() time.Duration { return time.Minute }

func (m *fakeMigrations) Recent() ([]router.MigrationEvent, map[string]int64) {
	return []router.MigrationEvent{
			{Time: t0, SessionID: 7, Cluster: "east", From: "10.0.0.2:4000", Reason: router.ReasonDrain,
				Result: router.ResultClosed, Error: "holds GET_LOCK"},
			{Time: t0.Add(-time.Second), SessionID: 1, Cluster: "east", From: "10.0.0.2:4000", To: "10.0.0.1:4000",
				Reason: router.ReasonUnhealthy, Result: router.ResultOK, Duration: 2345 * time.Microsecond},
		},
		map[string]int64{router.ResultOK: 1, router.ResultClosed: 1}
}

func (m *fakeMigrations) Pending() int { return 3 }

func (m *fakeMigrations) timeouts() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Duration(nil), m.asked...)
}

const drainPath = "/api/v1/backends/east/10.0.0.1:4000/drain"

func drainEast(t *testing.T, f *fixture) {
	_, err := f.migr.Drain("east/10.0.0.1:4000", 90*time.Second)
	require.NoError(t, err)
}

func migrationGoldenCases() []goldenCase {
	m := []fixtureOpt{withMigrations}
	return []goldenCase{
		{name: "drain_post", opts: m, req: request{method: http.MethodPost, path: drainPath + "?timeout=90s"}.withToken(token),
			status: http.StatusOK,
			check: func(t *testing.T, f *fixture) {
				require.Equal(t, []time.Duration{90 * time.Second}, f.migr.timeouts())
			}},
		{name: "drain_post_default_timeout", opts: m, req: request{method: http.MethodPost, path: drainPath}.withToken(token),
			status: http.StatusOK,
			check: func(t *testing.T, f *fixture) {
				require.Equal(t, []time.Duration{time.Minute}, f.migr.timeouts(), "balance.backend-drain-timeout")
			}},
		{name: "drain_post_unauthorized", opts: m, req: request{method: http.MethodPost, path: drainPath, anonymous: true},
			status: http.StatusUnauthorized,
			check: func(t *testing.T, f *fixture) {
				require.Empty(t, f.migr.timeouts(), "a refused request must not drain")
			}},
		{name: "drain_post_bad_timeout", opts: m, req: request{method: http.MethodPost, path: drainPath + "?timeout=soon"}.withToken(token),
			status: http.StatusBadRequest},
		{name: "drain_post_unknown_backend", opts: m,
			req:    request{method: http.MethodPost, path: "/api/v1/backends/west/10.0.0.1:4000/drain"}.withToken(token),
			status: http.StatusNotFound},
		{name: "drain_delete", opts: m, setup: drainEast,
			req: request{method: http.MethodDelete, path: drainPath}.withToken(token), status: http.StatusOK,
			check: func(t *testing.T, f *fixture) { require.Empty(t, f.migr.Drains()) }},
		{name: "drain_delete_not_drained", opts: m,
			req: request{method: http.MethodDelete, path: drainPath}.withToken(token), status: http.StatusOK},
		{name: "drain_get_not_allowed", opts: m, req: request{path: drainPath}, status: http.StatusMethodNotAllowed},
		{name: "backends_drained", opts: m, setup: drainEast, req: request{path: "/api/v1/backends"}, status: http.StatusOK},
		{name: "migrations", opts: m, setup: drainEast, req: request{path: "/api/v1/migrations"}, status: http.StatusOK},
		{name: "migrations_absent", req: request{path: "/api/v1/migrations"}, status: http.StatusNotFound},
	}
}

func TestDrainTimeoutBounds(t *testing.T) {
	f := newFixture(t, withMigrations)
	rec := f.do(t, request{method: http.MethodPost, path: drainPath + "?timeout=-5s"}.withToken(token))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	rec = f.do(t, request{method: http.MethodPost, path: drainPath + "?timeout=48h"}.withToken(token))
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Empty(t, f.migr.timeouts())
}
