package mysqldouble

import (
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
	comResetConnection = 0x1f
	comStmtPrepare     = 0x16
	comStmtExecute     = 0x17
	comStmtClose       = 0x19
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
		case comPing, comResetConnection:
			err = c.writeOK(nil)
		case comInitDB:
			err = c.changeDB(string(p[1:]))
		case comStmtPrepare:
			err = c.prepare(string(p[1:]))
		case comStmtExecute:
			err = c.execute(p[1:])
		case comStmtClose:
			continue // no answer
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
	return c.pc.writePacket(okPacket(hdrOK, c.caps, statusAutocommit, sessionState))
}

func (c *session) changeDB(db string) error {
	c.db, c.hasDB = db, true
	return c.writeOK(schemaChange(db))
}

// query answers "SELECT <expr>" with a one-row, one-column result and "USE <db>" like
// COM_INIT_DB; everything else gets an empty OK.
func (c *session) query(q string) error {
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	switch {
	case hasPrefixFold(q, "SELECT "):
		expr := strings.TrimSpace(q[len("SELECT "):])
		noRows := false
		if n := len(expr) - len(" LIMIT 0"); n > 0 && strings.EqualFold(expr[n:], " LIMIT 0") {
			expr, noRows = strings.TrimSpace(expr[:n]), true
		}
		value, isNull := c.evaluate(expr)
		return c.writeSingleValue(expr, value, isNull, noRows)
	case hasPrefixFold(q, "USE "):
		return c.changeDB(unquote(strings.TrimSpace(q[len("USE "):])))
	case c.caps&capOptionalMetadata != 0 && hasPrefixFold(q, "SET resultset_metadata"):
		v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(q[len("SET resultset_metadata"):]), "="))
		c.noMetadata = strings.EqualFold(unquote(v), "NONE")
		return c.writeOK(nil)
	default:
		return c.writeOK(nil)
	}
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
		packets = append(packets, eofPacket(statusAutocommit))
	}
	switch {
	case noRows:
	case isNull:
		packets = append(packets, []byte{0xfb})
	default:
		packets = append(packets, appendLenEncString(nil, value))
	}
	if deprecateEOF {
		packets = append(packets, okPacket(hdrEOF, c.caps, statusAutocommit, nil))
	} else {
		packets = append(packets, eofPacket(statusAutocommit))
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
