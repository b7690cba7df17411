package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// raiseFDLimit lifts this process's open-file limit to at least n (the
// proxy started afterwards inherits it). As root the hard limit can be
// raised too; otherwise a hard limit below n fails the test with the reason.
func raiseFDLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = n
	if lim.Max < n {
		lim.Max = n
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("this test needs %d open files; the limit is %d (hard %d) and cannot be raised: %v", n, old.Cur, old.Max, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// TestSlowloris opens 5,000 connections that read the proxy's greeting and
// never answer it. A real client still logs in and queries while they are
// all open, and the proxy closes every one of them once
// proxy.handshake-timeout passes (not before).
func TestSlowloris(t *testing.T) {
	const conns = 5000
	const handshakeTimeout = 10 * time.Second
	raiseFDLimit(t, 3*conns)
	db := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{
		backends: []string{db.Addr()},
		extra:    fmt.Sprintf("handshake-timeout = %q\n", handshakeTimeout),
	})

	var (
		mu       sync.Mutex
		opened   []net.Conn
		openedAt []time.Time
	)
	t.Cleanup(func() {
		for _, c := range opened {
			_ = c.Close()
		}
	})
	start := time.Now()
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += 16 {
				c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				mu.Lock()
				opened = append(opened, c)
				openedAt = append(openedAt, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	allOpen := time.Now()
	require.Zero(t, dialErrs.Load(), "dialing the proxy failed for some connections")
	require.Len(t, opened, conns)
	t.Logf("%d connections open in %v", conns, allOpen.Sub(start).Round(time.Millisecond))

	// A real client logs in while they are all open.
	loginStart := time.Now()
	cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
	cfg.Timeout = 5 * time.Second
	sqlDB := testenv.OpenDB(t, cfg)
	require.Equal(t, "1", queryString(t, sqlDB, "SELECT 1"))
	loginDone := time.Now()
	t.Logf("a real client logged in and queried in %v", loginDone.Sub(loginStart).Round(time.Millisecond))

	// Every slow connection is closed by the proxy: read the greeting, then
	// wait for EOF.
	closedAt := make([]time.Time, conns)
	var notClosed atomic.Int64
	var wg2 sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i, c := range opened {
		wg2.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg2.Done()
			defer func() { <-sem }()
			_ = c.SetReadDeadline(openedAt[i].Add(handshakeTimeout + 40*time.Second))
			_, err := io.Copy(io.Discard, c) // greeting, then EOF (or reset)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				notClosed.Add(1)
				return
			}
			closedAt[i] = time.Now()
		}()
	}
	wg2.Wait()
	require.Zero(t, notClosed.Load(), "connections still open %v after the handshake timeout", 40*time.Second)

	early, first, last := 0, closedAt[0].Sub(openedAt[0]), time.Duration(0)
	for i := range closedAt {
		d := closedAt[i].Sub(openedAt[i])
		first, last = min(first, d), max(last, d)
		// Read times have the scheduling of 256 readers on a loaded
		// machine in them, never less than the timeout itself.
		if d < handshakeTimeout-500*time.Millisecond {
			early++
		}
	}
	t.Logf("closed by the proxy between %v and %v after they were opened (handshake-timeout %v)",
		first.Round(time.Millisecond), last.Round(time.Millisecond), handshakeTimeout)
	require.Zero(t, early, "connections closed before the handshake timeout")
	require.True(t, loginDone.Before(start.Add(handshakeTimeout)),
		"the real client's login must have happened while the slow connections were open")

	// And the proxy still serves.
	require.Equal(t, "2", queryString(t, sqlDB, "SELECT 2"))
}

// TestBackendReadTimeout: with proxy.backend-read-timeout set, a statement
// whose backend stays silent longer ends with an ERR packet at about that
// time (here a SLEEP; a frozen backend is the fleet scenario
// HungBackend), while a statement that answers in time is unaffected and
// an idle session outlives the timeout.
func TestBackendReadTimeout(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{
		backends: []string{db.Addr()},
		extra:    "backend-read-timeout = \"2s\"\n",
	})
	sqlDB := testenv.OpenDB(t, testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword))
	sqlDB.SetMaxIdleConns(1)
	sqlDB.SetMaxOpenConns(1)

	require.Equal(t, "0", queryString(t, sqlDB, "SELECT SLEEP(0.5)"), "an answer within the timeout")
	time.Sleep(3 * time.Second) // idle longer than the timeout
	require.Equal(t, "1", queryString(t, sqlDB, "SELECT 1"), "an idle session is not affected")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	var s string
	err := sqlDB.QueryRowContext(ctx, "SELECT SLEEP(20)").Scan(&s)
	took := time.Since(began)
	t.Logf("SELECT SLEEP(20) ended after %v: %v", took.Round(time.Millisecond), err)
	require.Error(t, err)
	require.Contains(t, err.Error(), "backend-read-timeout", "the error names the setting")
	require.GreaterOrEqual(t, took, 2*time.Second)
	require.Less(t, took, 10*time.Second, "the statement must end at about the timeout, not run to its end")
	// The session ended (its backend connection is in an unknown state);
	// a new one works.
	fresh := testenv.OpenDB(t, testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword))
	require.Equal(t, "3", queryString(t, fresh, "SELECT 3"))
}
