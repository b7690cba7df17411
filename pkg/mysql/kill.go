package mysql

import (
	"strconv"
)

// KillStatement is a parsed `KILL [HARD | SOFT] [CONNECTION | QUERY] <id>`.
type KillStatement struct {
	// Modifier is "HARD", "SOFT" (MariaDB) or "".
	Modifier string
	// Query is set for KILL QUERY; otherwise the connection is killed.
	Query bool
	ID    uint64
}

// ParseKill recognises a KILL statement naming one connection id. Anything
// else (KILL USER, KILL QUERY ID, comments, several statements, an id that
// is an expression) is not recognised and reports false: such statements are
// left to the server.
func ParseKill(q []byte) (KillStatement, bool) {
	var k KillStatement
	words := killWords(q)
	if len(words) < 2 || !eqFold(words[0], "KILL") {
		return k, false
	}
	words = words[1:]
	if eqFold(words[0], "HARD") || eqFold(words[0], "SOFT") {
		k.Modifier = upper(words[0])
		words = words[1:]
	}
	if len(words) == 2 {
		switch {
		case eqFold(words[0], "QUERY"):
			k.Query = true
		case eqFold(words[0], "CONNECTION"):
		default:
			return k, false
		}
		words = words[1:]
	}
	if len(words) != 1 {
		return k, false
	}
	id, err := strconv.ParseUint(string(words[0]), 10, 64)
	if err != nil || words[0][0] == '+' {
		return k, false
	}
	k.ID = id
	return k, true
}

// AppendKill writes k as SQL text.
func AppendKill(b []byte, k KillStatement) []byte {
	b = append(b, "KILL "...)
	if k.Modifier != "" {
		b = append(b, k.Modifier...)
		b = append(b, ' ')
	}
	if k.Query {
		b = append(b, "QUERY "...)
	} else {
		b = append(b, "CONNECTION "...)
	}
	return strconv.AppendUint(b, k.ID, 10)
}

// killWords splits q on ASCII whitespace, dropping trailing semicolons. It
// returns nil for anything with a comment or a second statement, and for
// long texts (a KILL is short).
func killWords(q []byte) [][]byte {
	if len(q) > 256 {
		return nil
	}
	var words [][]byte
	start := -1
	end := len(q)
	for end > 0 && (isSpace(q[end-1]) || q[end-1] == ';') {
		end--
	}
	q = q[:end]
	for i, c := range q {
		switch {
		case isSpace(c):
			if start >= 0 {
				words = append(words, q[start:i])
				start = -1
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			if start < 0 {
				start = i
			}
		default:
			return nil // comments, quotes, operators, ';' inside: leave it to the server
		}
	}
	if start >= 0 {
		words = append(words, q[start:])
	}
	return words
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func eqFold(w []byte, s string) bool {
	if len(w) != len(s) {
		return false
	}
	for i := range w {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func upper(w []byte) string {
	b := make([]byte, len(w))
	for i, c := range w {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

// StartsWithKill reports whether a statement's first keyword is KILL, after
// whitespace, comments and the markers of executable comments ("/*!50000",
// "/*M!"). The proxy must not let a KILL it cannot translate reach a
// backend, where the id would name another connection.
func StartsWithKill(q []byte) bool {
	i := 0
	for i < len(q) {
		switch {
		case isSpace(q[i]):
			i++
		case hasPrefix(q[i:], "/*!") || hasPrefix(q[i:], "/*M!") || hasPrefix(q[i:], "/*m!"):
			i += 3
			if q[i-1] != '!' {
				i++
			}
			for i < len(q) && q[i] >= '0' && q[i] <= '9' {
				i++
			}
		case hasPrefix(q[i:], "/*"):
			end := indexOf(q[i+2:], "*/")
			if end < 0 {
				return false
			}
			i += 2 + end + 2
		case hasPrefix(q[i:], "-- ") || hasPrefix(q[i:], "--\t") || hasPrefix(q[i:], "--\n") || q[i] == '#':
			end := indexOf(q[i:], "\n")
			if end < 0 {
				return false
			}
			i += end + 1
		default:
			w := q[i:]
			return len(w) >= 4 && eqFold(w[:4], "KILL") && (len(w) == 4 || !isWordByte(w[4]))
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

func indexOf(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}
