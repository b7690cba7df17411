package backend

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// TestBackendCloseOfIdleSessionReachesClient: when the backend closes an
// idle connection (wait_timeout, KILL, shutdown), the client's connection
// closes too, as it would directly, so that drivers notice before their
// next command instead of getting an error for it (go-sql-driver's
// TestStaleConnectionChecks failed through the proxy before).
func TestBackendCloseOfIdleSessionReachesClient(t *testing.T) {
	dbl := mysqldouble.Start(t, mysqldouble.Config{NativeUsers: nativeUsers})
	p := startProxy(t, baseConfig(), dbl.Addr())

	busy := dialRaw(t, p.Addr())
	rawNativeLogin(t, busy, "nate", "n4tive")
	// A session that keeps sending commands is served as usual, its
	// commands arriving faster than the idle watch starts.
	for range 3 {
		busy.pio.ResetSequence()
		busy.write([]byte{pmysql.ComPing})
		require.Equal(t, pmysql.OKHeader, busy.read()[0])
		time.Sleep(idleWatchDelay / 3)
	}

	idle := dialRaw(t, p.Addr())
	rawNativeLogin(t, idle, "nate", "n4tive")
	time.Sleep(idleWatchDelay + 500*time.Millisecond)
	// A command after the watch started is served too (the watcher hands
	// the backend back).
	idle.pio.ResetSequence()
	idle.write([]byte{pmysql.ComPing})
	require.Equal(t, pmysql.OKHeader, idle.read()[0])
	time.Sleep(idleWatchDelay + 500*time.Millisecond)

	require.NoError(t, dbl.Close())
	idle.requireClosed()
	busy.requireClosed()
	p.requireIdle(t)
}
