package backend

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// A server closes a connection that stays idle too long (wait_timeout), or
// when it is killed or shuts down. A client connected directly sees the
// close before its next command: drivers check an idle connection for it
// and open a new one (go-sql-driver's connection check, Connector/J's
// validation), instead of failing the command. Through the proxy the client
// socket stays open, so the proxy passes the close on: a session idle for
// idleWatchAfter starts watching its backend connection, and closes the
// client connection as soon as the backend's closes. Busy sessions pay only
// a read deadline per command; the watcher goroutine lives only while the
// session is idle and is stopped before the session touches the backend
// again.

// idleWatchAfter is how long a session waits for a command before it
// watches its backend connection.
const idleWatchAfter = time.Second

// idleWatch is a running backend watcher.
type idleWatch struct {
	done chan struct{}
	// gone is set (before done is closed) when the backend closed.
	gone bool
}

// nextCommand waits for the client's next command, watching the backend
// while the session is idle.
func (s *Session) nextCommand() (mysql.Packet, error) {
	var w *idleWatch
	defer func() {
		if w != nil {
			s.stopWatch(w)
		}
	}()
	timed := false
	if !s.client.Buffered() && s.backend != nil {
		// Under mu: a drain's wake-up (a deadline in the past) must not be
		// replaced by this one.
		s.mu.Lock()
		if !s.draining {
			_ = s.client.SetReadDeadline(time.Now().Add(idleWatchAfter))
			timed = true
		}
		s.mu.Unlock()
	}
	for {
		pk, err := s.client.Next()
		var ne net.Error
		if err == nil || !timed || w != nil || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			if err == nil && timed && w == nil {
				// The rest of a long command may take longer to arrive.
				_ = s.client.SetReadDeadline(time.Time{})
			}
			return pk, err
		}
		// Idle for a while (or woken by a drain): end if the session
		// should end now (enterIdle says so: draining outside a
		// transaction, or closed with an error; the caller then ends it),
		// else watch the backend and wait without a deadline. A draining
		// session inside a transaction keeps waiting for its end.
		s.leaveIdle()
		_ = s.client.SetReadDeadline(time.Time{})
		if !s.enterIdle() {
			return pk, err
		}
		w = s.startWatch()
	}
}

// startWatch starts a goroutine that reads the backend connection: while
// the session is idle the backend has nothing to say, so any byte, EOF or
// error means it is going away.
func (s *Session) startWatch() *idleWatch {
	w := &idleWatch{done: make(chan struct{})}
	raw := s.backend.RawConn()
	go func() {
		defer close(w.done)
		var b [1]byte
		_, err := raw.Read(b[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return // stopWatch: the session has a command to serve
		}
		w.gone = true
		s.lg.Info("backend closed the idle connection; closing the client's", zap.Error(err))
		// What the client would see connected directly: its connection
		// closed. Close (not CloseWithError): an ERR packet sent now
		// would be read as the answer to the client's next command.
		s.Close()
	}()
	return w
}

// stopWatch ends the watcher and waits for it; the backend connection is
// then the session's alone again.
func (s *Session) stopWatch(w *idleWatch) {
	raw := s.backend.RawConn()
	_ = raw.SetReadDeadline(time.Now())
	<-w.done
	_ = raw.SetReadDeadline(time.Time{})
}
