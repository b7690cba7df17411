package backend

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
)

// TestFailoverReportFollowsPlacement: a session re-established after its
// backend died has published its new backend by the time the rebalancer
// hears of the failover (as after a migration: TestMigrationReportFollowsPlacement).
// Two MySQL doubles stand in for MariaDB: they answer the migration
// account's read of the stored native hash; closing one is a backend that
// died under an idle session.
func TestFailoverReportFollowsPlacement(t *testing.T) {
	users := map[string]string{"nate": "n4tive", "migrator": "m1g"}
	var doubles [2]*mysqldouble.Server
	for i := range doubles {
		doubles[i] = mysqldouble.Start(t, mysqldouble.Config{NativeUsers: users, RSAKey: backendKey()})
	}
	obs := &placementAtReport{}
	cfg := baseConfig()
	cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "m1g", true }
	cfg.Migrations = obs
	p := startProxy(t, cfg, doubles[0].Addr(), doubles[1].Addr())
	_, conn := openConn(t, clientConfig(t, p.Addr(), "nate", "n4tive", ""))
	ctx := context.Background()
	require.NoError(t, conn.PingContext(ctx))
	s := p.onlySession(t)
	obs.s.Store(s)
	ok, why := s.Migratable()
	require.True(t, ok, why)

	home := s.Info().Backend
	dead, survivor := doubles[0], doubles[1]
	if home == doubles[1].Addr() {
		dead, survivor = doubles[1], doubles[0]
	}
	require.NoError(t, dead.Close())
	// The next command runs on the survivor. (Should it reach the session
	// before the idle watch saw the backend die, it gets one clean error
	// and the one after it fails over: either way a failover is reported.)
	require.Eventually(t, func() bool {
		var one int
		return conn.QueryRowContext(ctx, "SELECT 1").Scan(&one) == nil
	}, 5*time.Second, 20*time.Millisecond, "the session goes on on the survivor")
	res := obs.wait(t, 1)
	require.Equal(t, MigrationOK, res.Result, "%v", res.Err)
	require.Equal(t, survivor.Addr(), res.To)
	require.Equal(t, survivor.Addr(), s.Info().Backend)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, []string{survivor.Addr()}, obs.seen, "Info at the report shows the new backend")
}

// A backend that dies while the client sends a LOAD DATA LOCAL file: the
// proxy reads the rest of the file and drops it, as a server does after an
// error, and answers it with one clean error once the client has sent all,
// so the two stay in step. Outside a transaction the session goes on on
// another backend; inside one, the error is its last word.
func TestBackendLostDuringLocalInfile(t *testing.T) {
	chunk := bytes.Repeat([]byte("0123456789abcde\n"), 4<<10) // 64 KiB, 4,096 lines
	const chunks = 64                                         // 4 MiB
	// load sends a file of chunks, calling cut after the first, and
	// returns the answer.
	load := func(rc *rawClient, cut func()) []byte {
		require.Equal(t, "\xfbrows.csv", string(rc.query("LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE t")))
		for i := range chunks {
			rc.write(chunk)
			if i == 0 {
				cut()
			}
		}
		rc.write(nil) // the end of the file
		return rc.read()
	}
	for _, tc := range []struct {
		name  string
		txn   bool
		cut   bool
		wants string
	}{
		{name: "whole"},
		{name: "cut outside a transaction", cut: true, wants: "; the session goes on on another backend"},
		{name: "cut inside a transaction", txn: true, cut: true, wants: "the open transaction was rolled back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startFailoverPair(t)
			rc := b.login(t)
			if tc.txn {
				require.Equal(t, pmysql.OKHeader, rc.query("BEGIN")[0])
			}
			s, home, i := b.home(t)
			doubles, fwds := b.doubles, b.fwds
			if !tc.cut {
				ok, err := pmysql.ParseOK(load(rc, func() {}), false)
				require.NoError(t, err)
				require.Equal(t, uint64(chunks*4096), ok.AffectedRows)
				require.Equal(t, int64(chunks*4096), doubles[i].InfileLines())
				return
			}
			data := load(rc, fwds[i].kill) // the backend dies midway
			require.Equal(t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
			e := pmysql.ParseErr(data)
			require.Contains(t, e.Message, "lost connection to backend "+home)
			require.Contains(t, e.Message, tc.wants)
			require.Zero(t, doubles[i].InfileLines(), "the file never reached the server whole")
			if tc.txn {
				rc.requireClosed()
				return
			}
			require.Equal(t, pmysql.OKHeader, rc.query("DO 1")[0], "the session goes on")
			require.Equal(t, fwds[1-i].addr, s.Info().Backend)
		})
	}
}

// A backend that dies while the proxy streams a client's large command to
// it: the command is read to its end all the same, and answered with one
// clean error. A statement too large to inspect may have changed the
// session, so the session cannot go on elsewhere, and the error is its last
// word.
func TestBackendLostDuringLargeCommand(t *testing.T) {
	b := startFailoverPair(t)
	rc := b.login(t)
	_, home, i := b.home(t)
	q := append([]byte{pmysql.ComQuery}, "DO '"...)
	q = append(q, bytes.Repeat([]byte("x"), 4<<20)...)
	q = append(q, '\'')
	b.sendCut(t, rc, i, q)
	rc.pio.SetSequence(1)
	data := rc.read()
	require.Equal(t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
	require.Contains(t, pmysql.ParseErr(data).Message, "lost connection to backend "+home)
	rc.requireClosed()
}

// A backend that dies while the proxy streams a COM_STMT_SEND_LONG_DATA
// larger than its buffer: the command has no reply, and the statement's long
// data went with the backend, so the session cannot go on elsewhere (an
// EXECUTE there would run without it). The chunk is read to its end all the
// same; the client reads one clean error as the answer to its next command,
// then the connection closes.
func TestBackendLostDuringLongData(t *testing.T) {
	b := startFailoverPair(t)
	rc := b.login(t)
	_, home, i := b.home(t)
	ld := []byte{pmysql.ComStmtSendLongData, 1, 0, 0, 0, 0, 0} // statement 1, parameter 0
	ld = append(ld, bytes.Repeat([]byte("x"), 4<<20)...)
	b.sendCut(t, rc, i, ld)

	// The EXECUTE that would use the data.
	rc.pio.ResetSequence()
	rc.write([]byte{pmysql.ComStmtExecute, 1, 0, 0, 0, 0, 1, 0, 0, 0})
	data := rc.read()
	require.Equal(t, pmysql.ErrHeader, data[0], "want ERR, got %q", data)
	msg := pmysql.ParseErr(data).Message
	require.Contains(t, msg, "lost connection to backend "+home)
	require.Contains(t, msg, "long data was lost with it, and the session ends")
	rc.requireClosed()
}

// failoverPair is a proxy in front of two MySQL doubles, each behind a
// forwarder that a test can kill, with a migration account so that a
// session can go on on the other backend.
type failoverPair struct {
	p       *testProxy
	doubles [2]*mysqldouble.Server
	fwds    [2]*restartableFwd
}

func startFailoverPair(t *testing.T) *failoverPair {
	users := map[string]string{"nate": "n4tive", "migrator": "m1g"}
	b := &failoverPair{}
	for i := range b.doubles {
		b.doubles[i] = mysqldouble.Start(t, mysqldouble.Config{NativeUsers: users, RSAKey: backendKey()})
		b.fwds[i] = startRestartableFwd(t, b.doubles[i].Addr(), nil)
	}
	cfg := baseConfig()
	cfg.MigrationAccount = func(string) (string, string, bool) { return "migrator", "m1g", true }
	b.p = startProxy(t, cfg, b.fwds[0].addr, b.fwds[1].addr)
	return b
}

func (b *failoverPair) login(t *testing.T) *rawClient {
	rc := dialRaw(t, b.p.Addr())
	rawNativeLogin(t, rc, "nate", "n4tive")
	return rc
}

// sendCut sends payload, a command larger than the proxy's buffer, as one
// packet, and kills the forwarder in front of backend i once the proxy has
// streamed half a MiB of it there: the backend dies midway through the
// command. The rest is sent all the same, as a client does.
func (b *failoverPair) sendCut(t *testing.T, rc *rawClient, i int, payload []byte) {
	t.Helper()
	wire := append([]byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), 0}, payload...)
	const first = 1 << 20
	relayed := b.fwds[i].up.Load()
	_, err := rc.conn.Write(wire[:first])
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.fwds[i].up.Load()-relayed > first/2 }, 5*time.Second, time.Millisecond,
		"the proxy streams the command to its backend")
	b.fwds[i].kill()
	_, err = rc.conn.Write(wire[first:])
	require.NoError(t, err, "the proxy reads the whole command")
}

// home is the only session, its backend's address and the index of that
// backend.
func (b *failoverPair) home(t *testing.T) (*Session, string, int) {
	s := b.p.onlySession(t)
	var home string
	require.Eventually(t, func() bool { home = s.Info().Backend; return home != "" }, 5*time.Second, time.Millisecond)
	if home == b.fwds[1].addr {
		return s, home, 1
	}
	return s, home, 0
}
