package backend

import (
	"encoding/binary"
	"testing"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// FuzzStmtCommands replays arbitrary COM_STMT_* packets (of any length, for
// any statement id, with any cursor flags) and arbitrary server replies
// against the session state, the way dispatch and forwardPrepare drive it.
// The proxy parses no parameters of COM_STMT_EXECUTE (the backend does), so
// what is fuzzed is what it does parse: ids and cursor flags, and the
// bookkeeping they drive. Invariants after every step: no panic on a short
// or lying packet, the open-cursor count equals the statements with an open
// cursor (so a session never looks busy, or idle, when it is not), a closed
// statement is gone, and an unknown id changes nothing.
func FuzzStmtCommands(f *testing.F) {
	exec := func(id uint32, flags byte) []byte {
		p := []byte{mysql.ComStmtExecute, 0, 0, 0, 0, flags, 1, 0, 0, 0}
		binary.LittleEndian.PutUint32(p[1:], id)
		return p
	}
	step := func(op byte, status uint16, pkt []byte) []byte {
		return append([]byte{op, byte(status), byte(status >> 8), byte(len(pkt))}, pkt...)
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cursor, last := uint16(mysql.ServerStatusCursorExists), uint16(mysql.ServerStatusLastRowSent)
	f.Add(cat(step(0, 0, []byte{1, 0, 0, 0}), step(1, cursor, exec(1, 1)), step(2, last, exec(1, 0)[:9])))
	f.Add(cat(step(0, 0, []byte{1, 0, 0, 0}), step(1, cursor, exec(1, 1)), step(0, 0, []byte{1, 0, 0, 0})))
	f.Add(cat(step(0, 0, []byte{7, 0, 0, 0}), step(1, cursor, exec(7, 1)), step(4, 0, exec(7, 0)[:5]), step(1, cursor, exec(7, 0))))
	f.Add(cat(step(0, 0, []byte{2, 0, 0, 0}), step(1, cursor, exec(2, 1)), step(3, 0, exec(2, 0)[:5]), step(6, 0, nil)))
	f.Add(cat(step(1, cursor, exec(9, 1)), step(2, last, []byte{mysql.ComStmtFetch}), step(5, 0, []byte{mysql.ComStmtSendLongData, 9})))
	f.Add(cat(step(1, cursor, exec(0, 1)[:6]), step(1, cursor, exec(0, 1)[:5]), step(1, cursor, nil)))

	f.Fuzz(func(t *testing.T, script []byte) {
		st := &state{}
		for n := 0; len(script) >= 4 && n < 64; n++ {
			op, status, size := script[0]%7, binary.LittleEndian.Uint16(script[1:]), int(script[3])
			script = script[4:]
			size = min(size, len(script))
			pkt := script[:size]
			script = script[size:]

			before := len(st.prepared)
			var known bool
			if id, ok := stmtID(pkt); ok {
				_, known = st.prepared[id]
			}
			switch op {
			case 0: // the backend answered COM_STMT_PREPARE with OK: pkt holds the id
				if len(pkt) < 4 {
					continue
				}
				id := binary.LittleEndian.Uint32(pkt)
				p := st.addStmt(id, status, status>>1)
				if st.prepared[id] != p || p.cursorOpen {
					t.Fatalf("prepare %d not recorded fresh", id)
				}
			case 1: // COM_STMT_EXECUTE answered with status
				p := st.lookupStmt(pkt)
				want := executeWantsCursor(pkt)
				st.executed(p, want, status)
				if p != nil && p.cursorOpen != (want && status&mysql.ServerStatusCursorExists != 0) {
					t.Fatalf("execute %x with status %#x: cursor %v", pkt, status, p.cursorOpen)
				}
			case 2: // COM_STMT_FETCH answered with status
				p := st.lookupStmt(pkt)
				wasOpen := p != nil && p.cursorOpen
				st.fetched(p, status)
				if p != nil && p.cursorOpen != (wasOpen && status&mysql.ServerStatusLastRowSent == 0) {
					t.Fatalf("fetch %x with status %#x: cursor %v", pkt, status, p.cursorOpen)
				}
			case 3: // COM_STMT_RESET answered with OK
				p := st.lookupStmt(pkt)
				st.stmtReset(p)
				if p != nil && (p.cursorOpen || p.longData) {
					t.Fatalf("reset %x left the statement busy", pkt)
				}
			case 4: // COM_STMT_CLOSE
				if id, ok := stmtID(pkt); ok {
					st.closeStmt(id)
					if _, still := st.prepared[id]; still {
						t.Fatalf("statement %d still prepared after close", id)
					}
					if known && len(st.prepared) != before-1 {
						t.Fatalf("close of %d removed %d statements", id, before-len(st.prepared))
					}
				}
			case 5: // COM_STMT_SEND_LONG_DATA
				if p := st.lookupStmt(pkt); p != nil {
					p.longData = true
				}
			case 6: // COM_RESET_CONNECTION or COM_CHANGE_USER succeeded
				st.resetSession()
				if len(st.prepared) != 0 {
					t.Fatalf("statements survive a session reset")
				}
			}
			if op != 0 && op != 4 && op != 6 && len(st.prepared) != before {
				t.Fatalf("op %d on %x changed the statement count", op, pkt)
			}
			open := 0
			for _, p := range st.prepared {
				if p.cursorOpen {
					open++
				}
			}
			if st.openCursors != open {
				t.Fatalf("after op %d on %x: openCursors %d, statements with an open cursor %d", op, pkt, st.openCursors, open)
			}
		}
	})
}
