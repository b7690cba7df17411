package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
