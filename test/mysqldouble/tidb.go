package mysqldouble

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// TiDB's session migration, as TiProxy uses it (TiDB cannot run in this repository's
// tests, so the double speaks it):
//
//   - SHOW SESSION_STATES answers one row with two JSON columns: Session_states, the
//     session's state, and Session_token, a token signed with the key every TiDB of the
//     cluster shares (security.session-token-signing-cert/key), naming the user and
//     valid for one minute. A server without a signing key answers an empty token.
//   - A new connection logs in with the auth plugin tidb_session_token and the token as
//     auth data; the server checks the signature, the expiry and the user name.
//   - SET SESSION_STATES '<json>' restores the state on the new connection.
//
// A session holding state that cannot move (a transaction, table locks, advisory locks,
// local temporary tables) gets ERR 8146 from SHOW SESSION_STATES.

// PluginTiDBSessionToken is the auth plugin a migrating proxy logs in with.
const PluginTiDBSessionToken = "tidb_session_token"

// TiDB error codes the double reproduces.
const (
	CodeCannotMigrateSession = 8146 // ErrCannotMigrateSession
	codeUnknownStmtHandler   = 1243 // ER_UNKNOWN_STMT_HANDLER
	codeUnknownError         = 1105 // ER_UNKNOWN_ERROR, TiDB's catch-all
	sqlStateGeneral          = "HY000"
)

// TokenLifetime is how long a session token is valid, as in TiDB.
const TokenLifetime = time.Minute

// TiDBConfig makes a double behave as a TiDB server for session migration.
type TiDBConfig struct {
	// SigningKey signs and checks session tokens; the doubles of one cluster share it.
	// Nil: SHOW SESSION_STATES returns an empty token, as TiDB without a signing cert.
	SigningKey *ecdsa.PrivateKey
	// Now is the server's clock (default time.Now), so that tests can age a token.
	Now func() time.Time
}

// SessionToken is the token's JSON, field for field as TiDB encodes it.
type SessionToken struct {
	Username   string    `json:"username"`
	SignTime   time.Time `json:"sign-time"`
	ExpireTime time.Time `json:"expire-time"`
	Signature  []byte    `json:"signature,omitempty"`
}

// SessionStates is the subset of TiDB's Session_states JSON the double produces and
// restores; the names and encodings are TiDB's.
type SessionStates struct {
	UserVars       map[string]*Datum            `json:"user-var-values,omitempty"`
	UserVarTypes   map[string]*FieldType        `json:"user-var-types,omitempty"`
	SystemVars     map[string]string            `json:"sys-vars,omitempty"`
	PreparedStmts  map[uint32]*PreparedStmtInfo `json:"prepared-stmts,omitempty"`
	PreparedStmtID uint32                       `json:"prepared-stmt-id,omitempty"`
	Status         uint16                       `json:"status,omitempty"`
	CurrentDB      string                       `json:"current-db,omitempty"`
}

// Datum is TiDB's JSON form of a value: a kind and, by kind, an integer or bytes.
type Datum struct {
	K         byte   `json:"k"`
	I         int64  `json:"i,omitempty"`
	Collation string `json:"collation,omitempty"`
	B         []byte `json:"b,omitempty"`
}

// Datum kinds (TiDB's types.Kind*).
const (
	KindNull   = 0
	KindInt64  = 1
	KindString = 5
)

// FieldType is the part of TiDB's field type JSON the double fills in.
type FieldType struct {
	Tp      byte   `json:"Tp"`
	Flen    int    `json:"Flen"`
	Charset string `json:"Charset"`
	Collate string `json:"Collate"`
}

// PreparedStmtInfo is one prepared statement in the states.
type PreparedStmtInfo struct {
	Name       string `json:"name,omitempty"`
	StmtText   string `json:"text"`
	StmtDB     string `json:"db,omitempty"`
	ParamTypes []byte `json:"types,omitempty"`
}

func (s *Server) now() time.Time {
	if s.cfg.TiDB != nil && s.cfg.TiDB.Now != nil {
		return s.cfg.TiDB.Now()
	}
	return time.Now()
}

// tokenDigest is what the signature covers: the token's JSON without its signature.
func tokenDigest(t SessionToken) ([]byte, error) {
	t.Signature = nil
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(b)
	return d[:], nil
}

// newToken signs a token for user, or returns "" without a signing key.
func (s *Server) newToken(user string) (string, error) {
	key := s.cfg.TiDB.SigningKey
	if key == nil {
		return "", nil
	}
	now := s.now()
	t := SessionToken{Username: user, SignTime: now, ExpireTime: now.Add(TokenLifetime)}
	d, err := tokenDigest(t)
	if err != nil {
		return "", err
	}
	if t.Signature, err = ecdsa.SignASN1(rand.Reader, key, d); err != nil {
		return "", err
	}
	b, err := json.Marshal(t)
	return string(b), err
}

var errBadToken = errors.New("mysqldouble: bad session token")

// checkToken validates a token sent as auth data for user, as TiDB does.
func (s *Server) checkToken(raw []byte, user string) error {
	key := s.cfg.TiDB.SigningKey
	if key == nil || len(raw) == 0 {
		return fmt.Errorf("%w: no token or no signing key", errBadToken)
	}
	var t SessionToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("%w: %v", errBadToken, err)
	}
	d, err := tokenDigest(t)
	if err != nil || !ecdsa.VerifyASN1(&key.PublicKey, d, t.Signature) {
		return fmt.Errorf("%w: signature", errBadToken)
	}
	now := s.now()
	switch {
	case now.After(t.ExpireTime):
		return fmt.Errorf("%w: token expired", errBadToken)
	case t.SignTime.Add(TokenLifetime).Before(now):
		return fmt.Errorf("%w: token lifetime is too long", errBadToken)
	case !strings.EqualFold(user, t.Username):
		return fmt.Errorf("%w: username does not match", errBadToken)
	}
	return nil
}

// sessionToken logs a client in with tidb_session_token: no exchange, just the verdict.
func (c *session) sessionToken(token []byte) error {
	_, known := c.srv.users[c.user]
	if _, native := c.srv.native[c.user]; native {
		known = true
	}
	if err := c.srv.checkToken(token, c.user); err != nil || !known {
		c.srv.stats.tokenFailures.Add(1)
		return c.deny(true)
	}
	c.srv.stats.tokenLogins.Add(1)
	return c.pc.writePacket(okPacket(hdrOK, c.caps, c.st.status(), nil))
}

// showSessionStates answers SHOW SESSION_STATES.
func (c *session) showSessionStates() error {
	if why := c.st.unsupported(); why != "" {
		c.srv.stats.migrationRefusals.Add(1)
		return c.writeErr(CodeCannotMigrateSession, sqlStateGeneral, "cannot migrate the current session: "+why)
	}
	states, err := json.Marshal(c.exportStates())
	if err != nil {
		return err
	}
	token, err := c.srv.newToken(c.user)
	if err != nil {
		return c.writeErr(CodeCannotMigrateSession, sqlStateGeneral, "cannot migrate the current session: "+err.Error())
	}
	c.srv.stats.statesShown.Add(1)
	return c.writeRows([]string{"Session_states", "Session_token"}, typeJSON, [][]string{{string(states), token}})
}

func (c *session) exportStates() SessionStates {
	st := &c.st
	out := SessionStates{CurrentDB: c.db, SystemVars: maps.Clone(st.sysVars), PreparedStmtID: st.nextStmt}
	if len(st.userVars) > 0 {
		out.UserVars = map[string]*Datum{}
		out.UserVarTypes = map[string]*FieldType{}
		for name, v := range st.userVars {
			switch {
			case v.isNull:
				out.UserVars[name] = &Datum{K: KindNull}
				out.UserVarTypes[name] = &FieldType{Tp: 6} // mysql.TypeNull
			case v.isInt:
				out.UserVars[name] = &Datum{K: KindInt64, I: v.i}
				out.UserVarTypes[name] = &FieldType{Tp: 8, Flen: 20, Charset: "binary", Collate: "binary"} // TypeLonglong
			default:
				out.UserVars[name] = &Datum{K: KindString, B: []byte(v.s), Collation: "utf8mb4_bin"}
				out.UserVarTypes[name] = &FieldType{Tp: 15, Flen: len(v.s), Charset: "utf8mb4", Collate: "utf8mb4_bin"} // TypeVarchar
			}
		}
	}
	if len(st.stmts) > 0 {
		out.PreparedStmts = map[uint32]*PreparedStmtInfo{}
		for id, p := range st.stmts {
			out.PreparedStmts[id] = &PreparedStmtInfo{StmtText: p.text, StmtDB: p.db}
		}
	}
	return out
}

// setSessionStates answers SET SESSION_STATES '<json>'.
func (c *session) setSessionStates(literal string) error {
	raw, ok := unescapeLiteral(strings.TrimSpace(literal))
	if !ok {
		return c.writeErr(codeUnknownError, sqlStateGeneral, "SET SESSION_STATES needs a string literal")
	}
	var in SessionStates
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return c.writeErr(codeUnknownError, sqlStateGeneral, "invalid session states: "+err.Error())
	}
	st := &c.st
	if in.CurrentDB != "" {
		c.db, c.hasDB = in.CurrentDB, true
	}
	maps.Copy(st.sysVars, in.SystemVars)
	for name, d := range in.UserVars {
		switch d.K {
		case KindNull:
			st.userVars[name] = userVar{isNull: true}
		case KindInt64:
			st.userVars[name] = userVar{isInt: true, i: d.I}
		default:
			st.userVars[name] = userVar{s: string(d.B)}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(in.PreparedStmts)) {
		p := in.PreparedStmts[id]
		st.stmts[id] = prepStmt{text: p.StmtText, db: p.StmtDB, params: strings.Count(p.StmtText, "?")}
	}
	st.nextStmt = max(st.nextStmt, in.PreparedStmtID)
	c.srv.stats.statesRestored.Add(1)
	return c.writeOK(nil)
}

// unescapeLiteral reads one quoted SQL string literal, undoing backslash escapes and
// doubled quotes.
func unescapeLiteral(s string) (string, bool) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", false
	}
	q := s[0]
	body := s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		ch := body[i]
		switch {
		case ch == '\\' && i+1 < len(body):
			i++
			switch body[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0':
				b.WriteByte(0)
			case 'Z':
				b.WriteByte(0x1a)
			case 'b':
				b.WriteByte('\b')
			default:
				b.WriteByte(body[i])
			}
		case ch == q && i+1 < len(body) && body[i+1] == q:
			b.WriteByte(q)
			i++
		case ch == q:
			return "", false // an unescaped quote inside the literal
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), true
}
