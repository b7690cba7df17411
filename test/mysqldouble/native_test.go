package mysqldouble

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

var testNativeUsers = map[string]string{"carl": "oldschool", "nopwnative": ""}

func startNative(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	return startDefault(t, func(c *Config) {
		c.NativeUsers = testNativeUsers
		if mutate != nil {
			mutate(c)
		}
	})
}

// nativeScramble is the client's mysql_native_password answer, written from the protocol
// documentation: XOR(SHA1(pw), SHA1(nonce || SHA1(SHA1(pw)))).
func nativeScramble(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	stage1 := sha1.Sum([]byte(password))
	stage2 := sha1.Sum(stage1[:])
	h := sha1.New()
	h.Write(nonce)
	h.Write(stage2[:])
	mask := h.Sum(nil)
	out := make([]byte, sha1.Size)
	for i := range out {
		out[i] = stage1[i] ^ mask[i]
	}
	return out
}

func TestNativeUserLogin(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	for _, tc := range []struct {
		name         string
		greeting     string
		tls          bool
		wantSwitches int64
	}{
		// The driver answers the greeting's plugin; a caching_sha2 answer must be switched.
		{name: "caching_sha2 greeting", greeting: pluginCachingSHA2, wantSwitches: 1},
		{name: "native greeting", greeting: pluginNative, wantSwitches: 0},
		{name: "caching_sha2 greeting over TLS", greeting: pluginCachingSHA2, tls: true, wantSwitches: 1},
		{name: "native greeting over TLS", greeting: pluginNative, tls: true, wantSwitches: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startNative(t, func(c *Config) {
				c.DefaultAuthPlugin = tc.greeting
				c.TLS = serverTLS
			})
			cfg := driverConfig(t, s, "carl", "oldschool")
			if tc.tls {
				cfg.TLS = clientTLS
			}
			db := openDB(t, cfg)
			var user string
			require.NoError(t, db.QueryRowContext(context.Background(), "SELECT CURRENT_USER()").Scan(&user))
			require.Equal(t, "carl@%", user)
			require.Equal(t, Stats{Connections: 1, AuthSwitches: tc.wantSwitches, NativeAuth: 1}, s.Stats())

			// No cache is involved: the second login runs the same exchange.
			require.NoError(t, login(t, cfg))
			require.Equal(t, Stats{Connections: 2, AuthSwitches: 2 * tc.wantSwitches, NativeAuth: 2}, s.Stats())
		})
	}
}

func TestNativeUserEmptyPassword(t *testing.T) {
	s := startNative(t, nil)
	require.NoError(t, login(t, driverConfig(t, s, "nopwnative", "")))
	require.Equal(t, Stats{Connections: 1, AuthSwitches: 1, NativeAuth: 1}, s.Stats())
}

func TestNativeAccessDenied(t *testing.T) {
	s := startNative(t, nil)
	for _, tc := range []struct {
		name, user, password, using string
	}{
		{name: "wrong password", user: "carl", password: "newschool", using: "YES"},
		{name: "empty password for account with password", user: "carl", password: "", using: "NO"},
		{name: "password for account without password", user: "nopwnative", password: "x", using: "YES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			err := login(t, driverConfig(t, s, tc.user, tc.password))
			me := requireMySQLError(t, err, codeAccessDenied, sqlStateAccessDenied)
			require.Equal(t, fmt.Sprintf("Access denied for user '%s'@'127.0.0.1' (using password: %s)", tc.user, tc.using), me.Message)
			after := s.Stats()
			require.Equal(t, before.Failures+1, after.Failures)
			require.Equal(t, before.NativeAuth, after.NativeAuth)
		})
	}
	// caching_sha2 accounts are unaffected by native ones on the same server.
	require.NoError(t, login(t, driverConfig(t, s, "alice", "s3cret")))
	require.Equal(t, int64(1), s.Stats().FullAuthRSA)
}

// TestNativeForeignPluginGetsAuthSwitch plays a proxy that names a plugin of its own: the
// server must switch it to mysql_native_password with a fresh nonce and verify the answer
// against that nonce, not the greeting's.
func TestNativeForeignPluginGetsAuthSwitch(t *testing.T) {
	s := startNative(t, nil)

	t.Run("right password", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(handshakeResponse41(clientCaps, "carl", nativeScramble("oldschool", rc.scramble), "", "proxy_passthrough"))
		nonce := requireAuthSwitch(t, rc.read(), pluginNative, rc.scramble)
		rc.write(nativeScramble("oldschool", nonce))
		require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read())

		rc.command(comQuery, "SELECT CURRENT_USER()")
		rc.read()
		rc.read()
		rc.read()
		require.Equal(t, appendLenEncString(nil, "carl@%"), rc.read())
		rc.read()
		rc.command(comQuit, "")
		rc.requireClosed()
	})
	t.Run("answer for the greeting scramble", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(handshakeResponse41(clientCaps, "carl", nil, "", "proxy_passthrough"))
		requireAuthSwitch(t, rc.read(), pluginNative, rc.scramble)
		rc.write(nativeScramble("oldschool", rc.scramble))
		msg := requireErrPacket(t, rc.read(), codeAccessDenied, sqlStateAccessDenied)
		require.Equal(t, "Access denied for user 'carl'@'127.0.0.1' (using password: YES)", msg)
		rc.requireClosed()
	})
	t.Run("truncated token", func(t *testing.T) {
		rc := dialRaw(t, s)
		rc.write(handshakeResponse41(clientCaps, "carl", nil, "", pluginCachingSHA2))
		nonce := requireAuthSwitch(t, rc.read(), pluginNative, rc.scramble)
		rc.write(nativeScramble("oldschool", nonce)[:19])
		requireErrPacket(t, rc.read(), codeAccessDenied, sqlStateAccessDenied)
		rc.requireClosed()
	})
	require.Equal(t, Stats{Connections: 3, AuthSwitches: 3, NativeAuth: 1, Failures: 2}, s.Stats())
}

// A client that already answered with mysql_native_password for the greeting's scramble
// needs no switch, even when the greeting named caching_sha2_password.
func TestNativeAnswerToGreetingAccepted(t *testing.T) {
	s := startNative(t, nil)
	rc := dialRaw(t, s)
	require.Equal(t, pluginCachingSHA2, rc.plugin)
	rc.write(handshakeResponse41(clientCaps, "carl", nativeScramble("oldschool", rc.scramble), "", pluginNative))
	require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read())
	require.Equal(t, Stats{Connections: 1, NativeAuth: 1}, s.Stats())
}

// Clients without CLIENT_PLUGIN_AUTH cannot be switched, but they answer with the native
// scramble, so native accounts still work for them (caching_sha2 ones do not).
func TestNativeClientWithoutPluginAuth(t *testing.T) {
	s := startNative(t, nil)
	rc := dialRaw(t, s)
	caps := (clientCaps &^ capPluginAuth) &^ capPluginAuthLenenc &^ capConnectAttrs
	resp := binary.LittleEndian.AppendUint32(nil, caps)
	resp = append(resp, make([]byte, 4+1+23)...)
	resp = append(resp, "carl\x00"...)
	token := nativeScramble("oldschool", rc.scramble)
	resp = append(resp, byte(len(token)))
	resp = append(resp, token...)
	rc.write(resp)
	require.Equal(t, okPacket(hdrOK, 0, statusAutocommit, nil), rc.read())
	require.Equal(t, Stats{Connections: 1, NativeAuth: 1}, s.Stats())
}

func TestNewRejectsUserInBothMaps(t *testing.T) {
	_, err := New(Config{
		Users:       map[string]string{"dup": "a"},
		NativeUsers: map[string]string{"dup": "b"},
		RSAKey:      sharedKey(),
	})
	require.ErrorContains(t, err, `"dup"`)
}

// requireAuthSwitch asserts p is an AuthSwitchRequest to plugin with a fresh 20-byte nonce
// (different from the greeting's) and returns the nonce.
func requireAuthSwitch(t *testing.T, p []byte, plugin string, greeting []byte) []byte {
	t.Helper()
	prefix := append(append([]byte{hdrEOF}, plugin...), 0)
	require.True(t, bytes.HasPrefix(p, prefix), "want AuthSwitchRequest to %s, got %q", plugin, p)
	nonce := p[len(prefix):]
	require.Len(t, nonce, 21)
	require.Equal(t, byte(0), nonce[20])
	nonce = nonce[:20]
	require.NotContains(t, nonce, byte(0))
	require.NotEqual(t, greeting, nonce, "the switch carries a fresh nonce")
	return nonce
}
