package backend

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// maxTrackedNames bounds each set of names a session tracks for migration;
// a session that uses more cannot move.
const maxTrackedNames = 256

// tracked is what a migratable session learns from its statements and from
// the session-state changes its backend reports, for a move to replay or to
// refuse. Statement inspection is a lexical scan, not a parser: it finds
// user variable names (a name too many is harmless: an unset variable reads
// back as NULL), LOCK/UNLOCK TABLES, GET_LOCK/RELEASE_ALL_LOCKS and
// CREATE/DROP TEMPORARY TABLE. What it cannot see (statements inside stored
// routines, names built at run time) is listed in docs/operations.md.
type tracked struct {
	// sysvars are the session system variables the server reported as
	// changed (session_track_system_variables = '*'), last value wins.
	sysvars map[string]string
	// userVars are the user variable names seen in statements.
	userVars map[string]struct{}
	// locks are GET_LOCK names given as literals; a move asks the old
	// server whether the session still holds them.
	locks map[string]struct{}
	// lockUnknown: a GET_LOCK whose name is not a literal.
	lockUnknown bool
	lockTables  bool
	temp        map[string]struct{}
	// trackingChanged: the client set session_track_system_variables
	// itself, so the server no longer reports every change.
	trackingChanged bool
	// tooMany: a set above outgrew maxTrackedNames.
	tooMany bool
	// unseen: a statement too large to inspect (or re-prepare) went by.
	unseen string
}

func (t *tracked) reset() { *t = tracked{} }

// sticky says why state the session holds cannot move ("" when nothing).
func (t *tracked) sticky() string {
	switch {
	case t.lockTables:
		return "holds LOCK TABLES"
	case t.lockUnknown:
		return "took an advisory lock (GET_LOCK) whose name is not a literal"
	case len(t.locks) > 0:
		return fmt.Sprintf("may hold advisory locks (GET_LOCK %s; checked again when it is asked to move)", strings.Join(sortedKeys(t.locks), ", "))
	case len(t.temp) > 0:
		return fmt.Sprintf("has temporary tables (%s)", strings.Join(sortedKeys(t.temp), ", "))
	case t.trackingChanged:
		return "the client changed session_track_system_variables, so its variables cannot be followed"
	case t.tooMany:
		return fmt.Sprintf("uses more than %d user variables, locks or temporary tables", maxTrackedNames)
	case t.unseen != "":
		return t.unseen
	}
	return ""
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *tracked) addName(m *map[string]struct{}, name string) {
	if *m == nil {
		*m = map[string]struct{}{}
	}
	if _, ok := (*m)[name]; ok {
		return
	}
	if len(*m) >= maxTrackedNames {
		t.tooMany = true
		return
	}
	(*m)[name] = struct{}{}
}

// setSysvar records a change the server reported.
func (t *tracked) setSysvar(name, value string) {
	name = strings.ToLower(name)
	if name == "session_track_system_variables" {
		t.trackingChanged = value != "*"
		return
	}
	if t.sysvars == nil {
		t.sysvars = map[string]string{}
	}
	t.sysvars[name] = value
}

// observe inspects one statement (COM_QUERY or COM_STMT_PREPARE text). It
// runs on every statement of a migratable session, so statements that
// cannot matter are skipped with a byte scan before anything is lexed.
func (t *tracked) observe(q []byte) {
	if !t.mayMatter(q) {
		return
	}
	t.apply(scanStatement(q))
}

// mayMatter is a cheap over-approximation of "scanStatement finds something
// that changes t".
func (t *tracked) mayMatter(q []byte) bool {
	return bytes.IndexByte(q, '@') >= 0 || containsFold(q, "LOCK") || containsFold(q, "TEMPORARY") ||
		(len(t.temp) > 0 && containsFold(q, "DROP")) ||
		(t.lockTables && (containsFold(q, "BEGIN") || containsFold(q, "START")))
}

// containsFold reports whether q contains the upper-case ASCII word w,
// ignoring case, without allocating.
func containsFold(q []byte, w string) bool {
	for i := 0; i+len(w) <= len(q); i++ {
		j := 0
		for ; j < len(w); j++ {
			c := q[i+j]
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			if c != w[j] {
				break
			}
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

func (t *tracked) apply(sc scan) {
	for _, v := range sc.userVars {
		t.addName(&t.userVars, v)
	}
	if sc.unlockTables {
		t.lockTables = false
	}
	if sc.lockTables {
		t.lockTables = true
	}
	if sc.releaseAllLocks {
		t.locks, t.lockUnknown = nil, false
	}
	for _, l := range sc.locks {
		t.addName(&t.locks, l)
	}
	if sc.lockUnknown {
		t.lockUnknown = true
	}
	for _, n := range sc.dropTables {
		delete(t.temp, n)
	}
	for _, n := range sc.tempTables {
		t.addName(&t.temp, n)
	}
}

// scan is what one statement says about state that matters to a move.
type scan struct {
	userVars                 []string
	lockTables, unlockTables bool
	locks                    []string
	lockUnknown              bool
	releaseAllLocks          bool
	tempTables, dropTables   []string
}

// token is one lexical item of a statement.
type token struct {
	kind byte // 'w' word, 's' string literal, 'v' @variable, 'p' punctuation
	text string
}

// scanStatement lexes q (comments, quoted strings and identifiers handled
// as MySQL does, without sql_mode subtleties) and applies the rules above.
func scanStatement(q []byte) scan {
	toks := lex(q)
	var sc scan
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch tk.kind {
		case 'v':
			sc.userVars = append(sc.userVars, tk.text)
			continue
		case 's':
			// A statement text inside a string (PREPARE ... FROM '...')
			// may set variables too.
			sc.userVars = append(sc.userVars, varsInString(tk.text)...)
			continue
		case 'w':
		default:
			continue
		}
		w := tk.text
		next := func(k int) string {
			if i+k < len(toks) && toks[i+k].kind == 'w' {
				return toks[i+k].text
			}
			return ""
		}
		switch w {
		case "LOCK":
			if n := next(1); n == "TABLE" || n == "TABLES" {
				sc.lockTables = true
			}
		case "UNLOCK":
			sc.unlockTables = true
		case "BEGIN":
			if i == 0 {
				sc.unlockTables = true
			}
		case "START":
			if next(1) == "TRANSACTION" {
				sc.unlockTables = true
			}
		case "GET_LOCK":
			if i+2 < len(toks) && toks[i+1].text == "(" && toks[i+2].kind == 's' &&
				i+3 < len(toks) && toks[i+3].text == "," {
				sc.locks = append(sc.locks, toks[i+2].text)
			} else if i+1 < len(toks) && toks[i+1].text == "(" {
				sc.lockUnknown = true
			}
		case "RELEASE_ALL_LOCKS":
			sc.releaseAllLocks = true
		case "CREATE":
			j := i + 1
			if next(1) == "OR" && next(2) == "REPLACE" {
				j += 2
			}
			if j < len(toks) && toks[j].text == "TEMPORARY" && j+1 < len(toks) && toks[j+1].text == "TABLE" {
				j += 2
				if j+2 < len(toks) && toks[j].text == "IF" && toks[j+1].text == "NOT" && toks[j+2].text == "EXISTS" {
					j += 3
				}
				if name := tableName(toks, j); name != "" {
					sc.tempTables = append(sc.tempTables, name)
				}
			}
		case "DROP":
			j := i + 1
			if next(1) == "TEMPORARY" {
				j++
			}
			if j < len(toks) && toks[j].text == "TABLE" {
				j++
				if j+1 < len(toks) && toks[j].text == "IF" && toks[j+1].text == "EXISTS" {
					j += 2
				}
				for j < len(toks) {
					name := tableName(toks, j)
					if name == "" {
						break
					}
					sc.dropTables = append(sc.dropTables, name)
					for j < len(toks) && toks[j].text != "," {
						j++
					}
					j++
				}
			}
		}
	}
	return sc
}

// tableName reads a possibly qualified table name at toks[j], lowercased
// ("db.t" or "t").
func tableName(toks []token, j int) string {
	if j >= len(toks) || (toks[j].kind != 'w' && toks[j].kind != 'i') {
		return ""
	}
	name := toks[j].raw()
	if j+2 < len(toks) && toks[j+1].text == "." && (toks[j+2].kind == 'w' || toks[j+2].kind == 'i') {
		name += "." + toks[j+2].raw()
	}
	return strings.ToLower(name)
}

func (t token) raw() string { return t.text }

// lex splits q into tokens. Words are upper-cased; quoted identifiers come
// back as kind 'i' with their text; strings as 's' without quotes.
func lex(q []byte) []token {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '#' || (c == '-' && i+2 <= len(q) && bytes.HasPrefix(q[i:], []byte("--")) && (i+2 == len(q) || q[i+2] == ' ' || q[i+2] == '\t' || q[i+2] == '\n')):
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := bytes.Index(q[i+2:], []byte("*/"))
			if end < 0 {
				return toks
			}
			body := q[i+2 : i+2+end]
			if len(body) > 0 && body[0] == '!' {
				// Executable comment: its content is part of the statement.
				toks = append(toks, lex(bytes.TrimLeft(body[1:], "0123456789"))...)
			}
			i += 2 + end + 2
		case c == '\'' || c == '"':
			s, n := quoted(q[i:], c, true)
			toks = append(toks, token{kind: 's', text: s})
			i += n
		case c == '`':
			s, n := quoted(q[i:], c, false)
			toks = append(toks, token{kind: 'i', text: s})
			i += n
		case c == '@':
			if i+1 < len(q) && q[i+1] == '@' {
				// @@system_variable: skip it with its scope and name.
				i += 2
				for i < len(q) && (isIdent(q[i]) || q[i] == '.') {
					i++
				}
				continue
			}
			i++
			if i < len(q) && (q[i] == '\'' || q[i] == '"' || q[i] == '`') {
				s, n := quoted(q[i:], q[i], q[i] != '`')
				toks = append(toks, token{kind: 'v', text: strings.ToLower(s)})
				i += n
				continue
			}
			j := i
			for j < len(q) && (isIdent(q[j]) || q[j] == '.') {
				j++
			}
			if j > i {
				toks = append(toks, token{kind: 'v', text: strings.ToLower(string(q[i:j]))})
			}
			i = j
		case isIdent(c):
			j := i
			for j < len(q) && isIdent(q[j]) {
				j++
			}
			toks = append(toks, token{kind: 'w', text: strings.ToUpper(string(q[i:j]))})
			i = j
		default:
			toks = append(toks, token{kind: 'p', text: string(c)})
			i++
		}
	}
	return toks
}

// quoted reads a quoted string or identifier starting at q[0] (the quote),
// with doubled quotes and, for strings, backslash escapes. It returns the
// content and the bytes consumed.
func quoted(q []byte, quote byte, backslash bool) (string, int) {
	var b strings.Builder
	i := 1
	for i < len(q) {
		c := q[i]
		switch {
		case backslash && c == '\\' && i+1 < len(q):
			b.WriteByte(q[i+1])
			i += 2
		case c == quote && i+1 < len(q) && q[i+1] == quote:
			b.WriteByte(quote)
			i += 2
		case c == quote:
			return b.String(), i + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), i
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

// varsInString finds @names inside a string literal (a statement prepared
// with PREPARE ... FROM '...').
func varsInString(s string) []string {
	if !strings.Contains(s, "@") {
		return nil
	}
	var out []string
	for _, t := range lex([]byte(s)) {
		if t.kind == 'v' {
			out = append(out, t.text)
		}
	}
	return out
}
