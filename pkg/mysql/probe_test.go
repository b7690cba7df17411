package mysql

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// The login probe completes the handshake (native and caching_sha2 users
// with no password) and a refused login is a failure that says why.
func TestCheckSQLLogin(t *testing.T) {
	d := mysqldouble.Start(t, mysqldouble.Config{
		NativeUsers: map[string]string{"probe": "", "secret": "pw"},
		Users:       map[string]string{"sha2probe": ""},
	})
	dialer := &net.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	require.NoError(t, CheckSQLLogin(ctx, dialer, d.Addr(), "probe"))
	require.NoError(t, CheckSQLLogin(ctx, dialer, d.Addr(), "sha2probe"))
	before := d.Stats()
	require.Equal(t, int64(0), before.ProtocolErrors, "the probe speaks the protocol properly")

	err := CheckSQLLogin(ctx, dialer, d.Addr(), "nobody")
	require.ErrorContains(t, err, `login as "nobody" refused`)
	require.ErrorContains(t, err, "1045")
	err = CheckSQLLogin(ctx, dialer, d.Addr(), "secret")
	require.ErrorContains(t, err, `login as "secret" refused`, "a user with a password cannot log in without it")
	require.Equal(t, int64(0), d.Stats().ProtocolErrors)
}

// The kept probe connection logs in with a password (native, and
// caching_sha2 by RSA full authentication then from the fast-auth cache),
// answers pings, and a refused login names the user but never the password.
func TestDialProbeWithPassword(t *testing.T) {
	const nativePW, sha2PW = "n4tive-probe-pw", "sha2-probe-pw"
	d := mysqldouble.Start(t, mysqldouble.Config{
		NativeUsers: map[string]string{"nprobe": nativePW, "empty": ""},
		Users:       map[string]string{"sprobe": sha2PW},
	})
	dialer := &net.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, acct := range []struct{ user, pw string }{
		{"nprobe", nativePW}, {"empty", ""}, {"sprobe", sha2PW}, {"sprobe", sha2PW},
	} {
		c, err := DialProbe(ctx, dialer, d.Addr(), acct.user, acct.pw)
		require.NoError(t, err, acct.user)
		require.Equal(t, d.Addr(), c.conn.RemoteAddr().String())
		require.NotEmpty(t, c.Greeting.ServerVersion)
		for range 3 {
			require.NoError(t, c.Ping(ctx), acct.user)
		}
		require.NoError(t, c.Close())
	}
	st := d.Stats()
	require.Equal(t, int64(0), st.ProtocolErrors)
	require.Equal(t, int64(1), st.FullAuthRSA, "the first sha2 login sends the password encrypted")
	require.Equal(t, int64(1), st.FastAuthOK, "the second one is answered from the cache")
	require.Equal(t, int64(4), st.Connections, "pings use the kept connection")

	for _, acct := range []struct{ user, pw string }{
		{"nprobe", "wrong-" + nativePW}, {"sprobe", "wrong-" + sha2PW}, {"nprobe", ""},
	} {
		_, err := DialProbe(ctx, dialer, d.Addr(), acct.user, acct.pw)
		require.ErrorContains(t, err, `login as "`+acct.user+`"`)
		if acct.pw != "" {
			require.ErrorContains(t, err, "1045")
			require.NotContains(t, err.Error(), acct.pw)
		}
		require.NotContains(t, err.Error(), nativePW)
		require.NotContains(t, err.Error(), sha2PW)
	}
	// A ping on a connection the server closed fails.
	c, err := DialProbe(ctx, dialer, d.Addr(), "nprobe", nativePW)
	require.NoError(t, err)
	require.NoError(t, c.conn.(*net.TCPConn).CloseWrite())
	require.Error(t, c.Ping(ctx))
	require.NoError(t, c.Close())
}

// A ping to a server that does not answer ends with ctx (its deadline or
// its cancellation), and says so without the connection's local port.
func TestProbePingBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	// dial logs in to a server that then never answers again.
	dial := func() *ProbeConn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res := make(chan *ProbeConn, 1)
		go func() {
			c, err := DialProbe(ctx, &net.Dialer{}, ln.Addr().String(), "probe", "")
			assert.NoError(t, err)
			res <- c
		}()
		srv, err := ln.Accept()
		require.NoError(t, err)
		conns = append(conns, srv)
		pio := NewPacketIO(srv)
		require.NoError(t, pio.WritePacket(testGreeting("8.0.11-test")))
		require.NoError(t, pio.Flush())
		_, err = pio.ReadPacket(0) // the login
		require.NoError(t, err)
		require.NoError(t, pio.WritePacket(AppendOK(nil, OKHeader, OKInfo{}, false)))
		require.NoError(t, pio.Flush())
		c := <-res
		require.NotNil(t, c)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	err = dial().Ping(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, "ping: context deadline exceeded", err.Error())

	cancelled, cancelNow := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancelNow)
	require.ErrorIs(t, dial().Ping(cancelled), context.Canceled)
}

// A greeting probe leaves with a reset, so the proxy keeps no TIME_WAIT socket per probe; a
// login probe quits and closes normally, so the server reads its COM_QUIT.
func TestGreetingProbeClosesWithReset(t *testing.T) {
	addr, after := testenv.ServeOne(t, func(c net.Conn) error {
		if _, err := c.Write(framed(testGreeting("10.11.99-test"))); err != nil {
			return err
		}
		return serveSilent(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := ReadGreeting(ctx, &net.Dialer{}, addr)
	require.NoError(t, err)
	require.ErrorIs(t, <-after, syscall.ECONNRESET, "the greeting probe's close is a reset")
}

// testGreeting is the payload of a server's greeting announcing version.
func testGreeting(version string) []byte {
	return AppendInitialHandshake(nil, &InitialHandshake{
		ServerVersion: version, Salt: NewSalt(20), Charset: 46, AuthPlugin: AuthNativePassword,
		Capability: ClientProtocol41 | ClientSecureConnection | ClientPluginAuth,
	})
}

// framed is payload as a server's first packet (sequence id 0).
func framed(payload []byte) []byte {
	p := make([]byte, 4, 4+len(payload)) // the sequence id, p[3], is 0
	putUint24(p, len(payload))
	return append(p, payload...)
}

// serveSilent is a server that says nothing and waits, up to 5 s, for the
// client to write or leave.
func serveSilent(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err
}
