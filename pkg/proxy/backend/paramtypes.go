package backend

// Clients such as libmysqlclient send a prepared statement's parameter types
// only with the first COM_STMT_EXECUTE after binding (new-params-bound flag
// 1) and leave them out later (flag 0): the server remembers them. A server
// that took the session over has never seen them, so the proxy keeps the
// last types each statement was executed with and puts them back into the
// first execute that lacks them after a move.

// executeLayout finds the new-params-bound flag of a COM_STMT_EXECUTE
// payload for a statement with params parameters: cmd(1) id(4) flags(1)
// iterations(4) null-bitmap((params+7)/8) flag(1) [types(2*params)].
func executeLayout(data []byte, params int) (flagPos int, ok bool) {
	if params == 0 {
		return 0, false
	}
	flagPos = 10 + (params+7)/8
	return flagPos, len(data) > flagPos
}

// noteParamTypes records the types an execute carries, and returns the
// payload to send instead when the types must be added (nil: forward as is).
func (st *stmtState) noteParamTypes(data []byte) []byte {
	flagPos, ok := executeLayout(data, int(st.params))
	if !ok {
		return nil
	}
	n := 2 * int(st.params)
	switch data[flagPos] {
	case 1:
		if len(data) >= flagPos+1+n {
			st.types = append(st.types[:0], data[flagPos+1:flagPos+1+n]...)
			st.typesSent = true
		}
		return nil
	case 0:
		if st.typesSent || len(st.types) != n {
			return nil
		}
		out := make([]byte, 0, len(data)+n)
		out = append(out, data[:flagPos]...)
		out = append(out, 1)
		out = append(out, st.types...)
		out = append(out, data[flagPos+1:]...)
		st.typesSent = true
		return out
	}
	return nil
}

// sendExecuteWithTypes replaces the client's execute (the current packet)
// with payload.
func (s *Session) sendExecuteWithTypes(payload []byte) error {
	if err := s.client.DiscardCurrent(); err != nil {
		return err
	}
	return s.sendBackend(payload)
}
