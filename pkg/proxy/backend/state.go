package backend

import (
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// state is the session state the proxy learns from the traffic it forwards.
// Only the session goroutine touches it.
type state struct {
	user  string
	db    string
	inTxn bool
	// noAutocommit is set while the server reports autocommit off (the
	// zero value is the server default, on).
	noAutocommit bool
	// multiStatements follows COM_SET_OPTION.
	multiStatements bool
	// prepared is nil until the session's first prepared statement.
	prepared map[uint32]*stmtState
	// openCursors counts the prepared statements with cursorOpen set.
	openCursors int
}

type stmtState struct {
	params, columns uint16
	// cursorOpen is set while a cursor opened by COM_STMT_EXECUTE has rows
	// left to fetch; change it through state.setCursor.
	cursorOpen bool
	// longData is set between COM_STMT_SEND_LONG_DATA and the execute or
	// reset that consumes it.
	longData bool
	// text is the statement it was prepared from: kept to prepare it again
	// on another backend (sessions that can migrate) and to count its
	// executes under it (digests), nil when neither needs it.
	text []byte
	// types are the parameter types of its last execute that carried them;
	// typesSent says whether the current backend has seen them
	// (paramtypes.go).
	types     []byte
	typesSent bool
}

// setCursor records whether st has an open cursor, keeping the session's
// count in step so that reading it costs nothing per command.
func (st *state) setCursor(p *stmtState, open bool) {
	if p.cursorOpen == open {
		return
	}
	p.cursorOpen = open
	if open {
		st.openCursors++
	} else {
		st.openCursors--
	}
}

// closeStmt forgets a prepared statement (COM_STMT_CLOSE).
func (st *state) closeStmt(id uint32) {
	if p := st.prepared[id]; p != nil {
		st.setCursor(p, false)
		delete(st.prepared, id)
	}
}

// applyStatus records the transaction flag carried by an OK or EOF packet.
func (st *state) applyStatus(status uint16) {
	st.inTxn = status&mysql.ServerStatusInTrans != 0
	st.noAutocommit = status&mysql.ServerStatusAutocommit == 0
}

// resetSession is what COM_CHANGE_USER and COM_RESET_CONNECTION do on the
// server: prepared statements are gone and any transaction is rolled back.
func (st *state) resetSession() {
	st.inTxn = false
	clear(st.prepared)
	st.openCursors = 0
}
