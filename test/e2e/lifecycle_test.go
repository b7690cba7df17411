package e2e

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestBackendKilledMidQuery kills MariaDB while a query runs: the client gets
// an error, the proxy lives on and serves again once the backend is back.
func TestBackendKilledMidQuery(t *testing.T) {
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	p := proxyFor(t, m)
	for _, q := range []string{"SELECT SLEEP(30)", "SELECT seq, REPEAT('r', 100) FROM seq_1_to_100000000"} {
		t.Run(q, func(t *testing.T) {
			db := nativeDB(t, p.Addr)
			require.NoError(t, db.PingContext(ctxT(t, 10*time.Second)))
			errc := make(chan error, 1)
			go func() {
				rows, err := db.QueryContext(context.Background(), q)
				if err == nil {
					for rows.Next() {
					}
					err = rows.Err()
					rows.Close()
				}
				errc <- err
			}()
			time.Sleep(500 * time.Millisecond)
			m.Kill()
			select {
			case err := <-errc:
				require.Error(t, err, "the client must hear that its query was lost")
			case <-time.After(20 * time.Second):
				t.Fatal("client still waiting 20 s after the backend died")
			}
			select {
			case <-p.Exited():
				t.Fatalf("proxy exited:\n%s", p.LogContents())
			default:
			}
			// New sessions get a clear error while the backend is down...
			err := nativeDB(t, p.Addr).PingContext(ctxT(t, 10*time.Second))
			require.Error(t, err)
			require.Contains(t, err.Error(), "cannot connect to a backend")
			// ...and work again once it is back.
			require.NoError(t, m.Restart())
			require.Eventually(t, func() bool {
				return nativeDB(t, p.Addr).PingContext(ctxT(t, 5*time.Second)) == nil
			}, 20*time.Second, 200*time.Millisecond)
		})
	}
	require.Contains(t, p.LogContents(), "lost connection to backend")
}

// TestGracefulShutdown sends SIGTERM while one session is inside a
// transaction and another is idle: the idle one is closed at once, the
// transaction commits, then its session closes and the proxy exits.
func TestGracefulShutdown(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, closeWait: "60s"})
	ctx := ctxT(t, time.Minute)
	db := nativeDB(t, p.Addr)
	emptyTable(t, db, "drain_t", "id INT PRIMARY KEY")

	inTxn, err := db.Conn(ctx)
	require.NoError(t, err)
	idle, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, idle.PingContext(ctx))
	_, err = inTxn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	_, err = inTxn.ExecContext(ctx, "INSERT INTO drain_t VALUES (1)")
	require.NoError(t, err)

	start := time.Now()
	require.NoError(t, p.Signal(syscall.SIGTERM))
	// The listener closes: new clients are refused.
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 50*time.Millisecond)
	// The idle session is closed (a command that raced with the drain is
	// still answered first).
	require.Eventually(t, func() bool { return idle.PingContext(ctx) != nil }, 10*time.Second, 20*time.Millisecond)
	// The transaction still finishes.
	_, err = inTxn.ExecContext(ctx, "INSERT INTO drain_t VALUES (2)")
	require.NoError(t, err)
	_, err = inTxn.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	// ...after which its session is closed and the proxy exits well before
	// graceful-close-conn-timeout.
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("proxy did not exit after the last transaction ended:\n%s", p.LogContents())
	}
	require.NoError(t, p.Wait())
	require.Less(t, time.Since(start), 30*time.Second)
	require.Error(t, inTxn.PingContext(ctx))
	_ = inTxn.Close()
	_ = idle.Close()
	direct := testenv.OpenDB(t, m.Config(testenv.NativeUser, testenv.NativePassword))
	require.Equal(t, "1,2", queryString(t, direct, "SELECT GROUP_CONCAT(id ORDER BY id) FROM drain_t"))
}

// TestGracefulWaitKeepsAccepting: during graceful-wait-before-shutdown the
// proxy still accepts new clients (load balancers need that time to notice),
// then stops listening.
func TestGracefulWaitKeepsAccepting(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, waitFirst: "3s"})
	require.NoError(t, p.Signal(syscall.SIGTERM))
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, "1", queryString(t, nativeDB(t, p.Addr), "SELECT 1"), "still accepting during the wait")
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not exit after the graceful wait")
	}
	_, err := net.DialTimeout("tcp", p.Addr, time.Second)
	require.Error(t, err)
}

// TestGracefulShutdownForceClose: a transaction that never ends is cut at
// graceful-close-conn-timeout.
func TestGracefulShutdownForceClose(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, closeWait: "1s"})
	ctx := ctxT(t, time.Minute)
	conn, err := nativeDB(t, p.Addr).Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	require.NoError(t, p.Signal(syscall.SIGTERM))
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not force-close the open transaction")
	}
	require.Contains(t, p.LogContents(), "closed sessions that did not finish in time")
}

// TestMaxConnections: over the limit a client gets ERR 1040 at once instead
// of hanging.
func TestMaxConnections(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, maxConns: 2})
	ctx := ctxT(t, time.Minute)
	db := nativeDB(t, p.Addr)
	db.SetMaxIdleConns(0) // so that closing a Conn really disconnects
	// The start-up check's connection, which hung up in its handshake,
	// holds a slot until its session has ended: wait for that, not longer.
	open := func() *sql.Conn {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			c, err := db.Conn(ctx)
			if err == nil {
				return c
			}
			require.Equal(t, uint16(1040), mysqlErrCode(err), "%v", err)
			require.True(t, time.Now().Before(deadline), "a slot stayed taken: %v", err)
		}
	}
	c1 := open()
	defer c1.Close()
	c2 := open()
	defer c2.Close()
	start := time.Now()
	err := nativeDB(t, p.Addr).PingContext(ctx)
	require.Equal(t, "Error 1040: Too many connections", err.Error(), "as a server refuses before the handshake: no SQL state")
	require.Less(t, time.Since(start), 5*time.Second)
	// A slot frees up when a session ends.
	require.NoError(t, c2.Close())
	require.Eventually(t, func() bool { return nativeDB(t, p.Addr).PingContext(ctx) == nil },
		10*time.Second, 100*time.Millisecond)
}

// TestProxyProtocol: a trusted load balancer's PROXY v2 header sets the
// client address, which the proxy passes on to MariaDB in its own header.
func TestProxyProtocol(t *testing.T) {
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{ExtraArgs: []string{"--proxy-protocol-networks=127.0.0.0/8"}})
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()},
		extra: "proxy-protocol = \"v2\"\nproxy-protocol-trusted-cidrs = [\"127.0.0.2\"]\nbackend-proxy-protocol = \"v2\"\n"})
	fake := netip.MustParseAddrPort("192.0.2.7:40000") // TEST-NET-1: only a label in a header
	dialFrom := func(local string, header bool) func(ctx context.Context, addr string) (net.Conn, error) {
		return func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil || !header {
				return c, err
			}
			dst := netip.MustParseAddrPort(addr)
			if _, err := c.Write(pmysql.AppendProxyHeaderV2(nil, fake, dst)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	mysql.RegisterDialContext("pp-trusted", dialFrom("127.0.0.2", true))
	mysql.RegisterDialContext("pp-untrusted", dialFrom("127.0.0.3", true))
	open := func(netName string) *sql.DB {
		cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
		cfg.Net = netName
		cfg.Timeout = 5 * time.Second
		return testenv.OpenDB(t, cfg)
	}
	host := queryString(t, open("pp-trusted"), "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
	require.Equal(t, fake.String(), host, "MariaDB sees the client address from the load balancer's header")

	err := open("pp-untrusted").PingContext(ctxT(t, 10*time.Second))
	require.Error(t, err, "a header from an untrusted source is not accepted")
	// A trusted source must send the header: after a short wait it is
	// refused with an ERR packet.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.DialContext(ctxT(t, 5*time.Second), "tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	data, err := pmysql.NewPacketIO(c).ReadPacket(0)
	require.NoError(t, err)
	require.Equal(t, pmysql.ErrHeader, data[0])
	require.Contains(t, pmysql.ParseErr(data).Message, "PROXY protocol")
}

// TestBadClients sends broken handshakes; each gets an ERR packet or a
// close, and the proxy keeps serving.
func TestBadClients(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	greet := func() *pmysql.PacketIO {
		c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io := pmysql.NewPacketIO(c)
		_, err = io.ReadPacket(0)
		require.NoError(t, err)
		return io
	}
	expectErr := func(io *pmysql.PacketIO, code uint16) {
		data, err := io.ReadPacket(0)
		require.NoError(t, err)
		require.Equal(t, pmysql.ErrHeader, data[0])
		require.Equal(t, code, binary.LittleEndian.Uint16(data[1:]), "%v", pmysql.ParseErr(data))
	}
	t.Run("short packet", func(t *testing.T) {
		io := greet()
		io.SetSequence(1)
		require.NoError(t, io.WritePacket([]byte("hello")))
		require.NoError(t, io.Flush())
		expectErr(io, pmysql.ErHandshakeError)
	})
	t.Run("oversized first packet", func(t *testing.T) {
		io := greet()
		require.NoError(t, io.WriteRaw([]byte{0xff, 0xff, 0x3f, 1})) // claims 4 MiB
		require.NoError(t, io.Flush())
		expectErr(io, pmysql.ErHandshakeError)
	})
	t.Run("garbage handshake response", func(t *testing.T) {
		io := greet()
		io.SetSequence(1)
		junk := make([]byte, 64)
		binary.LittleEndian.PutUint32(junk, pmysql.ClientProtocol41|pmysql.ClientPluginAuthLenencClientData)
		for i := 32; i < 64; i++ {
			junk[i] = 0xfe // a user name without NUL
		}
		require.NoError(t, io.WritePacket(junk))
		require.NoError(t, io.Flush())
		expectErr(io, pmysql.ErHandshakeError)
	})
	t.Run("disconnect mid-handshake", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			io := greet()
			io.Close()
		}
	})
	require.Equal(t, "1", queryString(t, nativeDB(t, p.Addr), "SELECT 1"), "proxy still serves")
}

// TestHugeResultBoundedMemory streams a 1 GiB result and checks the proxy
// never buffers it.
func TestHugeResultBoundedMemory(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr)
	ctx := ctxT(t, 5*time.Minute)
	rows, err := db.QueryContext(ctx, "SELECT REPEAT('x', 1048576) FROM seq_1_to_1024")
	require.NoError(t, err)
	var total int64
	var maxRSS int64
	n := 0
	for rows.Next() {
		var b sql.RawBytes
		require.NoError(t, rows.Scan(&b))
		total += int64(len(b))
		if n++; n%64 == 0 {
			maxRSS = max(maxRSS, rssKiB(t, p.Pid()))
		}
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, int64(1<<30), total)
	t.Logf("proxy peak RSS while streaming 1 GiB: %d MiB", maxRSS>>10)
	require.Less(t, maxRSS, int64(150<<10), "proxy RSS must stay bounded while streaming")
}

func rssKiB(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	require.Fail(t, "no VmRSS")
	return 0
}

var _ = errors.New

// TestDeadBackendSkipped: with one of two instances refusing connections,
// every client still gets in, on the live one. The prober would soon stop
// routing to the dead one; the policy and threshold here keep it routable so
// that what is tested is the session retrying another backend.
func TestDeadBackendSkipped(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	dead := testenv.FreeAddr(t) // nothing listens there
	p := startProxy(t, proxyConfig{backends: []string{dead, m.Addr()},
		extra: "\n[balance]\npolicy = \"connection\"\n[health-check]\nfailures-to-unhealthy = 1000\n"})
	for i := 0; i < 6; i++ {
		db := nativeDB(t, p.Addr)
		require.Equal(t, "1", queryString(t, db, "SELECT 1"), "client %d", i)
		require.NoError(t, db.Close())
	}
	require.Contains(t, p.LogContents(), "backend unreachable, trying another")
}
