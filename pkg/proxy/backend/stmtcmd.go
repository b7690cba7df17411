package backend

import (
	"encoding/binary"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// The proxy does not decode the parameters of COM_STMT_EXECUTE: it forwards
// the packet as it came, and the backend, which knows the statement's
// parameter count and types, checks them and answers ERR for a wrong count or
// a malformed value. What the proxy reads of the COM_STMT_* commands is only
// what its session state needs: the statement id (bytes 1..4) and, for
// COM_STMT_EXECUTE, whether a cursor is asked for (byte 5). These helpers are
// that parsing and the bookkeeping it drives, kept apart from the command
// loop so that they can be fuzzed on their own.

// stmtID reads the statement id of a COM_STMT_* packet (data starts with the
// command byte); ok is false when the packet is too short to hold one.
func stmtID(data []byte) (id uint32, ok bool) {
	if len(data) < 5 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(data[1:]), true
}

// executeWantsCursor reports whether a COM_STMT_EXECUTE asks for a cursor
// (any of the CURSOR_TYPE_* flags in byte 5). A packet too short to hold the
// flags asks for none; the backend will refuse it anyway.
func executeWantsCursor(data []byte) bool {
	return len(data) >= 6 && data[5]&0x07 != 0
}

// lookupStmt returns the prepared statement a COM_STMT_* packet names, or nil
// for a short packet or an id the proxy never saw prepared.
func (st *state) lookupStmt(data []byte) *stmtState {
	id, ok := stmtID(data)
	if !ok {
		return nil
	}
	return st.prepared[id]
}

// executed records the end of a COM_STMT_EXECUTE of p (nil: unknown
// statement) that asked for a cursor or not and ended with status (only
// called when the response was forwarded without error).
func (st *state) executed(p *stmtState, wantCursor bool, status uint16) {
	if p == nil {
		return
	}
	p.longData = false
	st.setCursor(p, wantCursor && status&mysql.ServerStatusCursorExists != 0)
}

// fetched records the end of a COM_STMT_FETCH of p: the cursor is closed once
// the server says the last row was sent.
func (st *state) fetched(p *stmtState, status uint16) {
	if p != nil && status&mysql.ServerStatusLastRowSent != 0 {
		st.setCursor(p, false)
	}
}

// stmtReset records a successful COM_STMT_RESET of p.
func (st *state) stmtReset(p *stmtState) {
	if p != nil {
		st.setCursor(p, false)
		p.longData = false
	}
}

// addStmt records a statement the backend prepared. An id the session
// already holds replaces the old statement, whose cursor (if any) no longer
// counts: a backend that reuses an id has forgotten the old statement.
func (st *state) addStmt(id uint32, params, columns uint16) *stmtState {
	st.closeStmt(id)
	p := &stmtState{params: params, columns: columns}
	if st.prepared == nil {
		// Made at the first statement: most sessions never prepare one,
		// and an idle session's map would be memory it holds for nothing.
		st.prepared = map[uint32]*stmtState{}
	}
	st.prepared[id] = p
	return p
}
