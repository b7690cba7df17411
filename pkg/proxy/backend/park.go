package backend

import (
	"errors"
	"net"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// parkAfter is how long a session idles before it parks, unless
// Config.IdleParkAfter says otherwise. A session that is busy with commands
// never parks (parking and waking cost two epoll_ctl calls and a goroutine
// start); one that idles longer gives its goroutine up. A variable so that
// tests park sooner.
var parkAfter = time.Second

// parkDelay is how long the session idles before it parks; ok is false
// when parking is off (Config.IdleParkAfter negative).
func (s *Session) parkDelay() (d time.Duration, ok bool) {
	switch d := s.cfg.IdleParkAfter; {
	case d < 0:
		return 0, false
	case d == 0:
		return parkAfter, true
	default:
		return d, true
	}
}

// watchBackend returns the idle watch of a backend connection; its second
// beat asks the session to park, unless parking is off (parkDelay's 0: no
// second beat).
func (s *Session) watchBackend(conn net.Conn) *idleWatch {
	d, _ := s.parkDelay()
	return newIdleWatch(conn, s, d)
}

// errParked ends serve without ending the session: it is parked and
// continues on a goroutine of its own when woken (resume).
var errParked = errors.New("session parked")

// parking is the parked state of a session, guarded by Session.mu.
//
// A parked session has no goroutine: what a session waiting idle for its
// client keeps is its Session (buffers released) and two registrations
// with the idle poller, its backend socket (idleWatch) and its client
// socket (here). The session goroutine ends; the client's readability
// (data, EOF, reset) or a wake (Close, RequestClose, CloseWithError)
// starts a new one, which goes on where the old one stopped: in
// waitClient, with cmdMu given up and the backend watched. Everything that
// acts on an idle session (an idle migration, the backend watch, KILL)
// works the same on a parked one, because none of it needs the session
// goroutine.
//
// The session loop does not know about parking beyond errParked: it waits
// for its client through readClient, and whoever wakes an idle session
// calls wakeLocked or closeClient.
type parking struct {
	// able: the client's socket tells when a command arrives (no TLS or
	// compression buffers in between) and an epoll exists. Set after the
	// login.
	able bool
	// waiting: the session goroutine waits in readClient for the client.
	waiting bool
	// asked: the idle watch asked the waiting goroutine to park by moving
	// its read deadline to now.
	asked bool
	// parked: no goroutine; the client's socket is registered (fd, gen).
	parked bool
	gen    uint32
	fd     int32
}

// readClient waits for the client's next command and reads it. A session
// that was asked to park meanwhile, and got nothing, registers its client
// socket and returns errParked instead. (A session resumed by a drain finds
// the drain's read deadline and returns its timeout, which ends it.)
func (s *Session) readClient() (mysql.Packet, error) {
	if s.park.able {
		s.mu.Lock()
		s.park.waiting = true
		s.mu.Unlock()
		err := s.client.Await()
		if s.parkNow(err) {
			return mysql.Packet{}, errParked
		}
		if err != nil {
			return mysql.Packet{}, err
		}
	}
	return s.client.Next()
}

// parkNow ends the wait of readClient (whose Await returned err) and
// reports whether the session parked: it was asked to, nothing arrived,
// and it is not ending.
func (s *Session) parkNow(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.park.waiting = false
	if !s.park.asked {
		return false
	}
	s.park.asked = false
	_ = s.client.SetReadDeadline(time.Time{})
	if !isTimeout(err) || s.closed.Load() || s.endsWhenIdleLocked(s.info.Load().InTransaction) {
		// A command (or the end) arrived with the request; a drain that
		// woke the wait meanwhile is answered by the caller, as without
		// parking. The deadline is cleared either way: Next and the
		// command's own reads must not find it.
		return false
	}
	// Await took a read buffer and got nothing: a parked session holds
	// none, nor the statement buffers its commands reuse (up to 4 KiB each).
	s.client.Release()
	// Its socket leaves the runtime's poller too (sockConn), and its
	// net.TCPConn goes; the next read makes a new one.
	freezeConn(s.client.RawConn())
	s.park.gen++
	fd, perr := pollerAdd(s.client.RawConn(), s, s.park.gen)
	if perr != nil {
		return false // Next waits on this goroutine, as without parking
	}
	s.park.parked, s.park.fd = true, fd
	s.inflight = nil // serve makes a new one when the session resumes
	return true
}

// askPark runs on the idle watch's timer once the session has idled for
// parkAfter: it interrupts the wait in readClient, which then parks.
func (s *Session) askPark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.park.waiting && !s.park.asked {
		s.park.asked = true
		_ = s.client.SetReadDeadline(time.Now())
	}
}

// readable runs on a goroutine of the idle poller's when the parked
// client's socket became readable: that goroutine becomes the session's.
func (s *Session) readable(gen uint32) {
	s.mu.Lock()
	if !s.park.parked || s.park.gen != gen {
		s.mu.Unlock()
		return // woken otherwise meanwhile
	}
	s.park.parked = false
	s.mu.Unlock()
	s.resume()
}

// wakeLocked interrupts an idle session's wait for its client so that it
// looks at draining and closeErr: a parked session resumes, a waiting one
// gets a read deadline in the past. The caller holds s.mu.
func (s *Session) wakeLocked() {
	s.unparkLocked()
	_ = s.client.SetReadDeadline(time.Now())
}

// unparkLocked resumes a parked session on a new goroutine. The caller
// holds s.mu.
func (s *Session) unparkLocked() {
	if !s.park.parked {
		return
	}
	s.park.parked = false
	pollerRemove(s.client.RawConn(), s.park.fd, s, s.park.gen)
	go s.resume()
}

// closeClient closes the client's connection and wakes the session, parked
// or not, which then ends.
func (s *Session) closeClient() {
	s.closed.Store(true)
	_ = s.client.Close()
	s.mu.Lock()
	s.unparkLocked()
	s.mu.Unlock()
}

// resume continues a parked session on the calling goroutine: in
// waitClient, where the goroutine that parked it stopped.
func (s *Session) resume() {
	defer s.contain()
	s.serveUntilParked(true)
}
