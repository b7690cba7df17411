package shadow

import (
	"bytes"
	"strings"
)

// Statements the session samples start with SELECT and run outside a
// transaction with autocommit on. refuse, run by a worker before a
// statement goes to the target, takes out those whose two runs could
// differ for reasons other than data, or that take locks or write:
//
//   - several statements (a ';' followed by more), executable comments;
//   - locking reads (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE) and INTO
//     (SELECT … INTO @var/OUTFILE/DUMPFILE);
//   - user and system variables (@x, @@x): session state the mirror has not;
//   - functions whose result depends on the moment, the server, the session
//     or the account (NOW, RAND, UUID, CONNECTION_ID, USER, VERSION, …),
//     advisory locks (GET_LOCK), SLEEP/BENCHMARK, sequences (NEXTVAL), and
//     the information_schema, performance_schema and mysql schemas.
//
// The scan is lexical: a word inside a string or a quoted identifier does
// not count; a column named like one of the functions does only when it is
// followed by '('. It returns why a statement is refused, "" when it may
// be mirrored.
func refuse(q []byte) string {
	var prev string
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '#' || (c == '-' && i+1 < len(q) && q[i+1] == '-'):
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			if i+2 < len(q) && (q[i+2] == '!' || q[i+2] == 'M') {
				return "executable comment"
			}
			end := bytes.Index(q[i+2:], []byte("*/"))
			if end < 0 {
				return "unterminated comment"
			}
			i += end + 4
		case c == '\'' || c == '"' || c == '`':
			i += skipQuoted(q[i:])
			prev = "'"
		case c == '@':
			return "uses a variable"
		case c == ';':
			if len(bytes.TrimSpace(q[i+1:])) > 0 {
				return "several statements"
			}
			i++
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			w := strings.ToUpper(string(q[i:j]))
			k := j
			for k < len(q) && (q[k] == ' ' || q[k] == '\t' || q[k] == '\n' || q[k] == '\r') {
				k++
			}
			call := k < len(q) && q[k] == '('
			if why := refuseWord(prev, w, call); why != "" {
				return why
			}
			prev = w
			i = j
		default:
			prev = string(c)
			i++
		}
	}
	return ""
}

func refuseWord(prev, w string, call bool) string {
	switch {
	case w == "INTO":
		return "SELECT … INTO"
	case prev == "FOR" && (w == "UPDATE" || w == "SHARE"):
		return "locking read"
	case prev == "LOCK" && w == "IN":
		return "locking read"
	case prev == "NEXT" && w == "VALUE":
		return "reads a sequence"
	case schemaRefused[w]:
		return "reads server metadata (" + strings.ToLower(w) + ")"
	case bareRefused[w]:
		return "result depends on the server or the moment (" + w + ")"
	case call && callRefused[w]:
		return "result depends on the server, session or moment (" + w + "())"
	}
	return ""
}

var schemaRefused = map[string]bool{"INFORMATION_SCHEMA": true, "PERFORMANCE_SCHEMA": true, "MYSQL": true, "SYS": true}

// bareRefused are the functions SQL lets a statement call without
// parentheses.
var bareRefused = map[string]bool{
	"CURRENT_DATE": true, "CURRENT_TIME": true, "CURRENT_TIMESTAMP": true, "LOCALTIME": true,
	"LOCALTIMESTAMP": true, "CURRENT_USER": true, "CURRENT_ROLE": true, "UTC_DATE": true,
	"UTC_TIME": true, "UTC_TIMESTAMP": true,
}

var callRefused = map[string]bool{
	"NOW": true, "SYSDATE": true, "CURDATE": true, "CURTIME": true, "UNIX_TIMESTAMP": true,
	"RAND": true, "UUID": true, "UUID_SHORT": true, "SYS_GUID": true, "RANDOM_BYTES": true,
	"CONNECTION_ID": true, "LAST_INSERT_ID": true, "FOUND_ROWS": true, "ROW_COUNT": true,
	"USER": true, "SESSION_USER": true, "SYSTEM_USER": true, "DATABASE": true, "SCHEMA": true,
	"VERSION": true, "SLEEP": true, "BENCHMARK": true, "GET_LOCK": true, "RELEASE_LOCK": true,
	"RELEASE_ALL_LOCKS": true, "IS_FREE_LOCK": true, "IS_USED_LOCK": true, "MASTER_POS_WAIT": true,
	"MASTER_GTID_WAIT": true, "NEXTVAL": true, "LASTVAL": true, "SETVAL": true, "LOAD_FILE": true,
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

// skipQuoted returns the length of the quoted string or identifier at
// q[0], with doubled quotes and (outside backquotes) backslash escapes.
func skipQuoted(q []byte) int {
	quote := q[0]
	for i := 1; i < len(q); i++ {
		switch {
		case quote != '`' && q[i] == '\\':
			i++
		case q[i] == quote && i+1 < len(q) && q[i+1] == quote:
			i++
		case q[i] == quote:
			return i + 1
		}
	}
	return len(q)
}
