package backend

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const idleWatchSupported = true

// idlePoller is the one epoll instance that watches the backend sockets of
// idle sessions for readability (data, EOF, reset), for the whole process:
// an idle session costs a registration here, not a goroutine parked in
// Go's netpoller (that was a stack of its own per idle session, the larger
// part of an idle session's memory). One goroutine waits in epoll_wait and
// starts a short-lived goroutine per event, which runs the watch's onEnd.
//
// Registrations are one-shot and carry the watch's generation, so that an
// event of an earlier arm (or of a file descriptor number since reused by
// another connection) is recognised and dropped.
type idlePoller struct {
	epfd int
	mu   sync.Mutex
	regs map[int32]pollReg
}

type pollReg struct {
	w   *idleWatch
	gen uint32
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
		thePoller = &idlePoller{epfd: fd, regs: map[int32]pollReg{}}
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
			r, ok := p.regs[ev.Fd]
			if ok && r.gen == uint32(ev.Pad) {
				delete(p.regs, ev.Fd)
			} else {
				ok = false
			}
			p.mu.Unlock()
			if ok {
				go r.w.fired(r.gen)
			}
		}
	}
}

// pollerAdd registers conn's socket for one readability event delivered to
// w.fired(gen). The caller holds w.mu.
func pollerAdd(conn net.Conn, w *idleWatch, gen uint32) error {
	p, err := getPoller()
	if err != nil {
		return err
	}
	return control(conn, func(fd int32) error {
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
		p.regs[fd] = pollReg{w: w, gen: gen}
		w.fd = fd
		return nil
	})
}

// pollerRemove withdraws w's registration gen, if it is still the one on
// its descriptor. The caller holds w.mu.
func pollerRemove(conn net.Conn, w *idleWatch, gen uint32) {
	p, _ := getPoller()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.regs[w.fd]; !ok || r.w != w || r.gen != gen {
		return // fired, or the number now serves another watch
	}
	delete(p.regs, w.fd)
	// Through conn's own descriptor only: a socket closed meanwhile left
	// the epoll set with its last descriptor, and its number may name
	// another connection by now.
	_ = control(conn, func(fd int32) error { return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
}

// pollerLen counts the registered watches (tests).
func pollerLen() int {
	p, _ := getPoller()
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.regs)
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

// pollerHas reports whether w has a registration (tests).
func pollerHas(w *idleWatch) bool {
	p, _ := getPoller()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.regs[w.fd]
	return ok && r.w == w
}
