package e2e

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestIdlePoolAfterWaitTimeout is the user story: a pooled Go
// client sets wait_timeout = 2, idles 3 s, then begins a transaction.
// Directly against MariaDB it works (the driver's liveness check sees the
// closed socket and takes a fresh connection); through the proxy it must
// work the same, because the proxy closes the client as soon as the server
// closed the idle backend side.
func TestIdlePoolAfterWaitTimeout(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	for _, tc := range []struct{ name, addr string }{{"direct", m.Addr()}, {"proxy", p.Addr}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testenv.MySQLConfig(tc.addr, testenv.NativeUser, testenv.NativePassword)
			cfg.Params = map[string]string{"wait_timeout": "2"}
			db := testenv.OpenDB(t, cfg)
			db.SetMaxOpenConns(1)
			db.SetMaxIdleConns(1)
			ctx := ctxT(t, time.Minute)
			before := queryString(t, db, "SELECT CONNECTION_ID()")
			require.Equal(t, "2", queryString(t, db, "SELECT @@wait_timeout"))
			time.Sleep(3 * time.Second)
			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err, "BEGIN after the server closed the idle connection")
			var id string
			require.NoError(t, tx.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
			require.NoError(t, tx.Commit())
			if tc.name == "direct" {
				require.NotEqual(t, before, id, "a fresh connection was taken")
			}
		})
	}
}

// TestIdleSessionKilled: KILL of an idle session's backend connection
// closes the client promptly (the target is 100 ms; asserted with a
// generous bound for a loaded machine, the measured time is logged), and
// the session is not re-established.
func TestIdleSessionKilled(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	root := testenv.OpenDB(t, m.Config(testenv.AdminUser, testenv.AdminPassword))
	c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, "test")
	require.NoError(t, err)
	id := c.query("SELECT CONNECTION_ID()")[0][0]
	time.Sleep(100 * time.Millisecond) // idle long enough to be watched
	_, err = root.ExecContext(ctxT(t, 30*time.Second), "KILL "+id)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, c.io.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.io.ReadPacket(0)
	took := time.Since(start)
	require.Error(t, err)
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "closed, not timed out: %v", err)
	t.Logf("client closed %v after the KILL returned", took)
	require.Less(t, took, 2*time.Second)
	var n int
	require.NoError(t, root.QueryRowContext(ctxT(t, 30*time.Second),
		"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?", testenv.NativeUser).Scan(&n))
	require.Zero(t, n, "no backend session was opened again")
	_ = sql.ErrNoRows
	_ = context.Background
}
