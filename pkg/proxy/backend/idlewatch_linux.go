package backend

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const idleWatchSupported = true

// idlePoller is the one epoll instance that watches the sockets of idle
// sessions for readability (data, EOF, reset), for the whole process: the
// backend socket of every idle session (idleWatch) and the client socket of
// every parked one (park.go). An idle session costs a registration here,
// not a goroutine parked in Go's netpoller (a stack of its own per idle
// session, the larger part of an idle session's memory). One goroutine
// waits in epoll_wait and starts a goroutine per event, which runs the
// registration's target.
//
// Registrations are one-shot and carry their owner's generation, so that an
// event of an earlier registration (or of a file descriptor number since
// reused by another connection) is recognised and dropped.
type idlePoller struct {
	epfd int
	mu   sync.Mutex
	regs regTable
}

// pollTarget is told, on a goroutine of its own, that registration gen saw
// its socket readable.
type pollTarget interface {
	readable(gen uint32)
}

type pollReg struct {
	t   pollTarget
	gen uint32
}

// regTable holds the registrations by descriptor. Descriptors are small,
// dense numbers, so it is a slice indexed by them: 24 bytes a descriptor,
// where a map took about 130 bytes an entry (the heap profile of 9,700
// parked sessions: two registrations each).
type regTable struct {
	slots []pollReg // t nil: no registration
	n     int
}

func (r *regTable) get(fd int32) (pollReg, bool) {
	if fd < 0 || int(fd) >= len(r.slots) || r.slots[fd].t == nil {
		return pollReg{}, false
	}
	return r.slots[fd], true
}

func (r *regTable) set(fd int32, reg pollReg) {
	if int(fd) >= len(r.slots) {
		grown := make([]pollReg, max(int(fd)+1, 2*len(r.slots), 64))
		copy(grown, r.slots)
		r.slots = grown
	}
	if r.slots[fd].t == nil {
		r.n++
	}
	r.slots[fd] = reg
}

func (r *regTable) del(fd int32) {
	if _, ok := r.get(fd); ok {
		r.slots[fd] = pollReg{}
		r.n--
	}
}

var (
	pollerOnce sync.Once
	thePoller  *idlePoller
	pollerErr  error
)

func getPoller() (*idlePoller, error) {
	pollerOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			pollerErr = err
			return
		}
		thePoller = &idlePoller{epfd: fd}
		go thePoller.loop()
	})
	return thePoller, pollerErr
}

// loop runs for the life of the process.
func (p *idlePoller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return // EBADF and the like: nothing can be watched any more
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			r, ok := p.regs.get(ev.Fd)
			if ok && r.gen == uint32(ev.Pad) {
				p.regs.del(ev.Fd)
			} else {
				ok = false
			}
			p.mu.Unlock()
			if ok {
				go r.t.readable(r.gen)
			}
		}
	}
}

// pollerAdd registers conn's socket for one readability event delivered to
// t.readable(gen), and returns the descriptor it registered (the key
// pollerRemove needs). The caller serialises the registrations of t.
func pollerAdd(conn net.Conn, t pollTarget, gen uint32) (int32, error) {
	p, err := getPoller()
	if err != nil {
		return -1, err
	}
	registered := int32(-1)
	err = control(conn, func(fd int32) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd, Pad: int32(gen)}
		err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		if errors.Is(err, unix.EEXIST) {
			// A one-shot registration that fired stays in the set, disabled.
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		}
		if err != nil {
			return err
		}
		p.regs.set(fd, pollReg{t: t, gen: gen})
		registered = fd
		return nil
	})
	return registered, err
}

// pollerRemove withdraws t's registration gen of descriptor fd, if it is
// still the one there, and reports whether it was.
func pollerRemove(conn net.Conn, fd int32, t pollTarget, gen uint32) bool {
	p, _ := getPoller()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.regs.get(fd); !ok || r.t != t || r.gen != gen {
		return false // fired, or the number now serves another registration
	}
	p.regs.del(fd)
	// Through conn's own descriptor only: a socket closed meanwhile left
	// the epoll set with its last descriptor, and its number may name
	// another connection by now.
	pollerForgetConn(conn)
	return true
}

// pollerLen counts the registered watches (tests).
func pollerLen() int {
	p, _ := getPoller()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.regs.n
}

// control runs f with conn's file descriptor, which stays open meanwhile.
func control(conn net.Conn, f func(fd int32) error) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errNoPoller
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int32(fd)) }); err != nil {
		return err
	}
	return ferr
}

// pollerHas reports whether t has a registration on fd (tests).
func pollerHas(fd int32, t pollTarget) bool {
	p, _ := getPoller()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.regs.get(fd)
	return ok && r.t == t
}

// pollerForget takes descriptor fd out of the epoll set, whatever its
// registration's state (a one-shot one that fired stays in the set,
// disabled), before fd is closed while its socket stays open through
// another descriptor: only the socket's last close would take it out then
// (sockConn.thawLocked). Owners withdraw live registrations first
// (pollerRemove); this also drops fired ones.
func pollerForget(fd int32) {
	p, _ := getPoller()
	if p == nil {
		return
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
}

// pollerForgetConn is pollerForget of conn's descriptor.
func pollerForgetConn(conn net.Conn) {
	_ = control(conn, func(fd int32) error { pollerForget(fd); return nil })
}
