package mysqldouble

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGreeting(t *testing.T) {
	serverTLS, _ := tlsPair(t)
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantCaps uint32
		plugin   string
		version  string
	}{
		{
			name:     "defaults",
			cfg:      Config{RSAKey: sharedKey()},
			wantCaps: baseCapabilities,
			plugin:   pluginCachingSHA2,
			version:  DefaultServerVersion,
		},
		{
			name:     "tls and native default",
			cfg:      Config{RSAKey: sharedKey(), TLS: serverTLS, DefaultAuthPlugin: pluginNative, ServerVersion: "8.4.0"},
			wantCaps: baseCapabilities | capSSL,
			plugin:   pluginNative,
			version:  "8.4.0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.cfg)
			rc := dialRaw(t, s)
			require.Equal(t, tc.version, rc.version)
			require.Equal(t, tc.plugin, rc.plugin)
			require.Equal(t, tc.wantCaps, rc.caps)
			require.Len(t, rc.scramble, 20)
			require.NotContains(t, rc.scramble, byte(0))

			g := rc.greeting
			pos := 1 + len(rc.version) + 1 + 4 + 8 + 1 + 2
			require.Equal(t, byte(charsetUTF8MB4), g[pos], "charset")
			require.Equal(t, statusAutocommit, binary.LittleEndian.Uint16(g[pos+1:]), "status")
			require.Equal(t, byte(21), g[pos+5], "auth-plugin-data length")
			require.Equal(t, make([]byte, 10), g[pos+6:pos+16], "reserved")

			other := dialRaw(t, s)
			require.NotEqual(t, rc.connID, other.connID)
			require.NotEqual(t, rc.scramble, other.scramble)
		})
	}
}

func TestCleartextOverPlainTCPRefused(t *testing.T) {
	s := startDefault(t, nil)
	rc := dialRaw(t, s)
	rc.write(handshakeResponse41(clientCaps, "alice", sha2Scramble("s3cret", rc.scramble), "", pluginCachingSHA2))
	require.Equal(t, []byte{hdrAuthMoreData, sha2PerformFullAuth}, rc.read())
	rc.write([]byte("s3cret\x00"))
	msg := requireErrPacket(t, rc.read(), codeAccessDenied, sqlStateAccessDenied)
	require.Equal(t, "Access denied for user 'alice'@'127.0.0.1' (using password: YES)", msg)
	rc.requireClosed()
	require.Equal(t, Stats{Connections: 1, Failures: 1}, s.Stats())
}

// TestForeignPluginGetsAuthSwitch plays a proxy that names a plugin of its own: the server
// must switch it to caching_sha2_password with a fresh nonce, and the RSA exchange must
// use that nonce. Every packet's sequence id is checked by the raw client.
func TestForeignPluginGetsAuthSwitch(t *testing.T) {
	s := startDefault(t, nil)
	rc := dialRaw(t, s)
	rc.write(handshakeResponse41(clientCaps|capConnectWithDB, "bob", []byte("whatever"), "shop", "proxy_passthrough"))

	sw := rc.read()
	prefix := []byte("\xfecaching_sha2_password\x00")
	require.True(t, bytes.HasPrefix(sw, prefix), "want AuthSwitchRequest, got %q", sw)
	nonce := sw[len(prefix):]
	require.Len(t, nonce, 21)
	require.Equal(t, byte(0), nonce[20])
	nonce = nonce[:20]
	require.NotContains(t, nonce, byte(0))
	require.NotEqual(t, rc.scramble, nonce, "the switch carries a fresh nonce")

	rc.write(sha2Scramble("hunter2", nonce))
	require.Equal(t, []byte{hdrAuthMoreData, sha2PerformFullAuth}, rc.read())
	rc.write([]byte{sha2RequestPublicKey})
	keyMsg := rc.read()
	require.Equal(t, byte(hdrAuthMoreData), keyMsg[0])
	require.Equal(t, s.PublicKeyPEM(), keyMsg[1:])
	rc.write(rsaPassword(t, keyMsg[1:], "hunter2", nonce))
	require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read())
	require.Equal(t, Stats{Connections: 1, AuthSwitches: 1, PublicKeyRequests: 1, FullAuthRSA: 1}, s.Stats())

	// Without DEPRECATE_EOF the result set uses EOF packets after the columns and rows.
	rc.command(comQuery, "SELECT DATABASE()")
	require.Equal(t, []byte{1}, rc.read())
	require.Equal(t, columnDef41("DATABASE()"), rc.read())
	require.Equal(t, eofPacket(statusAutocommit), rc.read())
	require.Equal(t, appendLenEncString(nil, "shop"), rc.read())
	require.Equal(t, eofPacket(statusAutocommit), rc.read())

	rc.command(comInitDB, "other")
	require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read(), "no session tracking negotiated")
	rc.command(comQuery, "SELECT CURRENT_USER()")
	rc.read()
	rc.read()
	rc.read()
	require.Equal(t, appendLenEncString(nil, "bob@%"), rc.read())
	rc.read()

	rc.command(comPing, "")
	require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read())
	rc.command(0x1e, "") // COM_BINLOG_DUMP_GTID is not implemented
	requireErrPacket(t, rc.read(), codeUnknownCommand, sqlStateConnection)
	rc.command(comQuit, "")
	rc.requireClosed()
}

// TestDeprecateEOFAndSessionTrack checks the MySQL 8 framing modern clients negotiate.
func TestDeprecateEOFAndSessionTrack(t *testing.T) {
	s := startDefault(t, nil)
	caps := clientCaps | capDeprecateEOF | capSessionTrack
	rc := dialRaw(t, s)
	rc.write(handshakeResponse41(caps, "nopw", nil, "", pluginCachingSHA2))
	require.Equal(t, okPacket(hdrOK, caps, statusAutocommit, nil), rc.read())

	rc.command(comQuery, "SELECT NULL")
	require.Equal(t, []byte{1}, rc.read())
	require.Equal(t, columnDef41("NULL"), rc.read())
	require.Equal(t, []byte{0xfb}, rc.read())
	require.Equal(t, []byte{hdrEOF, 0, 0, 0x02, 0x00, 0, 0}, rc.read())

	rc.command(comInitDB, "shop")
	ok := rc.read()
	require.Equal(t, []byte{hdrOK, 0, 0}, ok[:3])
	require.Equal(t, statusAutocommit|statusSessionStateChanged, binary.LittleEndian.Uint16(ok[3:]))
	// warnings, empty info, then one SESSION_TRACK_SCHEMA entry carrying "shop".
	require.Equal(t, []byte{0, 0, 0, 7, sessionTrackSchema, 5, 4, 's', 'h', 'o', 'p'}, ok[5:])
}

func TestClientWithoutPluginAuthRefused(t *testing.T) {
	s := startDefault(t, nil)
	rc := dialRaw(t, s)
	caps := (clientCaps &^ capPluginAuth) &^ capPluginAuthLenenc &^ capConnectAttrs
	resp := binary.LittleEndian.AppendUint32(nil, caps)
	resp = append(resp, make([]byte, 4+1+23)...)
	resp = append(resp, "alice\x00"...)
	resp = append(resp, 20)
	resp = append(resp, make([]byte, 20)...)
	rc.write(resp)
	requireErrPacket(t, rc.read(), codeNotSupportedAuth, sqlStateNotSupported)
	rc.requireClosed()
	require.Equal(t, int64(1), s.Stats().Failures)
}

func TestMalformedPacketClosesOnlyThatConnection(t *testing.T) {
	s := startDefault(t, nil)
	db := openDB(t, driverConfig(t, s, "alice", "s3cret"))
	var one int
	require.NoError(t, db.QueryRow("SELECT 1").Scan(&one))

	t.Run("truncated handshake response", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write([]byte{0x01, 0x02, 0x03})
		requireErrPacket(t, rc.read(), codeBadHandshake, sqlStateConnection)
		rc.requireClosed()
	})
	t.Run("auth data longer than packet", func(t *testing.T) {
		rc := dialRaw(t, s)
		resp := handshakeResponse41(clientCaps, "alice", nil, "", "")
		idx := bytes.Index(resp, []byte("alice\x00")) + len("alice\x00")
		resp = append(resp[:idx], 0xfc, 0xff, 0x00) // lenenc 255, no data
		rc.write(resp)
		requireErrPacket(t, rc.read(), codeBadHandshake, sqlStateConnection)
		rc.requireClosed()
	})
	t.Run("out of order sequence id", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.pc.seq = 5
		rc.write(handshakeResponse41(clientCaps, "alice", sha2Scramble("s3cret", rc.scramble), "", pluginCachingSHA2))
		p, err := (&packetConn{conn: rc.conn, seq: 1}).readPacket()
		require.NoError(t, err)
		requireErrPacket(t, p, codeNetOutOfOrder, sqlStateConnection)
		rc.requireClosed()
	})
	t.Run("SSLRequest without TLS", func(t *testing.T) {
		rc := dialRaw(t, s)
		req := binary.LittleEndian.AppendUint32(nil, clientCaps|capSSL)
		rc.write(append(req, make([]byte, 4+1+23)...))
		requireErrPacket(t, rc.read(), codeBadHandshake, sqlStateConnection)
		rc.requireClosed()
	})
	t.Run("empty command packet", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(handshakeResponse41(clientCaps, "nopw", nil, "", pluginCachingSHA2))
		rc.read()
		rc.pc.resetSeq()
		rc.write(nil)
		rc.requireClosed()
	})

	require.NoError(t, db.QueryRow("SELECT 1").Scan(&one), "the healthy connection survives")
	require.Equal(t, 1, one)
	require.Equal(t, int64(5), s.Stats().ProtocolErrors)
}

func TestCloseEndsConnectionsAndIsIdempotent(t *testing.T) {
	s, err := New(Config{Users: testUsers, RSAKey: sharedKey()})
	require.NoError(t, err)
	require.Empty(t, s.Addr())
	require.NoError(t, s.Listen())
	require.Error(t, s.Listen(), "a server listens once")

	idle := dialRaw(t, s) // waiting in the connection phase
	authed := dialRaw(t, s)
	authed.write(handshakeResponse41(clientCaps, "nopw", nil, "", pluginCachingSHA2))
	authed.read()

	require.NoError(t, s.Close())
	idle.requireClosed()
	authed.requireClosed()
	require.NoError(t, s.Close())
	require.Error(t, s.Listen(), "a closed server stays closed")
}
