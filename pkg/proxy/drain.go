package proxy

import (
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
)

// drainForceGrace is how long a session told to close with an error (an ERR
// packet at its next idle moment) may take before its sockets are shut.
const drainForceGrace = time.Second

// Drain is the ending of a set of sessions: those that matched when it
// began. It has no goroutine of its own: sessions report their end through
// the registry, and the deadline is a timer.
type Drain struct {
	err *mysql.MySQLError

	mu       sync.Mutex
	left     map[uint64]*backend.Session
	total    int
	forced   int
	timer    *time.Timer // the deadline, then the grace after it
	expired  chan struct{}
	done     chan struct{}
	finished bool
	expiring bool
}

// Drain ends the live sessions that match now; sessions that start later are
// not touched. Each is asked at once to end at its next transaction boundary
// (an idle one outside a transaction ends now). Those still open after
// timeout are closed with err: sent as an ERR packet at their next idle
// moment (inside a transaction or not), then their sockets are shut if they
// have not ended a second later; a nil err closes them at once without a
// word. A timeout <= 0 never forces. Drain returns at once; Done says when
// every session it took has ended.
//
// It is the one way sessions are drained: shutdown (every session), a
// cluster removed by a reload, and a backend the fleet voted down.
func (s *Server) Drain(match func(*backend.Session) bool, timeout time.Duration, err *mysql.MySQLError) *Drain {
	d := &Drain{err: err, left: map[uint64]*backend.Session{}, expired: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	for id, ss := range s.sessions {
		if match(ss) {
			d.left[id] = ss
		}
	}
	d.total = len(d.left)
	if d.total == 0 {
		d.finished = true
		close(d.done)
		s.mu.Unlock()
		return d
	}
	s.drains[d] = struct{}{}
	asked := make([]*backend.Session, 0, d.total)
	for _, ss := range d.left {
		asked = append(asked, ss)
	}
	s.mu.Unlock()
	for _, ss := range asked {
		ss.RequestClose()
	}
	if timeout > 0 {
		d.mu.Lock()
		if !d.finished {
			d.timer = time.AfterFunc(timeout, d.Expire)
		}
		d.mu.Unlock()
	}
	return d
}

// Sessions is how many sessions the drain took.
func (d *Drain) Sessions() int { return d.total }

// Done is closed when every session the drain took has ended.
func (d *Drain) Done() <-chan struct{} { return d.done }

// Expired is closed when the deadline passed (or Expire was called) with
// sessions still open, once they have been told to close.
func (d *Drain) Expired() <-chan struct{} { return d.expired }

// Forced is how many sessions were still open at the deadline.
func (d *Drain) Forced() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.forced
}

// Expire ends the wait now: the sessions still open are closed as at the
// deadline. Idempotent.
func (d *Drain) Expire() {
	d.mu.Lock()
	if d.finished || d.expiring {
		d.mu.Unlock()
		return
	}
	d.expiring = true
	if d.timer != nil {
		d.timer.Stop()
	}
	alive := d.aliveLocked()
	d.forced = len(alive)
	d.mu.Unlock()
	for _, ss := range alive {
		if d.err != nil {
			ss.CloseWithError(d.err)
		} else {
			ss.Close()
		}
	}
	d.mu.Lock()
	if d.err != nil && !d.finished {
		d.timer = time.AfterFunc(drainForceGrace, d.shut)
	}
	close(d.expired)
	d.mu.Unlock()
}

// shut closes the sockets of the sessions that did not end within the grace
// after the deadline.
func (d *Drain) shut() {
	d.mu.Lock()
	alive := d.aliveLocked()
	d.mu.Unlock()
	for _, ss := range alive {
		ss.Close()
	}
}

func (d *Drain) aliveLocked() []*backend.Session {
	out := make([]*backend.Session, 0, len(d.left))
	for _, ss := range d.left {
		out = append(out, ss)
	}
	return out
}

// ended removes session id and reports whether the drain is over. The
// registry calls it, under Server.mu, when a session leaves.
func (d *Drain) ended(id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.left[id]; !ok || d.finished {
		return d.finished
	}
	delete(d.left, id)
	if len(d.left) > 0 {
		return false
	}
	d.finished = true
	if d.timer != nil {
		d.timer.Stop()
	}
	close(d.done)
	return true
}
