//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestTrafficCapture captures a cluster's commands through proxyctl while a
// client runs text statements, a failing one and a prepared statement's
// whole lifecycle, then checks the file against what the client did.
func TestTrafficCapture(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	dir := t.TempDir()
	p, base := digestProxy(t, m, fmt.Sprintf("[traffic]\ncapture-dir = %q\n", dir))
	bin := buildProxyctl(t)
	// env reads with the read token; withToken may change things.
	env := []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + e2eReadToken}
	withToken := []string{"SWITCHYARD_API=" + base, "SWITCHYARD_TOKEN=" + digestToken}

	res := ctl(t, bin, env, "traffic", "status")
	require.Equal(t, 1, res.code, "no capture yet")
	res = ctl(t, bin, env, "traffic", "capture", "--cluster", "main", "--duration", "5m")
	require.Equal(t, 1, res.code, "starting a capture needs the admin token")
	res = ctl(t, bin, withToken, "traffic", "capture", "--cluster", "nope", "--duration", "5m")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "no such cluster")
	res = ctl(t, bin, withToken, "-o", "json", "traffic", "capture", "--cluster", "main", "--duration", "5m")
	require.Equal(t, 0, res.code, res.stderr)
	var st api.TrafficCapture
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &st))
	require.Equal(t, traffic.StateRunning, st.State)
	require.Equal(t, dir, filepath.Dir(st.File))
	res = ctl(t, bin, withToken, "traffic", "capture", "--cluster", "main", "--duration", "5m")
	require.Equal(t, 1, res.code, "one capture at a time")
	require.Contains(t, res.stderr, "already running")

	// One connection, so that every command below is one session's.
	db := nativeDB(t, p.Addr)
	db.SetMaxOpenConns(1)
	ctx := ctxT(t, time.Minute)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.Equal(t, "41", queryString(t, conn, "SELECT 41"))
	_, err = conn.ExecContext(ctx, "SELECT * FROM capture_missing")
	require.Equal(t, uint16(1146), mysqlErrCode(err))
	stmt, err := conn.PrepareContext(ctx, "SELECT ? + 1")
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		var v int
		require.NoError(t, stmt.QueryRowContext(ctx, i).Scan(&v))
		require.Equal(t, i+1, v)
	}
	require.NoError(t, stmt.Close())
	_, err = conn.ExecContext(ctx, "SELECT HEX(AES_ENCRYPT('x', 'capture-secret'))")
	require.NoError(t, err)
	require.NoError(t, conn.PingContext(ctx))
	require.NoError(t, conn.Close())

	res = ctl(t, bin, withToken, "-o", "json", "traffic", "cancel")
	require.Equal(t, 0, res.code, res.stderr)
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &st))
	require.Equal(t, traffic.StateCancelled, st.State)
	res = ctl(t, bin, env, "traffic", "status")
	require.Equal(t, 0, res.code)
	require.Contains(t, res.stdout, "cancelled")

	h, recs, err := traffic.ReadFile(st.File)
	require.NoError(t, err)
	require.Equal(t, "main", h.Cluster)
	require.Equal(t, int(st.Captured), len(recs))
	require.Zero(t, st.Dropped)
	var seq []string
	for _, r := range recs {
		require.Equal(t, recs[0].ConnID, r.ConnID, "one session")
		require.Equal(t, testenv.NativeUser, r.User)
		seq = append(seq, r.Command)
		require.NotContains(t, r.Text, "capture-secret")
	}
	require.Equal(t, []string{"query", "query", "stmt_prepare", "stmt_execute", "stmt_execute", "stmt_execute",
		"stmt_close", "query", "ping"}, seq)
	require.Equal(t, "SELECT 41", recs[0].Text)
	require.Equal(t, uint64(1), recs[0].Rows)
	require.Equal(t, uint16(1146), recs[1].ErrorCode)
	prep := recs[2]
	require.Equal(t, "SELECT ? + 1", prep.Text)
	require.NotZero(t, prep.StmtID)
	for _, ex := range recs[3:6] {
		require.Equal(t, prep.StmtID, ex.StmtID)
		require.Equal(t, "SELECT ? + 1", ex.Text)
		require.GreaterOrEqual(t, len(ex.Payload), 9, "statement id, flags, iteration count and parameters")
		require.Equal(t, uint64(1), ex.Rows)
	}
	require.Equal(t, prep.StmtID, recs[6].StmtID)
	require.True(t, recs[7].Redacted)
	require.Equal(t, "select `hex` ( `aes_encrypt` ( ... ) )", recs[7].Text)
	for i := 1; i < len(recs); i++ {
		require.GreaterOrEqual(t, recs[i].OffsetUs, recs[i-1].OffsetUs, "in arrival order")
	}
}
