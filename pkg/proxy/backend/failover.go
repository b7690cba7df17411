package backend

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// failoverAttempts bounds how many other backends a failover tries.
const failoverAttempts = 3

// failover re-establishes a session whose backend died, before the command
// pk (read, not yet forwarded) runs: on another backend of the same
// cluster, with the same login and replayed state. The command then runs
// there and the client never sees the failure. When the session cannot be
// re-established, the command gets one clean error and the session ends.
func (s *Session) failover(pk mysql.Packet) error {
	start := time.Now()
	old := s.lease
	why := s.canFailover()
	if why == "" {
		to, err := s.reestablish()
		result := MigrationOK
		if err != nil {
			result, why = MigrationFailed, err.Error()
		}
		if err == nil {
			s.publishInfo() // before the report, as after a migration (moveIfAsked)
		}
		s.report(old.Addr(), to, "failover", result, err, start)
		if err == nil {
			s.log(zap.InfoLevel, "backend was lost; session re-established", zap.String("from", old.Addr()), zap.String("to", to))
			return nil
		}
	}
	_ = s.client.DiscardCurrent()
	e := backendLostError(old.Addr(), s.state.inTxn)
	e.Message = fmt.Sprintf("Switchyard: lost connection to backend %s and the session cannot be re-established: %s", old.Addr(), why)
	_ = s.client.WriteError(e)
	return fmt.Errorf("%w: failover: %s", errSessionEnded, why)
}

// reestablish routes the session again within its cluster (never to the
// dead backend) and takes it over there. It returns the new address.
func (s *Session) reestablish() (string, error) {
	old := s.lease
	exclude := []string{old.ID()}
	var lastErr error
	for i := 0; i < failoverAttempts; i++ {
		lease, err := s.router.Route(s.ci, exclude)
		if err != nil {
			if lastErr != nil {
				return "", fmt.Errorf("%v (last error: %v)", err, lastErr)
			}
			return "", err
		}
		if lease.Cluster() != old.Cluster() {
			// The routing rules changed since login: a session never
			// moves to another cluster.
			lease.Release()
			return "", fmt.Errorf("routing now picks cluster %s; a session stays in cluster %s", lease.Cluster(), old.Cluster())
		}
		exclude = append(exclude, lease.ID())
		to := lease.Addr()
		if err := s.takeOver(s.transfer(), lease, nil); err != nil {
			lastErr = err
			if errors.Is(err, errRefused) {
				return "", err
			}
			continue
		}
		return to, nil
	}
	return "", lastErr
}

// survivesBackendLoss decides, after a command failed because the backend
// connection broke, whether the session goes on: outside a transaction and
// re-establishable, the failed statement got its one clean error
// (reportBackendLost) and the next command runs on another backend.
func (s *Session) survivesBackendLoss(err error) bool {
	if !errors.Is(err, errBackendLost) || !s.goesOnElsewhere() {
		return false
	}
	s.backendDead = true
	return true
}

// goesOnElsewhere reports whether the session, serving and not closed,
// can lose its backend and go on on another: outside a transaction, and
// re-establishable.
func (s *Session) goesOnElsewhere() bool {
	return s.serving && !s.closed.Load() && !s.state.inTxn && s.canFailover() == ""
}

// reportBackendLost tells the client that the backend went away during its
// command, with one clean server-range error. When the session ends with
// it, the error is its last word (sayLast).
func (s *Session) reportBackendLost(err error) {
	name := "backend"
	if s.lease != nil {
		name = s.lease.Addr()
	}
	e := backendLostError(name, s.state.inTxn)
	if errors.Is(err, errBackendReadTimeout) {
		e.Message += fmt.Sprintf(" (no answer within proxy.backend-read-timeout, %v)", s.cfg.BackendReadTimeout)
	}
	goesOn := s.goesOnElsewhere()
	if !s.serving {
		e.Message = "Switchyard: lost connection to backend " + name + " during login"
	} else if goesOn {
		e.Message += "; the session goes on on another backend"
	}
	s.log(zap.DebugLevel, "backend connection lost", zap.Error(err))
	if goesOn {
		_ = s.client.WriteError(e)
		return
	}
	s.sayLast(e)
}

// longDataLost ends a session whose backend was lost while a
// COM_STMT_SEND_LONG_DATA was forwarded to it (one larger than the buffer,
// which is streamed; a smaller one goes with the next command, whose reply
// reports a loss). The command has no reply to carry the error, and the
// statement's long data went with the backend, so the session cannot go
// on elsewhere: an EXECUTE there would run without it. The client reads the
// error as the answer to its next command, then the connection closes.
func (s *Session) longDataLost(err error) error {
	e := backendLostError(s.lease.Addr(), s.state.inTxn)
	e.Message = "Switchyard: lost connection to backend " + s.lease.Addr() +
		" while forwarding COM_STMT_SEND_LONG_DATA: the statement's long data was lost with it, and the session ends"
	if s.state.inTxn {
		e.Message += "; the open transaction was rolled back"
	}
	s.log(zap.DebugLevel, "backend connection lost during COM_STMT_SEND_LONG_DATA", zap.Error(err))
	s.sayLast(e)
	return fmt.Errorf("%w: long data lost with the backend: %w", errSessionEnded, err)
}

// sayLast writes e, the last thing the client hears, and ends the
// connection's writing side in the same TCP segment: the socket is corked
// while the error is written, and the shutdown puts the FIN on it. A driver
// that pooled the connection after the error (go-sql-driver keeps one whose
// COMMIT failed with a server error) checks it for a close before its next
// command; with the FIN a moment behind the error, that check sometimes
// came first, and the next BEGIN met a reset.
func (s *Session) sayLast(e *mysql.MySQLError) {
	raw := s.client.RawConn()
	cw, ok := raw.(interface{ CloseWrite() error })
	if !ok || s.client.IsTLS() {
		_ = s.client.WriteError(e) // TLS ends with its own close alert
		return
	}
	cork(raw)
	_ = s.client.WriteError(e)
	_ = cw.CloseWrite()
}
