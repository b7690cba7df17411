package testenv

import (
	"context"
	"database/sql"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func queryOne(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var s string
	require.NoError(t, db.QueryRowContext(ctx, query).Scan(&s), query)
	return s
}

func openDSN(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestStartMariaDB(t *testing.T) {
	began := time.Now()
	m := StartMariaDB(t, MariaDBOptions{TLS: true})
	t.Logf("StartMariaDB with TLS took %v (install+start+users %v); addr %s, socket %s, pid %d",
		time.Since(began), m.StartupTime, m.Addr(), m.Socket, m.Pid())
	require.NotNil(t, m.Certs)

	t.Run("native over TCP", func(t *testing.T) {
		db := openDSN(t, m.NativeDSN())
		require.Equal(t, "1", queryOne(t, db, "SELECT 1"))
		require.Equal(t, "native@%", queryOne(t, db, "SELECT CURRENT_USER()"))
		require.Equal(t, "", queryOne(t, db, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'"))
	})

	t.Run("ed25519 over TCP", func(t *testing.T) {
		m.RequireEd25519(t)
		db := OpenDB(t, m.Config(EdUser, EdPassword))
		require.Equal(t, "1", queryOne(t, db, "SELECT 1"))
		require.Equal(t, "ed@%", queryOne(t, db, "SELECT CURRENT_USER()"))
		require.Equal(t, "ed25519", queryOne(t, db, "SELECT plugin FROM mysql.user WHERE user = 'ed'"))
	})

	t.Run("wrong password is refused", func(t *testing.T) {
		db := OpenDB(t, m.Config(NativeUser, "wrong"))
		require.ErrorContains(t, db.Ping(), "Access denied")
	})

	t.Run("native over TLS via registered name", func(t *testing.T) {
		cfg := m.Config(NativeUser, NativePassword)
		cfg.TLSConfig = m.Certs.RegisterMySQLTLS(t)
		db := openDSN(t, cfg.FormatDSN())
		require.Equal(t, "1", queryOne(t, db, "SELECT 1"))
		require.NotEmpty(t, queryOne(t, db, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'"))
	})

	t.Run("ed25519 over TLS via config field", func(t *testing.T) {
		m.RequireEd25519(t)
		cfg := m.Config(EdUser, EdPassword)
		cfg.TLS = m.Certs.ClientTLSConfig()
		db := OpenDB(t, cfg)
		require.NotEmpty(t, queryOne(t, db, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER'"))
	})

	t.Run("TLS from another CA is refused", func(t *testing.T) {
		cfg := m.Config(NativeUser, NativePassword)
		cfg.TLS = NewCerts(t, "").ClientTLSConfig()
		db := OpenDB(t, cfg)
		require.ErrorContains(t, db.Ping(), "certificate")
	})

	t.Run("admin and root", func(t *testing.T) {
		admin := openDSN(t, m.AdminDSN())
		require.Equal(t, "1000", queryOne(t, admin, "SELECT @@max_connections"))
		require.Equal(t, "1073741824", queryOne(t, admin, "SELECT @@max_allowed_packet"))
		require.Equal(t, "0", queryOne(t, admin, "SELECT @@performance_schema"))
		require.Equal(t, "1", queryOne(t, admin, "SELECT @@local_infile"))
		require.Equal(t, "0", queryOne(t, admin, "SELECT @@log_bin"))
		root := m.RootDB(t)
		require.Equal(t, "root@localhost", queryOne(t, root, "SELECT CURRENT_USER()"))
		require.Equal(t, "0", queryOne(t, root, "SELECT COUNT(*) FROM mysql.user WHERE user = ''"))
	})

	t.Run("kill refuses connections, restart recovers data", func(t *testing.T) {
		root := m.RootDB(t)
		_, err := root.Exec("CREATE TABLE kept (id INT PRIMARY KEY)")
		require.NoError(t, err)
		_, err = root.Exec("INSERT INTO kept VALUES (7)")
		require.NoError(t, err)
		// The pool's connection would die with the server; the restart gets a fresh pool.
		require.NoError(t, root.Close())

		oldPid := m.Pid()
		m.Kill()
		select {
		case <-m.Exited():
		default:
			t.Fatal("Exited not closed after Kill")
		}
		_, err = net.DialTimeout("tcp", m.Addr(), time.Second)
		require.Error(t, err, "port still accepts after Kill")

		require.NoError(t, m.Restart())
		require.NotEqual(t, oldPid, m.Pid())
		require.Equal(t, "7", queryOne(t, openDSN(t, m.NativeDSN()), "SELECT id FROM kept"))

		require.NoError(t, m.Stop())
		_, err = net.DialTimeout("tcp", m.Addr(), time.Second)
		require.Error(t, err, "port still accepts after Stop")
	})
}

func TestStartMariaDBOptions(t *testing.T) {
	m := StartMariaDB(t, MariaDBOptions{MaxConnections: 20, ExtraArgs: []string{"--wait-timeout=77"}})
	t.Logf("StartMariaDB without TLS took %v", m.StartupTime)
	require.Nil(t, m.Certs)
	admin := openDSN(t, m.AdminDSN())
	require.Equal(t, "20", queryOne(t, admin, "SELECT @@max_connections"))
	require.Equal(t, "77", queryOne(t, admin, "SELECT @@global.wait_timeout"))
	require.Equal(t, "DISABLED", queryOne(t, admin, "SELECT @@have_ssl"))

	cfg := m.Config(NativeUser, NativePassword)
	cfg.TLS = NewCerts(t, "").ClientTLSConfig()
	require.ErrorContains(t, OpenDB(t, cfg).Ping(), "TLS")
}

func TestSharedMariaDB(t *testing.T) {
	a := SharedMariaDB(t)
	b := SharedMariaDB(t)
	require.Same(t, a, b)
	require.NotNil(t, a.Certs)
	require.Equal(t, "1", queryOne(t, openDSN(t, a.NativeDSN()), "SELECT 1"))
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, ln.Close())
}

// A port taken between FreePort and mariadbd's bind must be recognised as retryable, and
// Restart must report it rather than hang.
func TestMariaDBBindFailureIsDetected(t *testing.T) {
	m := StartMariaDB(t, MariaDBOptions{})
	m.Kill()
	ln, err := net.Listen("tcp", m.Addr())
	require.NoError(t, err)
	defer ln.Close()

	err = m.Restart()
	require.ErrorIs(t, err, errBindFailed)
	t.Logf("Restart on a taken port: %v", err)
}

// FreePort never hands out the same port twice in one process, and only ports below the
// kernel's ephemeral range, which no port-0 listen or outgoing connection can take.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p := FreePort(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		lo, hi := pickRange(ephemeralRange())
		require.True(t, p >= lo && p < hi, "port %d is outside [%d, %d)", p, lo, hi)
		seen[p] = true
	}
}

// FreePort stays out of the kernel's ephemeral range wherever the range leaves room.
func TestPickRange(t *testing.T) {
	for _, c := range []struct{ start, end, lo, hi int }{
		{32768, 60999, lowestPort, 32768}, // Linux's default: below it
		{10000, 30000, 30001, 65536},      // more room above
		{49152, 65535, lowestPort, 49152}, // the IANA range
		{1024, 65000, lowestPort, 65536},  // no room: everything, the locks keep tests apart
	} {
		lo, hi := pickRange(c.start, c.end)
		require.Equal(t, [2]int{c.lo, c.hi}, [2]int{lo, hi}, "ephemeral range %d-%d", c.start, c.end)
	}
}

// A port whose lock another process holds is not handed out: the lock is what keeps the test
// binaries that go test runs side by side apart.
func TestFreePortSkipsLockedPorts(t *testing.T) {
	dir := t.TempDir()
	held, ok, err := lockPort(dir, 20001)
	require.NoError(t, err)
	require.True(t, ok)
	defer held.Close()

	// A second open file description is what another process would have.
	again, ok, err := lockPort(dir, 20001)
	require.NoError(t, err)
	require.False(t, ok, "a held port lock was taken again")
	require.Nil(t, again)

	require.NoError(t, held.Close())
	after, ok, err := lockPort(dir, 20001)
	require.NoError(t, err)
	require.True(t, ok, "a released port lock could not be taken")
	require.NoError(t, after.Close())
}
