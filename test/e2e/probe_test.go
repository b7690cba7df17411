package e2e

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
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
	backends := func(c require.TestingT) map[string]api.Backend {
		var bs []api.Backend
		require.NoError(c, getAPI(apiAddr, "/api/v1/backends", &bs))
		m := map[string]api.Backend{}
		for _, b := range bs {
			m[b.Addr] = b
		}
		return m
	}
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
