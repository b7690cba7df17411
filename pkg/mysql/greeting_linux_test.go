package mysql

import (
	"cmp"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// ReadGreeting's quick path (greeting_linux.go) and net.Dialer's must read
// the same greetings and fail with the same words, which are what an
// operator reads as a backend's unhealthy reason.
func TestQuickGreetingMatchesDialer(t *testing.T) {
	greeting := testGreeting("10.11.99-test")
	errPacket := AppendErr(nil, &MySQLError{Code: 1129, State: "HY000", Message: "Host '127.0.0.1' is blocked"})
	tests := []struct {
		name    string
		serve   func(net.Conn) error // nil: nothing listens
		timeout time.Duration
		cancel  bool
		want    string // the error; "" for a greeting read
	}{
		{name: "greeting", serve: func(c net.Conn) error {
			_, err := c.Write(framed(greeting))
			return err
		}},
		{name: "greeting in three writes", serve: func(c net.Conn) error {
			p := framed(greeting)
			for _, part := range [][]byte{p[:2], p[2:9], p[9:]} {
				if _, err := c.Write(part); err != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}},
		{name: "ERR instead of a greeting", serve: func(c net.Conn) error {
			_, err := c.Write(framed(errPacket))
			return err
		}, want: "server refused: ERROR 1129 (HY000): Host '127.0.0.1' is blocked"},
		{name: "not a greeting", serve: func(c net.Conn) error {
			_, err := c.Write(framed([]byte{0xfe, 1, 2}))
			return err
		}, want: "bad greeting: "},
		{name: "closed before a greeting", serve: func(net.Conn) error { return nil }, want: "read greeting: EOF"},
		{name: "closed midway", serve: func(c net.Conn) error {
			_, err := c.Write(framed(greeting)[:20])
			return err
		}, want: "read greeting: unexpected EOF"},
		{name: "reset", serve: func(c net.Conn) error {
			// After the client's connect has finished: net.Dialer's
			// reports a reset that came before as the connect's error.
			time.Sleep(50 * time.Millisecond)
			return c.(*net.TCPConn).SetLinger(0)
		}, want: "read greeting: read tcp ADDR: read: connection reset by peer"},
		{name: "too large", serve: func(c net.Conn) error {
			_, err := c.Write([]byte{0xff, 0xff, 0x01, 0}) // 131,071 bytes announced
			return err
		}, want: "read greeting: packet too large: 131071 bytes, limit 65536"},
		{name: "silent", serve: serveSilent, timeout: 100 * time.Millisecond, want: "read greeting: context deadline exceeded"},
		{name: "cancelled", serve: serveSilent, cancel: true, want: "read greeting: context canceled"},
		{name: "nothing listens", want: "connect: dial tcp ADDR: connect: connection refused"},
	}
	paths := []func(ctx context.Context, addr string) (*InitialHandshake, error){
		func(ctx context.Context, addr string) (*InitialHandshake, error) {
			return quickGreeting(ctx, netip.MustParseAddrPort(addr))
		},
		func(ctx context.Context, addr string) (*InitialHandshake, error) {
			return withGreeting(ctx, &net.Dialer{}, addr, nil)
		},
	}
	local := regexp.MustCompile(`127\.0\.0\.1:\d+->`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var results [2]struct {
				hs  *InitialHandshake
				err string
			}
			for i, read := range paths {
				var addr string
				if tt.serve != nil {
					addr, _ = testenv.ServeOne(t, tt.serve)
				} else {
					addr = closedPort(t)
				}
				timeout := cmp.Or(tt.timeout, 5*time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				if tt.cancel {
					time.AfterFunc(50*time.Millisecond, cancel)
				}
				start := time.Now()
				hs, err := read(ctx, addr)
				cancel()
				require.Less(t, time.Since(start), timeout+2*time.Second)
				results[i].hs = hs
				if err != nil {
					// The dialer's read errors name the local address too;
					// the prober's reasons drop it (reasonOf).
					results[i].err = strings.ReplaceAll(local.ReplaceAllString(err.Error(), ""), addr, "ADDR")
				}
			}
			if tt.want == "" {
				require.Empty(t, results[0].err)
				require.Equal(t, "10.11.99-test", results[0].hs.ServerVersion)
			} else {
				require.Contains(t, results[0].err, tt.want)
			}
			require.Equal(t, results[1], results[0], "the quick path and net.Dialer's disagree")
		})
	}
}

// ReadGreeting takes the quick path for an IP address and a Dialer that
// sets nothing it would ignore.
func TestReadGreetingTakesTheQuickPath(t *testing.T) {
	for _, tt := range []struct {
		d     *net.Dialer
		quick bool
	}{
		{&net.Dialer{}, true},
		{&net.Dialer{KeepAlive: -1}, true},
		{&net.Dialer{Timeout: time.Second}, false},
		{&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}, false},
		{&net.Dialer{Control: func(string, string, syscall.RawConn) error { return nil }}, false},
	} {
		require.Equal(t, tt.quick, plainDialer(tt.d), "%+v", tt.d)
	}
}

// An unanswered connect (a SYN dropped, here by a listener whose accept
// queue is full) is told apart from a server that accepted and is silent.
func TestQuickGreetingUnansweredConnect(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: connections the listener never accepts.
	var fill []net.Conn
	defer func() {
		for _, c := range fill {
			_ = c.Close()
		}
	}()
	for len(fill) < 4 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		fill = append(fill, c)
	}
	require.NotEmpty(t, fill)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = ReadGreeting(ctx, &net.Dialer{}, addr)
	require.EqualError(t, err, "connect: dial tcp "+addr+": i/o timeout")
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// An IPv6 address is probed as an IPv4 one, and an address with a zone,
// given as an interface's name or index, fails as it does with net.Dialer.
func TestQuickGreetingIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(framed(testGreeting("10.11.99-v6")))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs, err := quickGreeting(ctx, netip.MustParseAddrPort(ln.Addr().String()))
	require.NoError(t, err)
	require.Equal(t, "10.11.99-v6", hs.ServerVersion)

	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, host := range []string{"fe80::1%lo", "fe80::1%" + strconv.Itoa(lo.Index)} {
		addr := net.JoinHostPort(host, port)
		_, quick := quickGreeting(ctx, netip.MustParseAddrPort(addr))
		_, dialer := withGreeting(ctx, &net.Dialer{}, addr, nil)
		require.Error(t, dialer, host)
		require.EqualError(t, quick, dialer.Error(), host)
	}
}

// A greeting probe that read no greeting (here an ERR in its place) closes
// normally, as net.Dialer's path does: only a read greeting is followed by
// a reset (TestGreetingProbeClosesWithReset).
func TestQuickGreetingClosesNormallyAfterAFailure(t *testing.T) {
	addr, after := testenv.ServeOne(t, func(c net.Conn) error {
		pio := NewPacketIO(c)
		if err := pio.WriteError(&MySQLError{Code: 1129, State: "HY000", Message: "blocked"}); err != nil {
			return err
		}
		return serveSilent(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := quickGreeting(ctx, netip.MustParseAddrPort(addr))
	require.ErrorContains(t, err, "server refused")
	require.ErrorIs(t, <-after, io.EOF, "the close is a normal one")
}

// A set's probes are read in turn, and one wait reads every greeting that
// has come: a probe whose greeting came while another's was waited for is
// read at once, also once the set's deadline has passed. A new batch does
// not inherit the last one's deadline, and Close closes the probes not
// read.
func TestGreetingSet(t *testing.T) {
	greet := func(version string) []byte { return framed(testGreeting(version)) }
	// "late" greets only once "at once" and "in parts" have written all
	// of theirs, so that those are there when its greeting is read.
	written := make(chan struct{}, 2)
	atOnce, _ := testenv.ServeOne(t, func(c net.Conn) error {
		_, err := c.Write(greet("at-once"))
		written <- struct{}{}
		return err
	})
	inParts, _ := testenv.ServeOne(t, func(c net.Conn) error {
		p := greet("in-parts")
		for _, part := range [][]byte{p[:3], p[3:10], p[10:]} {
			if _, err := c.Write(part); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		written <- struct{}{}
		return nil
	})
	late, _ := testenv.ServeOne(t, func(c net.Conn) error {
		<-written
		<-written
		_, err := c.Write(greet("late"))
		return err
	})
	hung, hungDone := testenv.ServeOne(t, serveSilent)
	refused := closedPort(t)

	s, err := NewGreetingSet()
	require.NoError(t, err)
	defer s.Close()
	start := func(addr string) *GreetingProbe {
		g, err := s.Start(netip.MustParseAddrPort(addr))
		require.NoError(t, err)
		return g
	}
	gAtOnce, gInParts, gLate, gHung, gRefused := start(atOnce), start(inParts), start(late), start(hung), start(refused)

	hs, err := gLate.Read(context.Background())
	require.NoError(t, err)
	require.Equal(t, "late", hs.ServerVersion)
	require.True(t, gAtOnce.done && gInParts.done && gRefused.done, "the wait for one greeting read the others that had come")
	require.False(t, gHung.done)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	stop := ctxerr.Bound(ctx, gHung)
	_, err = gHung.Read(ctx)
	stop()
	require.EqualError(t, err, "read greeting: context deadline exceeded")
	require.Error(t, <-hungDone, "the silent server's connection is closed")

	// The set's deadline has passed: what was read is still read.
	for _, g := range []*GreetingProbe{gAtOnce, gInParts} {
		want := map[*GreetingProbe]string{gAtOnce: "at-once", gInParts: "in-parts"}[g]
		hs, err := g.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, want, hs.ServerVersion)
	}
	_, err = gRefused.Read(ctx)
	require.EqualError(t, err, "connect: dial tcp "+refused+": connect: connection refused")
	require.Empty(t, s.open)

	// The next batch waits without the last one's deadline.
	next, _ := testenv.ServeOne(t, func(c net.Conn) error {
		time.Sleep(150 * time.Millisecond)
		_, err := c.Write(greet("next"))
		return err
	})
	hs, err = start(next).Read(context.Background())
	require.NoError(t, err)
	require.Equal(t, "next", hs.ServerVersion)

	// Close closes a probe not read.
	unread, unreadDone := testenv.ServeOne(t, serveSilent)
	start(unread)
	require.NoError(t, s.Close())
	select {
	case err := <-unreadDone:
		require.Error(t, err, "the connection is closed")
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a probe's connection open")
	}
}

// A probe made alone takes an idle set and gives it back, unless its
// context ended, whose deadline could then still reach the set.
func TestQuickGreetingReusesSets(t *testing.T) {
	greeting := func(c net.Conn) error {
		_, err := c.Write(framed(testGreeting("10.11.99-pool")))
		return err
	}
	pool := &setPool{max: 1}
	saved := idleSets
	idleSets = pool
	t.Cleanup(func() {
		idleSets = saved
		for _, s := range pool.sets {
			_ = s.Close()
		}
	})

	read := func(ctx context.Context, serve func(net.Conn) error) error {
		addr, _ := testenv.ServeOne(t, serve)
		_, err := quickGreeting(ctx, netip.MustParseAddrPort(addr))
		return err
	}
	require.NoError(t, read(context.Background(), greeting))
	require.Len(t, pool.sets, 1, "the set is kept")
	first := pool.sets[0]
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.NoError(t, read(ctx, greeting))
	require.Equal(t, []*GreetingSet{first}, pool.sets, "and taken again")
	// The last probe's deadline is not the next one's.
	require.NoError(t, read(context.Background(), func(c net.Conn) error {
		time.Sleep(600 * time.Millisecond)
		return greeting(c)
	}))
	require.Equal(t, []*GreetingSet{first}, pool.sets)

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := read(ctx, func(c net.Conn) error {
		_, err := c.Read(make([]byte, 1))
		return err
	})
	require.EqualError(t, err, "read greeting: context canceled")
	require.Empty(t, pool.sets, "a set whose probe's context ended is closed, not kept")
	_, err = first.sys.ep.Stat()
	require.ErrorIs(t, err, os.ErrClosed)

	require.NoError(t, read(context.Background(), greeting), "a new set is made")
	require.Len(t, pool.sets, 1)
}
