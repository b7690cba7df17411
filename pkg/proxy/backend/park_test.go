package backend

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// These tests run with parkAfter at 30 ms (TestMain): every session that
// idles past it parks.

func (s *Session) parked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.park.parked
}

// frozen reports whether both of the session's sockets are bare
// descriptors, out of the runtime's poller (sockconn_linux.go), and its idle
// watch holds no timer, as a parked session's are and does; always true for
// a session on an event loop, whose connections are the loop's and are not
// frozen.
func (s *Session) frozen() bool {
	if s.cfg.Loops != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return isFrozen(s.client.RawConn()) && s.backend != nil && isFrozen(s.backend.RawConn()) &&
		s.watch != nil && s.watch.timerless()
}

// timerless reports whether the watch holds no timer.
func (w *idleWatch) timerless() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.timer == nil
}

// requireAllParked waits until the proxy has n sessions, all parked, with
// both their sockets frozen and no idle-watch timer.
func (p *testProxy) requireAllParked(t *testing.T, n int) []*Session {
	t.Helper()
	var ss []*Session
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		ss = ss[:0]
		for s := range p.sessions {
			if !s.parked() || !s.frozen() {
				return false
			}
			ss = append(ss, s)
		}
		return len(ss) == n
	}, 5*time.Second, 5*time.Millisecond, "every idle session parks")
	return ss
}

// openSessions opens n sessions through p, each on a connection of its own
// that asked for its CONNECTION_ID (ids), closed when the test ends.
func openSessions(t *testing.T, p *testProxy, n int) (*sql.DB, []*sql.Conn, []int64) {
	t.Helper()
	connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	db.SetMaxIdleConns(n)
	ctx := context.Background()
	conns := make([]*sql.Conn, n)
	ids := make([]int64, n)
	for i := range conns {
		conns[i], err = db.Conn(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { conns[i].Close() })
		require.NoError(t, conns[i].QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&ids[i]))
	}
	return db, conns, ids
}

// sessionGoroutines counts the goroutines that run a session's command loop.
func sessionGoroutines() int {
	return strings.Count(allStacks(), "backend.(*Session).serve(")
}

// TestParkedSessionsHoldNoGoroutine: idle sessions park and hold no
// goroutine; each one's next command wakes it and is answered, on the same
// backend connection, and the session parks again.
func TestParkedSessionsHoldNoGoroutine(t *testing.T) {
	b := startBackend(t)
	p := startProxy(t, baseConfig(), b.Addr())
	const n = 100
	db, conns, ids := openSessions(t, p, n)
	ctx := context.Background()
	p.requireAllParked(t, n)
	require.Zero(t, sessionGoroutines(), "a parked session has no goroutine")

	for round := range 2 {
		for i, c := range conns {
			var id int64
			require.NoError(t, c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id), "round %d", round)
			require.Equal(t, ids[i], id, "the same backend connection")
		}
		p.requireAllParked(t, n)
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.NoError(t, db.Close())
	p.requireIdle(t)
}

// TestParkedSessionWakes: every way that reaches an idle session reaches a
// parked one, and the session ends (or goes on) as it would unparked.
func TestParkedSessionWakes(t *testing.T) {
	closeErr := &pmysql.MySQLError{Code: 1053, State: "08S01", Message: "Server shutdown in progress"}
	for _, tc := range []struct {
		name string
		wake func(t *testing.T, s *Session, rc *rawClient, dbl *mysqldouble.Server)
	}{
		{"client quits", func(t *testing.T, _ *Session, rc *rawClient, _ *mysqldouble.Server) {
			rc.pio.ResetSequence()
			rc.write([]byte{pmysql.ComQuit})
			rc.requireClosed()
		}},
		{"client hangs up", func(t *testing.T, _ *Session, rc *rawClient, _ *mysqldouble.Server) {
			require.NoError(t, rc.conn.Close())
		}},
		{"Close", func(t *testing.T, s *Session, rc *rawClient, _ *mysqldouble.Server) {
			s.Close()
			rc.requireClosed()
		}},
		{"RequestClose", func(t *testing.T, s *Session, rc *rawClient, _ *mysqldouble.Server) {
			s.RequestClose()
			rc.requireClosed()
		}},
		{"CloseWithError", func(t *testing.T, s *Session, rc *rawClient, _ *mysqldouble.Server) {
			s.CloseWithError(closeErr)
			require.Equal(t, "Server shutdown in progress", rc.readErr(0).Message)
			rc.requireClosed()
		}},
		{"backend closes", func(t *testing.T, _ *Session, rc *rawClient, dbl *mysqldouble.Server) {
			require.NoError(t, dbl.Close())
			rc.requireClosed()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
			p := startProxy(t, baseConfig(), dbl.Addr())
			rc := dialRaw(t, p.Addr())
			rawNativeLogin(t, rc, "nate", "n4tive")
			s := p.requireAllParked(t, 1)[0]
			tc.wake(t, s, rc, dbl)
			p.requireIdle(t)
			require.True(t, s.Ended())
		})
	}
}

// TestParkedSessionKeepsItsTransaction: a session parked inside a
// transaction is not ended by a drain request (it ends after COMMIT), and
// its statements after the wake run in the same transaction.
func TestParkedSessionKeepsItsTransaction(t *testing.T) {
	b := startBackend(t)
	p := startProxy(t, baseConfig(), b.Addr())
	db, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	defer db.Close()
	ctx := context.Background()
	_, err := conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	s := p.requireAllParked(t, 1)[0]
	require.True(t, s.Info().InTransaction)
	s.RequestClose()
	time.Sleep(3 * parkAfter)
	require.False(t, s.Ended(), "a drain waits for the transaction's end")
	var one int
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT 1").Scan(&one))
	require.True(t, s.Info().InTransaction)
	p.requireAllParked(t, 1)
	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	p.requireIdle(t)
}

// TestParkedSessionMoves: an idle migration moves a parked session (on the
// goroutine Redirect starts); the session stays parked meanwhile, and its
// next statement runs on the new backend with its state.
func TestParkedSessionMoves(t *testing.T) {
	key := tidbKey()
	tp := newTiDBPair(t, startTiDBDouble(t, key, nil), startTiDBDouble(t, key, nil))
	tp.exec(t, "SET @x = 42")
	require.Eventually(t, tp.s.parked, 5*time.Second, 5*time.Millisecond)
	require.True(t, tp.s.frozen(), "the move starts from frozen sockets")
	require.True(t, tp.s.Redirect(tp.target))
	res := tp.log.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	require.Equal(t, tp.target, tp.s.Info().Backend)
	require.Eventually(t, tp.s.parked, 5*time.Second, 5*time.Millisecond, "still parked after the move")
	require.Eventually(t, tp.s.frozen, 5*time.Second, 5*time.Millisecond, "the new backend's socket freezes too")
	require.Equal(t, "42", tp.value(t, "SELECT @x"))
}

// TestParkedSessionKilled: KILL CONNECTION from another session (of the
// same user, on another backend: the proxy closes it) ends a parked one.
func TestParkedSessionKilled(t *testing.T) {
	_, _, p, victim, killer := twoSessionsOnTwoBackends(t)
	p.requireAllParked(t, 2)
	killer.pio.ResetSequence()
	killer.write(append([]byte{pmysql.ComQuery}, fmt.Sprintf("KILL %d", victim.greeting.ConnID)...))
	require.Equal(t, pmysql.OKHeader, killer.read()[0])
	victim.requireClosed()
	killer.pio.ResetSequence()
	killer.write([]byte{pmysql.ComPing})
	require.Equal(t, pmysql.OKHeader, killer.read()[0], "the killer goes on")
}

// TestIdleParkAfter: Config.IdleParkAfter sets when an idle session parks,
// and a negative value keeps every idle session on its goroutine, served as
// before.
func TestIdleParkAfter(t *testing.T) {
	b := startBackend(t)
	open := func(t *testing.T, cfg *Config, n int) (*testProxy, []*sql.Conn) {
		p := startProxy(t, cfg, b.Addr())
		connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "nate", "n4tive", ""))
		require.NoError(t, err)
		db := sql.OpenDB(connector)
		t.Cleanup(func() { db.Close() })
		db.SetMaxIdleConns(n)
		conns := make([]*sql.Conn, n)
		for i := range conns {
			conns[i], err = db.Conn(context.Background())
			require.NoError(t, err)
			t.Cleanup(func() { conns[i].Close() })
			require.NoError(t, conns[i].PingContext(context.Background()))
		}
		return p, conns
	}
	parkedCount := func(p *testProxy) (parked, all int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for s := range p.sessions {
			all++
			if s.parked() {
				parked++
			}
		}
		return parked, all
	}

	t.Run("off", func(t *testing.T) {
		cfg := baseConfig()
		cfg.IdleParkAfter = -1
		p, conns := open(t, cfg, 5)
		time.Sleep(10 * parkAfter) // long past the default of these tests
		parked, all := parkedCount(p)
		require.Equal(t, 5, all)
		require.Zero(t, parked, "no session parks")
		require.GreaterOrEqual(t, sessionGoroutines(), 5, "each idle session keeps its goroutine")
		for _, c := range conns {
			require.NoError(t, c.PingContext(context.Background()))
		}
	})
	t.Run("later", func(t *testing.T) {
		cfg := baseConfig()
		cfg.IdleParkAfter = 20 * parkAfter
		p, conns := open(t, cfg, 5)
		start := time.Now()
		p.requireAllParked(t, 5)
		require.GreaterOrEqual(t, time.Since(start), 10*parkAfter, "not parked at the default")
		for _, c := range conns {
			require.NoError(t, c.PingContext(context.Background()))
		}
	})
}

// TestFrozenSocketsUnderTLS: a socket under TLS freezes and thaws below
// it. A TLS client is not parked, so only its backend socket freezes; a
// plain client over a TLS backend parks with both frozen. Either way the
// statements after the freeze run on the same backend connection.
func TestFrozenSocketsUnderTLS(t *testing.T) {
	certs := testCerts(t)
	clientTLSName := certs.RegisterMySQLTLS(t)
	for _, tc := range []struct {
		name                  string
		clientTLS, backendTLS bool
	}{
		{"TLS client, plain backend", true, false},
		{"plain client, TLS backend", false, true},
		{"TLS client, TLS backend", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := startTLSProxy(t, certs, tc.backendTLS)
			tlsName := ""
			if tc.clientTLS {
				tlsName = clientTLSName
			}
			db, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", tlsName))
			defer db.Close()
			ctx := context.Background()
			var id, again int64
			require.NoError(t, conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
			var s *Session
			require.Eventually(t, func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				for s = range p.sessions {
				}
				if s == nil {
					return false
				}
				if p.cfg.Loops != nil {
					return true // sessions on event loops keep their connections
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				return isFrozen(s.backend.RawConn()) && isFrozen(s.client.RawConn()) == !tc.clientTLS
			}, 5*time.Second, 5*time.Millisecond, "the backend's socket freezes, and the client's when it parks")
			if p.cfg.Loops == nil {
				require.Equal(t, !tc.clientTLS, s.parked())
			}
			for range 3 {
				require.NoError(t, conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&again))
				require.Equal(t, id, again, "the same backend connection")
				time.Sleep(3 * parkAfter)
			}
		})
	}
}
