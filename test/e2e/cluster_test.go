package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

const tidbPrefix = config.DefaultTopologyPrefix

// twoClusters is a proxy in front of clusters east and west, each with its
// own real etcd and one real MariaDB registered in it like TiDB registers.
type twoClusters struct {
	etcdEast, etcdWest *etcdtest.Etcd
	east, west         *testenv.MariaDB
	proxy              *testenv.Proxy
	mainAddr           string // proxy.addr
	westAddr           string // the route port of west
	apiAddr            string // [api] addr; "" when the API is off (withAPI turns it on)
}

// twoClustersOption changes what startTwoClusters sets up.
type twoClustersOption func(t *testing.T, tc *twoClusters)

// withAPI serves the HTTP API on a free loopback port, tc.apiAddr.
func withAPI(t *testing.T, tc *twoClusters) { tc.apiAddr = testenv.FreeAddr(t) }

func startTwoClusters(t *testing.T, proxyExtra, routes string, opts ...twoClustersOption) *twoClusters {
	tc := &twoClusters{
		etcdEast: etcdtest.Start(t),
		etcdWest: etcdtest.Start(t),
		east:     testenv.SharedMariaDB(t),
		west:     testenv.StartMariaDB(t, testenv.MariaDBOptions{}),
		mainAddr: testenv.FreeAddr(t),
	}
	tc.westAddr = testenv.FreeAddr(t)
	for _, o := range opts {
		o(t, tc)
	}
	etcdtest.Register(t, tc.etcdEast.Client, tidbPrefix, tc.east.Addr(), etcdtest.InfoJSON("10.11-MariaDB", 0, ""), 30)
	etcdtest.Register(t, tc.etcdWest.Client, tidbPrefix, tc.west.Addr(), etcdtest.InfoJSON("10.11-MariaDB", 0, ""), 30)
	_, westPort := splitPort(t, tc.westAddr)
	routes = strings.ReplaceAll(routes, "{westPort}", westPort)
	cfg := fmt.Sprintf(`
[proxy]
addr = %q
%s

[health-check]
interval = "200ms"
timeout = "1s"
failures-to-unhealthy = 2

[log]
level = "debug"

# Always set: the default, 127.0.0.1:3080, would collide between tests.
%s

[[cluster]]
name = "east"
etcd-endpoints = [%q]

[[cluster]]
name = "west"
etcd-endpoints = [%q]

%s
`, tc.mainAddr, proxyExtra, apiTOML(tc.apiAddr), tc.etcdEast.Endpoint, tc.etcdWest.Endpoint, routes)
	tc.proxy = testenv.StartProxy(t, testenv.BuildProxy(t), cfg)
	return tc
}

func splitPort(t *testing.T, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	require.Positive(t, i)
	return addr[:i], addr[i+1:]
}

// backendPort asks the server a connection landed on for its port, which
// tells the two MariaDB servers apart.
func backendPort(t *testing.T, addr, user, password string) (string, error) {
	cfg := testenv.MySQLConfig(addr, user, password)
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	var port string
	err := db.QueryRowContext(ctxT(t, 30*time.Second), "SELECT @@port").Scan(&port)
	return port, err
}

func portOf(m *testenv.MariaDB) string { return fmt.Sprint(m.Port) }

// waitRoutable retries until a login through addr lands on want: the proxy
// starts before its clusters' etcd has answered.
func waitRoutable(t *testing.T, addr, user string, want *testenv.MariaDB) {
	t.Helper()
	var last error
	require.Eventually(t, func() bool {
		port, err := backendPort(t, addr, user, testenv.NativePassword)
		last = err
		return err == nil && port == portOf(want)
	}, 30*time.Second, 100*time.Millisecond, "login as %s via %s never reached port %d: %v", user, addr, want.Port, last)
}

func TestClusterRoutingRules(t *testing.T) {
	tc := startTwoClusters(t, "user-prefix-routing = true", `
[[route]]
cluster = "west"
ports = [{westPort}]

[[route]]
cluster = "east"
users = ["native"]
`)
	user := testenv.NativeUser
	// A user glob sends native to east on the main port.
	waitRoutable(t, tc.mainAddr, user, tc.east)
	// The route port sends the same user to west: first match wins.
	waitRoutable(t, tc.westAddr, user, tc.west)
	// The user prefix picks west on the main port and logs in without it.
	port, err := backendPort(t, tc.mainAddr, "west."+user, testenv.NativePassword)
	require.NoError(t, err)
	require.Equal(t, portOf(tc.west), port)
	port, err = backendPort(t, tc.mainAddr, "east."+user, testenv.NativePassword)
	require.NoError(t, err)
	require.Equal(t, portOf(tc.east), port)

	// No rule matches ed on the main port and there is no default cluster:
	// a clear ERR packet, not a silent close.
	_, err = backendPort(t, tc.mainAddr, testenv.EdUser, testenv.EdPassword)
	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	require.Equal(t, uint16(1105), me.Number)
	require.Contains(t, me.Message, "no route for user 'ed'")
	require.Contains(t, me.Message, "proxy.default-cluster is not set")

	// A wrong password still gets the backend's own 1045 through a prefix.
	_, err = backendPort(t, tc.mainAddr, "west."+user, "wrong")
	require.ErrorAs(t, err, &me)
	require.Equal(t, uint16(1045), me.Number)

	// COM_CHANGE_USER keeps the session's cluster: its own prefix is
	// removed, another cluster's is refused.
	rc, err := dialRaw(t, tc.mainAddr, "east."+user, testenv.NativePassword, "")
	require.NoError(t, err)
	require.NoError(t, rc.changeUser("east."+user, testenv.NativePassword, ""))
	err = rc.changeUser("west."+user, testenv.NativePassword, "")
	require.ErrorContains(t, err, "belongs to cluster west, but this session is connected to cluster east")
}

// One cluster's etcd going away leaves that cluster serving its last known
// backends, and the other cluster untouched.
func TestClusterEtcdDownKeepsServing(t *testing.T) {
	tc := startTwoClusters(t, `default-cluster = "east"`, `
[[route]]
cluster = "west"
ports = [{westPort}]
`)
	user := testenv.NativeUser
	waitRoutable(t, tc.mainAddr, user, tc.east)
	waitRoutable(t, tc.westAddr, user, tc.west)

	cfg := testenv.MySQLConfig(tc.mainAddr, user, testenv.NativePassword)
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, portOf(tc.east), queryString(t, conn, "SELECT @@port"))

	tc.etcdEast.Stop()
	// Give the proxy time to notice (it probes etcd every 2 x interval).
	require.Eventually(t, func() bool {
		return strings.Contains(tc.proxy.LogContents(), "topology stale")
	}, 30*time.Second, 100*time.Millisecond, "the proxy never noticed east's etcd going down")

	require.Equal(t, portOf(tc.east), queryString(t, conn, "SELECT @@port"), "an open session keeps working")
	for range 3 {
		port, err := backendPort(t, tc.mainAddr, user, testenv.NativePassword)
		require.NoError(t, err, "new sessions of a stale cluster go to its last known backends")
		require.Equal(t, portOf(tc.east), port)
	}
	// West is unaffected, and follows its own etcd: deregistering its only
	// backend stops new sessions there.
	port, err := backendPort(t, tc.westAddr, user, testenv.NativePassword)
	require.NoError(t, err)
	require.Equal(t, portOf(tc.west), port)
	etcdtest.Deregister(t, tc.etcdWest.Client, tidbPrefix, tc.west.Addr())
	require.Eventually(t, func() bool {
		_, err := backendPort(t, tc.westAddr, user, testenv.NativePassword)
		return err != nil && strings.Contains(err.Error(), "cluster west has no registered backends")
	}, 30*time.Second, 50*time.Millisecond)

	tc.etcdEast.Restart(t)
	require.Eventually(t, func() bool {
		return strings.Contains(tc.proxy.LogContents(), "etcd reachable again")
	}, 30*time.Second, 100*time.Millisecond)
}
