package backend

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
)

// recordingObserver keeps a copy of every Command it is given.
type recordingObserver struct {
	mu       sync.Mutex
	cmds     []Command
	texts    []string
	ended    int
	clusters []string
}

func (r *recordingObserver) Observe(c *Command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, *c)
	r.texts = append(r.texts, string(c.Text))
}

func (r *recordingObserver) SessionEnded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended++
}

func (r *recordingObserver) snapshot() ([]Command, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Command(nil), r.cmds...), append([]string(nil), r.texts...), r.ended
}

// TestObserverSeesEachCommand: the session hands its observer one Command per
// client command, with the statement text, the rows forwarded, the session's
// user, schema and backend, and a duration. (The MySQL double stands in for
// the backend here; errors and prepared statements against MariaDB are in
// test/e2e's digest tests.)
func TestObserverSeesEachCommand(t *testing.T) {
	dbl := startBackend(t)
	rec := &recordingObserver{}
	cfg := baseConfig()
	cfg.CommandMetrics = func(cluster string) CommandObserver {
		rec.mu.Lock()
		rec.clusters = append(rec.clusters, cluster)
		rec.mu.Unlock()
		return rec
	}
	p := startProxy(t, cfg, dbl.Addr())

	mc := clientConfig(t, p.Addr(), "nate", "n4tive", "")
	connector, err := mysql.NewConnector(mc)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, before, _ := rec.snapshot() // what the driver sent while connecting
	var v string
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT 'abc'").Scan(&v))
	require.NoError(t, conn.PingContext(ctx))
	_, err = conn.ExecContext(ctx, "USE shop")
	require.NoError(t, err)
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT 'def'").Scan(&v))
	require.NoError(t, conn.Close())
	require.NoError(t, db.Close())
	p.requireIdle(t)

	cmds, texts, ended := rec.snapshot()
	require.Equal(t, 1, ended)
	require.Equal(t, []string{"test"}, rec.clusters)
	cmds, texts = cmds[len(before):], texts[len(before):]
	require.Len(t, cmds, 4, "query, ping, use, query (COM_QUIT ends the loop unobserved): %q", texts)
	require.Equal(t, []string{"SELECT 'abc'", "", "USE shop", "SELECT 'def'"}, texts)
	require.Equal(t, pmysql.ComQuery, cmds[0].Cmd)
	require.Equal(t, uint64(1), cmds[0].RowsSent)
	require.Zero(t, cmds[0].ErrCode)
	require.Equal(t, "nate", cmds[0].User)
	require.Equal(t, "", cmds[0].DB)
	require.Equal(t, dbl.Addr(), cmds[0].Backend)
	require.Positive(t, cmds[0].Duration)
	require.False(t, cmds[0].Start.IsZero())
	require.Equal(t, pmysql.ComPing, cmds[1].Cmd)
	require.Zero(t, cmds[1].RowsSent)
	require.Equal(t, "shop", cmds[3].DB, "the schema after USE")
	require.Equal(t, uint64(1), cmds[3].RowsSent)
}
