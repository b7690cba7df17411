package proxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/router/routertest"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
)

func startServer(t *testing.T, opts Options, r router.Router) *Server {
	t.Helper()
	return startServerLogging(t, zaptest.NewLogger(t), opts, r)
}

// startServerLogging is startServer with the given logger.
func startServerLogging(t *testing.T, lg *zap.Logger, opts Options, r router.Router) *Server {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	opts.Addr = "127.0.0.1:0"
	opts.Session = &backend.Config{ServerVersion: "8.0.11-test", ConnectTimeout: 2 * time.Second,
		HandshakeTimeout: 5 * time.Second, RSAKey: key}
	s := New(lg, opts, r)
	require.NoError(t, s.Start())
	t.Cleanup(s.Close)
	return s
}

func backendDouble(t *testing.T) *mysqldouble.Server {
	return mysqldouble.Start(t, mysqldouble.Config{NativeUsers: map[string]string{"app": "pw"}})
}

func openDB(t *testing.T, addr, user string) *sql.DB {
	cfg := testenv.MySQLConfig(addr, user, "pw")
	cfg.DBName = ""
	db := testenv.OpenDB(t, cfg)
	db.SetMaxIdleConns(0) // closing a Conn really disconnects
	return db
}

func TestMaxConnectionsRefusesWithErr1040(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{MaxConnections: 1}, routertest.NewForAddrs("c", []string{d.Addr()}))
	ctx := context.Background()
	db := openDB(t, s.Addr().String(), "app")
	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	err = openDB(t, s.Addr().String(), "app").PingContext(ctx)
	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	require.Equal(t, uint16(1040), me.Number)
	require.Equal(t, "Error 1040: Too many connections", me.Error(), "before the handshake, as servers send it: no SQL state")
	require.NoError(t, c1.Close())
	require.Eventually(t, func() bool { return s.SessionCount() == 0 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, openDB(t, s.Addr().String(), "app").PingContext(ctx))
}

func TestSessionsSnapshot(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, routertest.NewForAddrs("c", []string{d.Addr()}))
	ctx := context.Background()
	conn, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(ctx))
	infos := s.Sessions()
	require.Len(t, infos, 1)
	require.Equal(t, "app", infos[0].User)
	require.Equal(t, "c", infos[0].Cluster)
	require.Equal(t, d.Addr(), infos[0].Backend)
}

// TestProxyHeaderFromTrustedPeer: the client address comes from the header
// when the peer is trusted, and a trusted peer without a header is refused.
func TestProxyHeaderFromTrustedPeer(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{ProxyProtocolTrusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		routertest.NewForAddrs("c", []string{d.Addr()}))
	fake := netip.MustParseAddrPort("192.0.2.1:1234")
	mysql.RegisterDialContext("pp-unit", func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		_, err = c.Write(pmysql.AppendProxyHeaderV2(nil, fake, netip.MustParseAddrPort(addr)))
		return c, err
	})
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "pp-unit", s.Addr().String(), "app", "pw"
	c, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(c)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(context.Background()))
	infos := s.Sessions()
	require.Len(t, infos, 1)
	require.Equal(t, fake.String(), infos[0].ClientAddr)

	raw, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	require.NoError(t, raw.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = raw.Write([]byte("not a proxy header at all"))
	require.NoError(t, err)
	data, err := pmysql.NewPacketIO(raw).ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, pmysql.ErrHeader, data[0])
	require.Contains(t, pmysql.ParseErr(data).Message, "PROXY protocol")
}

// panicRouter panics for one user to prove a session's panic stays in it.
type panicRouter struct{ router.Router }

func (p panicRouter) Route(ci router.ClientInfo, exclude []string) (router.Lease, error) {
	if ci.User == "boom" {
		panic("router bug")
	}
	return p.Router.Route(ci, exclude)
}

func TestSessionPanicIsContained(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, panicRouter{routertest.NewForAddrs("c", []string{d.Addr()})})
	ctx := context.Background()
	good, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
	require.NoError(t, err)
	defer good.Close()
	require.Error(t, openDB(t, s.Addr().String(), "boom").PingContext(ctx))
	require.NoError(t, good.PingContext(ctx), "other sessions are untouched")
	require.NoError(t, openDB(t, s.Addr().String(), "app").PingContext(ctx), "the proxy still accepts")
}

func TestShutdownClosesIdleSessionsAndListener(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{GracefulCloseTimeout: 10 * time.Second}, routertest.NewForAddrs("c", []string{d.Addr()}))
	ctx := context.Background()
	conn, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(ctx))
	start := time.Now()
	s.Shutdown(ctx)
	require.Less(t, time.Since(start), 5*time.Second, "idle sessions end at once")
	require.Equal(t, 0, s.SessionCount())
	require.Error(t, conn.PingContext(ctx))
	_, err = net.DialTimeout("tcp", s.Addr().String(), time.Second)
	require.Error(t, err, "listener closed")
}

// Route ports come and go with reloads: a closed listener refuses new
// clients while the sessions it accepted keep working.
func TestExtraListeners(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, routertest.NewForAddrs("c", []string{d.Addr()}))
	extra := testenv.FreeAddr(t)
	require.NoError(t, s.SetExtraListeners([]string{extra}))
	require.NoError(t, s.SetExtraListeners([]string{extra}), "setting the same set again is a no-op")
	require.Len(t, s.ExtraAddrs(), 1)

	ctx := context.Background()
	conn, err := openDB(t, extra, "app").Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(ctx))

	require.NoError(t, s.SetExtraListeners(nil))
	require.Empty(t, s.ExtraAddrs())
	_, err = net.DialTimeout("tcp", extra, time.Second)
	require.Error(t, err, "the closed port must refuse")
	require.NoError(t, conn.PingContext(ctx), "the session accepted on the closed port lives on")

	// One bad address does not stop the others.
	busy := s.Addr().String()
	other := testenv.FreeAddr(t)
	err = s.SetExtraListeners([]string{busy, other})
	require.ErrorContains(t, err, "listening on "+busy)
	require.Len(t, s.ExtraAddrs(), 1)
}

// CloseWithError ends an idle session and its client reads why.
func TestCloseWithErrorTellsIdleClient(t *testing.T) {
	d := backendDouble(t)
	s := startServer(t, Options{}, routertest.NewForAddrs("c", []string{d.Addr()}))
	ctx := context.Background()
	conn, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.PingContext(ctx))
	require.Empty(t, s.ClusterSessions("other"))
	sessions := s.ClusterSessions("c")
	require.Len(t, sessions, 1)
	sessions[0].CloseWithError(&pmysql.MySQLError{Code: pmysql.ErServerShutdown, State: "08S01", Message: "Switchyard: cluster c was removed"})
	require.Eventually(t, func() bool { return s.SessionCount() == 0 }, 5*time.Second, 10*time.Millisecond)
	err = conn.PingContext(ctx)
	var me *mysql.MySQLError
	require.ErrorAs(t, err, &me)
	require.Equal(t, uint16(1053), me.Number)
	require.Equal(t, "Switchyard: cluster c was removed", me.Message)
}

// A transaction that outlives graceful-close-conn-timeout is cut, and the
// log says so every time: the forced session can end before the drain
// reports its deadline, which once lost the warning (an e2e run saw it).
func TestShutdownLogsForcedSessions(t *testing.T) {
	d := backendDouble(t)
	for i := range 10 {
		core, logs := observer.New(zap.InfoLevel)
		s := startServerLogging(t, zap.New(core), Options{GracefulCloseTimeout: 50 * time.Millisecond},
			routertest.NewForAddrs("c", []string{d.Addr()}))
		ctx := context.Background()
		conn, err := openDB(t, s.Addr().String(), "app").Conn(ctx)
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "BEGIN")
		require.NoError(t, err)
		s.Shutdown(ctx)
		require.Equal(t, 0, s.SessionCount())
		warned := logs.FilterMessage("shutting down: closed sessions that did not finish in time").All()
		require.Len(t, warned, 1, "round %d", i)
		require.Equal(t, int64(1), warned[0].ContextMap()["sessions"], "round %d", i)
		_ = conn.Close()
	}
}
