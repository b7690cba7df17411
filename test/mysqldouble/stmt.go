package mysqldouble

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Prepared statements, just enough for query attributes on COM_STMT_EXECUTE and
// for moving sessions: "SELECT <expr>" without parameters executes like the text
// query, answering with a binary result set; other statements answer OK.

// paramCountAvailable is the COM_STMT_EXECUTE flag that announces a parameter count
// (CLIENT_QUERY_ATTRIBUTES).
const paramCountAvailable = 0x08

// prepare answers COM_STMT_PREPARE. "SELECT <expr>" without parameters is
// prepared as one result column (executing it evaluates expr, for query
// attributes and result-set metadata); anything else as a statement with one
// parameter per '?' and no result columns, whose execute answers OK. The
// statement is kept in the session state, which TiDB's SESSION_STATES move.
func (c *session) prepare(q string) error {
	q = strings.TrimSpace(q)
	c.st.nextStmt++
	id := c.st.nextStmt
	params := strings.Count(q, "?")
	c.st.stmts[id] = prepStmt{text: q, db: c.db, params: params}
	if expr, ok := selectExpr(q); ok {
		return c.prepareSelect(id, expr)
	}
	b := []byte{hdrOK}
	b = binary.LittleEndian.AppendUint32(b, id)
	b = binary.LittleEndian.AppendUint16(b, 0) // columns
	b = binary.LittleEndian.AppendUint16(b, uint16(params))
	b = append(b, 0, 0, 0) // filler, warnings
	if c.caps&capOptionalMetadata != 0 {
		b = append(b, 1)
	}
	if err := c.pc.writePacket(b); err != nil {
		return err
	}
	for range params {
		if err := c.pc.writePacket(columnDef41("?")); err != nil {
			return err
		}
	}
	if params > 0 && c.caps&capDeprecateEOF == 0 {
		return c.pc.writePacket(eofPacket(c.st.status()))
	}
	return nil
}

// selectExpr is expr of "SELECT expr" without parameters.
func selectExpr(q string) (string, bool) {
	if !hasPrefixFold(q, "SELECT ") || strings.Contains(q, "?") {
		return "", false
	}
	return strings.TrimSpace(q[len("SELECT "):]), true
}

func (c *session) prepareSelect(id uint32, expr string) error {
	ok := []byte{hdrOK}
	ok = binary.LittleEndian.AppendUint32(ok, id)
	ok = binary.LittleEndian.AppendUint16(ok, 1) // columns
	ok = binary.LittleEndian.AppendUint16(ok, 0) // params
	ok = append(ok, 0, 0, 0)                     // reserved, warnings
	packets := [][]byte{ok}
	if c.caps&capOptionalMetadata != 0 {
		if c.noMetadata {
			packets[0] = append(ok, 0) // RESULTSET_METADATA_NONE: no definitions follow
		} else {
			packets[0] = append(ok, 1)
		}
	}
	if !c.noMetadata {
		packets = append(packets, columnDef41(expr))
		if c.caps&capDeprecateEOF == 0 {
			packets = append(packets, eofPacket(statusAutocommit))
		}
	}
	for _, p := range packets {
		if err := c.pc.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

// reset answers COM_STMT_RESET: OK for a known statement, ERR 1243 otherwise, as MySQL.
func (c *session) reset(args []byte) error {
	if len(args) < 4 {
		return fmt.Errorf("%w: short statement command", errMalformed)
	}
	id := binary.LittleEndian.Uint32(args)
	if _, ok := c.st.stmts[id]; !ok {
		return c.writeErr(codeUnknownStmtHandler, sqlStateGeneral,
			fmt.Sprintf("Unknown prepared statement handler (%d) given to mysqld_stmt_reset", id))
	}
	return c.writeOK(nil)
}

// execute reads COM_STMT_EXECUTE: statement id, flags, iteration count, and with
// CLIENT_QUERY_ATTRIBUTES and PARAMETER_COUNT_AVAILABLE the attributes sent as
// parameters beyond the statement's (none here): count, NULL bitmap, bound flag,
// types with names, values.
func (c *session) execute(p []byte) error {
	malformed := func() error {
		return c.pc.writePacket(errPacket(codeMalformed, sqlStateConnection, "Malformed communication packet"))
	}
	if len(p) < 4 {
		return malformed()
	}
	id := binary.LittleEndian.Uint32(p)
	stmt, ok := c.st.stmts[id]
	if !ok {
		return c.writeErr(codeUnknownStmtHandler, sqlStateGeneral,
			fmt.Sprintf("Unknown prepared statement handler (%d) given to mysqld_stmt_execute", id))
	}
	expr, isSelect := selectExpr(stmt.text)
	if !isSelect {
		return c.writeOK(nil)
	}
	if len(p) < 9 {
		return malformed()
	}
	flags := p[4]
	c.attrs = nil
	if c.caps&capQueryAttributes != 0 && flags&paramCountAvailable != 0 {
		// The attribute block has the layout of COM_QUERY's after its set count.
		r := &reader{b: p[9:]}
		count, ok := r.lenEncInt()
		if !ok {
			return malformed()
		}
		block := appendLenEncInt(nil, count)
		block = append(block, 1) // parameter set count, as COM_QUERY carries it
		block = append(block, r.b...)
		if _, err := c.readQueryAttributes(block); err != nil {
			return malformed()
		}
	}
	value, isNull := c.evaluate(expr)
	cc := appendLenEncInt(nil, 1)
	packets := [][]byte{cc}
	switch {
	case c.caps&capOptionalMetadata == 0:
		packets = append(packets, columnDef41(expr))
	case c.noMetadata:
		packets[0] = append(cc, 0)
	default:
		packets[0] = append(cc, 1)
		packets = append(packets, columnDef41(expr))
	}
	if c.caps&capDeprecateEOF == 0 {
		packets = append(packets, eofPacket(statusAutocommit))
	}
	// Binary row: header, NULL bitmap (offset 2), values.
	row := []byte{0, 0}
	if isNull {
		row[1] = 1 << 2
	} else {
		row = appendLenEncString(row, value)
	}
	packets = append(packets, row)
	if c.caps&capDeprecateEOF != 0 {
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
