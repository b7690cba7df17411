package mysqldouble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Command bytes of the command phase.
const (
	comQuit            = 0x01
	comInitDB          = 0x02
	comQuery           = 0x03
	comPing            = 0x0e
	comStmtPrepare     = 0x16
	comStmtExecute     = 0x17
	comStmtClose       = 0x19
	comStmtReset       = 0x1a
	comResetConnection = 0x1f
)

// commandLoop serves commands until the client quits or the connection breaks. A nil
// return means an orderly end (COM_QUIT, client hang-up, server Close).
func (c *session) commandLoop() error {
	for {
		c.pc.resetSeq()
		p, err := c.pc.readPacket()
		switch {
		case errors.Is(err, errOutOfOrder):
			return c.fail(codeNetOutOfOrder, sqlStateConnection, "Got packets out of order", err)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
			return nil
		case err != nil:
			return err
		case len(p) == 0:
			return fmt.Errorf("%w: empty command packet", errMalformed)
		}
		switch p[0] {
		case comQuit:
			return nil
		case comPing:
			c.srv.stats.pings.Add(1)
			err = c.writeOK(nil)
		case comResetConnection:
			c.st = newSessionState()
			err = c.writeOK(nil)
		case comStmtPrepare:
			err = c.prepare(string(p[1:]))
		case comStmtExecute:
			err = c.execute(p[1:])
		case comStmtClose:
			if len(p) >= 5 {
				delete(c.st.stmts, binary.LittleEndian.Uint32(p[1:5]))
			}
		case comStmtReset:
			err = c.reset(p[1:])
		case comInitDB:
			err = c.changeDB(string(p[1:]))
		case comQuery:
			q := p[1:]
			if c.caps&capQueryAttributes != 0 {
				var perr error
				if q, perr = c.readQueryAttributes(q); perr != nil {
					err = c.pc.writePacket(errPacket(codeMalformed, sqlStateConnection, "Malformed communication packet"))
					break
				}
			}
			err = c.query(string(q))
		default:
			err = c.pc.writePacket(errPacket(codeUnknownCommand, sqlStateConnection, "Unknown command"))
		}
		if err != nil {
			return err
		}
	}
}

func (c *session) writeOK(sessionState []byte) error {
	return c.pc.writePacket(okPacket(hdrOK, c.caps, c.st.status(), sessionState))
}

func (c *session) writeErr(code uint16, sqlState, msg string) error {
	return c.pc.writePacket(errPacket(code, sqlState, msg))
}

func (c *session) changeDB(db string) error {
	c.db, c.hasDB = db, true
	return c.writeOK(schemaChange(db))
}

// query answers "SELECT <expr>" with a one-row, one-column result and "USE <db>" like
// COM_INIT_DB. It follows the session state tests need (SET, transactions, locks,
// temporary tables) and, with Config.TiDB, TiDB's SESSION_STATES statements; everything
// else gets an empty OK.
func (c *session) query(q string) error {
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	upper := strings.ToUpper(q)
	tidb := c.srv.cfg.TiDB != nil
	st := &c.st
	switch {
	case tidb && upper == "SHOW SESSION_STATES":
		return c.showSessionStates()
	case tidb && hasPrefixFold(q, "SET SESSION_STATES "):
		return c.setSessionStates(q[len("SET SESSION_STATES "):])
	case hasPrefixFold(q, storedHashQuery):
		return c.storedNativeHash(q)
	case hasPrefixFold(q, "SELECT GET_LOCK("):
		st.advisory[lockName(q)] = true
		return c.writeSingleValue(q[len("SELECT "):], "1", false, false)
	case hasPrefixFold(q, "SELECT RELEASE_LOCK("):
		delete(st.advisory, lockName(q))
		return c.writeSingleValue(q[len("SELECT "):], "1", false, false)
	case hasPrefixFold(q, "SELECT RELEASE_ALL_LOCKS()"):
		clear(st.advisory)
		return c.writeSingleValue(q[len("SELECT "):], "0", false, false)
	case hasPrefixFold(q, "SELECT "):
		expr := strings.TrimSpace(q[len("SELECT "):])
		noRows := false
		if n := len(expr) - len(" LIMIT 0"); n > 0 && strings.EqualFold(expr[n:], " LIMIT 0") {
			expr, noRows = strings.TrimSpace(expr[:n]), true
		}
		value, isNull := c.evaluate(expr)
		return c.writeSingleValue(expr, value, isNull, noRows)
	case hasPrefixFold(q, loadLocalPrefix):
		return c.loadLocal(q)
	case hasPrefixFold(q, "USE "):
		return c.changeDB(unquote(strings.TrimSpace(q[len("USE "):])))
	case c.caps&capOptionalMetadata != 0 && hasPrefixFold(q, "SET resultset_metadata"):
		v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(q[len("SET resultset_metadata"):]), "="))
		c.noMetadata = strings.EqualFold(unquote(v), "NONE")
		return c.writeOK(nil)
	case upper == "BEGIN" || hasPrefixFold(q, "START TRANSACTION"):
		st.inTxn = true
	case upper == "COMMIT" || upper == "ROLLBACK":
		st.inTxn = false
	case hasPrefixFold(q, "LOCK TABLES ") || hasPrefixFold(q, "LOCK TABLE "):
		st.tableLocks = true
	case upper == "UNLOCK TABLES":
		st.tableLocks = false
	case hasPrefixFold(q, "CREATE TEMPORARY TABLE "):
		st.tempTables++
	case hasPrefixFold(q, "SET "):
		st.applySet(q[len("SET "):])
	}
	return c.writeOK(nil)
}

// lockName is the first argument of GET_LOCK('name', ...) or RELEASE_LOCK('name').
func lockName(q string) string {
	_, args, _ := strings.Cut(q, "(")
	name, _, _ := strings.Cut(args, ",")
	return strings.ToLower(unquote(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(name), ")"))))
}

// writeRows sends a text result set of string columns of type typ.
func (c *session) writeRows(columns []string, typ byte, rows [][]string) error {
	deprecateEOF := c.caps&capDeprecateEOF != 0
	status := c.st.status()
	packets := [][]byte{appendLenEncInt(nil, uint64(len(columns)))}
	for _, name := range columns {
		def := columnDef41(name)
		def[len(def)-6] = typ // the type byte sits before flags[2], decimals, filler[2]
		packets = append(packets, def)
	}
	if !deprecateEOF {
		packets = append(packets, eofPacket(status))
	}
	for _, row := range rows {
		var b []byte
		for _, v := range row {
			b = appendLenEncString(b, v)
		}
		packets = append(packets, b)
	}
	if deprecateEOF {
		packets = append(packets, okPacket(hdrEOF, c.caps, status, nil))
	} else {
		packets = append(packets, eofPacket(status))
	}
	for _, p := range packets {
		if err := c.pc.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

// evaluate knows the few expressions drivers and tests ask for; any other expression is
// echoed back as its own value, so "SELECT 1" yields "1".
func (c *session) evaluate(expr string) (value string, isNull bool) {
	switch strings.ToUpper(expr) {
	case "CURRENT_USER()", "CURRENT_USER":
		return c.user + "@%", false
	case "USER()", "SESSION_USER()", "SYSTEM_USER()":
		return c.user + "@" + c.host, false
	case "DATABASE()", "SCHEMA()":
		return c.db, !c.hasDB
	case "CONNECTION_ID()":
		return strconv.FormatUint(uint64(c.connID), 10), false
	case "VERSION()", "@@VERSION":
		return c.srv.cfg.ServerVersion, false
	case "@@MAX_ALLOWED_PACKET", "@@SESSION.MAX_ALLOWED_PACKET", "@@GLOBAL.MAX_ALLOWED_PACKET":
		return strconv.Itoa(maxAllowedPacket), false
	case "NULL":
		return "", true
	}
	if strings.HasPrefix(expr, "@@") {
		name := strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(expr[2:]), "session."), "local.")
		if v, ok := c.st.sysVar(name); ok {
			return v, false
		}
		return "", true
	}
	if strings.HasPrefix(expr, "@") {
		v, ok := c.st.userVars[strings.ToLower(expr[1:])]
		if !ok {
			return "", true
		}
		return v.text()
	}
	if fn := "mysql_query_attribute_string("; hasPrefixFold(expr, fn) {
		name := strings.TrimSuffix(strings.TrimSpace(expr[len(fn):]), ")")
		v, found := c.attrs[unquote(strings.TrimSpace(name))]
		return v, !found
	}
	return unquote(expr), false
}

// writeSingleValue answers with one column and one row, or no row when noRows is set
// ("SELECT ... LIMIT 0").
func (c *session) writeSingleValue(name, value string, isNull, noRows bool) error {
	deprecateEOF := c.caps&capDeprecateEOF != 0
	packets := [][]byte{appendLenEncInt(nil, 1)}
	switch {
	case c.caps&capOptionalMetadata == 0:
		packets = append(packets, columnDef41(name))
	case c.noMetadata:
		packets[0] = append(packets[0], 0) // RESULTSET_METADATA_NONE: no column definitions
	default:
		packets[0] = append(packets[0], 1)
		packets = append(packets, columnDef41(name))
	}
	if !deprecateEOF {
		packets = append(packets, eofPacket(c.st.status()))
	}
	switch {
	case noRows:
	case isNull:
		packets = append(packets, []byte{0xfb})
	default:
		packets = append(packets, appendLenEncString(nil, value))
	}
	if deprecateEOF {
		packets = append(packets, okPacket(hdrEOF, c.caps, c.st.status(), nil))
	} else {
		packets = append(packets, eofPacket(c.st.status()))
	}
	for _, p := range packets {
		if err := c.pc.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// unquote strips one pair of matching quotes or backticks.
func unquote(s string) string {
	if len(s) >= 2 {
		switch q := s[0]; q {
		case '\'', '"', '`':
			if s[len(s)-1] == q {
				return s[1 : len(s)-1]
			}
		}
	}
	return s
}
