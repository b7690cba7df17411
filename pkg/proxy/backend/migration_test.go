package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/router/routertest"
)

// foreignClaimer claims every target in another cluster: a router bug the
// session must not follow.
type foreignClaimer struct {
	*router.Balanced
	other *router.Balanced
}

func (f foreignClaimer) Claim(_, addr string) (router.Lease, error) {
	return f.other.Claim("other", addr)
}

func (p *testProxy) onlySession(t *testing.T) *Session {
	t.Helper()
	var s *Session
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for ss := range p.sessions {
			s = ss
		}
		return len(p.sessions) == 1
	}, 5*time.Second, 10*time.Millisecond)
	return s
}

// TestRedirectNeverLeavesTheCluster: a target outside the session's
// cluster is refused, whether the router refuses to claim it or (a router
// bug) hands out a lease of another cluster; the session stays, its client
// unaware, and the observer hears "refused".
func TestRedirectNeverLeavesTheCluster(t *testing.T) {
	b1, b2 := startBackend(t), startBackend(t)
	for _, tc := range []struct {
		name    string
		foreign bool
		wantErr string
	}{
		{name: "router refuses", wantErr: "is not a backend of cluster test"},
		{name: "router hands out another cluster", foreign: true, wantErr: "is not in cluster test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &resultLog{}
			cfg := baseConfig()
			cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "pw", true }
			cfg.Migrations = rec
			p := startProxy(t, cfg, b1.Addr())
			if tc.foreign {
				p.mu.Lock()
				p.route = foreignClaimer{Balanced: p.router, other: routertest.NewForAddrs("other", []string{b2.Addr()})}
				p.mu.Unlock()
			}
			db, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
			require.NoError(t, conn.PingContext(context.Background()))
			s := p.onlySession(t)
			ok, why := s.Migratable()
			require.True(t, ok, why)
			require.True(t, s.Redirect(b2.Addr()))
			require.Eventually(t, func() bool { return len(rec.results()) == 1 }, 5*time.Second, 10*time.Millisecond)
			r := rec.results()[0]
			require.Equal(t, MigrationRefused, r.Result)
			require.Equal(t, "test", r.Cluster)
			require.Equal(t, b1.Addr(), r.From)
			require.Equal(t, b2.Addr(), r.To)
			require.ErrorContains(t, r.Err, tc.wantErr)
			var one int
			require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&one))
			require.Equal(t, b1.Addr(), s.Info().Backend)
			require.NoError(t, conn.Close())
			require.NoError(t, db.Close())
			p.requireIdle(t)
		})
	}
}

// TestRedirectRequests: Redirect is refused when the session is asked to go
// elsewhere already, and Migratable names a missing migration account.
func TestRedirectRequests(t *testing.T) {
	b1 := startBackend(t)
	p := startProxy(t, baseConfig(), b1.Addr())
	db, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	require.NoError(t, conn.PingContext(context.Background()))
	s := p.onlySession(t)
	ok, why := s.Migratable()
	require.False(t, ok)
	require.Equal(t, "migration is not configured", why)
	require.NoError(t, conn.Close())
	require.NoError(t, db.Close())
	p.requireIdle(t)
	require.False(t, s.Redirect(b1.Addr()), "an ended session takes no request")
}

// TestMigratableSessionOutlivesHandshakeTimeout: the proxy's own statement
// after login (session tracking for migration) runs under the handshake
// deadline, which must not stay on the backend connection.
func TestMigratableSessionOutlivesHandshakeTimeout(t *testing.T) {
	b := startBackend(t)
	cfg := baseConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "pw", true }
	p := startProxy(t, cfg, b.Addr())
	_, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	s := p.onlySession(t)
	require.Eventually(t, func() bool { ok, _ := s.Migratable(); return ok }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(2 * cfg.HandshakeTimeout)
	var one int
	require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&one))
}

// TestLoginKeepsWhatOnlyAMoveNeedsOnlyWhenItCanMove: the login's recorded
// exchange (the backend's scramble and the client's answer, from which a
// move recovers the credential) is kept only by a session that can move.
// Without a migration account the session drops it at login, with the
// scramble of the backend exchange: secrets are not kept once they are not
// needed, and an idle session holds no memory for them.
func TestLoginKeepsWhatOnlyAMoveNeedsOnlyWhenItCanMove(t *testing.T) {
	// kept reads the session's migration record under cmdMu, which an idle
	// session gives up while it waits for its client.
	kept := func(s *Session) (rec *migRecord, salt []byte) {
		s.cmdMu.Lock()
		defer s.cmdMu.Unlock()
		return s.mig.rec, s.backendSalt
	}
	for _, movable := range []bool{false, true} {
		t.Run(fmt.Sprintf("movable=%v", movable), func(t *testing.T) {
			b := startBackend(t)
			cfg := baseConfig()
			if movable {
				cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "pw", true }
			}
			p := startProxy(t, cfg, b.Addr())
			_, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
			var one int
			require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&one))
			s := p.onlySession(t)
			rec, salt := kept(s)
			require.Nil(t, salt, "the backend's scramble outlived the login")
			if !movable {
				require.Nil(t, rec, "a session that cannot move kept its login exchange")
				ok, _ := s.Migratable()
				require.False(t, ok)
				return
			}
			require.NotNil(t, rec)
			require.True(t, rec.cred.captured(), "a movable session lost its login exchange")
			require.Eventually(t, func() bool { ok, _ := s.Migratable(); return ok }, 5*time.Second, 10*time.Millisecond)
		})
	}
}

// placementAtReport records the backend the session's Info shows at the
// moment each migration result is reported.
type placementAtReport struct {
	resultLog
	s    atomic.Pointer[Session]
	mu   sync.Mutex
	seen []string
}

func (p *placementAtReport) MigrationDone(r MigrationResult) {
	if s := p.s.Load(); s != nil {
		p.mu.Lock()
		p.seen = append(p.seen, s.Info().Backend)
		p.mu.Unlock()
	}
	p.resultLog.MigrationDone(r)
}

// TestMigrationReportFollowsPlacement: when the rebalancer hears that a
// session moved, the session's Info already shows the new backend. The
// rebalancer forgets the pending move on the report; had Info still shown
// the old backend, its next round would ask the session to move again
// (refused: "already on" the target) and count it on the wrong backend,
// which the migration benchmark saw as refusals. TiDB doubles stand in for
// the backends (the report path is the same for every kind).
func TestMigrationReportFollowsPlacement(t *testing.T) {
	key := tidbKey()
	obs := &placementAtReport{}
	tp := newTiDBPairObserved(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil), obs, &obs.resultLog)
	obs.s.Store(tp.s)
	tp.exec(t, "SET @x = 1")

	require.True(t, tp.s.Redirect(tp.target))
	require.Equal(t, MigrationOK, tp.log.wait(t, 1).Result)
	// A refused move (already there) reports too; Info shows where it stays.
	require.True(t, tp.s.Redirect(tp.target))
	require.Equal(t, MigrationRefused, tp.log.wait(t, 2).Result)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, []string{tp.target, tp.target}, obs.seen)
}
