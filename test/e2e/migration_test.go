package e2e

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/server"
	"github.com/switchyard-db/switchyard/test/testenv"
)

const (
	migUser = "migrator"
	migPass = "mig-pw"
)

// migrationPair is two MariaDB servers with the same users in one cluster,
// served by an in-process proxy whose sessions the test can reach.
type migrationPair struct {
	m   [2]*testenv.MariaDB
	srv *server.Server
	cm  *cfgmgr.Manager
	// base is the config without the migration account.
	base string
}

// startMigrationPair starts two servers and a proxy with a migration account
// (when withAccount) in front of both.
func startMigrationPair(t *testing.T, withAccount bool) *migrationPair {
	t.Helper()
	mp := &migrationPair{}
	var wg sync.WaitGroup
	for i := range mp.m {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mp.m[i] = testenv.StartMariaDB(t, testenv.MariaDBOptions{})
		}()
	}
	wg.Wait()
	for _, m := range mp.m {
		root := m.RootDB(t)
		for _, q := range []string{
			fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", migUser, migPass),
			fmt.Sprintf("GRANT SELECT ON mysql.* TO '%s'@'%%'", migUser),
			"CREATE TABLE test.t (id INT PRIMARY KEY, v INT)",
			"INSERT INTO test.t VALUES (1, 10), (2, 20)",
		} {
			_, err := root.Exec(q)
			require.NoError(t, err, q)
		}
	}
	account := ""
	if withAccount {
		account = fmt.Sprintf("migration-user = %q\nmigration-password = %q\n", migUser, migPass)
	}
	base := fmt.Sprintf(`[proxy]
addr = "127.0.0.1:0"
[api]
addr = ""
[health-check]
interval = "500ms"
# These tests move sessions by hand; the rebalancer would even the load out
# behind their back.
[balance]
enable-rebalance = false
[[cluster]]
name = "main"
instances = [%q, %q]
`, mp.m[0].Addr(), mp.m[1].Addr())
	mp.base = base
	text := testenv.WithEventLoops(base + account)
	cfg, err := config.Parse([]byte(text))
	require.NoError(t, err)
	lg := zaptest.NewLogger(t)
	cm := cfgmgr.New(lg, "")
	cm.Init(cfg, []byte(text))
	mp.cm = cm
	mp.srv, err = server.New(lg, cm)
	require.NoError(t, err)
	require.NoError(t, mp.srv.Start(context.Background()))
	t.Cleanup(mp.srv.Close)
	require.Eventually(t, func() bool {
		v := mp.srv.Topology().Cluster("main")
		if v == nil || len(v.Backends) != 2 {
			return false
		}
		for _, b := range v.Backends {
			if !b.Health.Healthy {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "both backends healthy")
	return mp
}

func (mp *migrationPair) addr() string { return mp.srv.SQLAddr().String() }

// session returns the only session of the cluster.
func (mp *migrationPair) session(t *testing.T) *backend.Session {
	t.Helper()
	var ss []*backend.Session
	require.Eventually(t, func() bool {
		ss = mp.srv.ClusterSessions("main")
		return len(ss) == 1
	}, 10*time.Second, 10*time.Millisecond)
	return ss[0]
}

// other is the address of the backend a session is not on.
// nativeConn opens a pool of the native user through the pair's proxy and
// one session of it; both are closed when the test ends.
func (mp *migrationPair) nativeConn(t *testing.T, ctx context.Context) (*sql.DB, *sql.Conn) {
	t.Helper()
	db := nativeDB(t, mp.addr())
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return db, conn
}

// moveSession redirects the pair's only session to the other backend and
// waits until it is there, which it returns.
func (mp *migrationPair) moveSession(t *testing.T) string {
	t.Helper()
	s := mp.session(t)
	target := mp.other(s)
	require.True(t, s.Redirect(target))
	require.Eventually(t, func() bool { return s.Info().Backend == target }, 20*time.Second, 10*time.Millisecond)
	return target
}

// requireCannotMove asserts that conn's session is not migratable, for a
// reason that contains why, and that a Redirect leaves it where it is while
// its client goes on unaware.
func (mp *migrationPair) requireCannotMove(t *testing.T, conn *sql.Conn, why string) {
	t.Helper()
	require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
	s := mp.session(t)
	ok, reason := s.Migratable()
	require.False(t, ok)
	require.Contains(t, reason, why)
	from := s.Info().Backend
	require.True(t, s.Redirect(mp.other(s)))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
	require.Equal(t, from, s.Info().Backend)
}

func (mp *migrationPair) other(s *backend.Session) string {
	if s.Info().Backend == mp.m[0].Addr() {
		return mp.m[1].Addr()
	}
	return mp.m[0].Addr()
}

func (mp *migrationPair) portOf(addr string) string {
	for _, m := range mp.m {
		if m.Addr() == addr {
			return strconv.Itoa(m.Port)
		}
	}
	return ""
}

// TestMigrationMovesState: a client sets its state, the session is
// redirected to the other server, and everything reads the same there; the
// prepared statement runs under its old id; no error reaches the client.
func TestMigrationMovesState(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, 2*time.Minute)
	_, conn := mp.nativeConn(t, ctx)
	for _, q := range []string{
		"USE mysql", "USE test",
		"SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'",
		"SET time_zone = '+05:30'",
		"SET autocommit = 0", "SET autocommit = 1",
		"SET @x = 42, @s = 'h\u00e9llo ''quoted''', @d = 1.50, @n = NULL",
		"SELECT 7 INTO @y",
		"SET character_set_results = NULL",
	} {
		_, err := conn.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	stmt, err := conn.PrepareContext(ctx, "SELECT v + ?, @@port FROM t WHERE id = ?")
	require.NoError(t, err)
	defer stmt.Close()
	read := func() map[string]string {
		out := map[string]string{}
		for _, q := range []string{"@@port", "DATABASE()", "@@sql_mode", "@@time_zone", "@@autocommit", "@x", "@s", "@d", "@n", "@y", "@@character_set_client", "@@character_set_results IS NULL"} {
			out[q] = queryString(t, conn, "SELECT "+q)
		}
		var v, port string
		require.NoError(t, stmt.QueryRowContext(ctx, 5, 2).Scan(&v, &port))
		out["stmt"] = v
		return out
	}
	before := read()
	s := mp.session(t)
	ok, why := s.Migratable()
	require.True(t, ok, why)
	target := mp.other(s)
	require.True(t, s.Redirect(target))
	require.Eventually(t, func() bool { return s.Info().Backend == target }, 20*time.Second, 10*time.Millisecond, "idle session moved")
	after := read()
	require.Equal(t, mp.portOf(target), after["@@port"], "now on the other server")
	delete(before, "@@port")
	delete(after, "@@port")
	require.Equal(t, before, after, "identical state after the move")
	require.Equal(t, "25", after["stmt"])

	// A statement prepared after the move gets a fresh id that the proxy
	// translates too; and the session can move back.
	stmt2, err := conn.PrepareContext(ctx, "SELECT ? * 2")
	require.NoError(t, err)
	var two string
	require.NoError(t, stmt2.QueryRowContext(ctx, 21).Scan(&two))
	require.Equal(t, "42", two)
	back := mp.other(s)
	require.True(t, s.Redirect(back))
	require.Eventually(t, func() bool { return s.Info().Backend == back }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, stmt2.QueryRowContext(ctx, 5).Scan(&two))
	require.Equal(t, "10", two)
	require.Equal(t, "25", read()["stmt"])
	require.Equal(t, "42", queryString(t, conn, "SELECT @x"))
	require.NoError(t, stmt2.Close())
}

// TestMigrationWaitsForCommit: a session inside a transaction moves only
// after COMMIT.
func TestMigrationWaitsForCommit(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, time.Minute)
	_, conn := mp.nativeConn(t, ctx)
	_, err := conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "UPDATE t SET v = v + 1 WHERE id = 1")
	require.NoError(t, err)
	s := mp.session(t)
	from := s.Info().Backend
	ok, why := s.Migratable()
	require.False(t, ok)
	require.Equal(t, "in a transaction", why)
	target := mp.other(s)
	require.True(t, s.Redirect(target))
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, from, s.Info().Backend, "does not move inside the transaction")
		require.Equal(t, "11", queryString(t, conn, "SELECT v FROM t WHERE id = 1"))
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Info().Backend == target }, 20*time.Second, 10*time.Millisecond, "moves after COMMIT")
	require.Equal(t, mp.portOf(target), queryString(t, conn, "SELECT @@port"))
}

// TestMigrationRefusals: state that cannot move keeps the session where it
// is, and Migratable says why.
func TestMigrationRefusals(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, time.Minute)
	_, conn := mp.nativeConn(t, ctx)
	s := mp.session(t)
	from, target := s.Info().Backend, mp.other(s)
	stays := func(wantReason string) {
		t.Helper()
		require.True(t, s.Redirect(target))
		time.Sleep(300 * time.Millisecond)
		require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
		ok, why := s.Migratable()
		require.False(t, ok)
		require.Contains(t, why, wantReason)
		require.Equal(t, from, s.Info().Backend, "stays: %s", why)
	}

	require.Equal(t, "1", queryString(t, conn, "SELECT GET_LOCK('held', 5)"))
	stays("advisory locks (GET_LOCK held")
	ok, why := s.Migratable()
	require.False(t, ok, "still held after the refused move")
	require.Contains(t, why, "GET_LOCK held")
	require.Equal(t, "1", queryString(t, conn, "SELECT RELEASE_LOCK('held')"))

	_, err := conn.ExecContext(ctx, "CREATE TEMPORARY TABLE tmp1 (a INT)")
	require.NoError(t, err)
	stays("temporary tables (tmp1)")
	_, err = conn.ExecContext(ctx, "DROP TEMPORARY TABLE tmp1")
	require.NoError(t, err)

	_, err = conn.ExecContext(ctx, "LOCK TABLES t READ")
	require.NoError(t, err)
	stays("LOCK TABLES")
	_, err = conn.ExecContext(ctx, "UNLOCK TABLES")
	require.NoError(t, err)

	// All released: the lock is found released when the move asks.
	require.True(t, s.Redirect(target))
	require.Eventually(t, func() bool {
		_ = queryString(t, conn, "SELECT 1")
		return s.Info().Backend == target
	}, 20*time.Second, 50*time.Millisecond, "moves once nothing holds it")
}

// TestMigrationNeedsCredential: a user whose password is not a native
// one, or a cluster without a migration account, does not move and says why.
func TestMigrationNeedsCredential(t *testing.T) {
	t.Run("ed25519 user", func(t *testing.T) {
		mp := startMigrationPair(t, true)
		for _, m := range mp.m {
			m.RequireEd25519(t)
		}
		db := testenv.OpenDB(t, testenv.MySQLConfig(mp.addr(), testenv.EdUser, testenv.EdPassword))
		conn, err := db.Conn(ctxT(t, time.Minute))
		require.NoError(t, err)
		defer conn.Close()
		mp.requireCannotMove(t, conn, "client_ed25519")
	})
	t.Run("no migration account", func(t *testing.T) {
		mp := startMigrationPair(t, false)
		_, conn := mp.nativeConn(t, ctxT(t, time.Minute))
		mp.requireCannotMove(t, conn, "no migration-user")
	})
}

var _ = context.Background
var _ *sql.DB

// TestMigrationResendsParamTypes: a C-style client sends a statement's
// parameter types only with its first execute. After a move the proxy puts
// them back into the next execute, since the new server never saw them.
func TestMigrationResendsParamTypes(t *testing.T) {
	mp := startMigrationPair(t, true)
	c, err := dialRaw(t, mp.addr(), testenv.NativeUser, testenv.NativePassword, "test")
	require.NoError(t, err)
	c.send(append([]byte{pmysql.ComStmtPrepare}, "SELECT CAST(? AS CHAR)"...))
	data := c.read()
	require.Equal(t, pmysql.OKHeader, data[0], "prepare: %v", pmysql.ParseErr(data))
	id := binary.LittleEndian.Uint32(data[1:])
	c.read() // the parameter
	c.eofStatus()
	c.read() // the column
	c.eofStatus()
	execute := func(withTypes bool, v int64) string {
		p := []byte{pmysql.ComStmtExecute}
		p = binary.LittleEndian.AppendUint32(p, id)
		p = append(p, 0)
		p = binary.LittleEndian.AppendUint32(p, 1)
		p = append(p, 0) // null bitmap
		if withTypes {
			p = append(p, 1, 8, 0) // LONGLONG
		} else {
			p = append(p, 0)
		}
		p = binary.LittleEndian.AppendUint64(p, uint64(v))
		c.send(p)
		data := c.read()
		require.NotEqual(t, pmysql.ErrHeader, data[0], "execute: %v", pmysql.ParseErr(data))
		c.read() // column
		c.eofStatus()
		row := c.read()
		require.Equal(t, byte(0), row[0], "binary row")
		s, _, ok := pmysql.ReadLenEncString(row[2:]) // header, null bitmap of one column
		require.True(t, ok)
		c.eofStatus()
		return string(s)
	}
	require.Equal(t, "41", execute(true, 41))
	require.Equal(t, "42", execute(false, 42))
	target := mp.moveSession(t)
	require.Equal(t, "43", execute(false, 43), "types re-sent to the new server")
	require.Equal(t, "44", execute(false, 44))
	require.Equal(t, mp.portOf(target), c.query("SELECT @@port")[0][0])
}

// TestMigrationCompressed: a client on the compressed protocol moves too; the
// new backend connection is compressed like the old one.
func TestMigrationCompressed(t *testing.T) {
	mp := startMigrationPair(t, true)
	for _, algo := range []pmysql.CompressAlgorithm{pmysql.CompressZlib, pmysql.CompressZstd} {
		c, err := dialRawCompressed(t, mp.addr(), testenv.NativeUser, testenv.NativePassword, "test", algo)
		require.NoError(t, err)
		c.query("SET @x = 'compressed'")
		target := mp.moveSession(t)
		row := c.query("SELECT @@port, @x, REPEAT('a', 100000)")[0]
		require.Equal(t, mp.portOf(target), row[0])
		require.Equal(t, "compressed", row[1])
		require.Len(t, row[2], 100000)
		require.NoError(t, c.io.Close())
		require.Eventually(t, func() bool { return len(mp.srv.ClusterSessions("main")) == 0 }, 5*time.Second, 10*time.Millisecond)
	}
}

// TestMigrationAccountReload: the migration account is hot-reloadable: once
// removed, sessions say so and stay; once back, they move again.
func TestMigrationAccountReload(t *testing.T) {
	mp := startMigrationPair(t, true)
	_, conn := mp.nativeConn(t, ctxT(t, time.Minute))
	require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
	s := mp.session(t)
	from, target := s.Info().Backend, mp.other(s)

	require.NoError(t, mp.cm.Set([]byte(mp.base)))
	ok, why := s.Migratable()
	require.False(t, ok)
	require.Contains(t, why, "no migration-user")
	require.True(t, s.Redirect(target))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
	require.Equal(t, from, s.Info().Backend, "no move without the account")

	require.NoError(t, mp.cm.Set([]byte(mp.base+fmt.Sprintf("migration-user = %q\nmigration-password = %q\n", migUser, migPass))))
	ok, why = s.Migratable()
	require.True(t, ok, why)
	require.True(t, s.Redirect(target))
	require.Eventually(t, func() bool { return s.Info().Backend == target }, 20*time.Second, 10*time.Millisecond)
}

// TestMigrationManyIdle moves 200 idle sessions off one backend and logs
// how long it took (a measurement, not a timing assertion); every client
// then goes on, unaware, on the other server.
func TestMigrationManyIdle(t *testing.T) {
	mp := startMigrationPair(t, true)
	ctx := ctxT(t, 3*time.Minute)
	db := nativeDB(t, mp.addr())
	const n = 200
	db.SetMaxIdleConns(2 * n)
	conns := make([]*sql.Conn, 0, 2*n)
	for len(conns) < 2*n {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.ExecContext(ctx, "SET @me = CONNECTION_ID()")
		require.NoError(t, err)
		conns = append(conns, c)
	}
	from, to := mp.m[0].Addr(), mp.m[1].Addr()
	var moving []*backend.Session
	for _, s := range mp.srv.ClusterSessions("main") {
		if s.Info().Backend == from {
			moving = append(moving, s)
		}
	}
	require.NotEmpty(t, moving)
	start := time.Now()
	for _, s := range moving {
		require.True(t, s.Redirect(to))
	}
	require.Eventually(t, func() bool {
		for _, s := range moving {
			if s.Info().Backend != to {
				return false
			}
		}
		return true
	}, 2*time.Minute, 20*time.Millisecond)
	took := time.Since(start)
	t.Logf("moved %d idle sessions in %v (%.2f ms each, moves run concurrently)", len(moving), took, float64(took.Microseconds())/1000/float64(len(moving)))
	survivor := strconv.Itoa(mp.m[1].Port)
	for i, c := range conns {
		require.Equal(t, survivor, queryString(t, c, "SELECT @@port"), "client %d", i)
		require.NotEmpty(t, queryString(t, c, "SELECT @me"), "client %d kept its variable", i)
	}
}

// TestMigrationAfterChangeUser: COM_CHANGE_USER resets the server session
// (tracking included) and brings a new login; the session still moves,
// logged in again as the user it changed to, with state set after the
// change.
func TestMigrationAfterChangeUser(t *testing.T) {
	mp := startMigrationPair(t, true)
	c, err := dialRaw(t, mp.addr(), testenv.NativeUser, testenv.NativePassword, "test")
	require.NoError(t, err)
	c.query("SET @before = 1")
	require.NoError(t, c.changeUser(testenv.NativeUser, testenv.NativePassword, "mysql"))
	c.query("SET SESSION sql_mode = 'ANSI'")
	c.query("SET @after = 'yes'")
	target := mp.moveSession(t)
	row := c.query("SELECT @@port, DATABASE(), @@sql_mode, @after, @before, CURRENT_USER()")[0]
	require.Equal(t, mp.portOf(target), row[0])
	require.Equal(t, "mysql", row[1])
	require.Contains(t, row[2], "ANSI_QUOTES")
	require.Equal(t, "yes", row[3])
	require.Equal(t, "NULL", row[4], "reset by the change of user")
	require.Equal(t, testenv.NativeUser+"@%", row[5])
}
