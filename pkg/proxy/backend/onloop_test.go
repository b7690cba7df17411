package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
)

// TestSessionsRunOnLoops: with Config.Loops, a session is served as a Task
// of a loop after its login. Waiting for its client, it is a coroutine
// suspended in the loop's wait (evloop), not a goroutine in the netpoller;
// several sessions share one loop and each answers on its own backend
// connection, interleaved. (The whole package also runs with every session
// on loops: SWITCHYARD_TEST_EVENT_LOOPS=1 and 2, in make unit.)
func TestSessionsRunOnLoops(t *testing.T) {
	if !evloop.Supported {
		t.Skip("event loops need Linux")
	}
	g, err := evloop.NewGroup(1)
	require.NoError(t, err)
	t.Cleanup(g.Close) // after the proxy's cleanup, which ends the sessions
	cfg := baseConfig()
	cfg.Loops = g
	cfg.IdleParkAfter = -1 // no parking: idle sessions stay in the loop
	b := startBackend(t)
	p := startProxy(t, cfg, b.Addr())

	const n = 8
	db, conns, ids := openSessions(t, p, n)
	ctx := context.Background()
	onLoop := func() (tasks, waiting int) {
		st := allStacks()
		return strings.Count(st, "backend.(*Session).serveOnLoop.func1("), strings.Count(st, "evloop.(*Task).wait(")
	}
	require.Eventually(t, func() bool {
		tasks, waiting := onLoop()
		return tasks == n && waiting >= n
	}, 5*time.Second, 5*time.Millisecond, "each idle session waits in the loop")

	for round := range 3 {
		for i := n - 1; i >= 0; i-- {
			var id int64
			require.NoError(t, conns[i].QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id), "round %d", round)
			require.Equal(t, ids[i], id, "the same backend connection")
		}
	}
	tasks, _ := onLoop()
	require.Equal(t, n, tasks, "still on the loop")
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.NoError(t, db.Close())
	p.requireIdle(t)
	require.Eventually(t, func() bool { tasks, _ := onLoop(); return tasks == 0 }, 5*time.Second, 5*time.Millisecond, "ended sessions leave the loop")
}
