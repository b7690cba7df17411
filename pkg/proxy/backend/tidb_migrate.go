package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// TiDB moves a session itself, the way TiProxy uses it: SHOW SESSION_STATES
// on the old backend returns the session's state (JSON) and a token signed
// with the key all TiDBs of the cluster share; the proxy logs in to the new
// backend as the same user with the auth plugin tidb_session_token and the
// token as auth data, then runs SET SESSION_STATES. The proxy needs no
// password and no replay of its own; TiDB refuses (ERROR 8146) a session
// holding what it cannot move (a transaction, LOCK TABLES, GET_LOCK, local
// temporary tables ...).

// pluginTiDBSessionToken is TiDB's auth plugin for migrated sessions.
const pluginTiDBSessionToken = "tidb_session_token"

// erCannotMigrateSession is TiDB's ErrCannotMigrateSession.
const erCannotMigrateSession = 8146

// tidbState is the TiDB side of a session's migration state.
type tidbState struct {
	// on is set at login when the backend's greeting names TiDB. Read by
	// other goroutines (Migratable).
	on atomic.Bool
	// token is the session token of the export in progress, consumed (and
	// zeroed) by the next open. Owned by the cmdMu holder.
	token []byte
}

// isTiDB tells a TiDB server from its greeting's version, e.g.
// "8.0.11-TiDB-v7.5.0".
func isTiDB(serverVersion string) bool { return strings.Contains(serverVersion, "-TiDB-") }

// tidbNotMigratable is why a session on TiDB cannot move at this moment:
// only the safe-point conditions; TiDB itself judges the rest (8146).
func (s *Session) tidbNotMigratable() string {
	switch {
	case s.state.inTxn:
		return "in a transaction"
	case s.state.openCursors > 0:
		return "has an open cursor"
	case s.hasLongData():
		return "has pending COM_STMT_SEND_LONG_DATA"
	}
	return ""
}

// tidbTransfer moves a session between TiDB servers.
type tidbTransfer struct{}

var _ stateTransfer = tidbTransfer{}

// tidbExport is what SHOW SESSION_STATES returned, minus the token.
type tidbExport struct{ states string }

func (tidbTransfer) export(s *Session) (*exportedState, error) {
	be := s.backend
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer func() { _ = be.SetDeadline(time.Time{}) }()
	_, rows, err := queryText(be, s.backendCap, "SHOW SESSION_STATES")
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Code == erCannotMigrateSession {
			return nil, fmt.Errorf("%w: TiDB: %s", errRefused, me.Message)
		}
		if errors.As(err, &me) {
			return nil, fmt.Errorf("%w: SHOW SESSION_STATES: %v", errRefused, err)
		}
		return nil, fmt.Errorf("SHOW SESSION_STATES: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 2 || rows[0][0] == nil {
		return nil, errors.New("SHOW SESSION_STATES: unexpected result")
	}
	if len(rows[0][1]) == 0 {
		return nil, fmt.Errorf("%w: TiDB returned an empty session token (set security.session-token-signing-cert and -key, the same on every TiDB of the cluster)", errRefused)
	}
	clear(s.tidb.token)
	s.tidb.token = rows[0][1]
	return &exportedState{opaque: tidbExport{states: string(rows[0][0])}}, nil
}

// open logs in to the new TiDB with the token the export got. Without one
// (a failover: the old backend is gone and cannot sign) the session cannot
// move.
func (tidbTransfer) open(s *Session, lease router.Lease) (*mysql.PacketIO, uint32, error) {
	token := s.tidb.token
	s.tidb.token = nil
	defer clear(token)
	if len(token) == 0 {
		return nil, 0, fmt.Errorf("%w: a TiDB session moves only with a session token from its current backend", errRefused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	// No database in the handshake: it may have been dropped meanwhile;
	// the states carry the current one.
	be, hs, caps, err := s.dialBackend(ctx, lease.Addr(), backendLogin{
		user: s.state.user, plugin: pluginTiDBSessionToken, compress: true,
		auth: func([]byte) []byte { return token },
	})
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (*mysql.PacketIO, uint32, error) {
		_ = be.Close()
		return nil, 0, err
	}
	if !isTiDB(hs.ServerVersion) {
		return fail(fmt.Errorf("%w: %s is not TiDB (%s)", errRefused, lease.Addr(), hs.ServerVersion))
	}
	data, err := be.ReadPacket(maxAuthPacket)
	switch {
	case err != nil:
		return fail(err)
	case len(data) == 0:
		return fail(errors.New("empty packet during login"))
	case data[0] == mysql.ErrHeader:
		// An expired or foreign token (access denied): the session stays.
		return fail(fmt.Errorf("the session token was refused: %w", mysql.ParseErr(data)))
	case data[0] != mysql.OKHeader:
		return fail(fmt.Errorf("unexpected packet 0x%02x during token login", data[0]))
	}
	_ = be.SetDeadline(time.Time{})
	if err := be.SetCompression(compressionOf(caps), int(s.zstdLevel)); err != nil {
		return fail(err)
	}
	return be, caps, nil
}

// restore runs SET SESSION_STATES. TiDB restores prepared statements under
// the ids the client knows, so the id translation stays as it was.
func (tidbTransfer) restore(s *Session, be *mysql.PacketIO, caps uint32, st *exportedState) (stmtIDs, error) {
	ex, ok := st.tidbStates()
	if !ok {
		return s.mig.ids, fmt.Errorf("%w: no session states to restore", errRefused)
	}
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer func() { _ = be.SetDeadline(time.Time{}) }()
	noBackslash := false
	if strings.Contains(ex.states, `\`) {
		// How a literal is escaped depends on the new connection's
		// sql_mode (the server's default: the session's own comes with the
		// states).
		_, rows, err := queryText(be, caps, "SELECT @@sql_mode")
		if err != nil {
			return s.mig.ids, fmt.Errorf("reading sql_mode: %w", err)
		}
		noBackslash = len(rows) == 1 && len(rows[0]) == 1 &&
			strings.Contains(strings.ToUpper(string(rows[0][0])), "NO_BACKSLASH_ESCAPES")
	}
	if err := execSQL(be, caps, "SET SESSION_STATES "+sqlLiteral(ex.states, noBackslash)); err != nil {
		return s.mig.ids, fmt.Errorf("SET SESSION_STATES: %w", err)
	}
	return s.mig.ids, nil
}

func (st *exportedState) tidbStates() (tidbExport, bool) {
	if st == nil {
		return tidbExport{}, false
	}
	ex, ok := st.opaque.(tidbExport)
	return ex, ok
}

// sqlLiteral quotes s as a single-quoted SQL string literal: quotes doubled,
// and unless the server runs with NO_BACKSLASH_ESCAPES, backslashes and the
// bytes that end or garble a statement escaped.
func sqlLiteral(s string, noBackslashEscapes bool) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			b.WriteString("''")
		case noBackslashEscapes:
			b.WriteByte(c)
		case c == '\\':
			b.WriteString(`\\`)
		case c == 0:
			b.WriteString(`\0`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
