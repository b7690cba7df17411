package backend

import (
	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
)

// state is the session state the proxy learns from the traffic it forwards.
// Only the session goroutine touches it.
type state struct {
	user  string
	db    string
	inTxn bool
	// multiStatements follows COM_SET_OPTION.
	multiStatements bool
	prepared        map[uint32]*stmtState
}

type stmtState struct {
	params, columns uint16
	// cursorOpen is set while a cursor opened by COM_STMT_EXECUTE has rows
	// left to fetch.
	cursorOpen bool
	// longData is set between COM_STMT_SEND_LONG_DATA and the execute or
	// reset that consumes it.
	longData bool
}

// openCursors counts prepared statements with an open cursor.
func (st *state) openCursors() int {
	n := 0
	for _, p := range st.prepared {
		if p.cursorOpen {
			n++
		}
	}
	return n
}

// atBoundary reports whether the session could be closed or moved without
// losing anything: no transaction, no open cursor and no pending long data.
func (st *state) atBoundary() bool {
	if st.inTxn {
		return false
	}
	for _, p := range st.prepared {
		if p.cursorOpen || p.longData {
			return false
		}
	}
	return true
}

// applyStatus records the transaction flag carried by an OK or EOF packet.
func (st *state) applyStatus(status uint16) {
	st.inTxn = status&pnet.ServerStatusInTrans != 0
}

// resetSession is what COM_CHANGE_USER and COM_RESET_CONNECTION do on the
// server: prepared statements are gone and any transaction is rolled back.
func (st *state) resetSession() {
	st.inTxn = false
	clear(st.prepared)
}
