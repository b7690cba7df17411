package mysqldouble

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TiDB cannot run in this repository's tests: these check that the double speaks TiDB's
// session migration protocol (SHOW SESSION_STATES, tidb_session_token, SET
// SESSION_STATES) the way TiProxy relies on it, so that the proxy's TiDB path can be
// tested against it.

var sharedSigningKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// clock is a settable clock for token expiry.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func startTiDB(t *testing.T, key *ecdsa.PrivateKey, clk *clock) *Server {
	t.Helper()
	tc := &TiDBConfig{SigningKey: key}
	if clk != nil {
		tc.Now = clk.now
	}
	return Start(t, Config{
		NativeUsers:   map[string]string{"app": "pw"},
		ServerVersion: "8.0.11-TiDB-v7.5.0",
		RSAKey:        sharedKey(),
		TiDB:          tc,
	})
}

// states runs SHOW SESSION_STATES on conn.
func states(t *testing.T, conn *sql.Conn) (statesJSON, token string, err error) {
	t.Helper()
	err = conn.QueryRowContext(context.Background(), "SHOW SESSION_STATES").Scan(&statesJSON, &token)
	return statesJSON, token, err
}

func oneConn(t *testing.T, s *Server) *sql.Conn {
	t.Helper()
	cfg := driverConfig(t, s, "app", "pw")
	cfg.AllowNativePasswords = true
	db := openDB(t, cfg)
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func exec(t *testing.T, conn *sql.Conn, q string) {
	t.Helper()
	_, err := conn.ExecContext(context.Background(), q)
	require.NoError(t, err, q)
}

// tokenLogin logs a raw client in to s as user with the tidb_session_token plugin and
// returns the first answer (OK or ERR).
func tokenLogin(t *testing.T, s *Server, user string, token []byte) (*rawClient, []byte) {
	t.Helper()
	rc := dialRaw(t, s)
	rc.write(handshakeResponse41(clientCaps|capDeprecateEOF, user, token, "", PluginTiDBSessionToken))
	return rc, rc.read()
}

// rawQuery sends a query and returns the rows of a text result set, or the ERR packet.
func (rc *rawClient) rawQuery(q string) (rows [][]string, errPkt []byte) {
	rc.t.Helper()
	rc.command(comQuery, q)
	p := rc.read()
	switch p[0] {
	case hdrErr:
		return nil, p
	case hdrOK:
		return nil, nil
	}
	r := &reader{b: p}
	n, _ := r.lenEncInt()
	for range n {
		rc.read() // column definitions
	}
	for {
		p = rc.read()
		if p[0] == hdrEOF && len(p) < 9 {
			return rows, nil
		}
		var row []string
		r := &reader{b: p}
		for range n {
			if len(r.b) > 0 && r.b[0] == 0xfb {
				r.b = r.b[1:]
				row = append(row, "NULL")
				continue
			}
			v, _ := r.lenEncBytes()
			row = append(row, string(v))
		}
		rows = append(rows, row)
	}
}

func (rc *rawClient) value(q string) string {
	rc.t.Helper()
	rows, errPkt := rc.rawQuery(q)
	require.Nil(rc.t, errPkt, "%s: %q", q, errPkt)
	require.Len(rc.t, rows, 1)
	return rows[0][0]
}

// escape quotes s as a SQL string literal the way a proxy must.
func escape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`, "\n", `\n`, "\r", `\r`, "\x1a", `\Z`)
	return "'" + r.Replace(s) + "'"
}

func TestTiDBSessionStatesMoveToAnotherServer(t *testing.T) {
	key := sharedSigningKey()
	a, b := startTiDB(t, key, nil), startTiDB(t, key, nil)
	conn := oneConn(t, a)
	exec(t, conn, "USE shop")
	exec(t, conn, "SET SESSION sql_mode = 'ANSI_QUOTES'")
	exec(t, conn, "SET @@time_zone = '+08:00'")
	exec(t, conn, "SET @x = 42, @s = 'it''s \\\\ here'")
	stmt, err := conn.PrepareContext(context.Background(), "SELECT ? FROM t")
	require.NoError(t, err)
	defer func() { _ = stmt.Close() }()

	js, token, err := states(t, conn)
	require.NoError(t, err)
	var st SessionStates
	require.NoError(t, json.Unmarshal([]byte(js), &st))
	require.Equal(t, "shop", st.CurrentDB)
	require.Equal(t, "ANSI_QUOTES", st.SystemVars["sql_mode"])
	require.Equal(t, &Datum{K: KindInt64, I: 42}, st.UserVars["x"])
	require.Len(t, st.PreparedStmts, 1)
	var tok SessionToken
	require.NoError(t, json.Unmarshal([]byte(token), &tok))
	require.Equal(t, "app", tok.Username)
	require.NotEmpty(t, tok.Signature)
	require.WithinDuration(t, tok.SignTime.Add(TokenLifetime), tok.ExpireTime, time.Millisecond)

	rc, ok := tokenLogin(t, b, "app", []byte(token))
	require.Equal(t, byte(hdrOK), ok[0], "token login: %q", ok)
	rows, errPkt := rc.rawQuery("SET SESSION_STATES " + escape(js))
	require.Nil(t, errPkt, "%q", errPkt)
	require.Nil(t, rows)

	require.Equal(t, "shop", rc.value("SELECT DATABASE()"))
	require.Equal(t, "ANSI_QUOTES", rc.value("SELECT @@sql_mode"))
	require.Equal(t, "+08:00", rc.value("SELECT @@session.time_zone"))
	require.Equal(t, "42", rc.value("SELECT @x"))
	require.Equal(t, `it's \ here`, rc.value("SELECT @s"))
	// The statement keeps its id: executing it by that id works on the new server.
	var id uint32
	for k := range st.PreparedStmts {
		id = k
	}
	rc.pc.resetSeq()
	rc.write(binary.LittleEndian.AppendUint32([]byte{comStmtExecute}, id))
	require.Equal(t, byte(hdrOK), rc.read()[0])

	require.Equal(t, int64(1), b.Stats().TokenLogins)
	require.Equal(t, int64(1), b.Stats().StatesRestored)
	require.Equal(t, int64(1), a.Stats().StatesShown)
}

func TestTiDBTokenRefusals(t *testing.T) {
	key := sharedSigningKey()
	var clk clock
	a, b := startTiDB(t, key, nil), startTiDB(t, key, &clk)
	_, token, err := states(t, oneConn(t, a))
	require.NoError(t, err)

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	foreign := startTiDB(t, other, nil)

	tampered := strings.Replace(token, `"username":"app"`, `"username":"root"`, 1)
	require.NotEqual(t, token, tampered)

	cases := []struct {
		name, user string
		srv        *Server
		token      string
	}{
		{"empty token", "app", b, ""},
		{"another user", "root", b, token},
		{"forged user", "root", b, tampered},
		{"other cluster's key", "app", foreign, token},
		{"not JSON", "app", b, "xyz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, p := tokenLogin(t, tc.srv, tc.user, []byte(tc.token))
			msg := requireErrPacket(t, p, codeAccessDenied, sqlStateAccessDenied)
			require.Contains(t, msg, "Access denied")
		})
	}

	// The same token works until it expires.
	_, p := tokenLogin(t, b, "app", []byte(token))
	require.Equal(t, byte(hdrOK), p[0])
	clk.advance(TokenLifetime + time.Second)
	_, p = tokenLogin(t, b, "app", []byte(token))
	requireErrPacket(t, p, codeAccessDenied, sqlStateAccessDenied)
	require.Equal(t, int64(5), b.Stats().TokenFailures, "four bad tokens and one expired one")
	require.Equal(t, int64(1), b.Stats().TokenLogins)
}

func TestTiDBEmptyTokenWithoutSigningKey(t *testing.T) {
	s := startTiDB(t, nil, nil)
	js, token, err := states(t, oneConn(t, s))
	require.NoError(t, err)
	require.NotEmpty(t, js)
	require.Empty(t, token, "TiDB without a signing cert answers an empty token")
}

func TestTiDBUnsupportedStatesRefused(t *testing.T) {
	s := startTiDB(t, sharedSigningKey(), nil)
	cases := []struct{ set, unset, why string }{
		{"LOCK TABLES t WRITE", "UNLOCK TABLES", "table locks"},
		{"SELECT GET_LOCK('job', 0)", "SELECT RELEASE_LOCK('job')", "advisory locks"},
		{"BEGIN", "COMMIT", "active transaction"},
		{"CREATE TEMPORARY TABLE tt (a INT)", "", "temporary tables"},
	}
	for _, tc := range cases {
		t.Run(tc.why, func(t *testing.T) {
			conn := oneConn(t, s)
			_, _, err := states(t, conn)
			require.NoError(t, err)
			exec(t, conn, tc.set)
			_, _, err = states(t, conn)
			me := requireMySQLError(t, err, CodeCannotMigrateSession, sqlStateGeneral)
			require.Contains(t, me.Message, "cannot migrate the current session")
			require.Contains(t, me.Message, tc.why)
			if tc.unset == "" {
				return
			}
			exec(t, conn, tc.unset)
			_, _, err = states(t, conn)
			require.NoError(t, err, "the session can move again once the state is gone")
		})
	}
	require.Equal(t, int64(len(cases)), s.Stats().MigrationRefusals)
}

func TestTiDBSetSessionStatesRejectsGarbage(t *testing.T) {
	s := startTiDB(t, sharedSigningKey(), nil)
	conn := oneConn(t, s)
	_, err := conn.ExecContext(context.Background(), "SET SESSION_STATES '{not json'")
	requireMySQLError(t, err, codeUnknownError, sqlStateGeneral)
	_, err = conn.ExecContext(context.Background(), "SET SESSION_STATES 42")
	requireMySQLError(t, err, codeUnknownError, sqlStateGeneral)
	// The connection is still usable.
	exec(t, conn, "SET SESSION_STATES '{\"current-db\":\"d2\"}'")
	var db string
	require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT DATABASE()").Scan(&db))
	require.Equal(t, "d2", db)
}

func TestUnescapeLiteral(t *testing.T) {
	for in, want := range map[string]string{
		`'a\'b'`:      `a'b`,
		`'a''b'`:      `a'b`,
		`'\\\n\0'`:    "\\\n\x00",
		`"x\"y"`:      `x"y`,
		`'{"k":"v"}'`: `{"k":"v"}`,
	} {
		got, ok := unescapeLiteral(in)
		require.True(t, ok, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{``, `'`, `'a`, `'a'b'`, `abc`} {
		_, ok := unescapeLiteral(bad)
		require.False(t, ok, bad)
	}
}
