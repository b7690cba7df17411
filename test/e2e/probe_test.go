package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/etcdtest"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestLoginProbeIsNotAnAbortedConnect: probes that hang up after the greeting
// count as aborted connections in MariaDB (which blocks a host after
// max_connect_errors of them); with [health-check] sql-user they log in and
// quit, and the counter stays still.
func TestLoginProbeIsNotAnAbortedConnect(t *testing.T) {
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	root := m.RootDB(t)
	_, err := root.Exec("CREATE USER 'switchyard_probe'@'%'")
	require.NoError(t, err)
	aborted := func() int {
		var name, v string
		require.NoError(t, root.QueryRow("SHOW GLOBAL STATUS LIKE 'Aborted_connects'").Scan(&name, &v))
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return n
	}
	run := func(extra string) int {
		t.Helper()
		addr := testenv.FreeAddr(t)
		p := testenv.StartProxy(t, testenv.BuildProxy(t), fmt.Sprintf(`[proxy]
addr = %q
[api]
addr = ""
[health-check]
interval = "100ms"
%s
[[cluster]]
name = "db"
instances = [%q]
`, addr, extra, m.Addr()))
		waitRoutable(t, addr, testenv.NativeUser, m)
		before := aborted()
		time.Sleep(1500 * time.Millisecond) // about 15 probes
		delta := aborted() - before
		port, err := backendPort(t, addr, testenv.NativeUser, testenv.NativePassword)
		require.NoError(t, err, "the backend is healthy and serving")
		require.Equal(t, portOf(m), port)
		p.Kill()
		return delta
	}
	greeting := run("")
	login := run(`sql-user = "switchyard_probe"`)
	t.Logf("aborted connects in 1.5 s of probing: greeting-only probes %d, login probes %d", greeting, login)
	require.GreaterOrEqual(t, greeting, 5, "greeting-only probes are aborted connects (this is what sql-user avoids)")
	require.Zero(t, login, "login probes are not aborted connects")
}

// backendsByAddr is the API's backends at apiAddr, by address.
func backendsByAddr(c require.TestingT, apiAddr string) map[string]api.Backend {
	var bs []api.Backend
	require.NoError(c, getAPI(apiAddr, "/api/v1/backends", &bs))
	m := map[string]api.Backend{}
	for _, b := range bs {
		m[b.Addr] = b
	}
	return m
}

// TestKeptProbeHungBackend: with [health-check] sql-user the probes of a
// cluster's backends are COM_PINGs on kept connections, sent together and
// read in turn. A backend that hangs (SIGSTOP on mariadbd) is found unhealthy
// and new sessions go to the other, which the hung one does not drag down:
// it stays healthy, probed every interval. After SIGCONT the hung backend is
// healthy again.
func TestKeptProbeHungBackend(t *testing.T) {
	a := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	b := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	for _, m := range []*testenv.MariaDB{a, b} {
		_, err := m.RootDB(t).Exec("CREATE USER 'switchyard_probe'@'%'")
		require.NoError(t, err)
	}
	apiAddr := testenv.FreeAddr(t)
	p := startProxy(t, proxyConfig{backends: []string{a.Addr(), b.Addr()}, apiAddr: apiAddr,
		extra: "\n[health-check]\ninterval = \"200ms\"\ntimeout = \"500ms\"\nfailures-to-unhealthy = 2\n" +
			"sql-user = \"switchyard_probe\"\n"})
	backends := func(c require.TestingT) map[string]api.Backend { return backendsByAddr(c, apiAddr) }
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		bs := backends(c)
		for _, m := range []*testenv.MariaDB{a, b} {
			require.True(c, bs[m.Addr()].Healthy, "%s: %s", m.Addr(), bs[m.Addr()].Reason)
			require.NotNil(c, bs[m.Addr()].LastProbe)
		}
	}, 30*time.Second, 100*time.Millisecond)

	t.Cleanup(func() { _ = syscall.Kill(b.Pid(), syscall.SIGCONT) })
	require.NoError(t, testenv.Freeze(b.Pid()))
	frozen := time.Now()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		h := backends(c)[b.Addr()]
		require.False(c, h.Healthy)
		// The kept connection's ping times out first; the probes after it
		// connect again, and time out on the greeting.
		require.Contains(c, h.Reason, "sql port")
		require.Contains(c, h.Reason, "deadline exceeded")
	}, 30*time.Second, 100*time.Millisecond, "the hung backend is found unhealthy")
	// Meanwhile the other was probed and found healthy, round after round.
	time.Sleep(2 * time.Second)
	other := backends(t)[a.Addr()]
	require.True(t, other.Healthy, other.Reason)
	require.NotNil(t, other.LastProbe)
	require.True(t, other.LastProbe.After(frozen.Add(time.Second)), "probed since the hang: %v", other.LastProbe)
	for range 5 {
		port, err := sessionPort(p.Addr)
		require.NoError(t, err)
		require.Equal(t, portOf(a), port, "a new session landed on the hung backend")
	}

	require.NoError(t, syscall.Kill(b.Pid(), syscall.SIGCONT))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.True(c, backends(c)[b.Addr()].Healthy)
	}, 30*time.Second, 100*time.Millisecond, "healthy again after SIGCONT")
}

// statusPort is a TiDB-like status port served by the test: /status answers
// as set (200, 500, or nothing at all), /metrics a page. It records which
// connections (remote addresses) the scheduled /status checks came on;
// the fleet's vote probes, which ask once on a new connection with
// Connection: close, are not recorded.
type statusPort struct {
	srv  *httptest.Server
	mode atomic.Int32 // statusOK, status500 or statusHang
	hang chan struct{}

	mu    sync.Mutex
	peers []string // the remote address of each /status request, in order
}

const (
	statusOK int32 = iota
	status500
	statusHang
)

func newStatusPort(t *testing.T) *statusPort {
	s := &statusPort{hang: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			_, _ = io.WriteString(w, "tidb_server_maxprocs 2\nprocess_cpu_seconds_total 1\n")
			return
		}
		if !r.Close {
			s.mu.Lock()
			s.peers = append(s.peers, r.RemoteAddr)
			s.mu.Unlock()
		}
		switch s.mode.Load() {
		case status500:
			w.WriteHeader(http.StatusInternalServerError)
		case statusHang:
			select {
			case <-s.hang:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, `{"connections":0}`)
	}))
	t.Cleanup(func() {
		close(s.hang)
		s.srv.Close()
	})
	return s
}

func (s *statusPort) port() uint { return uint(s.srv.Listener.Addr().(*net.TCPAddr).Port) }

// since is the connections that /status requests came on from the n-th on,
// and how many requests that was.
func (s *statusPort) since(n int) (conns map[string]bool, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns = map[string]bool{}
	for _, p := range s.peers[min(n, len(s.peers)):] {
		conns[p] = true
	}
	return conns, max(len(s.peers)-n, 0)
}

func (s *statusPort) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// TestKeptProbeStatusPort: with [health-check] sql-user, backends registered
// with a status port (as every TiDB is) are checked on two kept connections
// each, a COM_PING to the real MariaDB and a GET of /status, which the
// prober's loop sends together for the cluster's backends. The status check
// asks on one connection round after round; a 500 makes the backend
// unhealthy and keeps the connection; a status port that stops answering
// makes it unhealthy within the timeout, and the check connects anew once it
// answers again. The other backend stays healthy and takes the new sessions
// meanwhile.
func TestKeptProbeStatusPort(t *testing.T) {
	etcd := etcdtest.Start(t)
	a := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	b := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	sa, sb := newStatusPort(t), newStatusPort(t)
	for _, m := range []*testenv.MariaDB{a, b} {
		_, err := m.RootDB(t).Exec("CREATE USER 'switchyard_probe'@'%'")
		require.NoError(t, err)
	}
	etcdtest.Register(t, etcd.Client, tidbPrefix, a.Addr(), etcdtest.InfoJSON("8.0.11-TiDB-v7.5.0", sa.port(), ""), 30)
	etcdtest.Register(t, etcd.Client, tidbPrefix, b.Addr(), etcdtest.InfoJSON("8.0.11-TiDB-v7.5.0", sb.port(), ""), 30)

	addr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	testenv.StartProxy(t, testenv.BuildProxy(t), fmt.Sprintf(`[proxy]
addr = %q
%s
[health-check]
interval = "200ms"
timeout = "2s" # long enough that a loaded machine does not time a check out and reconnect
failures-to-unhealthy = 2
sql-user = "switchyard_probe"
[[cluster]]
name = "db"
etcd-endpoints = [%q]
`, addr, apiTOML(apiAddr), etcd.Endpoint))
	backends := func(c require.TestingT) map[string]api.Backend { return backendsByAddr(c, apiAddr) }
	healthy := func(m *testenv.MariaDB, msg string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			h := backends(c)[m.Addr()]
			require.True(c, h.Healthy, "%s: %s", m.Addr(), h.Reason)
			require.NotNil(c, h.LastProbe)
		}, 30*time.Second, 100*time.Millisecond, msg)
	}
	unhealthy := func(m *testenv.MariaDB, reason ...string) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			h := backends(c)[m.Addr()]
			require.False(c, h.Healthy)
			for _, r := range reason {
				require.Contains(c, h.Reason, r)
			}
		}, 30*time.Second, 100*time.Millisecond, "%s found unhealthy", m.Addr())
	}
	onlyA := func() {
		t.Helper()
		for range 5 {
			port, err := sessionPort(addr)
			require.NoError(t, err)
			require.Equal(t, portOf(a), port, "a new session landed on the unhealthy backend")
		}
	}
	healthy(a, "a is healthy")
	healthy(b, "b is healthy")

	// Round after round on one connection per status port.
	from := []int{sa.requests(), sb.requests()}
	time.Sleep(2 * time.Second) // about ten rounds
	for i, s := range []*statusPort{sa, sb} {
		conns, n := s.since(from[i])
		require.GreaterOrEqual(t, n, 5, "the status port was asked every round")
		require.Len(t, conns, 1, "one kept connection: %v", conns)
	}

	// A 500: unhealthy, and the connection that carried it is kept.
	from[1] = sb.requests()
	sb.mode.Store(status500)
	unhealthy(b, "status port answered 500")
	onlyA()
	sb.mode.Store(statusOK)
	healthy(b, "b is healthy once /status answers 200 again")
	conns, _ := sb.since(from[1])
	require.Len(t, conns, 1, "the connection was kept through the 500s: %v", conns)

	// A status port that stops answering: unhealthy within the timeout;
	// the check connects anew when it answers again.
	hangFrom := sb.requests()
	sb.mode.Store(statusHang)
	unhealthy(b, "status port: Get", "deadline exceeded")
	onlyA()
	require.True(t, backends(t)[a.Addr()].Healthy, "a stays healthy meanwhile")
	hung, _ := sb.since(hangFrom)
	from[1] = sb.requests()
	sb.mode.Store(statusOK)
	healthy(b, "b is healthy once /status answers again")
	conns, n := sb.since(from[1])
	require.Positive(t, n)
	for c := range conns {
		require.False(t, hung[c], "a connection that hung was asked again: %s", c)
	}
}

// TestFullBackendStaysRoutable: a MariaDB at max_connections answers every
// new connection with ERR 1040 before the handshake. It is up, so the
// proxy's probes keep it healthy (two failed probes would take it out of
// routing here), and a client of the proxy hears the server's own refusal,
// as a direct client reads it (go-sql-driver's TestConcurrent compares the
// text), and gets in once a slot is free.
func TestFullBackendStaysRoutable(t *testing.T) {
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{MaxConnections: 6})
	apiAddr := testenv.FreeAddr(t)
	addr := startProxy(t, proxyConfig{backends: []string{m.Addr()}, apiAddr: apiAddr,
		extra: "\n[health-check]\ninterval = \"100ms\"\nfailures-to-unhealthy = 2\n"}).Addr
	waitRoutable(t, addr, testenv.NativeUser, m)
	ctx := ctxT(t, time.Minute)

	// Fill the server directly. A probe in flight holds a slot for a
	// moment, so fill again after the probes have met the full server.
	direct := nativeDB(t, m.Addr())
	direct.SetMaxIdleConns(0)
	var held []*sql.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	var refusal error
	fill := func() {
		for {
			c, err := direct.Conn(ctx)
			if err != nil {
				refusal = err
				return
			}
			held = append(held, c)
			require.Less(t, len(held), 20, "max_connections is 6")
		}
	}
	fill()
	time.Sleep(300 * time.Millisecond)
	fill()
	require.Equal(t, "Error 1040: Too many connections", refusal.Error())

	time.Sleep(time.Second) // ten probes of the full server
	b := backendsByAddr(t, apiAddr)[m.Addr()]
	require.True(t, b.Healthy, "a full server is up: %s", b.Reason)

	proxied := nativeDB(t, addr)
	proxied.SetMaxIdleConns(0)
	_, err := proxied.Conn(ctx)
	require.Error(t, err)
	require.Equal(t, refusal.Error(), err.Error(), "the client hears what a direct client hears")

	require.NoError(t, held[len(held)-1].Close())
	held = held[:len(held)-1]
	require.Eventually(t, func() bool {
		c, err := proxied.Conn(ctx)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 10*time.Second, 50*time.Millisecond, "a freed slot serves the proxy's client")
}
