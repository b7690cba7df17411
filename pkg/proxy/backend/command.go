package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

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
		var start time.Time
		var cmd byte
		if s.obs != nil && pk.Len > 0 {
			// Read before dispatch: forwarding reuses the packet's buffer.
			start, cmd = time.Now(), pk.First()
		}
		if err := s.dispatch(pk); err != nil {
			if err == errClientQuit {
				return nil
			}
			return err
		}
		if !start.IsZero() {
			s.obs.Observe(cmd, time.Since(start))
		}
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
	s.armBackendRead()
	switch cmd {
	case mysql.ComQuit:
		// Passed on so the backend logs a clean quit, not an aborted
		// connection; then both sides close.
		_ = s.client.ForwardCurrent(s.backend)
		_ = s.backend.Flush()
		return errClientQuit
	case mysql.ComStmtClose:
		if id, ok := stmtID(pk.Data); ok {
			s.state.closeStmt(id)
		}
		return s.forwardRequest()
	case mysql.ComStmtSendLongData:
		if st := s.state.lookupStmt(pk.Data); st != nil {
			st.longData = true
		}
		return s.forwardRequest()
	case mysql.ComChangeUser:
		return s.changeUser(pk)
	case mysql.ComQuery, mysql.ComStmtExecute, mysql.ComProcessInfo:
		var st *stmtState
		var cursor bool
		if cmd == mysql.ComStmtExecute {
			st, cursor = s.state.lookupStmt(pk.Data), executeWantsCursor(pk.Data)
		}
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		if st != nil {
			st.longData = false
		}
		status, err := s.forwardResults(cmd)
		if err == nil {
			s.state.executed(st, cursor, status)
		}
		return err
	case mysql.ComStmtFetch:
		st := s.state.lookupStmt(pk.Data)
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		status, err := s.forwardRows()
		if err == nil {
			s.state.fetched(st, status)
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
		st := s.state.lookupStmt(pk.Data)
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		ok, err := s.forwardSimple()
		if ok {
			s.state.stmtReset(st)
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
