package backend

import (
	"net"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
)

// Sessions on event loops (Config.Loops; package evloop).
//
// After its login a session whose client and backend are plain TCP (no TLS,
// no compression) is served as a Task of one loop, for the rest of its
// life: its command loop is the same code, but its waits for its own two
// sockets yield to the loop instead of parking a goroutine in the runtime's
// netpoller. Everything else it may wait for runs detached, on a goroutine
// of its own, until its next wait for the client:
//   - failover and migration (dials, other backends), KILL and
//     COM_CHANGE_USER (other sessions, other connections), the end of the
//     session (it waits for idle moves);
//   - a command that finds cmdMu taken (an idle migration holds it);
//   - a command whose backend cannot be attached (TLS or compression to it).
//
// Ownership follows cmdMu: the client Conn is attached for the Task's whole
// life (only the session reads it), the backend Conn only while the Task
// holds cmdMu, because whoever holds cmdMu while the session is idle (an idle
// migration, the idle watch's read of a closing backend) uses it with
// ordinary blocking I/O.
//
// Parking is unchanged: a parked session's Task ends, and the wake starts a
// new Task on the same loop.
type onLoop struct {
	loop *evloop.Loop
	task *evloop.Task
	// be is the backend Conn attached to task, if any.
	be *evloop.Conn
}

// wrapConn returns conn, when it is TCP, as an evloop Conn when loops are
// on, else as a connection that a parked session freezes (sockconn_linux.go)
// when sessions park.
func (s *Session) wrapConn(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	if s.cfg.Loops == nil {
		if _, parking := s.parkDelay(); parking {
			return freezable(tc)
		}
		return conn
	}
	return evloop.Wrap(tc, mysql.SocketWriter)
}

// loopConn returns p's Conn when a Task can attach it.
func loopConn(p *mysql.PacketIO) *evloop.Conn {
	if p == nil || !p.Plain() {
		return nil
	}
	c, _ := p.RawConn().(*evloop.Conn)
	return c
}

// chooseLoop puts the session on a loop after its login, when both its
// connections can be attached.
func (s *Session) chooseLoop() {
	if s.cfg.Loops != nil && loopConn(s.client) != nil && loopConn(s.backend) != nil {
		s.lp = &onLoop{loop: s.cfg.Loops.Pick()}
	}
}

// serveOnLoop starts (or, resumed after parking, continues) the command
// loop as a Task of the session's loop; false when the loop refused (it has
// stopped), and the caller serves on its own goroutine.
func (s *Session) serveOnLoop(resumed bool) bool {
	return s.lp.loop.Go(func(t *evloop.Task) {
		defer s.contain()
		s.lp.task, s.lp.be = t, nil
		if !t.Attach(loopConn(s.client)) {
			// The client cannot be on the loop (closed, or no descriptor to
			// spare): this Task serves it off the loop, as a goroutine.
			t.Detach()
			s.lp.task = nil
		}
		err := s.serve(resumed)
		if err == errParked {
			s.lp.task, s.lp.be = nil, nil // the Task ends (let it go); a wake starts another
			return
		}
		// The session ends. Its client hears so at once, a FIN right after
		// the last answer, and not once the detached Task below has been
		// scheduled: a driver that pooled the connection after a final ERR
		// (a transaction lost with its backend) checks it for EOF before
		// reusing it, and would otherwise send its next command into the
		// close and read a reset (about 1 in 30 such sessions, with the loop
		// busy).
		if c := loopConn(s.client); c != nil {
			_ = c.CloseWrite()
		}
		t.Detach() // the end waits for idle moves and takes locks
		s.finishServing(err)
	})
}

// offLoop detaches the session's Task, if it has one, before a wait for
// something other than its sockets. Only the session's own command path
// calls it.
func (s *Session) offLoop() {
	if s.lp != nil && s.lp.task != nil {
		s.lp.task.Detach()
	}
}

// redirectPending reports whether a move waits for the session's next safe
// point.
func (s *Session) redirectPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redirect != nil
}

// releaseBackend gives the backend Conn back to blocking I/O before the
// session gives up cmdMu, and brings a detached Task back to the loop for
// the wait for the client.
func (s *Session) releaseBackend() {
	if s.lp == nil || s.lp.task == nil {
		return
	}
	t := s.lp.task
	t.Reattach()
	if s.lp.be != nil {
		t.Release(s.lp.be)
		s.lp.be = nil
	}
}

// lockCmd takes cmdMu, off the loop when someone else holds it (an idle
// migration, which dials).
func (s *Session) lockCmd() {
	if !s.cmdMu.TryLock() {
		s.offLoop()
		s.cmdMu.Lock()
	}
}

// attachBackend attaches the backend Conn to the Task once the session
// holds cmdMu and the idle watch is disarmed, or takes the Task off the loop
// for this command when the backend cannot be attached.
func (s *Session) attachBackend() {
	if s.lp == nil {
		return
	}
	t := s.lp.task
	if t == nil || t.Detached() {
		return
	}
	be := loopConn(s.backend)
	if be == nil || !t.Attach(be) {
		t.Detach()
		return
	}
	s.lp.be = be
}
