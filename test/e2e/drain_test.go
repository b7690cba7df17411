package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/server"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// Drains against real MariaDB servers, through an in-process proxy with its
// API: the operator's drain moves sessions to the other backend of their
// cluster with their state, what cannot move is closed at the deadline with
// an ERR saying why, and nothing ever crosses clusters. Rebalancing onto a
// new backend is in rebalance_test.go.

const drainToken = "drain-token"

// startMigratable starts n MariaDB servers prepared like startMigrationPair's
// (same users, a migration account, table test.t).
func startMigratable(t *testing.T, n int) []*testenv.MariaDB {
	t.Helper()
	ms := make([]*testenv.MariaDB, n)
	var wg sync.WaitGroup
	for i := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms[i] = testenv.StartMariaDB(t, testenv.MariaDBOptions{})
		}()
	}
	wg.Wait()
	for _, m := range ms {
		root := m.RootDB(t)
		for _, q := range []string{
			fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", migUser, migPass),
			fmt.Sprintf("GRANT SELECT ON mysql.* TO '%s'@'%%'", migUser),
			"CREATE TABLE test.t (id INT PRIMARY KEY, v INT)",
		} {
			_, err := root.Exec(q)
			require.NoError(t, err, q)
		}
	}
	return ms
}

// drainFixture is an in-process proxy with its API.
type drainFixture struct {
	srv *server.Server
	api string
}

// clusterTOML is a [[cluster]] with a migration account over addrs.
func clusterTOML(name string, addrs ...string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	return fmt.Sprintf("[[cluster]]\nname = %q\ninstances = [%s]\nmigration-user = %q\nmigration-password = %q\n",
		name, strings.Join(q, ", "), migUser, migPass)
}

func drainConfig(balance string, clusters ...string) string {
	return fmt.Sprintf(`[proxy]
addr = "127.0.0.1:0"
default-cluster = "main"
[api]
addr = "127.0.0.1:0"
token = %q
[health-check]
interval = "500ms"
[balance]
policy = "connection"
%s
%s`, drainToken, balance, strings.Join(clusters, "\n"))
}

func startDrainFixture(t *testing.T, text string) *drainFixture {
	t.Helper()
	cfg, err := config.Parse([]byte(text))
	require.NoError(t, err)
	lg := zaptest.NewLogger(t)
	cm := cfgmgr.New(lg, "")
	cm.Init(cfg, []byte(text))
	srv, err := server.New(lg, cm)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Close)
	f := &drainFixture{srv: srv, api: srv.APIAddr().String()}
	f.waitHealthy(t)
	return f
}

// waitHealthy waits until every backend of the topology is healthy.
func (f *drainFixture) waitHealthy(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		n := 0
		for _, v := range f.srv.Topology().Clusters {
			for _, b := range v.Backends {
				if !b.Health.Healthy {
					return false
				}
				n++
			}
		}
		want := 0
		for _, c := range f.srv.Config().Current().Clusters {
			want += len(c.Instances)
		}
		return n == want
	}, 30*time.Second, 50*time.Millisecond, "backends healthy")
}

// call sends an API request with the token and decodes the answer into v.
func (f *drainFixture) call(t *testing.T, method, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+f.api+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+drainToken)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if v != nil {
		require.NoError(t, json.Unmarshal(body, v), string(body))
	}
	return resp.StatusCode
}

// waitClosed waits until n sessions were closed at a drain's deadline (and
// have ended).
func (f *drainFixture) waitClosed(t *testing.T, n int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		var doc api.MigrationsDoc
		if f.call(t, "GET", "/api/v1/migrations", &doc) != http.StatusOK || doc.Totals["closed"] < n {
			return false
		}
		closed := 0
		for _, ev := range doc.Recent {
			if ev.Result == "closed" {
				for _, in := range f.srv.Sessions() {
					if in.ID == ev.SessionID {
						return false // not ended yet
					}
				}
				closed++
			}
		}
		return int64(closed) >= n
	}, 30*time.Second, 50*time.Millisecond, "sessions closed at the drain deadline")
}

// placement is the backend address of every routed session, by session id.
func (f *drainFixture) placement() map[uint64]string {
	out := map[uint64]string{}
	for _, in := range f.srv.Sessions() {
		if in.Backend != "" {
			out[in.ID] = in.Cluster + "/" + in.Backend
		}
	}
	return out
}

// openConns opens n single connections through the proxy as user.
func openConns(t *testing.T, addr, user string, n int) []*sql.Conn {
	t.Helper()
	cfg := testenv.MySQLConfig(addr, user, testenv.NativePassword)
	db := testenv.OpenDB(t, cfg)
	ctx := ctxT(t, time.Minute)
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	return conns
}

func TestDrainMovesSessionsAndClosesWhatCannotMove(t *testing.T) {
	ms := startMigratable(t, 2)
	f := startDrainFixture(t, drainConfig("", clusterTOML("main", ms[0].Addr(), ms[1].Addr())))
	ctx := ctxT(t, 2*time.Minute)
	conns := openConns(t, f.srv.SQLAddr().String(), testenv.NativeUser, 6)
	for i, c := range conns {
		for _, q := range []string{"USE test", fmt.Sprintf("SET @x = %d", i), "SET SESSION sql_mode = 'ANSI_QUOTES'"} {
			_, err := c.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
	}
	// One session holds an advisory lock on the backend to drain: it
	// cannot move.
	drained := "main/" + ms[0].Addr()
	var locker *sql.Conn
	for _, c := range conns {
		if queryString(t, c, "SELECT @@port") == fmt.Sprint(ms[0].Port) {
			locker = c
			break
		}
	}
	require.NotNil(t, locker, "the router spreads sessions over both backends")
	require.Equal(t, "1", queryString(t, locker, "SELECT GET_LOCK('job', 0)"))

	var d api.BackendDrain
	require.Equal(t, http.StatusOK, f.call(t, "POST", "/api/v1/backends/"+drained+"/drain?timeout=6s", &d))
	require.True(t, d.Drained)

	// Every session but the locker leaves; new sessions go to the other one.
	require.Eventually(t, func() bool {
		n := 0
		for _, b := range f.placement() {
			if b == drained {
				n++
			}
		}
		return n == 1
	}, 30*time.Second, 20*time.Millisecond, "sessions still on the drained backend: %v", f.placement())
	fresh := openConns(t, f.srv.SQLAddr().String(), testenv.NativeUser, 2)
	for _, c := range fresh {
		require.Equal(t, fmt.Sprint(ms[1].Port), queryString(t, c, "SELECT @@port"), "a drained backend takes no new session")
	}
	for i, c := range conns {
		if c == locker {
			continue
		}
		require.Equal(t, fmt.Sprint(ms[1].Port), queryString(t, c, "SELECT @@port"))
		require.Equal(t, fmt.Sprint(i), queryString(t, c, "SELECT @x"), "state moved with the session")
		require.Equal(t, "test", queryString(t, c, "SELECT DATABASE()"))
		require.Equal(t, "ANSI_QUOTES", queryString(t, c, "SELECT @@sql_mode"))
	}

	// At the deadline the locker is closed with an ERR that says why: it
	// arrives as the answer to the client's next command.
	f.waitClosed(t, 1)
	_, lockErr := locker.ExecContext(ctx, "SELECT 1")
	var me *mysql.MySQLError
	require.True(t, errors.As(lockErr, &me), "want an ERR packet, got %v", lockErr)
	require.Equal(t, uint16(1053), me.Number)
	require.Contains(t, me.Message, "drained by an operator")
	require.Contains(t, me.Message, "GET_LOCK")

	var doc api.MigrationsDoc
	require.Equal(t, http.StatusOK, f.call(t, "GET", "/api/v1/migrations", &doc))
	require.GreaterOrEqual(t, doc.Totals["ok"], int64(1))
	require.Equal(t, int64(1), doc.Totals["closed"])
	require.Len(t, doc.Drains, 1)

	var undrain api.BackendDrain
	require.Equal(t, http.StatusOK, f.call(t, "DELETE", "/api/v1/backends/"+drained+"/drain", &undrain))
	require.NotNil(t, undrain.WasDrained)
	require.True(t, *undrain.WasDrained)
	require.Equal(t, http.StatusNotFound, f.call(t, "POST", "/api/v1/backends/main/127.0.0.1:1/drain", nil))
}

func TestDrainNeverMovesToAnotherCluster(t *testing.T) {
	ms := startMigratable(t, 2)
	// Two clusters of one backend each: draining main's only backend
	// leaves its sessions nowhere to go in main, and other's backend must
	// not take them.
	text := drainConfig("", clusterTOML("main", ms[0].Addr()), clusterTOML("other", ms[1].Addr()))
	f := startDrainFixture(t, text)
	ctx := ctxT(t, time.Minute)
	conns := openConns(t, f.srv.SQLAddr().String(), testenv.NativeUser, 3)
	require.Equal(t, http.StatusOK, f.call(t, "POST", "/api/v1/backends/main/"+ms[0].Addr()+"/drain?timeout=3s", nil))
	// A reload that changes nothing about main must not move them either.
	require.NoError(t, f.srv.Config().Set([]byte(text+"\n")))
	// The clients stay idle until the deadline has closed their sessions, so
	// that the ERR arrives as the answer to their next command.
	f.waitClosed(t, 3)
	_, err := conns[0].ExecContext(ctx, "SELECT 1")
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me), "%v", err)
	require.Contains(t, me.Message, "no other backend of cluster main could take it")
	var doc api.MigrationsDoc
	require.Equal(t, http.StatusOK, f.call(t, "GET", "/api/v1/migrations", &doc))
	require.Zero(t, doc.Totals["ok"], "no session moved anywhere")
	for _, ev := range doc.Recent {
		require.Equal(t, "main", ev.Cluster)
		require.Empty(t, ev.To)
	}
}

// TiDB cannot run here: two test/mysqldouble servers speaking TiDB's session
// migration protocol stand in for it. A drain moves the session with
// SHOW SESSION_STATES, a tidb_session_token login and SET SESSION_STATES,
// without any migration account; one holding a table lock is refused (ERROR
// 8146) and closed at the deadline with TiDB's reason.
func TestDrainTiDBDoubles(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	var tidb [2]*mysqldouble.Server
	for i := range tidb {
		tidb[i] = mysqldouble.Start(t, mysqldouble.Config{
			NativeUsers:   map[string]string{"app": "pw"},
			ServerVersion: "8.0.11-TiDB-v7.5.0",
			TiDB:          &mysqldouble.TiDBConfig{SigningKey: key},
		})
	}
	text := drainConfig("", fmt.Sprintf("[[cluster]]\nname = \"main\"\ninstances = [%q, %q]\n", tidb[0].Addr(), tidb[1].Addr()))
	f := startDrainFixture(t, text)
	ctx := ctxT(t, time.Minute)
	cfg := testenv.MySQLConfig(f.srv.SQLAddr().String(), "app", "pw")
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	// Open the connections one by one, noting which session (and so which
	// double) each one got.
	drained := "main/" + tidb[0].Addr()
	conns := make([]*sql.Conn, 4)
	var locker *sql.Conn
	for i := range conns {
		before := f.placement()
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
		for _, q := range []string{"USE shop", fmt.Sprintf("SET @x = %d", i)} {
			_, err := c.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
		for id, b := range f.placement() {
			if _, old := before[id]; !old && b == drained && locker == nil {
				// The first session on the drained double holds a table lock.
				locker = c
				_, err := c.ExecContext(ctx, "LOCK TABLES t WRITE")
				require.NoError(t, err)
			}
		}
	}
	require.NotNil(t, locker, "the router spreads sessions over both doubles")

	require.Equal(t, http.StatusOK, f.call(t, "POST", "/api/v1/backends/"+drained+"/drain?timeout=3s", nil))
	f.waitClosed(t, 1)
	_, lockErr := locker.ExecContext(ctx, "SELECT 1")
	var me *mysql.MySQLError
	require.True(t, errors.As(lockErr, &me), "want an ERR packet, got %v", lockErr)
	require.Contains(t, me.Message, "cannot migrate the current session")
	for i, c := range conns {
		if c == locker {
			continue
		}
		require.Equal(t, fmt.Sprint(i), queryString(t, c, "SELECT @x"), "state moved with SET SESSION_STATES")
		require.Equal(t, "shop", queryString(t, c, "SELECT DATABASE()"))
	}
	require.Equal(t, int64(1), tidb[1].Stats().TokenLogins, "one session moved by token login")
	require.Equal(t, int64(1), tidb[1].Stats().StatesRestored)
	require.GreaterOrEqual(t, tidb[0].Stats().MigrationRefusals, int64(1))
}
