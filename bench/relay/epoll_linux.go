package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// epollRelay is HAProxy's shape in Go: each loop is a goroutine locked to its OS thread
// that waits for the events of the sockets it owns (level-triggered; parked in Go's
// netpoller between batches, or blocked in epoll_wait with -block-wait), and it reads a
// socket only when epoll reported it readable. All loops share one listening socket
// (EPOLLEXCLUSIVE wakes one of them per new connection).
type epollRelay struct {
	lfd     int
	addr    string
	backend unix.SockaddrInet4
	loops   []*loop
	wg      sync.WaitGroup
}

// end is one socket of a relayed pair: client or server.
type end struct {
	fd         int
	gen        int32  // tells a stale event for a reused descriptor from a live one
	peer       *end   // the other socket of the pair
	pending    []byte // read from peer, not yet written to this socket
	connecting bool   // server side, non-blocking connect not finished

	// Coroutine mode only (coro_linux.go).
	pair               *coroPair
	readable, writable bool       // may read or write without EAGAIN
	hup                bool       // the peer closed or the socket failed: read until EOF
	rwait, wwait       *coroutine // waiting until readable, writable
}

type loop struct {
	r       *epollRelay
	backend unix.SockaddrInet4 // the loop's own copy: Connect writes into it
	epfd    int
	wake    int    // eventfd: Close writes to it
	ends    []*end // by descriptor
	gen     int32
	buf     []byte
	evbuf   []unix.EpollEvent
	epf     *os.File                // the epoll descriptor in Go's netpoller (not -block-wait)
	epr     syscall.RawConn         // epf's, to wait until epoll has events
	raw     bool                    // system calls without the runtime's bookkeeping (sys_linux.go)
	coro    bool                    // coroutine mode
	coros   map[*coroutine]struct{} // coroutine mode: the suspended ones
	ready   []*coroutine            // coroutine mode: to resume after this event
}

func startEpoll(listen, backend string, o epollOptions) (relay, error) {
	la, err := inet4(listen)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	ba, err := inet4(backend)
	if err != nil {
		return nil, fmt.Errorf("-backend: %w", err)
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r := &epollRelay{lfd: lfd, backend: *ba}
	fail := func(err error) (relay, error) {
		r.Close()
		return nil, err
	}
	if err := unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail(err)
	}
	if err := unix.Bind(lfd, la); err != nil {
		return fail(fmt.Errorf("bind %s: %w", listen, err))
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		return fail(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		return fail(err)
	}
	a := sa.(*unix.SockaddrInet4)
	r.addr = (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	for range o.loops {
		l, err := r.newLoop(o)
		if err != nil {
			return fail(err)
		}
		r.loops = append(r.loops, l)
	}
	for _, l := range r.loops {
		r.wg.Add(1)
		go l.run()
	}
	return r, nil
}

func inet4(hostport string) (*unix.SockaddrInet4, error) {
	ta, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	ip := ta.IP.To4()
	if ip == nil {
		ip = net.IPv4zero.To4()
	}
	copy(sa.Addr[:], ip)
	return sa, nil
}

func (r *epollRelay) newLoop(o epollOptions) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &loop{r: r, backend: r.backend, epfd: epfd, wake: wake, buf: make([]byte, 16<<10), evbuf: make([]unix.EpollEvent, 128),
		coro: o.coro, coros: map[*coroutine]struct{}{}, raw: !o.blockingWait}
	if !o.blockingWait {
		// The epoll descriptor is itself pollable: handed to Go's netpoller, the loop
		// goroutine parks there between batches instead of blocking its thread in
		// epoll_wait, where the runtime's monitor thread would keep waking every 20 µs
		// to take its P back (6 % of the relay's CPU samples, measured).
		if err := unix.SetNonblock(epfd, true); err != nil {
			l.closeAll()
			return nil, err
		}
		l.epf = os.NewFile(uintptr(epfd), "epoll")
		rc, err := l.epf.SyscallConn()
		if err != nil {
			l.closeAll()
			return nil, err
		}
		l.epr = rc
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wake, unix.EPOLLIN, 0); err != nil {
		l.closeAll()
		return nil, err
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, r.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, 0); err != nil {
		l.closeAll()
		return nil, err
	}
	return l, nil
}

func (r *epollRelay) Addr() string { return r.addr }

// Close stops the loops, closes every relayed socket and the listener.
func (r *epollRelay) Close() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range r.loops {
		unix.Write(l.wake, one)
	}
	r.wg.Wait()
	if r.lfd >= 0 {
		unix.Close(r.lfd)
		r.lfd = -1
	}
}

func (l *loop) ctl(op, fd int, events uint32, gen int32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: gen}
	return unix.EpollCtl(l.epfd, op, fd, &ev)
}

func (l *loop) run() {
	defer l.r.wg.Done()
	runtime.LockOSThread()
	defer l.closeAll()
	for {
		n, err := l.wait()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range l.evbuf[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.wake:
				return
			case fd == l.r.lfd:
				l.accept()
				continue
			}
			e := l.lookup(fd, ev.Pad)
			if e == nil {
				continue // its pair was closed earlier in this batch
			}
			if e.connecting {
				l.connected(e)
				continue
			}
			if l.coro {
				l.wakeCoro(e, ev.Events)
				l.runReady()
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && !l.flush(e) {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.read(e)
			}
		}
	}
}

// wait returns the next batch of events: from a blocking epoll_wait with -block-wait, else
// from a non-blocking one, parking in Go's netpoller until the epoll descriptor is readable
// when there is nothing yet.
func (l *loop) wait() (n int, err error) {
	if l.epr == nil {
		return unix.EpollWait(l.epfd, l.evbuf, -1)
	}
	if n, err = l.pollEvents(); n != 0 || err != nil {
		return n, err
	}
	rerr := l.epr.Read(func(uintptr) bool {
		n, err = l.pollEvents()
		return n != 0 || (err != nil && !errors.Is(err, unix.EINTR))
	})
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

func (l *loop) lookup(fd int, gen int32) *end {
	if fd < len(l.ends) && l.ends[fd] != nil && l.ends[fd].gen == gen {
		return l.ends[fd]
	}
	return nil
}

func (l *loop) track(fd int) *end {
	for fd >= len(l.ends) {
		l.ends = append(l.ends, make([]*end, len(l.ends)+64)...)
	}
	l.gen++
	e := &end{fd: fd, gen: l.gen}
	l.ends[fd] = e
	return e
}

// accept takes every waiting connection and starts a non-blocking connect to the backend
// for each; the client socket is not read until that connect finishes.
func (l *loop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.r.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: another loop took it, or none left
		}
		sfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			unix.Close(cfd)
			continue
		}
		unix.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if err := unix.Connect(sfd, &l.backend); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(cfd)
			unix.Close(sfd)
			continue
		}
		c, s := l.track(cfd), l.track(sfd)
		c.peer, s.peer = s, c
		s.connecting = true
		// The client gets no events but hang-ups until the backend has answered the connect.
		if l.ctl(unix.EPOLL_CTL_ADD, cfd, 0, c.gen) != nil || l.ctl(unix.EPOLL_CTL_ADD, sfd, unix.EPOLLOUT, s.gen) != nil {
			l.closePair(c)
		}
	}
}

// connected finishes the backend's connect: on success both sockets are read from now on.
func (l *loop) connected(s *end) {
	soerr, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil || soerr != 0 {
		l.closePair(s)
		return
	}
	s.connecting = false
	if l.coro {
		l.startPipes(s.peer, s)
		l.runReady()
		return
	}
	if l.ctl(unix.EPOLL_CTL_MOD, s.fd, unix.EPOLLIN, s.gen) != nil ||
		l.ctl(unix.EPOLL_CTL_MOD, s.peer.fd, unix.EPOLLIN, s.peer.gen) != nil {
		l.closePair(s)
	}
}

// read takes what e has and writes it to its peer at once. What the peer cannot take now
// waits in the peer's pending buffer, and e is not read again until it has been written.
func (l *loop) read(e *end) {
	n, err := l.readFD(e.fd, l.buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return
	}
	if err != nil || n == 0 {
		l.closePair(e) // EOF or reset: the pair ends
		return
	}
	dst := e.peer
	w, err := l.writeFD(dst.fd, l.buf[:n])
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.closePair(e)
		return
	}
	if w < 0 {
		w = 0
	}
	if w == n {
		return
	}
	dst.pending = append(dst.pending[:0], l.buf[w:n]...)
	if l.ctl(unix.EPOLL_CTL_MOD, dst.fd, unix.EPOLLIN|unix.EPOLLOUT, dst.gen) != nil ||
		l.ctl(unix.EPOLL_CTL_MOD, e.fd, 0, e.gen) != nil {
		l.closePair(e)
	}
}

// flush writes e's pending bytes; when they are all out, its peer is read again. It reports
// false when the pair was closed.
func (l *loop) flush(e *end) bool {
	if len(e.pending) == 0 {
		return true
	}
	w, err := l.writeFD(e.fd, e.pending)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.closePair(e)
		return false
	}
	if w > 0 {
		e.pending = e.pending[w:]
	}
	if len(e.pending) > 0 {
		return true
	}
	e.pending = nil
	if l.ctl(unix.EPOLL_CTL_MOD, e.fd, unix.EPOLLIN, e.gen) != nil ||
		l.ctl(unix.EPOLL_CTL_MOD, e.peer.fd, unix.EPOLLIN, e.peer.gen) != nil {
		l.closePair(e)
		return false
	}
	return true
}

// closePair closes both sockets of e's pair. Bytes still pending for a socket are dropped:
// this is a benchmark relay, and an error or EOF on either side ends the pair.
func (l *loop) closePair(e *end) {
	for _, x := range []*end{e, e.peer} {
		if x == nil || l.lookup(x.fd, x.gen) != x {
			continue
		}
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, x.fd, nil)
		unix.Close(x.fd)
		l.ends[x.fd] = nil
	}
}

func (l *loop) closeAll() {
	l.stopCoros()
	for _, e := range l.ends {
		if e != nil {
			l.closePair(e)
		}
	}
	unix.Close(l.wake)
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.epfd)
	}
}
