package backend

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// next reads the next response packet from the backend, reporting a lost
// backend to the client.
func (s *Session) next() (mysql.Packet, error) {
	s.armBackendRead()
	pk, err := s.backend.Next()
	if err != nil {
		err = s.explainBackendRead(err)
		s.reportBackendLost(err)
		return pk, fmt.Errorf("%w: reading: %w", errBackendLost, err)
	}
	return pk, nil
}

// forward sends the current backend packet to the client, flushing when the
// backend has nothing more buffered (so the client is never kept waiting
// while the proxy blocks on the backend).
func (s *Session) forward() error {
	if err := s.backend.ForwardCurrent(s.client); err != nil {
		if errors.Is(err, mysql.ErrForwardWrite) {
			return fmt.Errorf("forwarding response to the client: %w", err)
		}
		s.reportBackendLost(err)
		return fmt.Errorf("%w: forwarding response: %w", errBackendLost, err)
	}
	if !s.backend.Buffered() {
		return s.client.Flush()
	}
	return nil
}

// forwardResults forwards the response to COM_QUERY or COM_STMT_EXECUTE:
// OK, ERR, LOCAL INFILE requests, or result sets, repeated while the server
// says more results follow. It returns the last status flags.
func (s *Session) forwardResults(cmd byte) (uint16, error) {
	for {
		pk, err := s.nextReply()
		if err != nil {
			return 0, err
		}
		switch {
		case pk.First() == mysql.OKHeader && pk.Complete:
			status, err := s.forwardOK(pk)
			if err != nil || status&mysql.ServerMoreResultsExists == 0 {
				return status, err
			}
		case pk.First() == mysql.ErrHeader:
			s.noteError(pk)
			return 0, s.finish()
		case pk.First() == mysql.LocalInfileHeader && cmd == mysql.ComQuery:
			if err := s.forward(); err != nil {
				return 0, err
			}
			if err := s.client.Flush(); err != nil {
				return 0, err
			}
			if err := s.relayLocalInfile(); err != nil {
				return 0, err
			}
		default:
			status, err := s.forwardResultSet(pk)
			if err != nil || status&mysql.ServerMoreResultsExists == 0 {
				return status, err
			}
		}
	}
}

// forwardResultSet forwards a result set whose column-count packet is pk.
func (s *Session) forwardResultSet(pk mysql.Packet) (uint16, error) {
	cols, ok := s.columnsFollowing(pk)
	if !ok {
		return 0, s.protocolError("bad column count")
	}
	if err := s.forward(); err != nil {
		return 0, err
	}
	for i := uint64(0); i < cols; i++ {
		if _, err := s.next(); err != nil {
			return 0, err
		}
		if err := s.forward(); err != nil {
			return 0, err
		}
	}
	if s.backendCap&mysql.ClientDeprecateEOF == 0 {
		pk, err := s.next()
		if err != nil {
			return 0, err
		}
		status, err := s.forwardTerminator(pk)
		if err != nil {
			return 0, err
		}
		if status&mysql.ServerStatusCursorExists != 0 {
			// A cursor was opened: rows come with COM_STMT_FETCH.
			return status, s.client.Flush()
		}
	}
	return s.forwardRows()
}

// forwardRows forwards rows (or column definitions) until the terminating
// EOF/OK or an ERR.
func (s *Session) forwardRows() (uint16, error) {
	for {
		// Fast path: copy every complete row already buffered in one go.
		n, err := s.backend.ForwardRunEach(s.client, s.shadowRows())
		s.noteRows(n)
		if err != nil {
			return 0, fmt.Errorf("writing rows to the client: %w", err)
		}
		if !s.backend.Buffered() {
			if err := s.client.Flush(); err != nil {
				return 0, err
			}
		}
		pk, err := s.next()
		if err != nil {
			return 0, err
		}
		if mysql.IsEOFPacket(pk) {
			status, err := s.forwardTerminator(pk)
			if err != nil {
				return 0, err
			}
			return status, s.client.Flush()
		}
		if pk.First() == mysql.ErrHeader && pk.Complete {
			s.noteError(pk)
			return 0, s.finish()
		}
		s.noteRows(1)
		s.shadowRow(pk)
		if err := s.forward(); err != nil {
			return 0, err
		}
	}
}

// forwardTerminator forwards the EOF (or 0xfe OK) packet that ends a list of
// columns or rows and returns its status flags.
func (s *Session) forwardTerminator(pk mysql.Packet) (uint16, error) {
	if s.backendCap&mysql.ClientDeprecateEOF != 0 {
		return s.forwardOK(pk)
	}
	status, err := mysql.ParseEOFStatus(pk.Data, false, false)
	if err != nil {
		return 0, s.protocolError(err.Error())
	}
	s.state.applyStatus(status)
	return status, s.forward()
}

// forwardOK forwards an OK packet, recording the state it carries and
// removing session-tracking data the client did not ask for.
func (s *Session) forwardOK(pk mysql.Packet) (uint16, error) {
	ok, err := mysql.ParseOK(pk.Data, s.backendCap&mysql.ClientSessionTrack != 0)
	if err != nil {
		return 0, s.protocolError(err.Error())
	}
	s.trackOK(ok)
	s.noteAffected(ok.AffectedRows)
	if s.backendCap&mysql.ClientSessionTrack == s.clientCap&mysql.ClientSessionTrack {
		return ok.Status, s.forward()
	}
	if err := s.writeOKToClient(pk.Data, ok); err != nil {
		return 0, err
	}
	if err := s.backend.DiscardCurrent(); err != nil {
		return 0, err
	}
	if !s.backend.Buffered() {
		return ok.Status, s.client.Flush()
	}
	return ok.Status, nil
}

// writeOKToClient writes an OK packet in the client's format (it may not
// have negotiated session tracking, which the backend side always uses).
func (s *Session) writeOKToClient(raw []byte, ok mysql.OKInfo) error {
	if s.backendCap&mysql.ClientSessionTrack == s.clientCap&mysql.ClientSessionTrack {
		return s.client.WritePacket(raw)
	}
	var buf [128]byte
	return s.client.WritePacket(mysql.AppendOK(buf[:0], raw[0], ok, s.clientCap&mysql.ClientSessionTrack != 0))
}

// trackOK records the transaction flag and schema changes of an OK packet.
func (s *Session) trackOK(ok mysql.OKInfo) {
	s.state.applyStatus(ok.Status)
	if len(ok.SessionState) > 0 {
		if db, found := mysql.SessionSchema(ok.SessionState); found {
			s.state.db = db
		}
		if s.mig.on {
			mysql.SessionSysvars(ok.SessionState, s.mig.rec.track.setSysvar)
		}
	}
}

// finish forwards the current packet (an ERR) and flushes.
func (s *Session) finish() error {
	if err := s.forward(); err != nil {
		return err
	}
	return s.client.Flush()
}

// forwardSimple forwards a single-packet response. It reports whether the
// command succeeded (an OK, or for COM_SET_OPTION an EOF).
func (s *Session) forwardSimple() (bool, error) {
	pk, err := s.nextReply()
	if err != nil {
		return false, err
	}
	switch {
	case pk.First() == mysql.OKHeader && pk.Complete:
		_, err := s.forwardOK(pk)
		return err == nil, err
	case pk.First() == mysql.ErrHeader:
		return false, s.finish()
	case mysql.IsEOFPacket(pk):
		return true, s.finish()
	default:
		// COM_STATISTICS answers with a bare string.
		return true, s.finish()
	}
}

// forwardPrepare forwards the response to COM_STMT_PREPARE and records the
// statement.
func (s *Session) forwardPrepare(text []byte) error {
	pk, err := s.next()
	if err != nil {
		return err
	}
	if pk.First() != mysql.OKHeader || len(pk.Data) < 9 {
		return s.finish()
	}
	id := s.mig.ids.prepareToClient(s.backend, binary.LittleEndian.Uint32(pk.Data[1:]))
	st := s.state.addStmt(id, binary.LittleEndian.Uint16(pk.Data[7:]), binary.LittleEndian.Uint16(pk.Data[5:]))
	st.text = text
	if s.mig.on && text == nil {
		s.mig.rec.track.unseen = "prepared a statement too large to prepare again elsewhere"
	}
	// The digests count executes under the text they were prepared from.
	if noted := s.notePrepared(id); st.text == nil {
		st.text = noted
	}
	defs := []uint16{st.params, st.columns}
	if !s.prepareMetadataFollows(pk.Data) {
		defs = nil
	}
	if err := s.forward(); err != nil {
		return err
	}
	for _, n := range defs {
		if n == 0 {
			continue
		}
		packets := int(n)
		if s.backendCap&mysql.ClientDeprecateEOF == 0 {
			packets++
		}
		for i := 0; i < packets; i++ {
			if _, err := s.next(); err != nil {
				return err
			}
			if err := s.forward(); err != nil {
				return err
			}
		}
	}
	return s.client.Flush()
}

// relayLocalInfile forwards the file the client sends for LOAD DATA LOCAL
// INFILE, up to and including the empty packet that ends it. Should the
// backend fail meanwhile, the rest of the file is read and dropped, as a
// server does after an error, and the client hears of the loss once it has
// sent all: in step, so that the session can go on.
func (s *Session) relayLocalInfile() error {
	var lost error
	for {
		pk, err := s.client.Next()
		if err != nil {
			return fmt.Errorf("reading LOCAL INFILE data from client: %w", err)
		}
		if lost != nil {
			err = s.client.DiscardCurrent()
		} else if err = s.client.ForwardCurrent(s.backend); errors.Is(err, mysql.ErrForwardWrite) {
			lost, err = err, nil
		}
		if err != nil {
			return fmt.Errorf("reading LOCAL INFILE data from client: %w", err)
		}
		if lost == nil && (pk.Len == 0 || !s.client.Buffered()) {
			lost = s.backend.Flush()
		}
		if pk.Len == 0 {
			if lost != nil {
				s.reportBackendLost(lost)
				return fmt.Errorf("%w: forwarding LOCAL INFILE data: %w", errBackendLost, lost)
			}
			return nil
		}
	}
}
