package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// serve is the command loop: read a command from the client, forward it,
// forward the response, repeat. Between commands (the safe point) a pending
// migration runs; while idle, the backend is watched (idlewatch.go).
func (s *Session) serve(resumed bool) error {
	s.lockCmd()
	defer s.cmdMu.Unlock()
	s.serving = true
	if s.inflight == nil {
		s.inflight = new(inflight) // parking dropped it (park.go)
	}
	for {
		if !s.client.Buffered() && !resumed {
			// About to wait on the client: send what is pending and give
			// the buffers back while idle.
			if err := s.backend.Flush(); err != nil {
				s.backendDead = true
			}
			s.client.Release()
			s.backend.Release()
			if s.lp != nil && s.redirectPending() {
				s.offLoop() // the move dials
			}
			s.moveIfAsked()
			if !s.enterIdle() {
				s.sendCloseError()
				return nil
			}
		}
		pk, err := s.waitClient(resumed)
		resumed = false
		if err == errParked {
			return err // a wake resumes it (park.go)
		}
		if draining := s.leaveIdle(); err != nil {
			if draining && isTimeout(err) {
				s.sendCloseError()
				return nil // woken up by RequestClose or CloseWithError
			}
			return err
		}
		if s.backendDead && pk.First() != mysql.ComQuit {
			s.offLoop() // it dials
			if err := s.failover(pk); err != nil {
				return err
			}
		}
		s.beginCommand(pk)
		if err := s.dispatch(pk); err != nil {
			if err == errClientQuit {
				return nil
			}
			if !s.survivesBackendLoss(err) {
				return err
			}
		}
		s.endCommand()
		s.publishInfo()
	}
}

// waitClient reads the client's next command. While it waits, the session
// gives up cmdMu (so an idle migration can run) and watches its backend.
// When it has idled for parkAfter it parks (errParked, with the watch still
// armed); resumed, it goes on waiting from here.
func (s *Session) waitClient(resumed bool) (mysql.Packet, error) {
	if !resumed && s.client.Buffered() {
		return s.client.Next()
	}
	// Before the watch is armed: the watch reads the backend while idle.
	s.releaseBackend()
	switch {
	case resumed:
		// The watch is still armed from before the session parked.
	case s.backend.Buffered():
		// The backend sent something nobody asked for.
		s.backendDead = true
	case s.watch != nil:
		if s.cfg.BackendReadTimeout > 0 {
			// The last command's read deadline would end the watch early.
			_ = s.backend.SetReadDeadline(time.Time{})
		}
		s.watch.arm()
	}
	s.cmdMu.Unlock()
	pk, err := s.readClient()
	if err == errParked {
		s.lockCmd()
		return pk, err
	}
	s.lockCmd()
	if s.watch != nil {
		// When the backend ended meanwhile, onIdleBackendEnd has run: it
		// closed the client (the read above then failed) or marked the
		// backend dead. (On a loop, a running onIdleBackendEnd, which
		// may dial, is waited for off the loop.)
		if s.lp == nil || !s.watch.disarmUnlessRunning() {
			s.offLoop()
			s.watch.disarm()
		}
	}
	s.attachBackend()
	return pk, err
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
			s.mig.ids.requestToBackend(s.client, pk)
			s.mig.ids.remove(id)
		}
		return s.forwardRequest()
	case mysql.ComStmtSendLongData:
		if st := s.state.lookupStmt(pk.Data); st != nil {
			st.longData = true
		}
		s.mig.ids.requestToBackend(s.client, pk)
		err := s.forwardRequest()
		if errors.Is(err, mysql.ErrForwardWrite) {
			return s.longDataLost(err)
		}
		return err
	case mysql.ComChangeUser:
		s.offLoop() // it may dial
		return s.changeUser(pk)
	case mysql.ComStmtBulkExecute:
		return s.bulkExecute(pk)
	case mysql.ComProcessKill:
		s.offLoop() // it acts on other sessions and connections
		return s.processKill(pk)
	case mysql.ComQuery, mysql.ComStmtExecute, mysql.ComProcessInfo:
		if cmd == mysql.ComQuery {
			if handled, err := s.interceptQuery(pk); handled {
				return err
			}
		}
		var st *stmtState
		var cursor bool
		var withTypes []byte
		if cmd == mysql.ComStmtExecute {
			st, cursor = s.state.lookupStmt(pk.Data), executeWantsCursor(pk.Data)
			s.mig.ids.requestToBackend(s.client, pk)
			if st != nil && s.mig.on && pk.Complete {
				withTypes = st.noteParamTypes(pk.Data)
			}
		} else if cmd == mysql.ComQuery {
			s.observeStatement(pk)
			s.shadowBegin(pk)
		}
		if withTypes != nil {
			if err := s.sendExecuteWithTypes(withTypes); err != nil {
				return err
			}
		} else if err := s.forwardRequestAndFlush(); err != nil {
			s.shadowEnd(0, err)
			return err
		}
		if st != nil {
			st.longData = false
		}
		status, err := s.forwardResults(cmd)
		if err == nil {
			s.state.executed(st, cursor, status)
		}
		s.shadowEnd(status, err)
		return err
	case mysql.ComStmtFetch:
		st := s.state.lookupStmt(pk.Data)
		s.mig.ids.requestToBackend(s.client, pk)
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		status, err := s.forwardRows()
		if err == nil {
			s.state.fetched(st, status)
		}
		return err
	case mysql.ComStmtPrepare:
		if handled, err := s.interceptPrepare(pk); handled {
			return err
		}
		s.observeStatement(pk)
		var text []byte
		if s.mig.on && pk.Complete {
			text = append(text, pk.Data[1:]...)
		}
		if err := s.forwardRequestAndFlush(); err != nil {
			return err
		}
		return s.forwardPrepare(text)
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
		s.mig.ids.requestToBackend(s.client, pk)
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
		if ok && err == nil {
			s.state.resetSession()
			return s.afterReset()
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
	case mysql.ComPing, mysql.ComRefresh, mysql.ComCreateDB, mysql.ComDropDB,
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
		s.log(zap.DebugLevel, "unsupported command", zap.Uint8("command", cmd))
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

// forwardRequestAndFlush forwards the client's command and flushes it to
// the backend. Should the backend fail meanwhile, the command has been read
// whole from the client all the same, and the client hears of the loss in
// its reply's place.
func (s *Session) forwardRequestAndFlush() error {
	err := s.forwardRequest()
	switch {
	case err == nil:
		err = s.backend.Flush()
	case !errors.Is(err, mysql.ErrForwardWrite):
		return err // the client's
	}
	if err != nil {
		s.reportBackendLost(err)
		return fmt.Errorf("%w: writing: %w", errBackendLost, err)
	}
	return nil
}
