package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// serve is the command loop: read a command from the client, forward it,
// forward the response, repeat.
func (s *Session) serve() error {
	for {
		if !s.client.Buffered() {
			// About to wait on the client: send what is pending and give
			// the buffers back while idle.
			if err := s.backend.Flush(); err != nil {
				s.reportBackendLost(err)
				return err
			}
			s.client.Release()
			s.backend.Release()
			if !s.enterIdle() {
				s.sendCloseError()
				return nil
			}
		}
		pk, err := s.client.Next()
		if draining := s.leaveIdle(); err != nil {
			var ne net.Error
			if draining && errors.As(err, &ne) && ne.Timeout() {
				s.sendCloseError()
				return nil // woken up by RequestClose or CloseWithError
			}
			return err
		}
		s.beginCommand(pk)
		if err := s.dispatch(pk); err != nil {
			if err == errClientQuit {
				return nil
			}
			return err
		}
		s.endCommand()
		s.publishInfo()
	}
}

// errClientQuit ends the command loop after COM_QUIT.
var errClientQuit = errors.New("client quit")

// dispatch forwards one command and its response.
func (s *Session) dispatch(pk mysql.Packet) error {
	if pk.Len == 0 {
		_ = s.client.DiscardCurrent()
		return s.replyError(mysql.NewError(mysql.ErUnknownCom, "Malformed communication packet"))
	}
	cmd := pk.First()
	s.backend.ResetSequence()
	switch cmd {
	case mysql.ComQuit:
		// Passed on so the backend logs a clean quit, not an aborted
		// connection; then both sides close.
		_ = s.client.ForwardCurrent(s.backend)
		_ = s.backend.Flush()
		return errClientQuit
	case mysql.ComStmtClose:
		if len(pk.Data) >= 5 {
			s.state.closeStmt(binary.LittleEndian.Uint32(pk.Data[1:]))
		}
		return s.forwardRequest()
	case mysql.ComStmtSendLongData:
		if st := s.stmtOf(pk); st != nil {
			st.longData = true
		}
		return s.forwardRequest()
	case mysql.ComChangeUser:
		return s.changeUser(pk)
	case mysql.ComQuery, mysql.ComStmtExecute, mysql.ComProcessInfo:
		var st *stmtState
		var cursor bool
		if cmd == mysql.ComStmtExecute && len(pk.Data) >= 6 {
			st = s.stmtOf(pk)
			cursor = pk.Data[5]&0x07 != 0
		}
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		if st != nil {
			st.longData = false
		}
		status, err := s.forwardResults(cmd)
		if st != nil && err == nil {
			s.state.setCursor(st, cursor && status&mysql.ServerStatusCursorExists != 0)
		}
		return err
	case mysql.ComStmtFetch:
		st := s.stmtOf(pk)
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		status, err := s.forwardRows()
		if st != nil && err == nil && status&mysql.ServerStatusLastRowSent != 0 {
			s.state.setCursor(st, false)
		}
		return err
	case mysql.ComStmtPrepare:
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		return s.forwardPrepare()
	case mysql.ComFieldList:
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		_, err := s.forwardRows()
		return err
	case mysql.ComInitDB:
		db := string(pk.Data[1:])
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		ok, err := s.forwardSimple()
		if ok {
			s.state.db = db
		}
		return err
	case mysql.ComStmtReset:
		st := s.stmtOf(pk)
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		ok, err := s.forwardSimple()
		if ok && st != nil {
			s.state.setCursor(st, false)
			st.longData = false
		}
		return err
	case mysql.ComResetConnection:
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		ok, err := s.forwardSimple()
		if ok {
			s.state.resetSession()
		}
		return err
	case mysql.ComSetOption:
		var on bool
		if len(pk.Data) >= 3 {
			on = binary.LittleEndian.Uint16(pk.Data[1:]) == 0
		}
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		ok, err := s.forwardSimple()
		if ok {
			s.state.multiStatements = on
		}
		return err
	case mysql.ComPing, mysql.ComRefresh, mysql.ComProcessKill, mysql.ComCreateDB, mysql.ComDropDB,
		mysql.ComDebug, mysql.ComStatistics, mysql.ComShutdown:
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		_, err := s.forwardSimple()
		return err
	default:
		// Replication and obsolete commands either stream without end or
		// have no defined response; refusing them is safer than guessing.
		if err := s.client.DiscardCurrent(); err != nil {
			return err
		}
		s.lg.Debug("unsupported command", zap.Uint8("command", cmd))
		return s.replyError(mysql.NewError(mysql.ErUnknownCom,
			"Switchyard: command 0x%02x is not supported through the proxy", cmd))
	}
}

// stmtOf returns the prepared statement a COM_STMT_* packet names, or nil.
func (s *Session) stmtOf(pk mysql.Packet) *stmtState {
	if len(pk.Data) < 5 {
		return nil
	}
	return s.state.prepared[binary.LittleEndian.Uint32(pk.Data[1:])]
}

// replyError answers the current command with an error from the proxy.
func (s *Session) replyError(e *mysql.MySQLError) error {
	return s.client.WriteError(e)
}

// forwardRequest forwards the client packet announced by Next to the
// backend without flushing: commands without a response may be batched
// with the next one.
func (s *Session) forwardRequest() error {
	if err := s.client.ForwardCurrent(s.backend); err != nil {
		return fmt.Errorf("forwarding request: %w", err)
	}
	return nil
}

func (s *Session) forwardRequestAndFlush() error {
	if err := s.forwardRequest(); err != nil {
		return err
	}
	if err := s.backend.Flush(); err != nil {
		s.reportBackendLost(err)
		return fmt.Errorf("%w: writing: %w", errBackendLost, err)
	}
	return nil
}
