package ctxerr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStable(t *testing.T) {
	other := errors.New("connection reset by peer")
	timeout := fmt.Errorf("read tcp 127.0.0.1:53122->127.0.0.1:4000: %w", os.ErrDeadlineExceeded)

	live := context.Background()
	require.Equal(t, other, Stable(live, other), "another error is kept")
	require.Equal(t, context.DeadlineExceeded, Stable(live, timeout), "a socket timeout loses its ports")

	done, cancel := context.WithCancel(context.Background())
	cancel()
	require.Equal(t, context.Canceled, Stable(done, other), "an ended context wins")
}

// Bound gives the connection ctx's deadline, and a past one when ctx is
// cancelled, so that a read blocked on it returns.
func TestBound(t *testing.T) {
	pipe := func() (net.Conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a, b
	}

	a, _ := pipe()
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	defer Bound(short, a)()
	_, err := a.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "ctx's deadline bounds the read")

	a, _ = pipe()
	cancelled, cancel := context.WithCancel(context.Background())
	stop := Bound(cancelled, a) // no deadline: the read waits
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = a.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the cancellation unblocks the read")
	require.Less(t, time.Since(start), 5*time.Second)
	require.False(t, stop(), "ctx ended first")

	a, b := pipe()
	live, cancelLive := context.WithCancel(context.Background())
	defer cancelLive()
	stop = Bound(live, a)
	require.True(t, stop(), "stopped before ctx ended")
	cancelLive()
	go func() { _, _ = b.Write([]byte{1}) }()
	require.NoError(t, a.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = a.Read(make([]byte, 1))
	require.NoError(t, err, "once stopped, ctx's end no longer touches the connection")
}
