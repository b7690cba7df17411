//go:build linux

package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/querylog"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// metricValue reads one unlabelled series from /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		var v float64
		if _, err := fmt.Sscanf(line, name+" %g", &v); err == nil {
			return v
		}
	}
	require.Failf(t, "no series", "%s not in /metrics", name)
	return 0
}

func readQueryLog(t *testing.T, path string) []querylog.Entry {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []querylog.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e querylog.Entry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		out = append(out, e)
	}
	return out
}

// TestQueryLogWritesStatements logs every statement, then (after a reload)
// only failed ones, and checks the JSON lines against what the client ran.
func TestQueryLogWritesStatements(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	path := filepath.Join(t.TempDir(), "queries.log")
	section := func(mode string) string {
		return fmt.Sprintf("[query-log]\nmode = %q\nfile = %q\nmax-text-length = 40\n", mode, path)
	}
	p, base := digestProxy(t, m, section("all"))
	db := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.InterpolateParams = true; return nil })
	ctx := ctxT(t, time.Minute)
	require.Equal(t, "7", queryString(t, db, "SELECT 7"))
	_, err := db.ExecContext(ctx, "SELECT * FROM querylog_missing")
	require.Equal(t, uint16(1146), mysqlErrCode(err))
	long := "SELECT '" + strings.Repeat("z", 100) + "' AS long_one"
	_ = queryString(t, db, long)
	_ = queryString(t, db, "SELECT HEX(AES_ENCRYPT('payload', 'hunter2-key'))")

	var entries []querylog.Entry
	require.Eventually(t, func() bool {
		entries = readQueryLog(t, path)
		return len(entries) >= 4
	}, 20*time.Second, 50*time.Millisecond, "query log: %+v", entries)
	byText := map[string]querylog.Entry{}
	for _, e := range entries {
		byText[e.Text] = e
	}
	sel, ok := byText["SELECT 7"]
	require.True(t, ok, "%+v", entries)
	require.Equal(t, "main", sel.Cluster)
	require.Equal(t, m.Addr(), sel.Backend)
	require.Equal(t, testenv.NativeUser, sel.User)
	require.Equal(t, testenv.TestDatabase, sel.Schema)
	require.Len(t, sel.Digest, 64)
	require.Equal(t, uint64(1), sel.Rows)
	require.Zero(t, sel.ErrorCode)
	require.Positive(t, sel.LatencyMs)
	require.WithinDuration(t, time.Now(), sel.Time, time.Minute)
	require.Equal(t, uint16(1146), byText["SELECT * FROM querylog_missing"].ErrorCode)
	cut, ok := byText[long[:40]]
	require.True(t, ok, "the long statement is cut at 40 bytes: %+v", entries)
	require.True(t, cut.Truncated)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "hunter2", "a statement that may carry a secret is logged normalised")

	// Reload: only failures from now on. The file watcher may apply the new
	// file before SIGHUP does; either way the checksum changes.
	var cs api.ConfigStatus
	require.NoError(t, getAPI(strings.TrimPrefix(base, "http://"), "/api/v1/config/status", &cs))
	before := len(entries)
	next := strings.Replace(configOf(t, p), section("all"), section("failed"), 1)
	require.NoError(t, p.WriteConfig(next))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		var now api.ConfigStatus
		return getAPI(strings.TrimPrefix(base, "http://"), "/api/v1/config/status", &now) == nil &&
			now.Checksum != cs.Checksum && now.LastResult == "ok"
	}, 20*time.Second, 50*time.Millisecond, "the reload was never applied")
	_ = queryString(t, db, "SELECT 8")
	_, err = db.ExecContext(ctx, "SELECT * FROM querylog_missing2")
	require.Error(t, err)
	require.Eventually(t, func() bool {
		entries = readQueryLog(t, path)
		return len(entries) > before && entries[len(entries)-1].Text == "SELECT * FROM querylog_missing2"
	}, 20*time.Second, 50*time.Millisecond)
	var after []string
	for _, e := range entries[before:] {
		after = append(after, e.Text)
	}
	require.Equal(t, []string{"SELECT * FROM querylog_missing2"}, after, "only the failure is logged after the reload")
	require.Equal(t, uint16(1146), entries[len(entries)-1].ErrorCode)
}

func configOf(t *testing.T, p *testenv.Proxy) string {
	t.Helper()
	b, err := os.ReadFile(p.ConfigPath)
	require.NoError(t, err)
	return string(b)
}

// runLoad runs n point selects split over clients connections and returns
// how long they took.
func runLoad(t *testing.T, db *sql.DB, clients, n int) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < n/clients; i++ {
				var v int
				if err := db.QueryRowContext(ctx, "SELECT ?", c*n+i).Scan(&v); err != nil {
					errs <- err
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return time.Since(start)
}

// TestQueryLogStalledWriterNeverBlocks points the query log at a FIFO that
// nobody reads (the writer blocks opening it, as on a dead disk): sessions
// keep running at their usual pace and the drop counter rises.
func TestQueryLogStalledWriterNeverBlocks(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	fifo := filepath.Join(t.TempDir(), "stalled.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	p, base := digestProxy(t, m, "")
	db := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.InterpolateParams = true; return nil })
	db.SetMaxOpenConns(4)
	const clients, n = 4, 2000
	runLoad(t, db, clients, 200) // warm up the connections
	baseline := runLoad(t, db, clients, n)

	// Turn the log on, pointing at the FIFO.
	section := fmt.Sprintf("\n[query-log]\nmode = \"all\"\nfile = %q\nbuffer = 50\n", fifo)
	require.NoError(t, p.WriteConfig(configOf(t, p)+section))
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		runLoad(t, db, 1, 10)
		return metricValue(t, base, "switchyard_query_log_dropped_total") > 0
	}, 30*time.Second, 100*time.Millisecond, "the log never filled")

	dropped0 := metricValue(t, base, "switchyard_query_log_dropped_total")
	stalled := runLoad(t, db, clients, n)
	// A statement is logged after its reply went out, so the last ones'
	// counts may land a moment after the client has its answers.
	var dropped float64
	require.Eventually(t, func() bool {
		dropped = metricValue(t, base, "switchyard_query_log_dropped_total") - dropped0
		return dropped >= n
	}, 10*time.Second, 20*time.Millisecond, "statements dropped: want %d", n)
	t.Logf("%d statements: %s with the log off, %s with the log stalled; %v dropped", n, baseline, stalled, dropped)
	require.Equal(t, float64(n), dropped, "every statement was dropped: the queue was already full")
	require.Zero(t, metricValue(t, base, "switchyard_query_log_written_total"))
	// Behaviour, not a benchmark: the same work finishes in the same order
	// of time (generous for a shared machine).
	require.Less(t, stalled, 3*baseline+5*time.Second)
}
