package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestFailoverKill9: kill -9 one of two backends while 50 idle sessions and
// 8 busy autocommit clients run. The idle sessions' next queries succeed on
// the survivor; each busy client sees at most its in-flight statement fail,
// once, with a clean server-range error, then carries on on the same
// connection.
func TestFailoverKill9(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, 3*time.Minute)
	db := nativeDB(t, mp.addr())
	db.SetMaxIdleConns(100)
	survivor := strconv.Itoa(mp.m[1].Port)

	idle := make([]*sql.Conn, 50)
	onVictim := 0
	for i := range idle {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		idle[i] = c
		if queryString(t, c, "SELECT @@port") != survivor {
			onVictim++
		}
	}
	require.Positive(t, onVictim, "some idle sessions are on the backend that dies")

	const busy = 8
	var stop atomic.Bool
	var wg sync.WaitGroup
	type result struct {
		ok          int
		errs        []error
		okAfterErr  int
		lastPort    string
		victimStart bool
	}
	results := make([]result, busy)
	for i := range busy {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		results[i].victimStart = queryString(t, c, "SELECT @@port") != survivor
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			for !stop.Load() {
				var v, port string
				err := c.QueryRowContext(context.Background(), "SELECT v, @@port FROM t WHERE id = 1").Scan(&v, &port)
				if err != nil {
					r.errs = append(r.errs, err)
					if len(r.errs) > 3 {
						return
					}
					continue
				}
				r.ok++
				r.lastPort = port
				if len(r.errs) > 0 {
					r.okAfterErr++
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	mp.m[0].Kill()
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	for i, r := range results {
		require.LessOrEqual(t, len(r.errs), 1, "busy client %d: at most its in-flight statement fails: %v", i, r.errs)
		for _, err := range r.errs {
			var me *mysql.MySQLError
			require.True(t, errors.As(err, &me), "busy client %d: a clean server error, not %v", i, err)
			require.Equal(t, pmysql.ErNetReadError, me.Number, "busy client %d: %v", i, err)
		}
		require.Positive(t, r.okAfterErr+r.ok, "busy client %d carried on", i)
		require.Equal(t, survivor, r.lastPort, "busy client %d ends on the survivor", i)
		t.Logf("busy client %d: started on victim %v, %d ok, errors %v", i, r.victimStart, r.ok, r.errs)
	}
	for i, c := range idle {
		require.Equal(t, survivor, queryString(t, c, "SELECT @@port"), "idle session %d goes on on the survivor", i)
	}
	t.Logf("%d of 50 idle sessions were on the killed backend", onVictim)
}

// TestFailoverInTransaction: a session idle inside a transaction when its
// backend dies is never re-established: its next statement gets one clean
// error saying the transaction was rolled back, without a hang, and the pool
// then works on the survivor.
func TestFailoverInTransaction(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, time.Minute)
	db, conn := mp.nativeConn(t, ctx)
	port := queryString(t, conn, "SELECT @@port")
	victim := mp.m[0]
	if strconv.Itoa(mp.m[1].Port) == port {
		victim = mp.m[1]
	}
	_, err := conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "UPDATE t SET v = v + 1 WHERE id = 1")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	victim.Kill()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	_, err = conn.ExecContext(ctx, "UPDATE t SET v = v + 1 WHERE id = 2")
	require.Less(t, time.Since(start), 10*time.Second, "no hang")
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me), "a clean server error, not %v", err)
	require.Equal(t, pmysql.ErNetReadError, me.Number)
	require.Contains(t, me.Message, "transaction was rolled back")
	require.NotEqual(t, port, queryString(t, db, "SELECT @@port"), "the pool goes on on the survivor")
}

// TestIdleKillIsNotFailover: a migratable session whose backend connection
// is KILLed while idle is closed, as a direct connection would be, and not
// re-established elsewhere: the server is alive, the end was on purpose.
func TestIdleKillIsNotFailover(t *testing.T) {
	mp := startMigrationPair(t, true)
	c, err := dialRaw(t, mp.addr(), testenv.NativeUser, testenv.NativePassword, "test")
	require.NoError(t, err)
	row := c.query("SELECT CONNECTION_ID(), @@port")[0]
	s := mp.session(t)
	ok, why := s.Migratable()
	require.True(t, ok, why)
	m := mp.m[0]
	if strconv.Itoa(mp.m[1].Port) == row[1] {
		m = mp.m[1]
	}
	time.Sleep(100 * time.Millisecond)
	_, err = m.RootDB(t).Exec("KILL " + row[0])
	require.NoError(t, err)
	require.NoError(t, c.io.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.io.ReadPacket(0)
	require.Error(t, err, "the client is closed")
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "closed, not left open: %v", err)
	require.Eventually(t, func() bool { return len(mp.srv.ClusterSessions("main")) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestIdleFailoverAfterTheServerRestarted: a session idle when its backend
// is SIGKILLed fails over at its next command even when, by then, the
// server has restarted on the same port and a move request (the
// rebalancer's, here Redirect) woke the session's idle watch again. The
// soak (test/soak) found the proxy closing such sessions minutes after the
// kill: the watch judged the dead connection a second time, found the
// restarted server listening and took the old end for a KILL.
func TestIdleFailoverAfterTheServerRestarted(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, 2*time.Minute)
	_, conn := mp.nativeConn(t, ctx)
	port := queryString(t, conn, "SELECT @@port")
	s := mp.session(t)
	ok, why := s.Migratable()
	require.True(t, ok, why)
	survivor := mp.other(s)
	victim := mp.m[0]
	if strconv.Itoa(mp.m[1].Port) == port {
		victim = mp.m[1]
	}

	time.Sleep(100 * time.Millisecond)
	victim.Kill()
	time.Sleep(time.Second) // the idle watch finds the server dead
	require.NoError(t, victim.Restart())
	require.True(t, s.Redirect(survivor))
	time.Sleep(time.Second) // the watch, re-armed after the request, has run

	var got string
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT @@port").Scan(&got), "the idle session was closed instead of failing over")
	require.Equal(t, mp.portOf(survivor), got)
}

// TestKillsDuringTransactionsGiveCleanErrors: clients run short
// transactions in a loop, each on a pool of one connection, while the two
// backends are killed in turn. A transaction that loses its backend gets one
// clean server-range error (1158) and its connection closes; nothing else
// may fail otherwise than with a server error. The pool keeps a connection
// whose COMMIT got that error (a server error does not invalidate it), and
// checks it for EOF before the next BEGIN: the close must reach the client
// with the error. On an event loop it once came later, when the ending
// session's Task had been scheduled off the loop, and about 1 in 30 such
// BEGINs read a reset ("invalid connection"; the soak saw one too).
func TestKillsDuringTransactionsGiveCleanErrors(t *testing.T) {
	mp := startMigrationPair(t, true)
	for _, m := range mp.m {
		_, err := m.RootDB(t).Exec("CREATE TABLE test.ledger (c INT, s INT, PRIMARY KEY (c, s))")
		require.NoError(t, err)
	}
	cfg := testenv.MySQLConfig(mp.addr(), testenv.NativeUser, testenv.NativePassword)
	cfg.DBName, cfg.InterpolateParams = "test", true
	cfg.ReadTimeout, cfg.WriteTimeout = 10*time.Second, 10*time.Second
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var acked, clean atomic.Int64
	var mu sync.Mutex
	var unclean []string
	for w := range 16 {
		wg.Go(func() {
			db := sql.OpenDB(connector)
			defer db.Close()
			db.SetMaxOpenConns(1)
			prev := "none"
			for seq := 0; !stop.Load(); seq++ {
				err := ledgerTxn(db, w, seq)
				var me *mysql.MySQLError
				switch {
				case err == nil:
					acked.Add(1)
				case errors.As(err, &me):
					clean.Add(1)
				default:
					mu.Lock()
					unclean = append(unclean, err.Error()+" (after: "+prev+")")
					mu.Unlock()
				}
				prev = "ok"
				if err != nil {
					prev = err.Error()
				}
			}
		})
	}
	for round := range 8 {
		time.Sleep(1500 * time.Millisecond)
		m := mp.m[round%2]
		m.Kill()
		time.Sleep(700 * time.Millisecond)
		require.NoError(t, m.Restart())
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d transactions committed, %d clean errors", acked.Load(), clean.Load())
	require.Empty(t, unclean, "only server errors")
	require.Positive(t, clean.Load(), "the kills met transactions")
	require.Positive(t, acked.Load())
}

// ledgerTxn runs one short transaction; the error says at which step it
// failed.
func ledgerTxn(db *sql.DB, client, seq int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO ledger VALUES (?, ?)", client, seq); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("insert: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET v = v + 1 WHERE id = 1"); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("update: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
