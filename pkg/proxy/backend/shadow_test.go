package backend

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/shadow"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// recordingShadower samples every candidate and keeps a copy of each
// submitted result.
type recordingShadower struct {
	mu       sync.Mutex
	clusters []string
	results  []shadow.Result
}

func (r *recordingShadower) Sample(cluster string) shadow.Sink {
	r.mu.Lock()
	r.clusters = append(r.clusters, cluster)
	r.mu.Unlock()
	return r
}

// sampled returns the clusters Sample was asked for so far.
func (r *recordingShadower) sampled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.clusters...)
}

func (r *recordingShadower) Submit(res *shadow.Result) {
	c := *res
	c.Text = append([]byte(nil), res.Text...)
	r.mu.Lock()
	r.results = append(r.results, c)
	r.mu.Unlock()
}

func (r *recordingShadower) take() []shadow.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.results
	r.results = nil
	return out
}

// await takes the results once there are n: a session submits after it has
// forwarded the response, so the client can read it first.
func (r *recordingShadower) await(t *testing.T, n int) []shadow.Result {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.results) >= n
	}, 5*time.Second, time.Millisecond, "%d shadow results", n)
	return r.take()
}

// expectedChecksum reads q's rows directly from the server and hashes their
// text-protocol encoding (columns as length-encoded strings, NULL as 0xfb).
func expectedChecksum(t *testing.T, db *sql.DB, q string) (uint64, uint64) {
	rows, err := db.Query(q)
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n, sum uint64
	for rows.Next() {
		require.NoError(t, rows.Scan(ptrs...))
		var payload []byte
		for _, v := range vals {
			if v == nil {
				payload = append(payload, 0xfb)
			} else {
				payload = pmysql.AppendLenEncString(payload, v)
			}
		}
		n++
		sum += pmysql.RowChecksum(payload)
	}
	require.NoError(t, rows.Err())
	return n, sum
}

// TestShadowSessionHook runs against a real MariaDB: a SELECT outside a
// transaction is handed over with the row count and checksum of exactly
// what the client received (a result large enough to cross the read buffer
// many times, with NULLs and long values); statements in a transaction,
// with autocommit off, or that write are not; an error is handed over with
// its code.
func TestShadowSessionHook(t *testing.T) {
	maria := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	direct, err := sql.Open("mysql", maria.NativeDSN())
	require.NoError(t, err)
	defer direct.Close()
	for _, s := range []string{
		"CREATE TABLE test.sh (id INT PRIMARY KEY, v VARCHAR(300), n INT NULL, big MEDIUMTEXT)",
		"INSERT INTO test.sh SELECT seq, REPEAT(CHAR(65 + seq % 26), seq % 300), IF(seq % 7 = 0, NULL, seq), " +
			"IF(seq % 500 = 0, REPEAT('x', 20000), '') FROM seq_1_to_3000",
	} {
		_, err := direct.Exec(s)
		require.NoError(t, err, s)
	}

	rec := &recordingShadower{}
	cfg := baseConfig()
	cfg.Shadow = rec
	p := startProxy(t, cfg, maria.Addr())
	mc := clientConfig(t, p.Addr(), testenv.NativeUser, testenv.NativePassword, "")
	mc.DBName = "test"
	_, conn := openConn(t, mc)
	ctx := context.Background()
	query := func(q string) {
		rows, err := conn.QueryContext(ctx, q)
		if err != nil {
			return // an error result is still a result
		}
		for rows.Next() {
		}
		require.NoError(t, rows.Close())
	}

	all := "SELECT * FROM sh ORDER BY id"
	query(all)
	got := rec.await(t, 1)
	require.Len(t, got, 1)
	wantRows, wantSum := expectedChecksum(t, direct, "SELECT * FROM test.sh ORDER BY id")
	require.EqualValues(t, 3000, wantRows)
	require.Equal(t, shadow.Result{Text: []byte(all), DB: "test", Charset: got[0].Charset, Rows: wantRows, Checksum: wantSum, Latency: got[0].Latency}, got[0],
		"rows spanning many reads are all checksummed")
	require.Positive(t, got[0].Latency)
	require.Equal(t, []string{"test"}, rec.sampled())

	// Other rows, other checksum; comments before SELECT are fine.
	query("/* app */ select id from sh where id < 10")
	got = rec.await(t, 1)
	require.Len(t, got, 1)
	require.EqualValues(t, 9, got[0].Rows)
	require.NotEqual(t, wantSum, got[0].Checksum)

	for _, q := range []string{"BEGIN", "SELECT * FROM sh WHERE id = 1", "COMMIT",
		"SET autocommit = 0", "SELECT * FROM sh WHERE id = 2", "SET autocommit = 1",
		"UPDATE sh SET n = n WHERE id = 3", "SHOW TABLES", "(SELECT 1)"} {
		query(q)
	}
	require.Empty(t, rec.take(), "nothing in a transaction, with autocommit off, or not starting with SELECT")

	// A row larger than the read buffer is streamed, not checksummed.
	query("SELECT REPEAT('y', 70000)")
	got = rec.await(t, 1)
	require.Len(t, got, 1)
	require.True(t, got[0].Uncomparable)

	query("SELECT * FROM sh WHERE id = 2")
	query("SELECT * FROM no_such_table")
	got = rec.await(t, 2)
	require.Len(t, got, 2)
	require.EqualValues(t, 1, got[0].Rows, "autocommit back on")
	require.Zero(t, got[0].ErrCode)
	require.EqualValues(t, 1146, got[1].ErrCode)
	require.Zero(t, got[1].Rows)
}

// TestStartsWithSelect is the session's cheap first filter.
func TestStartsWithSelect(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1": true, "  select\n1": true, "/* c */SeLeCt 1": true, "SELECT": false,
		"SELECTED": false, "INSERT INTO t SELECT 1": false, "/*!50000 SELECT */ 1": false,
		"/* unterminated SELECT 1": false, "": false, "SELECT*FROM t": true,
	} {
		require.Equal(t, want, startsWithSelect([]byte(q)), "%q", q)
	}
}

// TestCaptureChecksum: while a capture runs, every COM_QUERY's rows are
// checksummed for the observer (the capture file records it), the same
// way as for shadowing; with no capture, nothing is hashed.
func TestCaptureChecksum(t *testing.T) {
	maria := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	direct, err := sql.Open("mysql", maria.NativeDSN())
	require.NoError(t, err)
	defer direct.Close()
	_, err = direct.Exec("CREATE TABLE test.cc SELECT seq AS id, CONCAT('v', seq) AS v FROM seq_1_to_500")
	require.NoError(t, err)

	rec := &recordingObserver{}
	capturing := &atomic.Bool{}
	cfg := baseConfig()
	cfg.CapturePackets = capturing
	cfg.CommandMetrics = func(string) CommandObserver { return rec }
	p := startProxy(t, cfg, maria.Addr())
	mc := clientConfig(t, p.Addr(), testenv.NativeUser, testenv.NativePassword, "")
	mc.DBName = "test"
	connector, err := mysql.NewConnector(mc)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(1)
	q := "SELECT * FROM cc WHERE id > 10"
	count := func() {
		rows, err := db.Query(q)
		require.NoError(t, err)
		for rows.Next() {
		}
		require.NoError(t, rows.Close())
	}
	// observed runs act and returns the Command it produced: the session
	// reports it after forwarding the response, so the client can be done
	// first.
	observed := func(act func()) Command {
		before, _, _ := rec.snapshot()
		act()
		var cmds []Command
		require.Eventually(t, func() bool {
			cmds, _, _ = rec.snapshot()
			return len(cmds) > len(before)
		}, 5*time.Second, time.Millisecond, "the command was never observed")
		return cmds[len(cmds)-1]
	}
	require.False(t, observed(count).Checksummed, "no capture, no hashing")
	capturing.Store(true)
	c := observed(count)
	_, want := expectedChecksum(t, direct, "SELECT * FROM test.cc WHERE id > 10")
	require.True(t, c.Checksummed)
	require.Equal(t, want, c.Checksum)
	require.EqualValues(t, 490, c.RowsSent)
	c = observed(func() {
		_, err := db.Exec("UPDATE cc SET v = 'x' WHERE id = 1")
		require.NoError(t, err)
	})
	require.True(t, c.Checksummed, "a statement without rows has the empty checksum")
	require.Zero(t, c.Checksum)
}
