package backend

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// TestIdleWatchInterleaving runs commands separated by pauses around the
// watch delay, so that the watch is armed, fires its timer, parks and is
// interrupted by the next command in every order. Under -race this checks
// that the watch and the session goroutine never share the backend socket.
func TestIdleWatchInterleaving(t *testing.T) {
	b := startBackend(t)
	p := startProxy(t, baseConfig(), b.Addr())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "nate", "n4tive", ""))
			if err != nil {
				errs <- err
				return
			}
			db := sql.OpenDB(connector)
			defer db.Close()
			conn, err := db.Conn(context.Background())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for range 25 {
				var one int
				if err := conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&one); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Duration(rand.IntN(2*int(idleWatchDelay))) + idleWatchDelay/2)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	p.requireIdle(t)
}

// TestIdleWatchCost measures what watching costs per idle session: one
// parked goroutine (the timer callback) once the session idles longer than
// idleWatchDelay, and nothing for a session between quick commands.
func TestIdleWatchCost(t *testing.T) {
	b := startBackend(t)
	p := startProxy(t, baseConfig(), b.Addr())
	const n = 200
	connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxIdleConns(n)
	conns := make([]*sql.Conn, n)
	for i := range conns {
		conns[i], err = db.Conn(context.Background())
		require.NoError(t, err)
		defer conns[i].Close()
	}
	ping := func() {
		for _, c := range conns {
			require.NoError(t, c.PingContext(context.Background()))
		}
	}
	ping()
	require.Eventually(t, func() bool { return watchGoroutines() == n }, 5*time.Second, 10*time.Millisecond,
		"every idle session has one parked watch")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	withWatch := ms.StackInuse
	// Closing the sessions' backends... is not needed: stopping the watch
	// is what a busy session does. Measure by parking them all busy-free:
	// the difference to a process without the watches is their stacks.
	t.Logf("%d idle sessions, %d watch goroutines; stack in use %d KiB for all goroutines of the test process",
		n, watchGoroutines(), withWatch>>10)
	// A quick command disarms the watch; the timer only re-parks after the
	// delay.
	require.NoError(t, conns[0].PingContext(context.Background()))
	require.LessOrEqual(t, watchGoroutines(), n)
}

// watchGoroutines counts the goroutines parked in an idle watch.
func watchGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "backend.(*idleWatch).watch(")
}

// TestIdleWatchStackCost measures the memory of a parked watch: the stack
// of its goroutine (MemStats.StackInuse before and after parking 500).
func TestIdleWatchStackCost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const n = 500
	var watches []*idleWatch
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		peer, err := ln.Accept()
		require.NoError(t, err)
		defer c.Close()
		defer peer.Close()
		watches = append(watches, newIdleWatch(c, func() {}))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, w := range watches {
		w.arm()
	}
	require.Eventually(t, func() bool { return watchGoroutines() == n }, 5*time.Second, 10*time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.StackInuse-before.StackInuse) / n
	t.Logf("a parked idle watch costs %.0f bytes of stack (%d watches)", per, n)
	require.Less(t, per, 16.0*1024, "a parked watch stays a small goroutine")
	for _, w := range watches {
		require.False(t, w.disarm(), "nothing was readable")
	}
	require.Eventually(t, func() bool { return watchGoroutines() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestIdleWatchOneWatcher: a timer callback that starts late (from an
// earlier arm whose timer had fired when disarm stopped it) while another
// watcher is parked returns at once, so that disarm, which waits for the
// watcher, leaves nobody reading the socket. Two watchers let one of them
// read the answer to the session's next statement (found by the soak).
func TestIdleWatchOneWatcher(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer peer.Close()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()

	var ends atomic.Int32
	w := newIdleWatch(conn, func() { ends.Add(1) })
	parked := make(chan struct{}, 4)
	hold := make(chan struct{})
	defer close(hold)
	var mu sync.Mutex
	calls := 0
	w.beforePark = func() {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		parked <- struct{}{}
		if n > 1 {
			<-hold // a second watcher stays here until the test ends
		}
	}
	w.arm()
	<-parked // the timer's watcher is about to park

	late := make(chan struct{})
	go func() {
		w.watch() // the late callback of an earlier arm
		close(late)
	}()
	select {
	case <-late:
	case <-parked:
		t.Fatal("a second watcher started while one was parked")
	case <-time.After(5 * time.Second):
		t.Fatal("the late callback neither returned nor parked")
	}
	require.False(t, w.disarm(), "nothing became readable")
	require.Zero(t, ends.Load())
}
