package mysql

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// greetingServer accepts connections on loopback and hands each to serve.
func greetingServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func testGreeting() []byte {
	return AppendInitialHandshake(nil, &InitialHandshake{
		ServerVersion: "10.11.99-direct", Salt: NewSalt(20), Charset: 46, AuthPlugin: AuthNativePassword,
		Capability: ClientProtocol41 | ClientSecureConnection | ClientPluginAuth,
	})
}

// writeFramed writes payload as one packet, a byte at a time when slow: the reader must put
// the packet together from as many reads as it takes.
func writeFramed(c net.Conn, payload []byte, slow bool) {
	frame := append([]byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), 0}, payload...)
	if !slow {
		_, _ = c.Write(frame)
		return
	}
	for i := range frame {
		if _, err := c.Write(frame[i : i+1]); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Both ways of reading a greeting (the direct socket and net.Dialer) give the same answers
// and the same error texts, for a greeting, an ERR packet, a port nobody listens on and a
// server that hangs up.
func TestReadGreetingDirectMatchesDialer(t *testing.T) {
	greets := greetingServer(t, func(c net.Conn) { writeFramed(c, testGreeting(), false) })
	slow := greetingServer(t, func(c net.Conn) { writeFramed(c, testGreeting(), true) })
	refuses := greetingServer(t, func(c net.Conn) {
		writeFramed(c, AppendErr(nil, NewError(ErCONCount, "Too many connections")), false)
	})
	hangsUp := greetingServer(t, func(net.Conn) {})
	closed := testenv.FreeAddr(t)

	viaDialer := func(ctx context.Context, addr string) (*InitialHandshake, error) {
		return withGreeting(ctx, &net.Dialer{}, addr, nil)
	}
	viaDirect := func(ctx context.Context, addr string) (*InitialHandshake, error) {
		pkt, ok, err := readGreetingDirect(ctx, &net.Dialer{}, addr)
		require.True(t, ok, "an IP literal takes the direct path")
		if err != nil {
			return nil, err
		}
		return parseGreeting(pkt)
	}
	for _, addr := range []string{greets, slow} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs, err := viaDirect(ctx, addr)
		cancel()
		require.NoError(t, err)
		require.Equal(t, "10.11.99-direct", hs.ServerVersion)
	}
	for _, c := range []struct {
		addr, want string
	}{
		{refuses, "server refused: "},
		{closed, "connect: dial tcp " + closed + ": connect: connection refused"},
		{hangsUp, "read greeting: EOF"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, direct := viaDirect(ctx, c.addr)
		_, dialer := viaDialer(ctx, c.addr)
		cancel()
		require.Error(t, direct, c.addr)
		require.True(t, strings.HasPrefix(direct.Error(), c.want), "direct: %v", direct)
		require.Equal(t, dialer.Error(), direct.Error(), "the two paths word %s alike", c.want)
	}
}

// A server that accepts and never greets (a hung backend) is a timeout at the context's
// deadline, and a cancellation ends the wait at once, with the context's error either way.
func TestReadGreetingDirectBoundedByContext(t *testing.T) {
	silent := greetingServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ReadGreeting(ctx, &net.Dialer{}, silent)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, "read greeting: context deadline exceeded", err.Error())
	require.Less(t, time.Since(start), 3*time.Second)

	// The dialer's own timeout bounds it too.
	start = time.Now()
	_, err = ReadGreeting(context.Background(), &net.Dialer{Timeout: 150 * time.Millisecond}, silent)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)

	cctx, cancelNow := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancelNow)
	start = time.Now()
	_, err = ReadGreeting(cctx, &net.Dialer{}, silent)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 3*time.Second)
}

// The direct socket leaves with a reset, so the proxy keeps no TIME_WAIT socket per probe: the
// server's next read sees the reset, not an orderly end.
func TestReadGreetingDirectResets(t *testing.T) {
	after := make(chan error, 1)
	addr := greetingServer(t, func(c net.Conn) {
		writeFramed(c, testGreeting(), false)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		after <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ReadGreeting(ctx, &net.Dialer{}, addr)
	require.NoError(t, err)
	require.True(t, errors.Is(<-after, syscall.ECONNRESET), "the probe's close is a reset")
}

// A first packet larger than any greeting is refused, not read into memory.
func TestReadGreetingDirectBoundsThePacket(t *testing.T) {
	addr := greetingServer(t, func(c net.Conn) {
		_, _ = c.Write([]byte{0xff, 0xff, 0xff, 0})
		time.Sleep(time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ReadGreeting(ctx, &net.Dialer{}, addr)
	require.ErrorIs(t, err, ErrPacketTooLarge)
}

// Host names, and dialers with a local address or a control function, go through net.Dialer.
func TestReadGreetingDirectOnlyForPlainDialsToIPs(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		d    *net.Dialer
		addr string
	}{
		{&net.Dialer{}, "localhost:3306"},
		{&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}, "127.0.0.1:3306"},
		{&net.Dialer{Control: func(string, string, syscall.RawConn) error { return nil }}, "127.0.0.1:3306"},
	} {
		_, ok, _ := readGreetingDirect(ctx, c.d, c.addr)
		require.False(t, ok, c.addr)
	}
}
