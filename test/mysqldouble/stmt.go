package mysqldouble

import (
	"encoding/binary"
	"strings"
)

// Prepared statements, just enough for query attributes on COM_STMT_EXECUTE: the
// double prepares "SELECT <expr>" without parameters and executes it like the text
// query, answering with a binary result set.

// paramCountAvailable is the COM_STMT_EXECUTE flag that announces a parameter count
// (CLIENT_QUERY_ATTRIBUTES).
const paramCountAvailable = 0x08

func (c *session) prepare(q string) error {
	q = strings.TrimSpace(q)
	if !hasPrefixFold(q, "SELECT ") || strings.Contains(q, "?") {
		return c.pc.writePacket(errPacket(codeUnknownCommand, sqlStateConnection, "the double prepares only SELECT <expr> without parameters"))
	}
	if c.stmts == nil {
		c.stmts = map[uint32]string{}
	}
	c.nextStmt++
	id := c.nextStmt
	c.stmts[id] = strings.TrimSpace(q[len("SELECT "):])
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
		packets = append(packets, columnDef41(c.stmts[id]))
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

// execute reads COM_STMT_EXECUTE: statement id, flags, iteration count, and with
// CLIENT_QUERY_ATTRIBUTES and PARAMETER_COUNT_AVAILABLE the attributes sent as
// parameters beyond the statement's (none here): count, NULL bitmap, bound flag,
// types with names, values.
func (c *session) execute(p []byte) error {
	malformed := func() error {
		return c.pc.writePacket(errPacket(codeMalformed, sqlStateConnection, "Malformed communication packet"))
	}
	if len(p) < 9 {
		return malformed()
	}
	expr, ok := c.stmts[binary.LittleEndian.Uint32(p)]
	if !ok {
		return c.pc.writePacket(errPacket(1243, "HY000", "Unknown prepared statement handler"))
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
