package mysqldouble

import (
	"strconv"
	"strings"
)

// userVar is a user variable (@x) as the double keeps it: an integer, a string or NULL.
type userVar struct {
	isInt  bool
	isNull bool
	i      int64
	s      string
}

func (v userVar) text() (string, bool) {
	switch {
	case v.isNull:
		return "", true
	case v.isInt:
		return strconv.FormatInt(v.i, 10), false
	}
	return v.s, false
}

// prepStmt is a statement prepared with COM_STMT_PREPARE.
type prepStmt struct {
	text   string
	db     string
	params int
}

// sessionState is what a connection remembers between commands, enough for a proxy that
// moves sessions to have something to move and something to refuse.
type sessionState struct {
	sysVars  map[string]string   // session system variables set by the client, lower-case names
	userVars map[string]userVar  // user variables, lower-case names without '@'
	stmts    map[uint32]prepStmt // prepared statements by id
	nextStmt uint32              // the last statement id handed out

	inTxn      bool
	tableLocks bool            // LOCK TABLES until UNLOCK TABLES
	advisory   map[string]bool // GET_LOCK names held
	tempTables int             // CREATE TEMPORARY TABLE count
}

func newSessionState() sessionState {
	return sessionState{
		sysVars:  map[string]string{},
		userVars: map[string]userVar{},
		stmts:    map[uint32]prepStmt{},
		advisory: map[string]bool{},
	}
}

// status is the server status a response carries.
func (st *sessionState) status() uint16 {
	s := statusAutocommit
	if st.sysVars["autocommit"] == "0" || st.sysVars["autocommit"] == "OFF" {
		s = 0
	}
	if st.inTxn {
		s |= statusInTrans
	}
	return s
}

// sysVarDefaults are what @@name reports for a variable the session did not set.
var sysVarDefaults = map[string]string{
	"sql_mode":   "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION",
	"time_zone":  "SYSTEM",
	"autocommit": "1",
}

func (st *sessionState) sysVar(name string) (string, bool) {
	name = strings.ToLower(name)
	if v, ok := st.sysVars[name]; ok {
		return v, true
	}
	v, ok := sysVarDefaults[name]
	return v, ok
}

// applySet runs the assignments of a SET statement: "SET [SESSION] a = 'x', @b = 2,
// @@session.c = 3". It understands quoted strings, integers and NULL, which is all the
// tests need; anything else is stored as written.
func (st *sessionState) applySet(assignments string) {
	for _, a := range splitTopLevel(assignments, ',') {
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		lname := strings.ToLower(name)
		switch {
		case strings.HasPrefix(lname, "@@"):
			lname = strings.TrimPrefix(strings.TrimPrefix(lname[2:], "session."), "local.")
			st.sysVars[lname] = literal(value)
		case strings.HasPrefix(lname, "@"):
			st.userVars[lname[1:]] = parseUserValue(value)
		default:
			lname = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(lname, "session "), "local "))
			st.sysVars[lname] = literal(value)
		}
	}
}

func parseUserValue(v string) userVar {
	if strings.EqualFold(v, "NULL") {
		return userVar{isNull: true}
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return userVar{isInt: true, i: i}
	}
	return userVar{s: literal(v)}
}

// literal is a quoted SQL string's value, or s as written when it is not one.
func literal(s string) string {
	if v, ok := unescapeLiteral(s); ok {
		return v
	}
	return unquote(s)
}

// unsupported names the first state TiDB refuses to migrate, or "".
func (st *sessionState) unsupported() string {
	switch {
	case st.inTxn:
		return "session has an active transaction"
	case st.tableLocks:
		return "session has some unsupported states: table locks"
	case len(st.advisory) > 0:
		return "session has some unsupported states: advisory locks"
	case st.tempTables > 0:
		return "session has some unsupported states: local temporary tables"
	}
	return ""
}

// splitTopLevel splits s at sep outside quotes.
func splitTopLevel(s string, sep byte) []string {
	var out []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
