package backend

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// TestFailoverReportFollowsPlacement: a session re-established after its
// backend died has published its new backend by the time the rebalancer
// hears of the failover (as after a migration: TestMigrationReportFollowsPlacement).
// Two MySQL doubles stand in for MariaDB: they answer the migration
// account's read of the stored native hash; closing one is a backend that
// died under an idle session.
func TestFailoverReportFollowsPlacement(t *testing.T) {
	users := map[string]string{"nate": "n4tive", "migrator": "m1g"}
	var doubles [2]*mysqldouble.Server
	for i := range doubles {
		doubles[i] = mysqldouble.Start(t, mysqldouble.Config{NativeUsers: users, RSAKey: backendKey()})
	}
	obs := &placementAtReport{}
	cfg := baseConfig()
	cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "m1g", true }
	cfg.Migrations = obs
	p := startProxy(t, cfg, doubles[0].Addr(), doubles[1].Addr())
	_, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	ctx := context.Background()
	require.NoError(t, conn.PingContext(ctx))
	s := p.onlySession(t)
	obs.s.Store(s)
	ok, why := s.Migratable()
	require.True(t, ok, why)

	home := s.Info().Backend
	dead, survivor := doubles[0], doubles[1]
	if home == doubles[1].Addr() {
		dead, survivor = doubles[1], doubles[0]
	}
	require.NoError(t, dead.Close())
	// The next command runs on the survivor. (Should it reach the session
	// before the idle watch saw the backend die, it gets one clean error
	// and the one after it fails over: either way a failover is reported.)
	require.Eventually(t, func() bool {
		var one int
		return conn.QueryRowContext(ctx, "SELECT 1").Scan(&one) == nil
	}, 5*time.Second, 20*time.Millisecond, "the session goes on on the survivor")
	res := obs.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	require.Equal(t, survivor.Addr(), res.To)
	require.Equal(t, survivor.Addr(), s.Info().Backend)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, []string{survivor.Addr()}, obs.seen, "Info at the report shows the new backend")
}
