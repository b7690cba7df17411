package backend

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"database/sql"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/router/routertest"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Keys are shared so that tests under -race do not each pay for generating 2048-bit keys.
var (
	proxyKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
	backendKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
)

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

var certs struct {
	once sync.Once
	c    *testenv.Certs
}

// testCerts returns one CA and its certificates for the whole package. The PEM files live in
// the first caller's temporary directory and are gone after it; only the in-memory TLS
// configurations are used.
func testCerts(t testing.TB) *testenv.Certs {
	t.Helper()
	certs.once.Do(func() { certs.c = testenv.NewCerts(t, "") })
	if certs.c == nil {
		t.Fatal("test certificates could not be generated")
	}
	return certs.c
}

// countHandshakes makes cfg count the TLS handshakes it completes, so tests can prove which
// hops really were encrypted.
func countHandshakes(cfg *tls.Config, n *atomic.Int64) *tls.Config {
	cfg.VerifyConnection = func(tls.ConnectionState) error {
		n.Add(1)
		return nil
	}
	return cfg
}

// testProxy runs sessions the way pkg/proxy does, without its limits and PROXY protocol: one
// NewSession(...).Run per accepted connection, every goroutine waited for by Close.
type testProxy struct {
	cfg    *Config
	router *router.Balanced
	// route, when set, is what sessions route through instead of router.
	route  router.Router
	lg     *zap.Logger
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nextID atomic.Uint64
	active atomic.Int64

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
}

// startProxy serves cfg in front of the given backend addresses until the test ends.
func startProxy(t testing.TB, cfg *Config, backends ...string) *testProxy {
	t.Helper()
	p := newTestProxy(t, cfg, backends...)
	p.start(t)
	return p
}

// newTestProxy listens for cfg in front of the given backend addresses but
// serves nobody until start: cfg may still be changed in between (sessions
// read it from their own goroutines once they run).
func newTestProxy(t testing.TB, cfg *Config, backends ...string) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &testProxy{
		cfg:      cfg,
		router:   routertest.NewForAddrs("test", backends),
		lg:       zaptest.NewLogger(t),
		ln:       ln,
		sessions: map[*Session]struct{}{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { _ = ln.Close() }) // also when start is never reached
	return p
}

// start serves until the test ends.
func (p *testProxy) start(t testing.TB) {
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
}

func (p *testProxy) Addr() string { return p.ln.Addr().String() }

// Active is the number of sessions whose Run has not returned.
func (p *testProxy) Active() int64 { return p.active.Load() }

func (p *testProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		p.wg.Add(1)
		go p.serve(conn)
	}
}

func (p *testProxy) serve(conn net.Conn) {
	defer p.wg.Done()
	remote, _ := conn.RemoteAddr().(*net.TCPAddr)
	var clientAddr netip.AddrPort
	if remote != nil {
		clientAddr = remote.AddrPort()
	}
	var r router.Router = p.router
	p.mu.Lock()
	if p.route != nil {
		r = p.route
	}
	p.mu.Unlock()
	s := NewSession(p.nextID.Add(1), conn, clientAddr, p.cfg, r, p.lg)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = conn.Close()
		return
	}
	p.sessions[s] = struct{}{}
	p.active.Add(1)
	p.wg.Add(1) // the session's own: it can outlive this goroutine (parking)
	p.mu.Unlock()
	s.Run(p.ctx, func() {
		p.mu.Lock()
		delete(p.sessions, s)
		p.mu.Unlock()
		p.active.Add(-1)
		p.wg.Done()
	})
}

// Close stops accepting, ends every session and waits for all goroutines. It is
// idempotent.
func (p *testProxy) Close() {
	_ = p.ln.Close()
	p.cancel()
	p.mu.Lock()
	p.closed = true
	for s := range p.sessions {
		s.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// requireIdle waits until every session has ended and released its backend lease.
func (p *testProxy) requireIdle(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool {
		if p.Active() != 0 {
			return false
		}
		for _, n := range p.router.Sessions() {
			if n != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "sessions still running: %d, leases: %v", p.Active(), p.router.Sessions())
}

func baseConfig() *Config {
	return &Config{
		ServerVersion:    "8.0.36-switchyard-test",
		ConnectTimeout:   5 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		RSAKey:           proxyKey(),
		Loops:            testLoops,
	}
}

type driverLogger struct{ t testing.TB }

func (l driverLogger) Print(v ...any) { l.t.Log(append([]any{"mysql driver:"}, v...)...) }

// clientConfig is a go-sql-driver configuration for user/password through the proxy at
// addr; tlsName is a name registered with mysql.RegisterTLSConfig, or "" for plain TCP.
func clientConfig(t testing.TB, addr, user, password, tlsName string) *mysql.Config {
	cfg := testenv.MySQLConfig(addr, user, password)
	cfg.DBName = ""
	cfg.TLSConfig = tlsName
	cfg.ReadTimeout = 10 * time.Second
	cfg.WriteTimeout = 10 * time.Second
	cfg.Logger = driverLogger{t}
	return cfg
}

// loginResult is what one connection saw.
type loginResult struct {
	one         int
	currentUser string
}

// login opens exactly one connection (one full connection phase), runs SELECT 1 and
// SELECT CURRENT_USER() on it and closes it.
func login(t testing.TB, cfg *mysql.Config) (loginResult, error) {
	t.Helper()
	var res loginResult
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return res, err
	}
	defer func() { _ = conn.Close() }()
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&res.one); err != nil {
		return res, err
	}
	err = conn.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&res.currentUser)
	return res, err
}

// openConn opens one client connection with cfg (through the proxy, say).
// The connection and its pool are closed when the test ends, unless the
// test closed them first.
func openConn(t testing.TB, cfg *mysql.Config) (*sql.DB, *sql.Conn) {
	t.Helper()
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return db, conn
}

// requireMySQLError asserts err carries a server error with the given code.
func requireMySQLError(t testing.TB, err error, code uint16) *mysql.MySQLError {
	t.Helper()
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me), "want MySQL error %d, got %v", code, err)
	require.Equal(t, code, me.Number, me.Message)
	return me
}

// rawClient is the client side of a connection driven by hand, for what a driver never
// sends: garbage, truncated packets, hang-ups mid-handshake.
type rawClient struct {
	t        testing.TB
	conn     net.Conn
	pio      *pmysql.PacketIO
	greeting *pmysql.InitialHandshake
}

// dialRaw connects to addr and reads the proxy's greeting.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	rc := &rawClient{t: t, conn: conn, pio: pmysql.NewPacketIO(conn)}
	data, err := rc.pio.ReadPacket(0)
	require.NoError(t, err)
	rc.greeting, err = pmysql.ParseInitialHandshake(data)
	require.NoError(t, err)
	return rc
}

func (rc *rawClient) write(payload []byte) {
	rc.t.Helper()
	require.NoError(rc.t, rc.pio.WritePacket(payload))
	require.NoError(rc.t, rc.pio.Flush())
}

// query sends q as a new COM_QUERY and returns the first packet of the
// answer.
func (rc *rawClient) query(q string) []byte {
	rc.t.Helper()
	rc.pio.ResetSequence()
	rc.write(append([]byte{pmysql.ComQuery}, q...))
	return rc.read()
}

func (rc *rawClient) read() []byte {
	rc.t.Helper()
	data, err := rc.pio.ReadPacket(0)
	require.NoError(rc.t, err)
	return data
}

// readErr reads an ERR packet, checks that it carries sequence id seq, and returns it.
func (rc *rawClient) readErr(seq uint8) *pmysql.MySQLError {
	rc.t.Helper()
	data := rc.read()
	require.NotEmpty(rc.t, data)
	require.Equal(rc.t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
	require.Equal(rc.t, seq+1, rc.pio.Sequence(), "ERR sequence id")
	return pmysql.ParseErr(data)
}

// requireClosed asserts that the proxy closed the connection.
func (rc *rawClient) requireClosed() {
	rc.t.Helper()
	testenv.RequireClosed(rc.t, rc.conn)
}

// rawCaps is what the raw client claims: enough for pass-through authentication.
const rawCaps = pmysql.ClientLongPassword | pmysql.ClientProtocol41 | pmysql.ClientSecureConnection |
	pmysql.ClientTransactions | pmysql.ClientPluginAuth | pmysql.ClientPluginAuthLenencClientData |
	pmysql.ClientMultiResults | pmysql.ClientDeprecateEOF

func handshakeResponse(caps uint32, user string, plugin string) []byte {
	return pmysql.AppendHandshakeResponse(nil, &pmysql.HandshakeResponse{
		Capability: caps,
		MaxPacket:  1 << 24,
		Charset:    pmysql.DefaultCharset,
		User:       user,
		AuthData:   make([]byte, 20),
		AuthPlugin: plugin,
	})
}

// startTLS sends an SSLRequest and upgrades the raw connection.
func (rc *rawClient) startTLS(cfg *tls.Config) {
	rc.t.Helper()
	rc.write(pmysql.AppendSSLRequest(nil, &pmysql.HandshakeResponse{
		Capability: rawCaps | pmysql.ClientSSL, MaxPacket: 1 << 24, Charset: pmysql.DefaultCharset,
	}))
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	require.NoError(rc.t, rc.pio.ClientTLSHandshake(cfg))
}

// nativeToken is a client's mysql_native_password answer, written from the protocol
// documentation: XOR(SHA1(pw), SHA1(scramble || SHA1(SHA1(pw)))).
func nativeToken(password string, scramble []byte) []byte {
	stage1 := sha1.Sum([]byte(password))
	stage2 := sha1.Sum(stage1[:])
	h := sha1.New()
	h.Write(scramble)
	h.Write(stage2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= stage1[i]
	}
	return out
}

// startTLSProxy starts a backend double and a proxy that offers TLS to its
// clients and, when backendTLS, speaks TLS to the backend.
func startTLSProxy(t *testing.T, certs *testenv.Certs, backendTLS bool) (*mysqldouble.Server, *testProxy) {
	t.Helper()
	dbl := startBackend(t)
	cfg := baseConfig()
	cfg.ServerTLS = certs.ServerTLSConfig()
	if backendTLS {
		cfg.BackendTLS = certs.ClientTLSConfig()
	}
	return dbl, startProxy(t, cfg, dbl.Addr())
}
