package mysqldouble

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/test/testenv"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// sharedKey spares most tests the cost of generating a 2048-bit key under -race.
var sharedKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// tlsPair returns a server config and a client config that trusts it, from
// testenv's CA (one certificate set per test, generated in memory).
func tlsPair(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	c := testenv.NewCerts(t, "")
	client = c.ClientTLSConfig()
	client.ServerName = "127.0.0.1"
	return c.ServerTLSConfig(), client
}

type testLogger struct{ t testing.TB }

func (l testLogger) Print(v ...any) { l.t.Log(append([]any{"mysql driver:"}, v...)...) }

// driverConfig is a go-sql-driver configuration for user/password against s.
func driverConfig(t testing.TB, s *Server, user, password string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = s.Addr()
	cfg.User = user
	cfg.Passwd = password
	cfg.Timeout = 10 * time.Second
	cfg.Logger = testLogger{t}
	return cfg
}

// openDB opens a pool for cfg and closes it when the test ends.
func openDB(t testing.TB, cfg *mysql.Config) *sql.DB {
	t.Helper()
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// login opens a fresh connection (a full connection phase), pings, and closes it.
func login(t testing.TB, cfg *mysql.Config) error {
	t.Helper()
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// requireMySQLError asserts err is a MySQL ERR packet with the given code and SQL state.
func requireMySQLError(t testing.TB, err error, code uint16, sqlState string) *mysql.MySQLError {
	t.Helper()
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me), "want MySQL error %d, got %v", code, err)
	require.Equal(t, code, me.Number, me.Message)
	require.Equal(t, sqlState, string(me.SQLState[:]))
	return me
}

// rawClient speaks the client side of the protocol by hand, for exchanges a driver will
// not produce (cleartext over plain TCP, foreign plugin names, old EOF framing). Its
// packetConn checks every sequence id the server sends.
type rawClient struct {
	t        testing.TB
	conn     net.Conn
	pc       *packetConn
	greeting []byte
	caps     uint32
	version  string
	connID   uint32
	scramble []byte
	plugin   string
}

func dialRaw(t testing.TB, s *Server) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	rc := &rawClient{t: t, conn: conn, pc: &packetConn{conn: conn}}

	p := rc.read()
	rc.greeting = p
	r := &reader{b: p}
	proto, _ := r.uint8()
	require.Equal(t, byte(10), proto)
	rc.version, _ = r.nulString()
	rc.connID, _ = r.uint32()
	part1, _ := r.n(8)
	_, _ = r.n(1)
	capLo, _ := r.n(2)
	_, _ = r.n(1 + 2) // charset, status
	capHi, _ := r.n(2)
	authLen, _ := r.uint8()
	_, _ = r.n(10)
	part2, ok := r.n(int(authLen) - 8)
	require.True(t, ok, "greeting too short")
	require.Equal(t, byte(0), part2[len(part2)-1], "scramble part 2 is NUL-terminated")
	rc.caps = uint32(binary.LittleEndian.Uint16(capLo)) | uint32(binary.LittleEndian.Uint16(capHi))<<16
	rc.scramble = append(append([]byte(nil), part1...), part2[:len(part2)-1]...)
	rc.plugin, _ = r.nulString()
	return rc
}

func (rc *rawClient) read() []byte {
	rc.t.Helper()
	p, err := rc.pc.readPacket()
	require.NoError(rc.t, err)
	return p
}

func (rc *rawClient) write(p []byte) {
	rc.t.Helper()
	require.NoError(rc.t, rc.pc.writePacket(p))
}

// command sends a command packet, starting a new sequence.
func (rc *rawClient) command(cmd byte, arg string) {
	rc.t.Helper()
	rc.pc.resetSeq()
	rc.write(append([]byte{cmd}, arg...))
}

// handshakeResponse builds a HandshakeResponse41 with lenenc auth data.
func handshakeResponse41(caps uint32, user string, auth []byte, db, plugin string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, charsetUTF8MB4)
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0)
	b = appendLenEncInt(b, uint64(len(auth)))
	b = append(b, auth...)
	if caps&capConnectWithDB != 0 {
		b = append(b, db...)
		b = append(b, 0)
	}
	b = append(b, plugin...)
	b = append(b, 0)
	if caps&capConnectAttrs != 0 {
		attrs := appendLenEncString(nil, "_client_name")
		attrs = appendLenEncString(attrs, "rawClient")
		b = appendLenEncInt(b, uint64(len(attrs)))
		b = append(b, attrs...)
	}
	return b
}

// clientCaps is what the raw client asks for unless a test says otherwise.
const clientCaps = capLongPassword | capProtocol41 | capSecureConnection | capTransactions |
	capPluginAuth | capPluginAuthLenenc | capConnectAttrs | capMultiResults

// sha2Scramble is the client's caching_sha2_password first answer, written from the
// protocol documentation: XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) || nonce)).
func sha2Scramble(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	stage1 := sha256.Sum256([]byte(password))
	stage2 := sha256.Sum256(stage1[:])
	h := sha256.New()
	h.Write(stage2[:])
	h.Write(nonce)
	mask := h.Sum(nil)
	out := make([]byte, len(stage1))
	for i := range out {
		out[i] = stage1[i] ^ mask[i]
	}
	return out
}

// rsaPassword encrypts (password + NUL) XOR nonce with the server's PEM public key.
func rsaPassword(t testing.TB, pemKey []byte, password string, nonce []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(pemKey)
	require.NotNil(t, block)
	require.Equal(t, "PUBLIC KEY", block.Type)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)
	plain := append([]byte(password), 0)
	for i := range plain {
		plain[i] ^= nonce[i%len(nonce)]
	}
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub.(*rsa.PublicKey), plain, nil)
	require.NoError(t, err)
	return enc
}

// requireErrPacket asserts p is an ERR packet with code and returns its message.
func requireErrPacket(t testing.TB, p []byte, code uint16, sqlState string) string {
	t.Helper()
	require.NotEmpty(t, p)
	require.Equal(t, byte(hdrErr), p[0], "want ERR, got %q", p)
	require.GreaterOrEqual(t, len(p), 9)
	require.Equal(t, code, binary.LittleEndian.Uint16(p[1:3]))
	require.Equal(t, byte('#'), p[3])
	require.Equal(t, sqlState, string(p[4:9]))
	return string(p[9:])
}

// requireClosed asserts the server has closed the raw connection.
func (rc *rawClient) requireClosed() {
	rc.t.Helper()
	testenv.RequireClosed(rc.t, rc.conn)
}
