package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"go.uber.org/zap"
	zapobs "go.uber.org/zap/zaptest/observer"
)

// TiDB cannot run in this repository's tests (it is not installable here):
// these run the proxy's TiDB migration path (SHOW SESSION_STATES, login with
// tidb_session_token, SET SESSION_STATES) against test/mysqldouble, which
// speaks that protocol with TiDB's error cases.

var tidbKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// skewClock is a TiDB double's clock that a test can move forward.
type skewClock struct{ d atomic.Int64 }

func (c *skewClock) now() time.Time { return time.Now().Add(time.Duration(c.d.Load())) }

func startTiDBDouble(t *testing.T, key *ecdsa.PrivateKey, clk *skewClock) *mysqldouble.Server {
	t.Helper()
	tc := &mysqldouble.TiDBConfig{SigningKey: key}
	if clk != nil {
		tc.Now = clk.now
	}
	return mysqldouble.Start(t, mysqldouble.Config{
		NativeUsers:   map[string]string{"app": "pw"},
		ServerVersion: "8.0.11-TiDB-v7.5.0",
		RSAKey:        backendKey(),
		TiDB:          tc,
	})
}

// resultLog records the migration results the sessions report.
type resultLog struct {
	mu  sync.Mutex
	res []MigrationResult
}

func (l *resultLog) MigrationDone(r MigrationResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res = append(l.res, r)
}

// results is a copy of what the sessions reported so far.
func (l *resultLog) results() []MigrationResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]MigrationResult(nil), l.res...)
}

func (l *resultLog) wait(t *testing.T, n int) MigrationResult {
	t.Helper()
	var last MigrationResult
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.res) < n {
			return false
		}
		last = l.res[n-1]
		return true
	}, 10*time.Second, 5*time.Millisecond)
	return last
}

// tidbPair is a proxy in front of two TiDB doubles of one cluster, and one
// client connection through it.
type tidbPair struct {
	p      *testProxy
	a, b   *mysqldouble.Server
	log    *resultLog
	conn   *sql.Conn
	s      *Session
	home   string // the backend the session is on
	target string // the other one
}

// newTiDBPair connects a client through a proxy in front of home and
// target, and makes sure its session is on home (the router alternates
// between them, so a second connection lands on the other one).
func newTiDBPair(t *testing.T, home, target *mysqldouble.Server) *tidbPair {
	t.Helper()
	log := &resultLog{}
	return newTiDBPairObserved(t, home, target, log, log)
}

// newTiDBPairObserved is newTiDBPair with obs told of the migrations; log
// must be the results obs keeps.
func newTiDBPairObserved(t *testing.T, home, target *mysqldouble.Server, obs MigrationObserver, log *resultLog) *tidbPair {
	t.Helper()
	cfg := baseConfig()
	cfg.Migrations = obs
	p := startProxy(t, cfg, home.Addr(), target.Addr())
	connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "app", "pw", ""))
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	tp := &tidbPair{p: p, a: home, b: target, log: log, home: home.Addr(), target: target.Addr()}
	for range 2 {
		conn, err := db.Conn(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		var id int64
		require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id))
		p.mu.Lock()
		for s := range p.sessions {
			if s.Info().Backend == home.Addr() && tp.s == nil {
				tp.s, tp.conn = s, conn
			}
		}
		p.mu.Unlock()
		if tp.s != nil {
			return tp
		}
	}
	require.FailNow(t, "no session reached the home backend")
	return nil
}

func (tp *tidbPair) server(addr string) *mysqldouble.Server {
	if addr == tp.a.Addr() {
		return tp.a
	}
	return tp.b
}

func (tp *tidbPair) exec(t *testing.T, q string) {
	t.Helper()
	_, err := tp.conn.ExecContext(context.Background(), q)
	require.NoError(t, err, q)
}

func (tp *tidbPair) value(t *testing.T, q string) string {
	t.Helper()
	var v sql.NullString
	require.NoError(t, tp.conn.QueryRowContext(context.Background(), q).Scan(&v), q)
	return v.String
}

func TestTiDBMigrationMovesTheSessionWithItsState(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	ok, why := tp.s.Migratable()
	require.True(t, ok, "a TiDB session needs no migration account: %s", why)

	tp.exec(t, "USE shop")
	tp.exec(t, "SET SESSION sql_mode = 'ANSI_QUOTES'")
	tp.exec(t, `SET @x = 42, @s = 'it''s a "quote" \\ here'`)
	stmt, err := tp.conn.PrepareContext(context.Background(), "SELECT ? FROM t")
	require.NoError(t, err)
	defer func() { _ = stmt.Close() }()

	to := tp.server(tp.target)
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	require.Equal(t, tp.home, res.From)
	require.Equal(t, tp.target, res.To)
	require.Equal(t, tp.target, tp.s.Info().Backend)
	require.Equal(t, int64(1), to.Stats().TokenLogins, "logged in with tidb_session_token")
	require.Equal(t, int64(1), to.Stats().StatesRestored, "SET SESSION_STATES ran on the new backend")

	// The client sees the same session on the new backend.
	require.Equal(t, "shop", tp.value(t, "SELECT DATABASE()"))
	require.Equal(t, "ANSI_QUOTES", tp.value(t, "SELECT @@sql_mode"))
	require.Equal(t, "42", tp.value(t, "SELECT @x"))
	require.Equal(t, `it's a "quote" \ here`, tp.value(t, "SELECT @s"))
	_, err = stmt.ExecContext(context.Background(), 1)
	require.NoError(t, err, "the statement prepared before the move runs under its old id")
}

func TestTiDBMigrationRefused8146StaysPut(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	tp.exec(t, "SET @x = 7")
	tp.exec(t, "LOCK TABLES t WRITE")
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationRefused, res.Result)
	require.ErrorContains(t, res.Err, "cannot migrate the current session")
	require.ErrorContains(t, res.Err, "table locks")
	require.Equal(t, tp.home, tp.s.Info().Backend)
	require.Zero(t, tp.server(tp.target).Stats().TokenLogins)
	require.Equal(t, "7", tp.value(t, "SELECT @x"), "the session goes on where it was, unaware")

	// Once the lock is gone it moves.
	tp.exec(t, "UNLOCK TABLES")
	require.True(t, tp.s.Redirect(tp.target))
	require.Equal(t, MigrationOK, tp.log.wait(t, 2).Result)
	require.Equal(t, "7", tp.value(t, "SELECT @x"))
}

func TestTiDBMigrationTokenRefusedStaysPut(t *testing.T) {
	key := tidbKey()
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	var late skewClock
	cases := []struct {
		name   string
		target func(t *testing.T) *mysqldouble.Server
		result string
		errMsg string
	}{
		{"expired token", func(t *testing.T) *mysqldouble.Server {
			late.d.Store(int64(2 * mysqldouble.TokenLifetime))
			return startTiDBDouble(t, key, &late)
		}, MigrationFailed, "Access denied"},
		{"token from another cluster's key", func(t *testing.T) *mysqldouble.Server {
			return startTiDBDouble(t, other, nil)
		}, MigrationFailed, "Access denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := startTiDBDouble(t, key, nil)
			target := tc.target(t)
			tp := newTiDBPair(t, home, target)
			tp.exec(t, "SET @x = 9")
			require.True(t, tp.s.Redirect(tp.target))
			res := tp.log.wait(t, 1)
			require.Equal(t, tc.result, res.Result)
			require.ErrorContains(t, res.Err, tc.errMsg)
			require.Equal(t, home.Addr(), tp.s.Info().Backend)
			require.Equal(t, int64(1), target.Stats().TokenFailures)
			require.Equal(t, "9", tp.value(t, "SELECT @x"), "the session goes on where it was, unaware")
		})
	}
}

func TestTiDBMigrationEmptyTokenRefused(t *testing.T) {
	tp := newTiDBPair(t, startTiDBDouble(t, nil, nil), startTiDBDouble(t, nil, nil))
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationRefused, res.Result)
	require.ErrorContains(t, res.Err, "empty session token")
	require.Equal(t, tp.home, tp.s.Info().Backend)
	require.Equal(t, "1", tp.value(t, "SELECT 1"))
}

func TestTiDBNotMigratableInTransaction(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	tp.exec(t, "BEGIN")
	require.Eventually(t, func() bool { return !tp.s.Info().Migratable }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "in a transaction", tp.s.Info().NotMigratableReason)
	// A redirect waits for the transaction's end.
	require.True(t, tp.s.Redirect(tp.target))
	tp.exec(t, "SELECT 1")
	require.Equal(t, tp.home, tp.s.Info().Backend)
	tp.exec(t, "COMMIT")
	require.Equal(t, MigrationOK, tp.log.wait(t, 1).Result)
	require.Equal(t, tp.target, tp.s.Info().Backend)
}

func TestSQLLiteral(t *testing.T) {
	require.Equal(t, `'a''b\\c\n\0\Z'`, sqlLiteral("a'b\\c\n\x00\x1a", false))
	require.Equal(t, `'a''b\c'`, sqlLiteral(`a'b\c`, true))
	require.True(t, isTiDB("8.0.11-TiDB-v7.5.0"))
	require.False(t, isTiDB("10.11.6-MariaDB-0+deb12u1"))
}

// TestIdleMoveReleasesBuffers: a session moved while idle gives back the
// pooled buffers the move used on its new backend, as the session loop does
// before every wait. The soak (test/soak) found each idle session the
// rebalancer had moved holding 32 KiB until its client spoke again.
func TestIdleMoveReleasesBuffers(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	tp.exec(t, "SET @x = 1")
	time.Sleep(10 * idleWatchDelay) // idle: the move runs off the session goroutine
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	// cmdMu is the idle move's until it is done.
	tp.s.cmdMu.Lock()
	held := tp.s.backend.HoldsPooledBuffers()
	tp.s.cmdMu.Unlock()
	require.False(t, held, "the moved idle session still holds a pooled buffer")
	require.Equal(t, "1", tp.value(t, "SELECT @x"))
}

// TestSessionLogFields: what a session logs carries its connection id,
// client, user and backend, added when the message is written; after a move
// the backend is the new one, once.
func TestSessionLogFields(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	core, logs := zapobs.New(zap.DebugLevel)
	tp.s.cmdMu.Lock() // the session is idle; its next command takes cmdMu
	tp.s.lg = zap.New(core)
	tp.s.cmdMu.Unlock()
	tp.exec(t, "SET @x = 1")
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	tp.s.Close()
	require.Eventually(t, func() bool { return logs.FilterMessage("session ended").Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	e := logs.FilterMessage("session ended").All()[0]
	var keys []string
	for _, f := range e.Context {
		keys = append(keys, f.Key)
	}
	require.Equal(t, []string{"conn", "client", "user", "backend", "error"}, keys)
	fields := e.ContextMap()
	require.EqualValues(t, tp.s.id, fields["conn"])
	require.Equal(t, "app", fields["user"])
	require.Equal(t, observer.BackendID("test", tp.target), fields["backend"], "the backend it moved to")
	require.Contains(t, fields["client"], "127.0.0.1:")
}
