package main

import (
	"errors"
	"io"
	"iter"

	"golang.org/x/sys/unix"
)

// Coroutine mode: the epoll loop of epoll_linux.go, but each direction of a pair is
// written as ordinary blocking code (read, then write what was read) running in a
// coroutine (iter.Pull). A read or write that would block yields to the loop, and the loop
// resumes the coroutine when epoll reports the socket ready. The switch is the runtime's
// direct goroutine hand-off (coroswitch): no run queue, no netpoller, no thread woken. It
// measures whether a session written in blocking style can keep that style and still be
// driven by an event loop.
//
// Sockets are registered once, edge-triggered, for input, output and peer close. Each end
// remembers whether it may be readable or writable. A read that returns less than the
// buffer drains the socket (so the next read waits for an edge instead of returning EAGAIN),
// unless the peer has closed, whose edge may have come with the data.

type coroutine struct {
	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool
	done  bool
}

// coroPair is what the two directions of a relayed pair share.
type coroPair struct {
	live   int  // directions still running; the last one closes the sockets
	closed bool // an error in either direction ends both
	c, s   *end
}

var errPairClosed = errors.New("pair closed")

const edgeEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// startPipes runs once the backend's connect has finished: both sockets are watched from
// now on, and one coroutine per direction starts.
func (l *loop) startPipes(c, s *end) {
	if l.ctl(unix.EPOLL_CTL_MOD, s.fd, edgeEvents, s.gen) != nil ||
		l.ctl(unix.EPOLL_CTL_MOD, c.fd, edgeEvents, c.gen) != nil {
		l.closePair(c)
		return
	}
	p := &coroPair{c: c, s: s}
	for _, e := range []*end{c, s} {
		e.pair, e.readable, e.writable = p, true, true
	}
	for _, dir := range [][2]*end{{c, s}, {s, c}} {
		src, dst := dir[0], dir[1]
		co := &coroutine{}
		co.next, co.stop = iter.Pull(func(yield func(struct{}) bool) {
			co.yield = yield
			l.pipeCoro(co, src, dst)
			co.done = true
			delete(l.coros, co)
		})
		l.coros[co] = struct{}{}
		p.live++
		l.resume(co)
	}
}

// resume runs co until it waits again or ends. Only the loop calls it, never a coroutine.
func (l *loop) resume(co *coroutine) {
	if !co.done {
		co.next()
	}
}

// wakeCoro records what epoll reported for e and resumes the coroutine waiting for it.
func (l *loop) wakeCoro(e *end, events uint32) {
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.hup = true
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.readable = true
		if co := e.rwait; co != nil {
			l.resume(co)
		}
	}
	if l.lookup(e.fd, e.gen) != e {
		return // the resumed coroutine closed the pair
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.writable = true
		if co := e.wwait; co != nil {
			l.resume(co)
		}
	}
}

// runReady resumes the coroutines that a failing direction woke so that they end too.
func (l *loop) runReady() {
	for len(l.ready) > 0 {
		co := l.ready[0]
		l.ready = l.ready[1:]
		l.resume(co)
	}
}

// pipeCoro is one direction of a pair, in blocking style.
func (l *loop) pipeCoro(co *coroutine, src, dst *end) {
	p := src.pair
	buf := make([]byte, 16<<10)
	for !p.closed {
		n, err := l.coroRead(co, src, buf)
		if n > 0 {
			if werr := l.coroWrite(co, dst, buf[:n]); werr != nil {
				err = werr
			}
		}
		if err == io.EOF {
			unix.Shutdown(dst.fd, unix.SHUT_WR) // pass the half-close on
			break
		}
		if err != nil {
			p.closed = true
			for _, e := range []*end{p.c, p.s} {
				for _, w := range []*coroutine{e.rwait, e.wwait} {
					if w != nil && w != co {
						l.ready = append(l.ready, w)
					}
				}
			}
			break
		}
	}
	p.live--
	if p.live == 0 {
		l.closePair(src)
	}
}

// park waits in *slot until the loop resumes co; false means the loop is stopping.
func park(co *coroutine, slot **coroutine) bool {
	*slot = co
	ok := co.yield(struct{}{})
	*slot = nil
	return ok
}

func (l *loop) coroRead(co *coroutine, e *end, buf []byte) (int, error) {
	for {
		if e.pair.closed {
			return 0, errPairClosed
		}
		if !e.readable {
			if !park(co, &e.rwait) {
				return 0, errPairClosed
			}
			continue
		}
		n, err := l.readFD(e.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			e.readable = false
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		if n < len(buf) && !e.hup {
			e.readable = false
		}
		return n, nil
	}
}

func (l *loop) coroWrite(co *coroutine, e *end, b []byte) error {
	for len(b) > 0 {
		if e.pair.closed {
			return errPairClosed
		}
		if !e.writable {
			if !park(co, &e.wwait) {
				return errPairClosed
			}
			continue
		}
		w, err := l.writeFD(e.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			e.writable = false
			continue
		case err != nil:
			return err
		}
		b = b[w:]
	}
	return nil
}

// stopCoros ends every suspended coroutine (their yields return false), when the loop stops.
func (l *loop) stopCoros() {
	for co := range l.coros {
		co.stop()
	}
	l.ready = nil
}
