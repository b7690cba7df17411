package mysql

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/test/testenv"

	"github.com/stretchr/testify/require"
)

// readSyscalls returns the read system calls this process has made
// (/proc/self/io's syscr).
func readSyscalls(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/io")
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no syscr in /proc/self/io")
	return 0
}

// Against a real MariaDB, which answers only what it has read: a COM_PING
// sent with FlushRequest takes one read to receive its OK, where Flush and
// a read take two when the first read runs before the OK arrived (it
// returns EAGAIN, and Go then waits on the poller).
func TestFlushRequestTakesOneReadPerAnswer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts read system calls in /proc/self/io")
	}
	m := testenv.SharedMariaDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := DialProbe(ctx, &net.Dialer{}, m.Addr(), testenv.NativeUser, testenv.NativePassword)
	require.NoError(t, err)
	defer c.Close()
	pio := c.pio

	ping := func(flush func() error) {
		pio.ResetSequence()
		require.NoError(t, pio.WritePacket([]byte{ComPing}))
		require.NoError(t, flush())
		pk, err := pio.ReadPacket(0)
		require.NoError(t, err)
		require.Equal(t, byte(OKHeader), pk[0])
	}
	const n = 300
	count := func(flush func() error) int {
		ping(flush) // the first request binds the raw connection
		before := readSyscalls(t)
		for range n {
			ping(flush)
		}
		return readSyscalls(t) - before - 1 // the second readSyscalls' own read
	}
	withFlush := count(pio.Flush)
	withRequest := count(pio.FlushRequest)
	t.Logf("%d pings: %d reads after Flush, %d after FlushRequest", n, withFlush, withRequest)
	require.GreaterOrEqual(t, withRequest, n, "every answer is read")
	require.LessOrEqual(t, withRequest, n+n/20, "FlushRequest: one read per answer")
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// What FlushRequest must do when the answer does not come the usual way:
// every request reaches the peer whole, and the wait never outlasts a
// deadline, a close or a peer that hangs up.
func TestFlushRequestEdges(t *testing.T) {
	t.Run("answer", func(t *testing.T) {
		for _, size := range []int{1, 511, largeBufSize - 4, largeBufSize, 3 * largeBufSize, MaxPayloadLen + 10} {
			cc, sc := tcpPair(t)
			req := pioTestPayload(size)
			echoed := make(chan error, 1)
			go func() { // the peer reads the whole request, then answers with it
				peer := NewPacketIO(sc)
				got, err := peer.ReadPacket(0)
				if err == nil && len(got) != len(req) {
					err = errors.New("short request")
				}
				if err == nil {
					err = peer.WritePacket(got)
				}
				if err == nil {
					err = peer.Flush()
				}
				echoed <- err
			}()
			pio := NewPacketIO(cc)
			require.NoError(t, pio.WritePacket(req))
			require.NoError(t, pio.FlushRequest())
			got, err := pio.ReadPacket(0)
			require.NoError(t, err, "size %d", size)
			require.Equal(t, req, got, "size %d", size)
			require.NoError(t, <-echoed)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		cc, sc := tcpPair(t)
		pio := NewPacketIO(cc)
		require.NoError(t, pio.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		require.NoError(t, pio.WritePacket([]byte{ComPing}))
		start := time.Now()
		require.NoError(t, pio.FlushRequest(), "the request went out")
		require.Less(t, time.Since(start), 10*time.Second)
		_, err := pio.ReadPacket(0)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the next read says why the wait ended")
		got, err := NewPacketIO(sc).ReadPacket(0)
		require.NoError(t, err)
		require.Equal(t, []byte{ComPing}, got)
	})
	t.Run("close", func(t *testing.T) {
		cc, _ := tcpPair(t)
		pio := NewPacketIO(cc)
		require.NoError(t, pio.WritePacket([]byte{ComPing}))
		time.AfterFunc(50*time.Millisecond, func() { pio.Close() })
		require.NoError(t, pio.FlushRequest())
		_, err := pio.ReadPacket(0)
		require.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("peer gone", func(t *testing.T) {
		cc, sc := tcpPair(t)
		// The peer hangs up after sending something unasked, before the
		// request (what a server that ends a session does).
		peer := NewPacketIO(sc)
		require.NoError(t, peer.WritePacket([]byte{ErrHeader, 0x10, 0x04, '#', 'H', 'Y', '0', '0', '0', 'b', 'y', 'e'}))
		require.NoError(t, peer.Flush())
		require.NoError(t, sc.Close())
		time.Sleep(20 * time.Millisecond) // both have arrived
		pio := NewPacketIO(cc)
		require.NoError(t, pio.SetReadDeadline(time.Now().Add(10*time.Second)))
		require.NoError(t, pio.WritePacket([]byte{ComPing}))
		done := make(chan error, 1)
		go func() { done <- pio.FlushRequest() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("FlushRequest waited for a peer that had hung up")
		}
		_, err := pio.ReadPacket(0)
		require.NoError(t, err, "the packet sent before the hang-up is still read")
		_, err = pio.ReadPacket(0)
		require.Error(t, err)
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}
