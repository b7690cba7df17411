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

// TestIdleWatchCost: every session idle longer than idleWatchDelay has its
// backend socket registered with the poller, and no goroutine of its own
// beyond the session's; after a command it registers again.
func TestIdleWatchCost(t *testing.T) {
	b := startBackend(t)
	p := startProxy(t, baseConfig(), b.Addr())
	const n = 200
	connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxIdleConns(n)
	before := pollerLen()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		conns[i], err = db.Conn(context.Background())
		require.NoError(t, err)
		defer conns[i].Close()
	}
	for _, c := range conns {
		require.NoError(t, c.PingContext(context.Background()))
	}
	require.Eventually(t, func() bool { return pollerLen() >= before+n }, 5*time.Second, 10*time.Millisecond,
		"every idle session is registered")
	// A timer callback can be running at any moment (the second beat asks
	// sessions to park); none stays.
	require.Eventually(t, func() bool { return strings.Count(allStacks(), "backend.(*idleWatch)") == 0 },
		5*time.Second, 10*time.Millisecond, "no goroutine waits in a watch")
	// A command withdraws the session's registration; idle again, it
	// registers again.
	require.NoError(t, conns[0].PingContext(context.Background()))
	require.Eventually(t, func() bool { return pollerLen() >= before+n }, 5*time.Second, 10*time.Millisecond)
}

func allStacks() string {
	buf := make([]byte, 1<<22)
	return string(buf[:runtime.Stack(buf, true)])
}

// tcpPair returns the two ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T, ln net.Listener) (dialed, accepted net.Conn) {
	t.Helper()
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
	}
	dialed, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = dialed.Close() })
	accepted, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = accepted.Close() })
	return dialed, accepted
}

// TestIdleWatchCostsNoGoroutine arms 500 watches on open sockets: they
// register with the poller without a goroutine each, and disarming
// withdraws every registration.
func TestIdleWatchCostsNoGoroutine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const n = 500
	var watches []*idleWatch
	for range n {
		c, _ := tcpPair(t, ln)
		watches = append(watches, newIdleWatch(c, endFunc(func() {}), 0))
	}
	regs, goroutines := pollerLen(), runtime.NumGoroutine()
	for _, w := range watches {
		w.arm()
	}
	require.Eventually(t, func() bool { return pollerLen() == regs+n }, 5*time.Second, 10*time.Millisecond)
	// Timer callbacks have returned; the poller's own goroutine may have
	// started with the first registration.
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+1 }, 5*time.Second, 10*time.Millisecond,
		"an armed watch holds no goroutine")
	for _, w := range watches {
		require.False(t, w.disarm(), "nothing was readable")
	}
	require.Equal(t, regs, pollerLen())
}

// TestIdleWatchSeesTheEnd: a backend that closes its end while the watch is
// registered runs onEnd once, and disarm reports it.
func TestIdleWatchSeesTheEnd(t *testing.T) {
	c, peer := tcpPair(t, nil)
	var ends atomic.Int32
	w := newIdleWatch(c, endFunc(func() { ends.Add(1) }), 0)
	regs := pollerLen()
	w.arm()
	require.Eventually(t, func() bool { return pollerLen() == regs+1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, peer.Close())
	require.Eventually(t, func() bool { return ends.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, w.disarm())
	require.Equal(t, regs, pollerLen())
	// Armed again on the same socket (the one-shot registration stays in the
	// epoll set, disabled): it fires again.
	w.arm()
	require.Eventually(t, func() bool { return ends.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, w.disarm())
}

// TestIdleWatchDisarmUnlessRunning: a session on an event loop does not
// wait for a running onEnd (it may dial): disarmUnlessRunning says so and
// stops the watch; disarm then waits for it. With nothing running it
// disarms at once, as disarm does.
func TestIdleWatchDisarmUnlessRunning(t *testing.T) {
	c, peer := tcpPair(t, nil)
	release := make(chan struct{})
	var ends atomic.Int32
	w := newIdleWatch(c, endFunc(func() { ends.Add(1); <-release }), 0)
	regs := pollerLen()
	w.arm()
	require.Eventually(t, func() bool { return pollerLen() == regs+1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, peer.Close())
	require.Eventually(t, func() bool { return ends.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.False(t, w.disarmUnlessRunning(), "onEnd is running")
	require.Equal(t, regs, pollerLen(), "the watch stopped anyway")
	close(release)
	require.True(t, w.disarm())
	w.arm()
	require.True(t, w.disarmUnlessRunning(), "nothing running")
	require.EqualValues(t, 1, ends.Load())
}

// TestIdleWatchOneWatcher: a timer callback that starts late (from an
// earlier arm whose timer had fired when disarm stopped it) while another
// watcher is parked returns at once, so that disarm, which waits for the
// watcher, leaves nobody reading the socket. Two watchers let one of them
// read the answer to the session's next statement (found by the soak).
func TestIdleWatchOneWatcher(t *testing.T) {
	_, conn := tcpPair(t, nil)

	var ends atomic.Int32
	w := newIdleWatch(conn, endFunc(func() { ends.Add(1) }), 0)
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

// TestIdleWatchConnClosedWhileRegistered: a session closed from another
// goroutine (Session.Close) closes its backend socket while the watch is
// registered; the kernel drops the socket from the epoll set, disarm finds
// the connection closed and still withdraws the registration, and a new
// connection that reuses the descriptor number is watched on its own.
func TestIdleWatchConnClosedWhileRegistered(t *testing.T) {
	regs := pollerLen()
	c, _ := tcpPair(t, nil)
	var ends atomic.Int32
	w := newIdleWatch(c, endFunc(func() { ends.Add(1) }), 0)
	w.arm()
	require.Eventually(t, func() bool { return pollerLen() == regs+1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, c.Close())
	c2, peer2 := tcpPair(t, nil) // likely the same descriptor number
	var ends2 atomic.Int32
	w2 := newIdleWatch(c2, endFunc(func() { ends2.Add(1) }), 0)
	w2.arm()
	require.Eventually(t, func() bool { return w2.registeredNow() }, 5*time.Second, 5*time.Millisecond)
	require.False(t, w.disarm(), "a closed socket sends no event")
	require.Zero(t, ends.Load())
	require.True(t, w2.registeredNow(), "the old watch's disarm left the new registration alone")
	require.NoError(t, peer2.Close())
	require.Eventually(t, func() bool { return ends2.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.True(t, w2.disarm())
	require.Equal(t, regs, pollerLen())
}

func (w *idleWatch) registeredNow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.registered && pollerHas(w.fd, w)
}

// endFunc is a watch owner for tests: it runs on the backend's end, and
// does not park.
type endFunc func()

func (f endFunc) onIdleBackendEnd() { f() }

func (f endFunc) askPark() {}
