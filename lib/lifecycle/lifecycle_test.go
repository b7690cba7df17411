package lifecycle

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoopStartsOnceAndCloseWaits(t *testing.T) {
	var l Loop
	var runs atomic.Int32
	var ended atomic.Bool
	started := make(chan struct{})
	run := func(ctx context.Context) {
		runs.Add(1)
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // Close must wait for this
		ended.Store(true)
	}
	require.True(t, l.Start(context.Background(), run))
	require.False(t, l.Start(context.Background(), run), "a second Start launches nothing")
	<-started
	l.Close()
	require.True(t, ended.Load(), "Close returned before the goroutine did")
	require.Equal(t, int32(1), runs.Load())
	l.Close() // idempotent
}

func TestLoopCloseBeforeStart(t *testing.T) {
	var l Loop
	l.Close() // without Start: returns at once
	require.False(t, l.Start(context.Background(), func(context.Context) { t.Error("ran after Close") }))
	l.Close()
}

func TestLoopEndsWithTheCallersContext(t *testing.T) {
	var l Loop
	require.Nil(t, l.Done(), "no goroutine before Start")
	ctx, cancel := context.WithCancel(context.Background())
	l.Start(ctx, func(ctx context.Context) { <-ctx.Done() })
	select {
	case <-l.Done():
		t.Fatal("Done before the goroutine returned")
	default:
	}
	cancel()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine did not see the caller's context end")
	}
	l.Close()
}

// Start and Close from many goroutines at once: one run at most, and every
// Close returns only after it ended.
func TestLoopConcurrentStartClose(t *testing.T) {
	for range 50 {
		var l Loop
		var running atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					l.Start(context.Background(), func(ctx context.Context) {
						running.Add(1)
						<-ctx.Done()
						running.Add(-1)
					})
					return
				}
				l.Close()
				require.Equal(t, int32(0), running.Load(), "Close returned while the goroutine ran")
			}()
		}
		wg.Wait()
		l.Close()
		require.Equal(t, int32(0), running.Load())
	}
}

func TestWaitTimeout(t *testing.T) {
	var wg sync.WaitGroup
	require.True(t, WaitTimeout(&wg, time.Second), "nothing to wait for")
	wg.Add(1)
	require.False(t, WaitTimeout(&wg, 20*time.Millisecond), "the work is still running")
	release := make(chan struct{})
	go func() {
		<-release
		wg.Done()
	}()
	close(release)
	require.True(t, WaitTimeout(&wg, 10*time.Second))
}
