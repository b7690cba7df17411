package mysql

import (
	"bytes"
	"crypto/sha1"
	"testing"

	"github.com/stretchr/testify/require"
)

// Captured from MariaDB 10.11.19 (Debian 12) on 127.0.0.1:13306: the payload
// of the greeting (connection 8), and on another connection (9) the greeting
// and the AuthSwitchRequest it sent for a response naming an unknown plugin.
var (
	hsTestMariaDBGreeting = fuzzHex("0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100" +
		"08000000" + "4e4f225771532b7b" + "00" + "fef7" + "08" + "0200" + "ff81" + "15" +
		"000000000000" + "1d000000" + "4e523345436038343f21232a00" + "6d7973716c5f6e61746976655f70617373776f726400")
	hsTestMariaDBGreeting2 = fuzzHex("0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100" +
		"09000000" + "75636d7b437b6257" + "00" + "fef7" + "08" + "0200" + "ff81" + "15" +
		"000000000000" + "1d000000" + "6f485b6e3a714d6d5e6f324a00" + "6d7973716c5f6e61746976655f70617373776f726400")
	hsTestMariaDBAuthSwitch = fuzzHex("fe" + "6d7973716c5f6e61746976655f70617373776f726400" +
		"75636d7b437b62576f485b6e3a714d6d5e6f324a00")
)

// hsTestMySQL8Greeting is a MySQL 8.0 greeting built by hand from the
// HandshakeV10 layout: caching_sha2_password, utf8mb4_0900_ai_ci.
var hsTestMySQL8Greeting = fuzzHex("0a" + "382e302e333600" + "0e000000" + "6162636465666768" + "00" +
	"ffff" + "ff" + "0200" + "ffdf" + "15" + "00000000000000000000" +
	"696a6b6c6d6e6f7071727374" + "00" + "63616368696e675f736861325f70617373776f726400")

// hsTestMariaDBResponse is the HandshakeResponse41 the mariadb 10.11 command
// line client (libmariadb 3.3.20) sent in answer to hsTestMariaDBGreeting, for
// `mariadb -ualice -psecret shop`. The last four filler bytes carry MariaDB's
// extended capabilities.
var hsTestMariaDBResponse = fuzzHex("8ca2bf00" + "00001000" + "21" + "00000000000000000000000000000000000000" + "1d000000" +
	"616c69636500" + "14501fbf0030801a8252f6ef5839944511b3e18624" + "73686f7000" +
	"6d7973716c5f6e61746976655f70617373776f726400" +
	"7f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640533303038" +
	"330f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f" +
	"6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31")

// hsTestNativeScramble computes the mysql_native_password answer.
func hsTestNativeScramble(salt, password []byte) []byte {
	h1 := sha1.Sum(password)
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(salt)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

func hsTestSalt() []byte {
	return []byte("0123456789abcdefghij")
}

func TestInitialHandshakeRoundTrip(t *testing.T) {
	base := ClientProtocol41 | ClientLongPassword | ClientTransactions | ClientDeprecateEOF | ClientSessionTrack
	// Without SECURE_CONNECTION only the first 8 salt bytes are sent, and
	// without PLUGIN_AUTH no plugin name.
	tests := []struct {
		name     string
		cap      uint32
		wantSalt []byte
	}{
		{"plugin auth and secure connection", base | ClientPluginAuth | ClientSecureConnection, hsTestSalt()},
		{"secure connection only", base | ClientSecureConnection, hsTestSalt()},
		{"plugin auth only", base | ClientPluginAuth, hsTestSalt()[:8]},
		{"neither", base, hsTestSalt()[:8]},
		{"with SSL and compression", base | ClientPluginAuth | ClientSecureConnection | ClientSSL | ClientCompress | ClientZstdCompression, hsTestSalt()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &InitialHandshake{
				ServerVersion: "8.0.11-switchyard",
				ConnID:        0x01020304,
				Salt:          hsTestSalt(),
				Capability:    tt.cap,
				Charset:       DefaultCharset,
				Status:        ServerStatusAutocommit,
				AuthPlugin:    AuthCachingSha2,
			}
			enc := AppendInitialHandshake(nil, in)
			got, err := ParseInitialHandshake(enc)
			require.NoError(t, err)
			want := *in
			want.Salt = tt.wantSalt
			if tt.cap&ClientPluginAuth == 0 {
				want.AuthPlugin = ""
			}
			require.Equal(t, &want, got)
		})
	}
}

func TestInitialHandshakeLayout(t *testing.T) {
	in := &InitialHandshake{
		ServerVersion: "8.0.36",
		ConnID:        14,
		Salt:          []byte("abcdefghijklmnopqrst"),
		Capability:    0xdfffffff,
		Charset:       0xff,
		Status:        ServerStatusAutocommit,
		AuthPlugin:    AuthCachingSha2,
	}
	require.Equal(t, hsTestMySQL8Greeting, AppendInitialHandshake(nil, in))
}

func TestParseInitialHandshakeMariaDB(t *testing.T) {
	h, err := ParseInitialHandshake(hsTestMariaDBGreeting)
	require.NoError(t, err)
	require.Equal(t, &InitialHandshake{
		ServerVersion: "5.5.5-10.11.19-MariaDB-0+deb12u1",
		ConnID:        8,
		Salt:          []byte("NO\"WqS+{NR3EC`84?!#*"),
		Capability:    0x81fff7fe,
		ExtCapability: 0x1d,
		Charset:       8,
		Status:        ServerStatusAutocommit,
		AuthPlugin:    AuthNativePassword,
	}, h)
	require.Zero(t, h.Capability&ClientSSL, "this server runs without TLS")
	require.NotZero(t, h.Capability&ClientPluginAuth)
	require.NotZero(t, h.Capability&ClientSecureConnection)

	// MariaDB 10.11 announces progress, bulk operations, extended metadata
	// and metadata caching; CLIENT_MYSQL is clear, which says so.
	require.Zero(t, h.Capability&ClientMySQL)
	require.Equal(t, MariaDBClientProgress|MariaDBClientStmtBulkOperations|MariaDBClientExtendedMetadata|MariaDBClientCacheMetadata, h.ExtCapability)
	// Re-encoding reproduces the capture, extended capabilities included.
	require.Equal(t, hsTestMariaDBGreeting, AppendInitialHandshake(nil, h))

	// The real client's answer to this greeting is the native scramble of
	// its password with exactly this salt.
	r, err := ParseHandshakeResponse(hsTestMariaDBResponse)
	require.NoError(t, err)
	require.Equal(t, hsTestNativeScramble(h.Salt, []byte("secret")), r.AuthData)
}

func TestParseInitialHandshakeMySQL8(t *testing.T) {
	h, err := ParseInitialHandshake(hsTestMySQL8Greeting)
	require.NoError(t, err)
	require.Equal(t, &InitialHandshake{
		ServerVersion: "8.0.36",
		ConnID:        14,
		Salt:          []byte("abcdefghijklmnopqrst"),
		Capability:    0xdfffffff,
		Charset:       0xff,
		Status:        ServerStatusAutocommit,
		AuthPlugin:    AuthCachingSha2,
	}, h)
	require.NotZero(t, h.Capability&ClientZstdCompression)
	require.NotZero(t, h.Capability&ClientQueryAttributes)
}

func TestParseInitialHandshakeVariants(t *testing.T) {
	// Some servers omit the NUL after the plugin name.
	h, err := ParseInitialHandshake(hsTestMySQL8Greeting[:len(hsTestMySQL8Greeting)-1])
	require.NoError(t, err)
	require.Equal(t, AuthCachingSha2, h.AuthPlugin)
	require.Len(t, h.Salt, 20)

	// A greeting that ends after the lower capability flags (very old
	// servers) still yields the fields it has.
	short := hsTestMySQL8Greeting[:1+7+4+9+2]
	h, err = ParseInitialHandshake(short)
	require.NoError(t, err)
	require.Equal(t, "8.0.36", h.ServerVersion)
	require.Equal(t, uint32(0xffff), h.Capability)
	require.Equal(t, []byte("abcdefgh"), h.Salt)
	require.Empty(t, h.AuthPlugin)

	// A salt's second part without its NUL keeps all 12 bytes.
	noNul := append(bytes.Clone(hsTestMySQL8Greeting[:len(hsTestMySQL8Greeting)-len(AuthCachingSha2)-2]), "x"...)
	h, err = ParseInitialHandshake(noNul)
	require.NoError(t, err)
	require.Equal(t, []byte("abcdefghijklmnopqrstx"), h.Salt, "13 bytes, the last one not NUL, are all salt")
}

func TestParseInitialHandshakeErrors(t *testing.T) {
	// A server that refuses the connection sends ERR instead of a greeting.
	_, err := ParseInitialHandshake(AppendErr(nil, &MySQLError{Code: 1129, State: "HY000", Message: "Host '10.0.0.9' is blocked"}))
	var myErr *MySQLError
	require.ErrorAs(t, err, &myErr)
	require.Equal(t, uint16(1129), myErr.Code)

	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"protocol 9", []byte{9, '3', '.', '2', '3', 0, 1, 0, 0, 0}},
		{"version without NUL", []byte("\x0a8.0.36")},
		{"too short after the version", hsTestMySQL8Greeting[:1+7+4+9+1]},
		{"only the protocol version", []byte{10}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseInitialHandshake(tt.data)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestParseHandshakeResponseMariaDB(t *testing.T) {
	r, err := ParseHandshakeResponse(hsTestMariaDBResponse)
	require.NoError(t, err)
	require.Equal(t, uint32(0x00bfa28c), r.Capability)
	for _, c := range []uint32{ClientProtocol41, ClientSecureConnection, ClientPluginAuth, ClientPluginAuthLenencClientData, ClientConnectAttrs, ClientConnectWithDB, ClientSessionTrack} {
		require.NotZero(t, r.Capability&c, "capability %#x", c)
	}
	require.Equal(t, uint32(1<<20), r.MaxPacket)
	require.Equal(t, byte(33), r.Charset)
	require.Equal(t, "alice", r.User)
	require.Len(t, r.AuthData, 20)
	require.Equal(t, "shop", r.DB)
	require.Equal(t, AuthNativePassword, r.AuthPlugin)
	require.Len(t, r.Attrs, 0x7f)
	require.True(t, bytes.HasPrefix(r.Attrs, []byte("\x03_os\x05Linux")))
	require.True(t, bytes.HasSuffix(r.Attrs, []byte("\x0c_server_host\x09127.0.0.1")))
	require.Zero(t, r.ZstdLevel)
	require.False(t, IsSSLRequest(hsTestMariaDBResponse))

	// MariaDB clients answer with their extended capabilities in the last
	// filler bytes; re-encoding reproduces the capture.
	require.Equal(t, uint32(0x1d), r.ExtCapability)
	require.Equal(t, hsTestMariaDBResponse, AppendHandshakeResponse(nil, r))
}

// hsTestResponses returns responses over the capability combinations that
// change the layout.
func hsTestResponses() []*HandshakeResponse {
	authModes := []struct {
		cap  uint32
		auth []byte
	}{
		// LENENC wins when both are set, as clients send them.
		{ClientPluginAuthLenencClientData | ClientSecureConnection, append(bytes.Repeat([]byte{0, 1, 0xfb, 0xff}, 70), 9)},
		{ClientPluginAuthLenencClientData, []byte{0x00, 0x01}},
		{ClientSecureConnection, append([]byte{0}, bytes.Repeat([]byte{0xaa}, 254)...)},
		{ClientSecureConnection, nil},
		{0, []byte("scrambl")}, // pre-4.1 style: NUL-terminated, NUL-free
	}
	attrs := AppendLenEncString(AppendLenEncString(nil, []byte("_client_name")), []byte("switchyard"))
	var out []*HandshakeResponse
	for _, am := range authModes {
		for mask := range 16 {
			r := &HandshakeResponse{
				Capability: ClientProtocol41 | ClientLongPassword | ClientTransactions | am.cap,
				MaxPacket:  1<<24 - 1,
				Charset:    DefaultCharset,
				User:       "alice",
				AuthData:   am.auth,
			}
			if mask&1 != 0 {
				r.Capability |= ClientConnectWithDB
				r.DB = "shop"
			}
			if mask&2 != 0 {
				r.Capability |= ClientPluginAuth
				r.AuthPlugin = AuthUnknownPlugin
			}
			if mask&4 != 0 {
				r.Capability |= ClientConnectAttrs
				r.Attrs = attrs
			}
			if mask&8 != 0 {
				r.Capability |= ClientZstdCompression
				r.ZstdLevel = 19
			}
			out = append(out, r)
		}
	}
	// Empty strings where a field is announced.
	out = append(out, &HandshakeResponse{
		Capability: ClientProtocol41 | ClientSecureConnection | ClientConnectWithDB | ClientPluginAuth | ClientConnectAttrs | ClientZstdCompression,
		ZstdLevel:  1,
	})
	return out
}

func TestHandshakeResponseRoundTrip(t *testing.T) {
	for i, r := range hsTestResponses() {
		enc := AppendHandshakeResponse(nil, r)
		got, err := ParseHandshakeResponse(enc)
		require.NoError(t, err, "case %d, capability %#x", i, r.Capability)
		require.Equal(t, r, got, "case %d, capability %#x", i, r.Capability)
		require.False(t, IsSSLRequest(enc))
	}
}

func TestParseHandshakeResponseLenient(t *testing.T) {
	prefix := func(c uint32) []byte {
		return AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | c, Charset: DefaultCharset})
	}

	// The plugin name may lack its NUL when it is the last field.
	r, err := ParseHandshakeResponse(append(prefix(ClientSecureConnection|ClientPluginAuth), "bob\x00\x00mysql_native_password"...))
	require.NoError(t, err)
	require.Equal(t, "bob", r.User)
	require.Nil(t, r.AuthData)
	require.Equal(t, AuthNativePassword, r.AuthPlugin)

	// Announced fields may be missing at the end of the packet.
	r, err = ParseHandshakeResponse(append(prefix(ClientSecureConnection|ClientConnectWithDB|ClientPluginAuth|ClientConnectAttrs|ClientZstdCompression), "bob\x00\x01x"...))
	require.NoError(t, err)
	require.Equal(t, []byte("x"), r.AuthData)
	require.Empty(t, r.DB)
	require.Empty(t, r.AuthPlugin)
	require.Nil(t, r.Attrs)
	require.Zero(t, r.ZstdLevel)

	// NULL attributes.
	r, err = ParseHandshakeResponse(append(prefix(ClientSecureConnection|ClientConnectAttrs), "bob\x00\x00\xfb"...))
	require.NoError(t, err)
	require.Nil(t, r.Attrs)
}

func TestParseHandshakeResponseMalformed(t *testing.T) {
	prefix := func(c uint32) []byte {
		return AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | c})
	}
	cat := func(b []byte, s string) []byte { return append(b, s...) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"too short", hsTestMariaDBResponse[:31]},
		{"SSLRequest only", prefix(ClientSSL | ClientSecureConnection)},
		{"no protocol 4.1", cat(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientSecureConnection}), "bob\x00\x00")},
		{"no NUL after user", cat(prefix(ClientSecureConnection), "alice")},
		{"secure auth length missing", cat(prefix(ClientSecureConnection), "bob\x00")},
		{"secure auth length beyond end", cat(prefix(ClientSecureConnection), "bob\x00\x14abcde")},
		{"lenenc auth length beyond end", cat(prefix(ClientPluginAuthLenencClientData), "bob\x00\xfc\x00\x01ab")},
		{"lenenc auth missing", cat(prefix(ClientPluginAuthLenencClientData), "bob\x00")},
		{"lenenc auth is the ERR marker", cat(prefix(ClientPluginAuthLenencClientData), "bob\x00\xff")},
		{"NUL-terminated auth without NUL", cat(prefix(0), "bob\x00scramble")},
		{"database without NUL", cat(prefix(ClientSecureConnection|ClientConnectWithDB), "bob\x00\x00shop")},
		{"attrs length beyond end", cat(prefix(ClientSecureConnection|ClientPluginAuth|ClientConnectAttrs), "bob\x00\x00p\x00\x7f\x03_os")},
		{"attrs length truncated", cat(prefix(ClientSecureConnection|ClientConnectAttrs), "bob\x00\x00\xfd\x01")},
		{"real response cut inside attrs", hsTestMariaDBResponse[:len(hsTestMariaDBResponse)-1]},
		{"real response cut inside auth data", hsTestMariaDBResponse[:sslRequestLen+6+10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseHandshakeResponse(tt.data)
			require.ErrorIs(t, err, ErrMalformed)
			require.Nil(t, r)
		})
	}
}

func TestIsSSLRequest(t *testing.T) {
	ssl := AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41 | ClientSSL | ClientSecureConnection, MaxPacket: 1 << 24, Charset: DefaultCharset})
	require.Len(t, ssl, sslRequestLen)
	require.True(t, IsSSLRequest(ssl))
	require.False(t, IsSSLRequest(ssl[:31]))
	require.False(t, IsSSLRequest(append(bytes.Clone(ssl), 0)))
	require.False(t, IsSSLRequest(AppendSSLRequest(nil, &HandshakeResponse{Capability: ClientProtocol41})))
	require.False(t, IsSSLRequest(nil))
}

func TestParseAuthSwitchRequest(t *testing.T) {
	// Real MariaDB request: the scramble is the greeting's salt, followed
	// by a NUL that is not part of it.
	greet, err := ParseInitialHandshake(hsTestMariaDBGreeting2)
	require.NoError(t, err)
	req, err := ParseAuthSwitchRequest(hsTestMariaDBAuthSwitch)
	require.NoError(t, err)
	require.Equal(t, AuthNativePassword, req.Plugin)
	require.Equal(t, greet.Salt, req.Data)

	// No trailing NUL: nothing is trimmed.
	req, err = ParseAuthSwitchRequest(append([]byte("\xfecaching_sha2_password\x00"), "0123456789abcdefghij"...))
	require.NoError(t, err)
	require.Equal(t, AuthCachingSha2, req.Plugin)
	require.Equal(t, []byte("0123456789abcdefghij"), req.Data)

	// Only one NUL is trimmed.
	req, err = ParseAuthSwitchRequest([]byte("\xfep\x00ab\x00\x00"))
	require.NoError(t, err)
	require.Equal(t, []byte("ab\x00"), req.Data)

	// Plugin without data.
	req, err = ParseAuthSwitchRequest([]byte("\xfemysql_clear_password\x00"))
	require.NoError(t, err)
	require.Equal(t, AuthClearPassword, req.Plugin)
	require.Empty(t, req.Data)

	// The old-style one-byte request.
	req, err = ParseAuthSwitchRequest([]byte{0xfe})
	require.NoError(t, err)
	require.Equal(t, &AuthSwitchRequest{Plugin: "mysql_old_password"}, req)

	// Data is a copy: the read buffer may be reused.
	in := bytes.Clone(hsTestMariaDBAuthSwitch)
	req, err = ParseAuthSwitchRequest(in)
	require.NoError(t, err)
	for i := range in {
		in[i] = 0
	}
	require.Equal(t, greet.Salt, req.Data)

	for _, bad := range [][]byte{nil, {0x00}, {0x01, 'a', 0}, {0xff, 0x15, 0x04}, []byte("\xfemysql_native_password")} {
		_, err := ParseAuthSwitchRequest(bad)
		require.ErrorIs(t, err, ErrMalformed, "%x", bad)
	}
}

func TestNewSalt(t *testing.T) {
	for _, n := range []int{0, 1, 8, 20, 32} {
		require.Len(t, NewSalt(n), n)
	}
	var seen [256]int
	for range 2000 {
		for _, c := range NewSalt(20) {
			seen[c]++
			require.NotZero(t, c, "a NUL would end the scramble early")
			require.NotEqual(t, byte('$'), c, "'$' separates fields in stored hashes")
			require.Less(t, c, byte(0x80))
		}
	}
	require.NotEqual(t, NewSalt(20), NewSalt(20))
}

// TestNewSaltUsesEveryAllowedByte: MySQL's scramble bytes range over 1..127
// except '$'. Losing a bit per byte would cut a 20-byte salt from about 140
// bits of entropy to 120.
func TestNewSaltUsesEveryAllowedByte(t *testing.T) {
	var seen [256]bool
	for range 2000 {
		for _, c := range NewSalt(20) {
			seen[c] = true
		}
	}
	var even, distinct int
	for c, ok := range seen {
		if ok {
			distinct++
			if c%2 == 0 {
				even++
			}
		}
	}
	// 40000 draws over 126 values: every value shows up, bar a
	// vanishingly unlikely miss.
	require.NotZero(t, even, "no even byte in 40000: the low bit is forced")
	require.GreaterOrEqual(t, distinct, 120)
}
