package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestKillQueryThroughProxy: the id a client learns from the proxy's
// greeting (mysql_thread_id()) works for KILL QUERY from a second session of
// the same user: the proxy translates it to the backend connection id and
// runs the KILL as that user, so the backend's privilege rules decide. A
// different unprivileged user gets the server's own permission error, and an
// id the proxy never gave out the server's "Unknown thread id".
func TestKillQueryThroughProxy(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	root := m.RootDB(t)
	for _, u := range []string{"k_owner", "k_other"} {
		_, err := root.ExecContext(ctxT(t, 30*time.Second), fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", u))
		require.NoError(t, err)
		_, err = root.ExecContext(ctxT(t, 30*time.Second), fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'k-pw'", u))
		require.NoError(t, err)
	}
	p := proxyFor(t, m)

	sleeper, err := dialRaw(t, p.Addr, "k_owner", "k-pw", "")
	require.NoError(t, err)
	id := sleeper.hs.ConnID
	require.GreaterOrEqual(t, id, uint32(1<<31), "proxy ids are far from backend ids")
	backendID := sleeper.query("SELECT CONNECTION_ID()")[0][0]
	require.NotEqual(t, fmt.Sprint(id), backendID, "CONNECTION_ID() is the backend's id (documented)")

	sleeper.send(append([]byte{mysql.ComQuery}, "SELECT SLEEP(30)"...))
	start := time.Now()
	require.Eventually(t, func() bool {
		var n int
		_ = root.QueryRowContext(ctxT(t, 10*time.Second),
			"SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'k_owner' AND info = 'SELECT SLEEP(30)'").Scan(&n)
		return n == 1
	}, 10*time.Second, 20*time.Millisecond, "the sleep never started")

	other, err := dialRaw(t, p.Addr, "k_other", "k-pw", "")
	require.NoError(t, err)
	other.send(append([]byte{mysql.ComQuery}, fmt.Sprintf("KILL QUERY %d", id)...))
	e := readErr(t, other)
	require.Equal(t, uint16(1095), e.Code, "MariaDB's ER_KILL_DENIED_ERROR: %v", e)
	require.Contains(t, e.Message, "You are not owner of thread")

	owner, err := dialRaw(t, p.Addr, "k_owner", "k-pw", "")
	require.NoError(t, err)
	owner.send(append([]byte{mysql.ComQuery}, fmt.Sprintf("KILL QUERY %d", id)...))
	ok := owner.read()
	require.Equal(t, mysql.OKHeader, ok[0], "KILL QUERY: %v", mysql.ParseErr(ok))

	// The sleep ends at once: MariaDB answers the interrupted query with
	// ERROR 1317 (before or after the column metadata), or SLEEP returns 1.
	interrupted := func(data []byte) bool {
		return data[0] == mysql.ErrHeader && mysql.ParseErr(data).Code == 1317
	}
	if first := sleeper.read(); !interrupted(first) {
		require.Equal(t, []byte{1}, first, "one column")
		sleeper.read() // column definition
		sleeper.eofStatus()
		if row := sleeper.read(); !interrupted(row) {
			require.Equal(t, "\x011", string(row), "SLEEP() returns 1 when interrupted")
			sleeper.eofStatus()
		}
	}
	require.Less(t, time.Since(start), 20*time.Second, "the sleep was not interrupted")
	require.Equal(t, [][]string{{"1"}}, sleeper.query("SELECT 1"), "the killed query's session goes on")

	owner.send(append([]byte{mysql.ComQuery}, "KILL QUERY 12345"...))
	e = readErr(t, owner)
	require.Equal(t, mysql.ErNoSuchThread, e.Code)
	require.Equal(t, "Unknown thread id: 12345", e.Message)

	// KILL CONNECTION of one's own session through mysql_kill() (COM_PROCESS_KILL).
	victim, err := dialRaw(t, p.Addr, "k_owner", "k-pw", "")
	require.NoError(t, err)
	owner.send([]byte{mysql.ComProcessKill, byte(victim.hs.ConnID), byte(victim.hs.ConnID >> 8), byte(victim.hs.ConnID >> 16), byte(victim.hs.ConnID >> 24)})
	require.Equal(t, mysql.OKHeader, owner.read()[0])
	victim.send(append([]byte{mysql.ComQuery}, "SELECT 1"...))
	data, err := victim.io.ReadPacket(0)
	if err == nil {
		require.Equal(t, mysql.ErrHeader, data[0], "the killed connection must not answer")
	}

	// A KILL whose id cannot be translated is refused, not forwarded.
	owner.send(append([]byte{mysql.ComQuery}, "KILL /* which? */ 5"...))
	e = readErr(t, owner)
	require.Equal(t, uint16(1105), e.Code)
	require.True(t, strings.Contains(e.Message, "cannot be translated"), e.Message)
}

func readErr(t *testing.T, c *rawClient) *mysql.MySQLError {
	t.Helper()
	data := c.read()
	require.Equal(t, mysql.ErrHeader, data[0], "want an ERR, got % x", data)
	return mysql.ParseErr(data)
}

// TestGreetingShowsBackendVersion: through a route port of a MariaDB cluster
// the greeting carries MariaDB's version and extended capabilities, as the
// prober read them, instead of a fixed one.
func TestGreetingShowsBackendVersion(t *testing.T) {
	tc := startTwoClusters(t, "", `
[[route]]
cluster = "west"
ports = [{westPort}]
`)
	waitRoutable(t, tc.westAddr, testenv.NativeUser, tc.west)
	version := queryString(t, tc.west.RootDB(t), "SELECT VERSION()")
	var hs *mysql.InitialHandshake
	require.Eventually(t, func() bool {
		c, err := dialRaw(t, tc.westAddr, testenv.NativeUser, testenv.NativePassword, "")
		if err != nil {
			return false
		}
		hs = c.hs
		return strings.Contains(hs.ServerVersion, "MariaDB")
	}, 30*time.Second, 100*time.Millisecond, "greeting version never became the backend's")
	require.Equal(t, "5.5.5-"+version, hs.ServerVersion)
	require.Zero(t, hs.Capability&mysql.ClientMySQL, "MariaDB's extended capabilities are announced")
	require.NotZero(t, hs.ExtCapability&mysql.MariaDBClientStmtBulkOperations)
}
