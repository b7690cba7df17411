package backend

import (
	"net"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// errCodeBackendLost is the server-range code a client gets when its backend
// died under it: ER_NET_READ_ERROR (SQLSTATE 08S01), what a server says when
// a connection breaks mid-read, never a 2xxx client code (libmariadb shows
// those as "malformed packet" when they arrive in an ERR packet).
const errCodeBackendLost = mysql.ErNetReadError

// backendLostError is the one clean error of a statement or transaction cut
// short by a dead backend.
func backendLostError(addr string, inTxn bool) *mysql.MySQLError {
	msg := "Switchyard: lost connection to backend " + addr + " during the statement; it may or may not have run"
	if inTxn {
		msg = "Switchyard: lost connection to backend " + addr + "; the open transaction was rolled back"
	}
	return &mysql.MySQLError{Code: errCodeBackendLost, State: "08S01", Message: msg}
}

// aliveCheckTimeout bounds the dial that tells a server that closed one
// session (still listening) from a server that died (refused).
const aliveCheckTimeout = time.Second

// onIdleBackendEnd runs on the idle watch's goroutine when the backend
// connection of an idle session became readable. The session goroutine is
// blocked reading its client and does not touch the backend until the watch
// is disarmed, which waits for this to return.
//
// A server that ends an idle session on purpose (wait_timeout, KILL, its own
// shutdown) closes the socket; MariaDB 10.11 sends nothing first (checked:
// EOF after KILL and shutdown, a reset after wait_timeout). The client is
// then closed as a direct connection would be, so that a pool's liveness
// check discards it; its server-side state is gone on purpose and is not
// re-established. A backend that died looks the same on the socket, so a
// session that could be re-established elsewhere (or is inside a
// transaction) first dials the backend: a server that still listens ended
// the session on purpose; one that does not is dead, and the session moves
// at its next command (failover), or, inside a transaction, answers its
// next statement with one clean error and ends.
//
// A connection already judged dead stays dead: the watch can run again on
// it (moveIdle re-arms it when a Redirect finds the backend dead), and by
// then a restarted server may listen at the address, which says nothing
// about this connection (the soak lost idle sessions that way).
func (s *Session) onIdleBackendEnd() {
	if s.backendDead {
		return
	}
	be := s.backend
	_ = be.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	data, err := be.ReadPacket(1 << 16)
	_ = be.SetReadDeadline(time.Time{})
	switch {
	case err == nil && len(data) > 0 && data[0] == mysql.ErrHeader:
		e := mysql.ParseErr(data)
		s.log(zap.InfoLevel, "backend ended the idle session; closing the client", zap.Uint16("code", e.Code), zap.String("message", e.Message))
		s.endIdleClient()
		return
	case err == nil:
		s.log(zap.WarnLevel, "backend sent an unsolicited packet to an idle session; closing the client")
		s.endIdleClient()
		return
	case isTimeout(err):
		// Interrupted (the client sent a command meanwhile) or a partial
		// packet: the connection is no longer trustworthy.
		s.backendDead = true
		return
	}
	why := s.canFailover()
	if (why == "" || s.state.inTxn) && !s.backendListening() {
		if why == "" {
			s.log(zap.WarnLevel, "backend died under an idle session; it moves at its next command", zap.Error(err))
			s.backendDead = true
			return
		}
		// Its transaction is lost: the next statement gets one clean error
		// saying so, then the connection closes.
		s.log(zap.WarnLevel, "backend died under an idle session inside a transaction", zap.Error(err))
		s.CloseWithError(backendLostError(s.lease.Addr(), true))
		return
	}
	s.log(zap.InfoLevel, "backend closed the idle session; closing the client", zap.Error(err))
	s.endIdleClient()
}

// endIdleClient closes the client of an idle session; its goroutine, blocked
// on the client (or resumed, when parked), then ends.
func (s *Session) endIdleClient() { s.closeClient() }

// backendListening reports whether the session's backend still serves:
// it accepts a connection and greets (or refuses with an ERR). A server
// being killed can still complete a TCP handshake from its backlog for a
// moment, then close without a word: that counts as dead. A server that
// accepts and stays silent (or waits for a PROXY header) counts as alive.
//
// When a backend dies, every idle session on it asks at once; one dial
// answers all the sessions that ask while it runs (aliveChecks).
func (s *Session) backendListening() bool {
	return aliveChecks.listening(s.lease.Addr(), s.cfg.BackendProxyProtocol)
}

// aliveChecks coalesces the alive checks of each backend address: in the
// soak, 125 idle sessions of one proxy noticed a backend's SIGKILL within
// the same second, and each dialed the dead address on its own.
var aliveChecks = aliveFlights{m: map[aliveKey]*aliveFlight{}}

type aliveKey struct {
	addr       string
	proxyProto bool
}

type aliveFlights struct {
	mu sync.Mutex
	m  map[aliveKey]*aliveFlight
}

// aliveFlight is one check in progress; alive is set before done closes.
type aliveFlight struct {
	done  chan struct{}
	alive bool
}

// listening runs dialAlive for addr, or waits for the one already running.
func (a *aliveFlights) listening(addr string, proxyProto bool) bool {
	k := aliveKey{addr, proxyProto}
	a.mu.Lock()
	if f := a.m[k]; f != nil {
		a.mu.Unlock()
		<-f.done
		return f.alive
	}
	f := &aliveFlight{done: make(chan struct{})}
	a.m[k] = f
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.m, k)
		a.mu.Unlock()
		close(f.done)
	}()
	f.alive = dialAlive(addr, proxyProto)
	return f.alive
}

// dialAlive is one alive check of addr (see backendListening).
func dialAlive(addr string, proxyProto bool) bool {
	c, err := net.DialTimeout("tcp", addr, aliveCheckTimeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if proxyProto {
		return true
	}
	_ = c.SetReadDeadline(time.Now().Add(aliveCheckTimeout))
	var b [1]byte
	n, err := c.Read(b[:])
	return n > 0 || isTimeout(err)
}
