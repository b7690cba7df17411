package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// reloadCycles is how many times cluster b is added, changed and removed.
func reloadCycles() int {
	if n, err := strconv.Atoi(os.Getenv("SWITCHYARD_RELOAD_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 50
}

// reloadConfig renders a config with cluster a, and cluster b on bBackend
// when it is not "".
func reloadConfig(addr, apiAddr, aBackend, bBackend, extra string) string {
	cfg := fmt.Sprintf(`[proxy]
addr = %q
user-prefix-routing = true
default-cluster = "a"

%s
[health-check]
interval = "200ms"

[log]
level = "info"

[[cluster]]
name = "a"
instances = [%q]
`, addr, apiTOML(apiAddr), aBackend)
	if bBackend != "" {
		cfg += fmt.Sprintf(`
[[cluster]]
name = "b"
instances = [%q]
drain-timeout = "2s"
`, bBackend)
	}
	return cfg + extra
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := readClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	if v != nil {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

// TestReloadUnderLoad: a client keeps querying cluster a on one connection
// while cluster b is added, changed and removed again and again by rewriting
// the file. a sees no error and no reconnect and its runtime is never
// rebuilt; b's new sessions follow each change; a removed b drains.
func TestReloadUnderLoad(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	m2 := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	p := testenv.StartProxy(t, testenv.BuildProxy(t), reloadConfig(addr, apiAddr, m.Addr(), "", ""))
	apiURL := "http://" + apiAddr

	var before api.Cluster
	require.Equal(t, http.StatusOK, getJSON(t, apiURL+"/api/v1/clusters/a", &before))

	// The load on a: one connection, queries back to back.
	ctx, stop := context.WithCancel(context.Background())
	db := nativeDB(t, addr)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	var connID string
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&connID))
	var queries, failures atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var id string
			err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id)
			if err == nil && id != connID {
				err = fmt.Errorf("connection id changed from %s to %s: the client was reconnected", connID, id)
			}
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				continue
			}
			queries.Add(1)
		}
	}()

	// b is reached through the user prefix.
	bPort := func() (string, error) { return backendPort(t, addr, "b."+testenv.NativeUser, testenv.NativePassword) }
	waitB := func(want *testenv.MariaDB, why string) {
		t.Helper()
		var last error
		require.Eventually(t, func() bool {
			port, err := bPort()
			last = err
			return err == nil && port == portOf(want)
		}, 20*time.Second, 20*time.Millisecond, "%s: b never reached port %d (last error %v)", why, want.Port, last)
	}
	write := func(cfg string) {
		t.Helper()
		require.NoError(t, p.WriteConfig(cfg))
	}

	cycles := reloadCycles()
	start := time.Now()
	for i := range cycles {
		write(reloadConfig(addr, apiAddr, m.Addr(), m2.Addr(), ""))
		waitB(m2, fmt.Sprintf("cycle %d: add", i))

		write(reloadConfig(addr, apiAddr, m.Addr(), m.Addr(), ""))
		waitB(m, fmt.Sprintf("cycle %d: change", i))

		// A session of b that is idle, and (in the first and last cycles) one
		// inside a transaction, which only the drain timeout can end.
		idle := openConn(t, addr, "b."+testenv.NativeUser)
		var inTxn *sql.Conn
		if i == 0 || i == cycles-1 {
			inTxn = openConn(t, addr, "b."+testenv.NativeUser)
			_, err := inTxn.ExecContext(ctx, "BEGIN")
			require.NoError(t, err)
		}
		removedAt := time.Now()
		write(reloadConfig(addr, apiAddr, m.Addr(), "", ""))
		require.Eventually(t, func() bool {
			_, err := bPort()
			var me *mysql.MySQLError
			// "b.native" is no cluster's prefix any more: it is a user of a,
			// which does not exist.
			return err != nil && errorAs(err, &me) && me.Number == 1045
		}, 20*time.Second, 20*time.Millisecond, "cycle %d: b still routable after removal", i)
		// The idle session was closed at its transaction boundary.
		require.Eventually(t, func() bool { return idle.PingContext(ctx) != nil }, 10*time.Second, 20*time.Millisecond,
			"cycle %d: idle session of removed b not closed", i)
		_ = idle.Close()
		if inTxn != nil {
			var me *mysql.MySQLError
			require.Eventually(t, func() bool {
				_, err := inTxn.ExecContext(ctx, "SELECT 1")
				if errorAs(err, &me) {
					return true
				}
				return false
			}, 10*time.Second, 100*time.Millisecond, "cycle %d: in-transaction session of removed b not closed", i)
			require.Equal(t, uint16(1053), me.Number)
			require.Contains(t, me.Message, "cluster b was removed from the configuration")
			elapsed := time.Since(removedAt)
			require.GreaterOrEqual(t, elapsed, 2*time.Second, "the transaction had drain-timeout to finish")
			t.Logf("in-transaction session closed %v after removal (drain-timeout 2s)", elapsed.Round(10*time.Millisecond))
			_ = inTxn.Close()
		}
	}
	t.Logf("%d add/change/remove cycles in %v", cycles, time.Since(start).Round(time.Millisecond))

	stop()
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		t.Fatalf("cluster a saw %d failed queries; first: %v", failures.Load(), *e)
	}
	require.Positive(t, queries.Load())
	t.Logf("cluster a served %d queries on one connection during the reloads", queries.Load())

	var after api.Cluster
	require.Equal(t, http.StatusOK, getJSON(t, apiURL+"/api/v1/clusters/a", &after))
	require.Equal(t, before.Generation, after.Generation, "cluster a's runtime was never rebuilt")
	// Once drained, b is gone from the API too.
	require.Eventually(t, func() bool {
		return getJSON(t, apiURL+"/api/v1/clusters/b", nil) == http.StatusNotFound
	}, 10*time.Second, 50*time.Millisecond)
	var st api.ConfigStatus
	getJSON(t, apiURL+"/api/v1/config/status", &st)
	require.Equal(t, "ok", st.LastResult)
	require.GreaterOrEqual(t, st.Reloads, 3*cycles)
}

func openConn(t *testing.T, addr, user string) *sql.Conn {
	t.Helper()
	cfg := testenv.MySQLConfig(addr, user, testenv.NativePassword)
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	c, err := db.Conn(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.PingContext(context.Background()))
	return c
}

func errorAs(err error, me **mysql.MySQLError) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*mysql.MySQLError)
	if ok {
		*me = e
	}
	return ok
}

// TestBadConfigKeepsServing: a config with a syntax error, an unknown key or
// a duplicate cluster is refused with its line; the old one keeps serving,
// and the status API and SIGHUP report it.
func TestBadConfigKeepsServing(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	good := reloadConfig(addr, apiAddr, m.Addr(), "", "")
	p := testenv.StartProxy(t, testenv.BuildProxy(t), good)
	apiURL := "http://" + apiAddr
	var initial api.ConfigStatus
	getJSON(t, apiURL+"/api/v1/config/status", &initial)

	for _, bad := range []struct{ name, text, want string }{
		{"syntax", good + "\n[[cluster]\n", "syntax error"},
		{"unknown key", good + "bogus-key = 1\n", "unknown key cluster[0].bogus-key"},
		{"duplicate cluster", good + "\n[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:1\"]\n", `cluster[1].name "a": duplicates cluster[0].name`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			require.NoError(t, p.WriteConfig(bad.text))
			var st api.ConfigStatus
			require.Eventually(t, func() bool {
				getJSON(t, apiURL+"/api/v1/config/status", &st)
				return st.LastResult == "error" && strings.Contains(st.LastError, bad.want)
			}, 10*time.Second, 20*time.Millisecond, "status never showed the error: %+v", st)
			require.Regexp(t, `line \d+: `, st.LastError)
			require.Equal(t, initial.Checksum, st.Checksum, "the running config is unchanged")
			port, err := backendPort(t, addr, testenv.NativeUser, testenv.NativePassword)
			require.NoError(t, err, "the old config keeps serving")
			require.Equal(t, portOf(m), port)
			var h api.Health
			getJSON(t, apiURL+"/api/v1/health", &h)
			require.Equal(t, "healthy", h.Status, "a bad file does not make the proxy unhealthy")
			require.NotEmpty(t, h.Warnings)
		})
	}
	// SIGHUP re-reads the (still bad) file and reports again.
	var st api.ConfigStatus
	getJSON(t, apiURL+"/api/v1/config/status", &st)
	require.NoError(t, p.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		var now api.ConfigStatus
		getJSON(t, apiURL+"/api/v1/config/status", &now)
		return now.Reloads > st.Reloads && now.LastSource == "sighup" && now.LastResult == "error"
	}, 10*time.Second, 20*time.Millisecond)
	// Fixing the file applies it.
	require.NoError(t, p.WriteConfig(good+"\n# fixed\n"))
	require.Eventually(t, func() bool {
		var now api.ConfigStatus
		getJSON(t, apiURL+"/api/v1/config/status", &now)
		return now.LastResult == "ok" && now.Checksum != initial.Checksum
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, p.LogContents(), "config rejected; the running config is unchanged")
}
