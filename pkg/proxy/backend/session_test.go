package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"go.uber.org/goleak"
)

var (
	sha2Users   = map[string]string{"alice": "s3cret"}
	nativeUsers = map[string]string{"nate": "n4tive"}
)

// startBackend starts a MySQL double offering TLS (whether it is used is the proxy's
// choice) with one caching_sha2_password and one mysql_native_password account.
func startBackend(t *testing.T) *mysqldouble.Server {
	t.Helper()
	return mysqldouble.Start(t, mysqldouble.Config{
		Users:       sha2Users,
		NativeUsers: nativeUsers,
		TLS:         testCerts(t).ServerTLSConfig(),
		RSAKey:      backendKey(),
	})
}

// delta is what happened on the backend between two snapshots.
func delta(before, after mysqldouble.Stats) mysqldouble.Stats {
	return mysqldouble.Stats{
		Connections:       after.Connections - before.Connections,
		FastAuthOK:        after.FastAuthOK - before.FastAuthOK,
		FullAuthTLS:       after.FullAuthTLS - before.FullAuthTLS,
		FullAuthRSA:       after.FullAuthRSA - before.FullAuthRSA,
		PublicKeyRequests: after.PublicKeyRequests - before.PublicKeyRequests,
		AuthSwitches:      after.AuthSwitches - before.AuthSwitches,
		NativeAuth:        after.NativeAuth - before.NativeAuth,
		Failures:          after.Failures - before.Failures,
		ProtocolErrors:    after.ProtocolErrors - before.ProtocolErrors,
	}
}

// TestAuthPassThrough logs in through the proxy over every combination of client and
// backend transport security and both password plugins, and uses the backend's counters to
// prove which authentication path ran. Every login goes through an AuthSwitchRequest: the
// proxy names a plugin the backend does not know, so the client answers the backend's own
// scramble.
func TestAuthPassThrough(t *testing.T) {
	certs := testCerts(t)
	clientTLSName := certs.RegisterMySQLTLS(t)

	transports := []struct {
		name                  string
		clientTLS, backendTLS bool
		// sha2Full is what the backend sees for a successful caching_sha2_password full
		// authentication, on top of the connection and the auth switch.
		sha2Full mysqldouble.Stats
	}{
		{
			// The client asks for the backend's key through the proxy and encrypts for it.
			name: "plain client, plain backend", sha2Full: mysqldouble.Stats{FullAuthRSA: 1, PublicKeyRequests: 1},
		},
		{
			// The cleartext password crosses both TLS hops unchanged.
			name: "TLS client, TLS backend", clientTLS: true, backendTLS: true, sha2Full: mysqldouble.Stats{FullAuthTLS: 1},
		},
		{
			// Bridged: the client sends cleartext over TLS, the proxy fetches the backend's
			// key and sends the password RSA-encrypted.
			name: "TLS client, plain backend", clientTLS: true, sha2Full: mysqldouble.Stats{FullAuthRSA: 1, PublicKeyRequests: 1},
		},
		{
			// Bridged: the client encrypts with the proxy's key, the proxy decrypts and sends
			// cleartext over TLS; the backend is never asked for its key.
			name: "plain client, TLS backend", backendTLS: true, sha2Full: mysqldouble.Stats{FullAuthTLS: 1},
		},
	}
	for _, tr := range transports {
		for _, plugin := range []string{pmysql.AuthNativePassword, pmysql.AuthCachingSha2} {
			t.Run(tr.name+"/"+plugin, func(t *testing.T) {
				dbl := startBackend(t)
				var clientHandshakes, backendHandshakes atomic.Int64
				cfg := baseConfig()
				cfg.ServerTLS = countHandshakes(certs.ServerTLSConfig(), &clientHandshakes)
				if tr.backendTLS {
					cfg.BackendTLS = countHandshakes(certs.ClientTLSConfig(), &backendHandshakes)
				}
				p := startProxy(t, cfg, dbl.Addr())
				tlsName := ""
				if tr.clientTLS {
					tlsName = clientTLSName
				}

				user, password := "nate", nativeUsers["nate"]
				success := mysqldouble.Stats{NativeAuth: 1}
				refused := mysqldouble.Stats{}
				if plugin == pmysql.AuthCachingSha2 {
					user, password = "alice", sha2Users["alice"]
					success = tr.sha2Full
					// The key is fetched before the backend can tell the password is wrong.
					refused = mysqldouble.Stats{PublicKeyRequests: tr.sha2Full.PublicKeyRequests}
				}
				success.Connections, success.AuthSwitches = 1, 1
				refused.Connections, refused.AuthSwitches, refused.Failures = 1, 1, 1
				logins := 0

				step := func(name, pw string, want mysqldouble.Stats) {
					t.Helper()
					logins++
					before := dbl.Stats()
					res, err := login(t, clientConfig(t, p.Addr(), user, pw, tlsName))
					if want.Failures == 0 {
						require.NoError(t, err, name)
						require.Equal(t, loginResult{one: 1, currentUser: user + "@%"}, res, name)
					} else {
						// The refusal is the backend's own ERR packet, relayed unchanged.
						me := requireMySQLError(t, err, pmysql.ErAccessDenied)
						require.Equal(t, "28000", string(me.SQLState[:]), name)
						require.Equal(t, fmt.Sprintf("Access denied for user '%s'@'127.0.0.1' (using password: YES)", user), me.Message, name)
					}
					require.Equal(t, want, delta(before, dbl.Stats()), name)
				}

				step("wrong password, cold cache", "wrong-"+password, refused)
				step("first login", password, success)
				if plugin == pmysql.AuthCachingSha2 {
					fast := mysqldouble.Stats{Connections: 1, AuthSwitches: 1, FastAuthOK: 1}
					step("second login takes the fast path", password, fast)
					step("wrong password, warm cache", "wrong-"+password, refused)
					dbl.FlushAuthCache()
					step("after the cache is flushed", password, success)
					step("fast path again", password, fast)
				} else {
					step("second login", password, success)
				}

				wantClient, wantBackend := int64(0), int64(0)
				if tr.clientTLS {
					wantClient = int64(logins)
				}
				if tr.backendTLS {
					wantBackend = int64(logins)
				}
				require.Equal(t, wantClient, clientHandshakes.Load(), "TLS handshakes with the client")
				require.Equal(t, wantBackend, backendHandshakes.Load(), "TLS handshakes with the backend")
				p.requireIdle(t)
			})
		}
	}
}

func TestClientRequestsTLSWithoutProxyTLS(t *testing.T) {
	certs := testCerts(t)
	dbl := startBackend(t)
	p := startProxy(t, baseConfig(), dbl.Addr())

	t.Run("driver", func(t *testing.T) {
		// The greeting does not offer TLS, so the driver refuses before sending anything.
		_, err := login(t, clientConfig(t, p.Addr(), "alice", "s3cret", certs.RegisterMySQLTLS(t)))
		require.ErrorIs(t, err, mysql.ErrNoTLS)
	})
	t.Run("SSLRequest sent anyway", func(t *testing.T) {
		rc := dialRaw(t, p.Addr())
		require.Zero(t, rc.greeting.Capability&pmysql.ClientSSL, "no TLS offered")
		rc.write(pmysql.AppendSSLRequest(nil, &pmysql.HandshakeResponse{
			Capability: rawCaps | pmysql.ClientSSL, MaxPacket: 1 << 24, Charset: pmysql.DefaultCharset,
		}))
		e := rc.readErr(2)
		require.Equal(t, pmysql.ErHandshakeError, e.Code)
		require.Contains(t, e.Message, "TLS requested but not configured")
		rc.requireClosed()
	})
	p.requireIdle(t)
	require.Zero(t, dbl.Stats().Connections, "no backend is contacted for a refused handshake")
}

func TestBadFirstPacket(t *testing.T) {
	dbl := startBackend(t)
	p := startProxy(t, baseConfig(), dbl.Addr())
	ctx := context.Background()

	// A session that is already serving must not notice.
	connector, err := mysql.NewConnector(clientConfig(t, p.Addr(), "alice", "s3cret", ""))
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer func() { _ = db.Close() }()
	live, err := db.Conn(ctx)
	require.NoError(t, err)
	defer func() { _ = live.Close() }()

	header := func(n int) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), 1} }
	for _, tc := range []struct {
		name    string
		send    func(rc *rawClient)
		message string
		// errSeq is the sequence id the ERR must carry: one past the client's packet.
		errSeq uint8
	}{
		{
			name:    "empty packet",
			send:    func(rc *rawClient) { rc.write(nil) },
			message: "too short",
		},
		{
			name:    "too short",
			send:    func(rc *rawClient) { rc.write([]byte{0x01, 0x02, 0x03}) },
			message: "too short",
		},
		{
			name:    "garbage without protocol 4.1",
			send:    func(rc *rawClient) { rc.write([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")) },
			message: "protocol 4.1",
		},
		{
			name: "garbage with every flag and no user terminator",
			send: func(rc *rawClient) {
				b := make([]byte, 48)
				for i := range b {
					b[i] = 0xff
				}
				rc.write(b)
			},
			message: "user name",
		},
		{
			name: "HTTP request",
			// "GET " read as a header announces a 5.5 MB packet.
			send: func(rc *rawClient) {
				_, err := rc.conn.Write([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
				require.NoError(t, err)
			},
			message: "packet too large",
			errSeq:  ' ' + 1, // the fourth byte, ' ', is taken for the sequence id
		},
		{
			name: "just over 1 MiB announced",
			send: func(rc *rawClient) {
				_, err := rc.conn.Write(header(1<<20 + 1))
				require.NoError(t, err)
			},
			message: "packet too large",
		},
		{
			name: "over 1 MiB sent in full",
			send: func(rc *rawClient) {
				// Only the header is read before the refusal; the rest must not stop the ERR
				// from reaching the client.
				// The proxy may stop reading at any point: a failed write is fine,
				// a lost ERR packet is not.
				_, _ = rc.conn.Write(append(header(1<<20+1), make([]byte, 1<<20+1)...))
			},
			message: "packet too large",
		},
		{
			name: "CLIENT_SSL without an SSLRequest",
			send: func(rc *rawClient) {
				rc.write(handshakeResponse(rawCaps|pmysql.ClientSSL, "alice", pmysql.AuthNativePassword))
			},
			message: "SSL flag set without an SSL request",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, p.Addr())
			tc.send(rc)
			if tc.errSeq == 0 {
				tc.errSeq = 2
			}
			e := rc.readErr(tc.errSeq)
			require.Equal(t, pmysql.ErHandshakeError, e.Code, e.Message)
			require.Contains(t, e.Message, "Bad handshake")
			require.Contains(t, e.Message, tc.message)
			rc.requireClosed()
		})
	}

	var one int
	require.NoError(t, live.QueryRowContext(ctx, "SELECT 1").Scan(&one), "the live session survives")
	require.Equal(t, 1, one)
	res, err := login(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	require.NoError(t, err, "new sessions are still served")
	require.Equal(t, "nate@%", res.currentUser)
	require.Equal(t, int64(2), dbl.Stats().Connections, "no bad handshake reached the backend")
}

// TestClientHangsUpMidHandshake ends the client connection at every stage of the
// connection phase: the session must end, release its backend and leave no goroutine
// behind (neither in the proxy nor in the backend's connection handler).
func TestClientHangsUpMidHandshake(t *testing.T) {
	certs := testCerts(t)
	clientTLS := certs.ClientTLSConfig()
	// sha2Answer is any caching_sha2_password answer; the backend's cache is cold, so it
	// asks for full authentication whatever the bytes.
	sha2Answer := make([]byte, 32)

	for _, tc := range []struct {
		name       string
		backendTLS bool
		run        func(t *testing.T, rc *rawClient)
	}{
		{name: "before sending anything", run: func(*testing.T, *rawClient) {}},
		{
			name: "inside a packet header",
			run: func(t *testing.T, rc *rawClient) {
				_, err := rc.conn.Write([]byte{0x40, 0x00})
				require.NoError(t, err)
			},
		},
		{
			name: "inside a packet payload",
			run: func(t *testing.T, rc *rawClient) {
				_, err := rc.conn.Write([]byte{100, 0, 0, 1, 'x', 'y', 'z'})
				require.NoError(t, err)
			},
		},
		{
			name: "after SSLRequest, before the TLS handshake",
			run: func(t *testing.T, rc *rawClient) {
				rc.write(pmysql.AppendSSLRequest(nil, &pmysql.HandshakeResponse{
					Capability: rawCaps | pmysql.ClientSSL, MaxPacket: 1 << 24, Charset: pmysql.DefaultCharset,
				}))
			},
		},
		{
			name: "after the TLS handshake",
			run:  func(t *testing.T, rc *rawClient) { rc.startTLS(clientTLS) },
		},
		{
			name: "at the native auth switch",
			run: func(t *testing.T, rc *rawClient) {
				rc.write(handshakeResponse(rawCaps, "nate", pmysql.AuthNativePassword))
				sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
				require.NoError(t, err)
				require.Equal(t, pmysql.AuthNativePassword, sw.Plugin)
			},
		},
		{
			name: "at the caching_sha2 auth switch",
			run: func(t *testing.T, rc *rawClient) {
				rc.write(handshakeResponse(rawCaps, "alice", pmysql.AuthNativePassword))
				sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
				require.NoError(t, err)
				require.Equal(t, pmysql.AuthCachingSha2, sw.Plugin)
			},
		},
		{
			name:       "after receiving the proxy's public key",
			backendTLS: true,
			run: func(t *testing.T, rc *rawClient) {
				rc.write(handshakeResponse(rawCaps, "alice", pmysql.AuthNativePassword))
				rc.read() // auth switch
				rc.write(sha2Answer)
				require.Equal(t, []byte{pmysql.AuthMoreDataHeader, pmysql.CachingSha2PerformFullAuth}, rc.read())
				rc.write([]byte{pmysql.CachingSha2RequestPubKey})
				key := rc.read()
				require.Equal(t, pmysql.AuthMoreDataHeader, key[0])
				require.Contains(t, string(key), "PUBLIC KEY")
			},
		},
		{
			name: "when asked for the TLS cleartext password",
			run: func(t *testing.T, rc *rawClient) {
				rc.startTLS(clientTLS)
				rc.write(handshakeResponse(rawCaps, "alice", pmysql.AuthNativePassword))
				rc.read() // auth switch
				rc.write(sha2Answer)
				require.Equal(t, []byte{pmysql.AuthMoreDataHeader, pmysql.CachingSha2PerformFullAuth}, rc.read())
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := startTLSProxy(t, certs, tc.backendTLS)
			running := goleak.IgnoreCurrent()

			rc := dialRaw(t, p.Addr())
			tc.run(t, rc)
			require.NoError(t, rc.conn.Close())

			p.requireIdle(t)
			goleak.VerifyNone(t, running)
		})
	}
}

// startDeadBackend listens on loopback and, for each connection, either closes it at once
// (hangUp) or holds it open without ever greeting.
func startDeadBackend(t *testing.T, hangUp bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if hangUp {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

func TestBackendUnreachable(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		return addr
	}
	for _, tc := range []struct {
		name    string
		backend func(t *testing.T) string
		// backendTLS is the proxy's TLS configuration towards the backend.
		backendTLS *tls.Config
		reason     []string
		// namesAddr: the reason (a net.OpError) carries the backend address. The
		// "reading backend handshake: EOF" reason does not.
		namesAddr bool
		// connectTimeout, when set, replaces the default 5s.
		connectTimeout time.Duration
	}{
		{name: "connection refused", backend: refused, reason: []string{"connection refused"}, namesAddr: true},
		{
			name:    "closes without a greeting",
			backend: func(t *testing.T) string { return startDeadBackend(t, true) },
			reason:  []string{"reading the greeting of backend", "EOF"},
		},
		{
			name:           "never greets",
			backend:        func(t *testing.T) string { return startDeadBackend(t, false) },
			reason:         []string{"reading the greeting of backend", "i/o timeout"},
			namesAddr:      true,
			connectTimeout: 300 * time.Millisecond,
		},
		{
			name:       "untrusted certificate",
			backend:    func(t *testing.T) string { return startBackend(t).Addr() },
			backendTLS: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12},
			reason:     []string{"TLS handshake", "certificate"},
			namesAddr:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.backend(t)
			cfg := baseConfig()
			if tc.connectTimeout > 0 {
				cfg.ConnectTimeout = tc.connectTimeout
			}
			cfg.BackendTLS = tc.backendTLS
			p := startProxy(t, cfg, addr)

			_, err := login(t, clientConfig(t, p.Addr(), "alice", "s3cret", ""))
			me := requireMySQLError(t, err, pmysql.ErConnectToForeignDataSource)
			require.Equal(t, "08S01", string(me.SQLState[:]))
			require.Contains(t, me.Message, "cannot connect to a backend")
			if tc.namesAddr {
				require.Contains(t, me.Message, addr)
			}
			for _, r := range tc.reason {
				require.Contains(t, me.Message, r)
			}
			p.requireIdle(t)
		})
	}
}

// TestRawNativeLogin checks the exact packets of a pass-through native login, including
// their sequence ids, which a driver would not report.
func TestRawNativeLogin(t *testing.T) {
	dbl := startBackend(t)
	p := startProxy(t, baseConfig(), dbl.Addr())

	rc := dialRaw(t, p.Addr())
	require.Equal(t, pmysql.AuthNativePassword, rc.greeting.AuthPlugin)
	require.Len(t, rc.greeting.Salt, 20)
	rc.write(handshakeResponse(rawCaps, "nate", pmysql.AuthNativePassword))
	sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
	require.NoError(t, err)
	require.Equal(t, uint8(3), rc.pio.Sequence(), "auth switch is packet 2")
	require.Equal(t, pmysql.AuthNativePassword, sw.Plugin)
	require.NotEqual(t, rc.greeting.Salt, sw.Data, "the backend's own scramble, not the proxy's")
	rc.write(nativeToken("n4tive", sw.Data))
	ok := rc.read()
	require.Equal(t, pmysql.OKHeader, ok[0])
	require.Equal(t, uint8(5), rc.pio.Sequence(), "OK is packet 4")

	rc.pio.ResetSequence()
	rc.write(append([]byte{pmysql.ComQuery}, "SELECT CURRENT_USER()"...))
	require.Equal(t, []byte{1}, rc.read())
	rc.read() // column definition
	row := rc.read()
	require.Equal(t, "\x06nate@%", string(row))
	eof := rc.read()
	require.Equal(t, pmysql.EOFHeader, eof[0])
	require.Equal(t, pmysql.ServerStatusAutocommit, binary.LittleEndian.Uint16(eof[3:])&pmysql.ServerStatusAutocommit)

	require.NoError(t, rc.conn.Close())
	p.requireIdle(t)
	require.Equal(t, mysqldouble.Stats{Connections: 1, AuthSwitches: 1, NativeAuth: 1}, dbl.Stats())
}

// rawNativeLogin logs the raw client in as a mysql_native_password account.
func rawNativeLogin(t *testing.T, rc *rawClient, user, password string) {
	t.Helper()
	rc.write(handshakeResponse(rawCaps, user, pmysql.AuthNativePassword))
	sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
	require.NoError(t, err)
	require.Equal(t, pmysql.AuthNativePassword, sw.Plugin)
	rc.write(nativeToken(password, sw.Data))
	ok := rc.read()
	require.Equal(t, pmysql.OKHeader, ok[0], "want OK, got %q", ok)
}

// TestComQuitEndsSession: a MySQL server closes the connection after COM_QUIT, and clients
// may wait for that close. The proxy must close too and release the backend, rather than
// wait for a next command that the closed backend could not serve anyway.
func TestComQuitEndsSession(t *testing.T) {
	dbl := startBackend(t)
	p := startProxy(t, baseConfig(), dbl.Addr())
	rc := dialRaw(t, p.Addr())
	rawNativeLogin(t, rc, "nate", "n4tive")

	rc.pio.ResetSequence()
	rc.write([]byte{pmysql.ComQuit})
	rc.requireClosed()
	p.requireIdle(t)
}

// TestStalledClientDropped: a client that stops talking mid-login is dropped after
// HandshakeTimeout, with its backend connection.
func TestStalledClientDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, rc *rawClient)
	}{
		{name: "before the handshake response", run: func(*testing.T, *rawClient) {}},
		{
			name: "at the auth switch",
			run: func(t *testing.T, rc *rawClient) {
				rc.write(handshakeResponse(rawCaps, "nate", pmysql.AuthNativePassword))
				rc.read()
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbl := startBackend(t)
			cfg := baseConfig()
			cfg.HandshakeTimeout = time.Second
			p := startProxy(t, cfg, dbl.Addr())
			running := goleak.IgnoreCurrent()

			rc := dialRaw(t, p.Addr())
			tc.run(t, rc)
			rc.requireClosed()
			p.requireIdle(t)
			goleak.VerifyNone(t, running)
		})
	}
}

// TestSlowClientWithinHandshakeTimeout: HandshakeTimeout bounds the whole login;
// ConnectTimeout bounds reaching the backend, not how long the client takes to answer the
// backend's auth switch.
func TestSlowClientWithinHandshakeTimeout(t *testing.T) {
	dbl := startBackend(t)
	cfg := baseConfig()
	cfg.ConnectTimeout = 500 * time.Millisecond
	p := startProxy(t, cfg, dbl.Addr())

	rc := dialRaw(t, p.Addr())
	rc.write(handshakeResponse(rawCaps, "nate", pmysql.AuthNativePassword))
	sw, err := pmysql.ParseAuthSwitchRequest(rc.read())
	require.NoError(t, err)
	// The delay is the scenario, not a synchronisation: the answer comes after
	// ConnectTimeout but long before HandshakeTimeout (10s).
	time.Sleep(3 * cfg.ConnectTimeout)
	rc.write(nativeToken("n4tive", sw.Data))
	ok := rc.read()
	require.Equal(t, pmysql.OKHeader, ok[0], "want OK, got %q", ok)
}

func TestBackendWithoutTLS(t *testing.T) {
	certs := testCerts(t)
	dbl := mysqldouble.Start(t, mysqldouble.Config{Users: sha2Users, NativeUsers: nativeUsers, RSAKey: backendKey()})

	t.Run("plain when TLS is optional", func(t *testing.T) {
		var handshakes atomic.Int64
		cfg := baseConfig()
		cfg.BackendTLS = countHandshakes(certs.ClientTLSConfig(), &handshakes)
		p := startProxy(t, cfg, dbl.Addr())
		before := dbl.Stats()
		res, err := login(t, clientConfig(t, p.Addr(), "alice", "s3cret", ""))
		require.NoError(t, err)
		require.Equal(t, "alice@%", res.currentUser)
		require.Equal(t, mysqldouble.Stats{Connections: 1, AuthSwitches: 1, FullAuthRSA: 1, PublicKeyRequests: 1}, delta(before, dbl.Stats()))
		require.Zero(t, handshakes.Load())
		p.requireIdle(t)
	})
	t.Run("refused when TLS is required", func(t *testing.T) {
		cfg := baseConfig()
		cfg.BackendTLS = certs.ClientTLSConfig()
		cfg.RequireBackendTLS = true
		p := startProxy(t, cfg, dbl.Addr())
		before := dbl.Stats()
		_, err := login(t, clientConfig(t, p.Addr(), "alice", "s3cret", ""))
		me := requireMySQLError(t, err, pmysql.ErSecureTransportRequired)
		require.Contains(t, me.Message, dbl.Addr())
		require.Contains(t, me.Message, "does not offer TLS")
		require.Equal(t, mysqldouble.Stats{Connections: 1}, delta(before, dbl.Stats()), "no credentials were sent")
		p.requireIdle(t)
	})
}

// TestPlainClientToTLSBackendRefusals covers the two cases where the proxy cannot bridge
// a plain-TCP client's full authentication to a TLS backend; the client must hear why.
func TestPlainClientToTLSBackendRefusals(t *testing.T) {
	certs := testCerts(t)
	dbl := startBackend(t)

	t.Run("client encrypts with a preconfigured key", func(t *testing.T) {
		cfg := baseConfig()
		cfg.BackendTLS = certs.ClientTLSConfig()
		p := startProxy(t, cfg, dbl.Addr())
		const keyName = "backend-session-test-key"
		mysql.RegisterServerPubKey(keyName, &backendKey().PublicKey)
		t.Cleanup(func() { mysql.DeregisterServerPubKey(keyName) })
		c := clientConfig(t, p.Addr(), "alice", "s3cret", "")
		c.ServerPubKey = keyName
		_, err := login(t, c)
		me := requireMySQLError(t, err, pmysql.ErAccessDenied)
		require.Contains(t, me.Message, "Switchyard:")
		require.Contains(t, me.Message, "preconfigured key")
		p.requireIdle(t)
	})
	t.Run("proxy without an RSA key", func(t *testing.T) {
		cfg := baseConfig()
		cfg.BackendTLS = certs.ClientTLSConfig()
		cfg.RSAKey = nil
		p := startProxy(t, cfg, dbl.Addr())

		// go-sql-driver does not parse an ERR sent in place of the public key ("unexpected
		// resp from server"), so the message is checked on the wire. Refusing in place of
		// "perform full authentication" would be as correct and readable by drivers.
		_, err := login(t, clientConfig(t, p.Addr(), "alice", "s3cret", ""))
		require.Error(t, err)

		rc := dialRaw(t, p.Addr())
		rc.write(handshakeResponse(rawCaps, "alice", pmysql.AuthNativePassword))
		rc.read() // auth switch
		rc.write(make([]byte, 32))
		data := rc.read()
		if data[0] == pmysql.AuthMoreDataHeader {
			require.Equal(t, []byte{pmysql.AuthMoreDataHeader, pmysql.CachingSha2PerformFullAuth}, data)
			rc.write([]byte{pmysql.CachingSha2RequestPubKey})
			data = rc.read()
		}
		require.Equal(t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
		e := pmysql.ParseErr(data)
		require.Equal(t, pmysql.ErAccessDenied, e.Code)
		require.Contains(t, e.Message, "Switchyard:")
		require.Contains(t, e.Message, "connect with TLS")
		rc.requireClosed()
		p.requireIdle(t)
	})
	require.Zero(t, dbl.Stats().Failures, "the backend never judged a password")
}

// TestBackendLostDuringAuth: a backend that goes away in the middle of authentication is
// reported to the client as a lost connection, not as a silent close.
func TestBackendLostDuringAuth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	// The backend greets, switches the client to mysql_native_password and hangs up.
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		pio := pmysql.NewPacketIO(c)
		_ = pio.WritePacket(pmysql.AppendInitialHandshake(nil, &pmysql.InitialHandshake{
			ServerVersion: "8.0.36-dying",
			ConnID:        7,
			Salt:          pmysql.NewSalt(20),
			Capability:    rawCaps | pmysql.ClientConnectWithDB | pmysql.ClientConnectAttrs | pmysql.ClientSessionTrack,
			Charset:       pmysql.DefaultCharset,
			Status:        pmysql.ServerStatusAutocommit,
			AuthPlugin:    pmysql.AuthCachingSha2,
		}))
		_ = pio.Flush()
		if _, err := pio.ReadPacket(0); err != nil {
			return
		}
		sw := append([]byte{pmysql.AuthSwitchHeader}, pmysql.AuthNativePassword...)
		sw = append(append(append(sw, 0), pmysql.NewSalt(20)...), 0)
		_ = pio.WritePacket(sw)
		_ = pio.Flush()
	})
	p := startProxy(t, baseConfig(), ln.Addr().String())

	_, err = login(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	me := requireMySQLError(t, err, errCodeBackendLost)
	require.Contains(t, me.Message, "lost connection to backend "+ln.Addr().String())
	p.requireIdle(t)
}

// TestClientWithoutPluginAuth: pass-through relies on auth switching, so a
// client that cannot follow one is told so instead of failing obscurely.
func TestClientWithoutPluginAuth(t *testing.T) {
	dbl := startBackend(t)
	p := startProxy(t, baseConfig(), dbl.Addr())
	rc := dialRaw(t, p.Addr())
	rc.write(handshakeResponse(rawCaps&^pmysql.ClientPluginAuth&^pmysql.ClientPluginAuthLenencClientData, "alice", ""))
	e := rc.readErr(2)
	require.Equal(t, pmysql.ErNotSupportedAuthMode, e.Code)
	require.Contains(t, e.Message, "CLIENT_PLUGIN_AUTH")
	rc.requireClosed()
	require.Zero(t, dbl.Stats().Connections, "the backend was never contacted")
}

// startFullBackend stands in front of backend: the first `full`
// connections get ERR 1040 (Too many connections) instead of a greeting,
// as a server at max_connections answers; later ones are relayed to
// backend. It returns its address and the count of refused connections.
func startFullBackend(t *testing.T, backend string, full int64) (string, *atomic.Int64) {
	t.Helper()
	refused := &atomic.Int64{}
	fwd := startRestartableFwd(t, backend, func(c net.Conn) bool {
		if refused.Add(1) > full {
			refused.Add(-1)
			return false
		}
		// As MariaDB refuses: before the handshake, so without a SQL state.
		_ = pmysql.NewPacketIO(c).WriteError(&pmysql.MySQLError{Code: pmysql.ErCONCount, Message: "Too many connections", NoState: true})
		return true
	})
	return fwd.addr, refused
}

// A server at max_connections refuses before any login; the proxy tries
// the cluster's other backends, then asks again a few times (its own probes
// and closing connections take slots a direct client would have), and only
// servers that stay full reach the client, as the server's own ERR 1040:
// without a SQL state, as a direct client reads it.
func TestFullBackendIsAskedAgain(t *testing.T) {
	backend := startBackend(t)
	t.Run("transient", func(t *testing.T) {
		addr, refused := startFullBackend(t, backend.Addr(), 3)
		p := startProxy(t, baseConfig(), addr)
		res, err := login(t, clientConfig(t, p.Addr(), "nate", nativeUsers["nate"], ""))
		require.NoError(t, err)
		require.Equal(t, 1, res.one)
		require.Equal(t, int64(3), refused.Load())
	})
	t.Run("stays full", func(t *testing.T) {
		addr, refused := startFullBackend(t, backend.Addr(), 1000)
		p := startProxy(t, baseConfig(), addr)
		start := time.Now()
		_, err := login(t, clientConfig(t, p.Addr(), "nate", nativeUsers["nate"], ""))
		me := requireMySQLError(t, err, pmysql.ErCONCount)
		require.Equal(t, "Error 1040: Too many connections", me.Error(), "the server's packet, no SQL state added")
		require.Equal(t, int64(1+len(fullServerBackoff)), refused.Load(), "asked once and once per retry")
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("another backend has room", func(t *testing.T) {
		full, refused := startFullBackend(t, backend.Addr(), 1000)
		p := startProxy(t, baseConfig(), full, backend.Addr())
		// The router balances by sessions, so while these stay open the
		// full backend is picked for some of them.
		for range 3 {
			_, conn := openConn(t, clientConfig(t, p.Addr(), "nate", nativeUsers["nate"], ""))
			require.NoError(t, conn.PingContext(context.Background()))
		}
		require.Positive(t, refused.Load(), "the full backend was picked")
		require.Less(t, refused.Load(), int64(1+len(fullServerBackoff)), "and left for the other at once")
	})
}

// A session that loses its backend inside a transaction ends with one ERR,
// and the FIN comes in the same segment: a client that has read the error
// finds the connection closed at once. go-sql-driver's pool keeps a
// connection whose COMMIT failed with a server error and checks it for a
// close before the next command; with the FIN a moment behind, its next
// BEGIN sometimes went out into the close and read a reset.
func TestLastErrorComesWithTheClose(t *testing.T) {
	fwd := startRestartableFwd(t, startBackend(t).Addr(), nil)
	p := startProxy(t, baseConfig(), fwd.addr)
	for range 30 {
		rc := dialRaw(t, p.Addr())
		rawNativeLogin(t, rc, "nate", "n4tive")
		require.Equal(t, pmysql.OKHeader, rc.query("BEGIN")[0])

		fwd.kill() // the backend dies
		fwd.restart()
		data := rc.query("COMMIT")
		require.Equal(t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
		require.Contains(t, pmysql.ParseErr(data).Message, "the open transaction was rolled back")
		// One read(2) of the non-blocking socket: EOF, not EAGAIN.
		raw, err := rc.conn.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		n, rerr := -1, error(nil)
		require.NoError(t, raw.Control(func(fd uintptr) { n, rerr = syscall.Read(int(fd), make([]byte, 1)) }))
		require.NoError(t, rerr, "the close came with the error")
		require.Zero(t, n, "EOF")
	}
	p.requireIdle(t)
}
