package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/server"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestSessionStateTracking runs the proxy in-process to read what each
// session knows about itself: transaction, database (also after USE, which
// the proxy learns from session tracking it asks the backend for and strips
// from replies to this client), prepared statements and cursors.
func TestSessionStateTracking(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	text := []byte(proxyConfig{addr: "127.0.0.1:0", backends: []string{m.Addr()}}.String())
	cfg, err := config.Parse(text)
	require.NoError(t, err)
	lg := zaptest.NewLogger(t)
	cm := cfgmgr.New(lg, "")
	cm.Init(cfg, text)
	srv, err := server.New(lg, cm)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	defer srv.Close()
	addr := srv.SQLAddr().String()

	only := func() backend.Info {
		s := srv.Sessions()
		require.Len(t, s, 1)
		return s[0]
	}
	eventually := func(msg string, cond func(backend.Info) bool) {
		t.Helper()
		require.Eventually(t, func() bool { return cond(only()) }, 5*time.Second, 10*time.Millisecond, msg)
	}

	ctx := context.Background()
	db := nativeDB(t, addr)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	eventually("database from the handshake", func(i backend.Info) bool { return i.DB == "test" && i.User == "native" })

	_, err = conn.ExecContext(ctx, "USE mysql")
	require.NoError(t, err)
	eventually("database after USE", func(i backend.Info) bool { return i.DB == "mysql" })
	require.Equal(t, "mysql", queryString(t, conn, "SELECT DATABASE()"), "the client is not confused by stripped session tracking")

	_, err = conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	eventually("in transaction", func(i backend.Info) bool { return i.InTransaction })
	_, err = conn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	eventually("transaction ended", func(i backend.Info) bool { return !i.InTransaction })

	stmt, err := conn.PrepareContext(ctx, "SELECT ?")
	require.NoError(t, err)
	eventually("one prepared statement", func(i backend.Info) bool { return i.PreparedStatements == 1 })
	require.NoError(t, stmt.Close())
	require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
	eventually("statement closed", func(i backend.Info) bool { return i.PreparedStatements == 0 })
	require.NoError(t, conn.Close())
	require.NoError(t, db.Close())
	require.Eventually(t, func() bool { return len(srv.Sessions()) == 0 }, 5*time.Second, 10*time.Millisecond)

	raw, err := dialRaw(t, addr, testenv.NativeUser, testenv.NativePassword, "test")
	require.NoError(t, err)
	id, cols := raw.prepare("SELECT seq FROM seq_1_to_10")
	raw.executeCursor(id, cols)
	eventually("cursor open", func(i backend.Info) bool { return i.OpenCursors == 1 && i.PreparedStatements == 1 })
	n, _ := raw.fetch(id, 100)
	require.Equal(t, 10, n)
	eventually("cursor exhausted", func(i backend.Info) bool { return i.OpenCursors == 0 })
}
