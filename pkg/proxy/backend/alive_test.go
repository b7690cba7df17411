package backend

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// When a backend dies, all its idle sessions ask whether it still listens
// at once: one dial answers those that ask while it runs.
func TestAliveChecksShareOneDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				// A greeting, late enough that every caller below is waiting.
				time.Sleep(300 * time.Millisecond)
				_, _ = c.Write([]byte{1})
				_ = c.Close()
			}()
		}
	}()
	flights := aliveFlights{m: map[aliveKey]*aliveFlight{}}
	const callers = 50
	var wg sync.WaitGroup
	var alive atomic.Int32
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if flights.listening(ln.Addr().String(), false) {
				alive.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, callers, alive.Load(), "every caller got the answer")
	require.EqualValues(t, 1, accepted.Load(), "one dial for all the callers that asked while it ran")
	require.Empty(t, flights.m, "no flight left behind")

	// Later calls dial again (the answer is not cached), and a port that
	// nobody listens on is dead.
	require.True(t, flights.listening(ln.Addr().String(), false))
	require.EqualValues(t, 2, accepted.Load())
	addr := ln.Addr().String()
	_ = ln.Close()
	require.False(t, flights.listening(addr, false))
}
