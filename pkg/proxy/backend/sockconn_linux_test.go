package backend

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// sockPair returns a frozen-able server side and the plain client side of a
// loopback connection.
func sockPair(t testing.TB) (*sockConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	c, err := ln.Accept()
	require.NoError(t, err)
	sc := newSockConn(c.(*net.TCPConn))
	t.Cleanup(func() { sc.Close() })
	return sc, peer
}

// socketOf names sc's socket as /proc/self/fd shows it ("socket:[inode]").
func socketOf(t *testing.T, sc *sockConn) string {
	t.Helper()
	var link string
	raw, err := sc.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(fd uintptr) {
		link, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	}))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(link, "socket:["), link)
	return link
}

// descriptorsOf counts the process's descriptors open on socket (socketOf).
// Unlike a count of all of them, other tests' sockets closing meanwhile do
// not change it.
func descriptorsOf(t *testing.T, socket string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && link == socket {
			n++
		}
	}
	return n
}

// epollEntries lists the descriptors in the idle poller's epoll set.
func epollEntries(t *testing.T) []int {
	t.Helper()
	p, err := getPoller()
	require.NoError(t, err)
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(p.epfd))
	require.NoError(t, err)
	var fds []int
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "tfd:" {
			n, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			fds = append(fds, n)
		}
	}
	return fds
}

// TestSockConnFreezeThaw: a frozen connection has no net.TCPConn and keeps
// one descriptor; what the peer sent meanwhile is read after the thaw, which
// the first use does by itself, and writes go out, raw ones included.
func TestSockConnFreezeThaw(t *testing.T) {
	sc, peer := sockPair(t)
	socket := socketOf(t, sc)
	require.Equal(t, 1, descriptorsOf(t, socket))
	require.True(t, sc.Freeze())
	require.True(t, sc.Frozen())
	require.Nil(t, sc.live.Load())
	require.Equal(t, 1, descriptorsOf(t, socket), "the frozen descriptor replaces the connection's")
	require.True(t, sc.Freeze(), "freezing a frozen connection is a no-op")

	_, err := peer.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(sc, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))
	require.False(t, sc.Frozen())
	require.Equal(t, 1, descriptorsOf(t, socket), "the thawed connection's descriptor replaces the frozen one")

	// Frozen again, the PacketIO's raw writes thaw it too.
	require.True(t, sc.Freeze())
	pio := mysql.NewPacketIO(sc)
	require.NoError(t, pio.WritePacket([]byte("ping")))
	require.NoError(t, pio.Flush())
	require.False(t, sc.Frozen())
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	got := make([]byte, 8)
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	require.Equal(t, "ping", string(got[4:]))
	// Live again, writes go through the thawed connection's RawConn.
	require.NoError(t, pio.WritePacket([]byte("pong")))
	require.NoError(t, pio.Flush())
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	require.Equal(t, "pong", string(got[4:]))
	require.Equal(t, "127.0.0.1", sc.LocalAddr().(*net.TCPAddr).IP.String())
}

// TestSockConnFrozenDeadlinesAndClose: deadlines set on a frozen connection
// hold on the thawed one (a wake's deadline in the past ends the read at
// once), and Close of a frozen one closes the socket without a thaw.
func TestSockConnFrozenDeadlinesAndClose(t *testing.T) {
	sc, peer := sockPair(t)
	socket := socketOf(t, sc)
	require.True(t, sc.Freeze())
	require.NoError(t, sc.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err := sc.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, sc.SetReadDeadline(time.Time{}))

	require.True(t, sc.Freeze())
	require.NoError(t, sc.SetReadDeadline(time.Time{}), "a cleared deadline is no deadline")
	require.Equal(t, 1, descriptorsOf(t, socket))
	require.NoError(t, sc.Close())
	require.True(t, sc.Frozen(), "closed without a thaw")
	require.Equal(t, 0, descriptorsOf(t, socket))
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = peer.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the peer sees the close")
	_, err = sc.Read(make([]byte, 1))
	require.True(t, errors.Is(err, net.ErrClosed), "%v", err)
	_, err = sc.Write([]byte("x"))
	require.True(t, errors.Is(err, net.ErrClosed), "%v", err)
	require.False(t, sc.Freeze())
	require.Error(t, sc.Close())
}

type readableTarget chan uint32

func (r readableTarget) readable(gen uint32) { r <- gen }

// TestSockConnFrozenInThePoller: a frozen descriptor is watched by the idle
// poller like a live one, and the thaw leaves nothing of it in the epoll
// set (a fired one-shot registration stays there, disabled, and would
// outlive the frozen number's close while the socket lives on).
func TestSockConnFrozenInThePoller(t *testing.T) {
	sc, peer := sockPair(t)
	base := len(epollEntries(t))
	require.True(t, sc.Freeze())
	target := make(readableTarget, 1)
	fd, err := pollerAdd(sc, target, 7)
	require.NoError(t, err)
	require.Equal(t, sc.fd, fd)
	require.Contains(t, epollEntries(t), int(fd))

	_, err = peer.Write([]byte("x"))
	require.NoError(t, err)
	select {
	case gen := <-target:
		require.Equal(t, uint32(7), gen)
	case <-time.After(5 * time.Second):
		t.Fatal("no readability reported for the frozen descriptor")
	}
	require.Len(t, epollEntries(t), base+1, "the fired registration is still in the set")
	_, err = sc.Read(make([]byte, 1))
	require.NoError(t, err)
	require.Len(t, epollEntries(t), base, "the thaw took it out")

	// Withdrawn before the data came, it reports nothing.
	require.True(t, sc.Freeze())
	fd, err = pollerAdd(sc, target, 8)
	require.NoError(t, err)
	pollerRemove(sc, fd, target, 8)
	require.Len(t, epollEntries(t), base)
	_, err = peer.Write([]byte("y"))
	require.NoError(t, err)
	select {
	case gen := <-target:
		t.Fatalf("a withdrawn registration reported readability (gen %d)", gen)
	case <-time.After(50 * time.Millisecond):
	}
}

// BenchmarkSockConnParkWake: what a park and a wake add per socket, a freeze
// and the thaw of the next read, beside the same read and write without
// them.
func BenchmarkSockConnParkWake(b *testing.B) {
	for _, freeze := range []bool{false, true} {
		name := "live"
		if freeze {
			name = "frozen"
		}
		b.Run(name, func(b *testing.B) {
			sc, peer := sockPair(b)
			buf := make([]byte, 1)
			for b.Loop() {
				if freeze && !sc.Freeze() {
					b.Fatal("not frozen")
				}
				if _, err := peer.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(sc, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
