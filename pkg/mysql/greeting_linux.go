package mysql

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchyard-db/switchyard/lib/rawsys"
)

// quickGreetings: a GreetingSet works here.
const quickGreetings = true

// greetingSys is a GreetingSet's epoll set, in the runtime's poller: the
// set waits for it to be readable, which it is while one of its probes'
// sockets is. Its sockets are edge-triggered (EPOLLET): a socket is
// reported when something arrives, and read until its greeting is whole or
// the read would block, so nothing is reported twice and no socket needs
// taking out (its close does that).
type greetingSys struct {
	ep     *os.File
	rc     syscall.RawConn
	events []unix.EpollEvent
}

// NewGreetingSet makes a set for greeting probes. Close it when done.
func NewGreetingSet() (*GreetingSet, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile puts it in the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(epfd), "greetings")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	return &GreetingSet{
		sys:  greetingSys{ep: ep, rc: rc, events: make([]unix.EpollEvent, 64)},
		open: map[int32]*GreetingProbe{},
	}, nil
}

// Close closes the probes not read yet, and the set.
func (s *GreetingSet) Close() error {
	for _, g := range s.open {
		g.close()
	}
	return s.sys.ep.Close()
}

func (sys *greetingSys) setDeadline(t time.Time) error { return sys.ep.SetReadDeadline(t) }

// start is Start's connect, made with the fewest system calls a greeting
// probe takes: a health prober makes one per backend per interval, 500 a
// second for 1,000 backends.
//
// net.Dialer's connection costs twelve system calls and two parks: it waits
// for the connect to finish, asks for its error, both addresses and
// TCP_NODELAY, then reads. Here the socket is made with SO_LINGER 0 (the
// close after a greeting is a reset, see withGreeting), the connect is left
// in progress, and the one wait is for the greeting: a refused or
// unreachable connect makes the socket readable too, and the read says why.
// So: socket, setsockopt, connect, epoll_ctl (into the set; a socket
// already readable is reported at once), the read of the greeting, and
// close.
func (s *GreetingSet) start(ap netip.AddrPort) (*GreetingProbe, error) {
	fd, err := connectNonblocking(ap)
	if err != nil {
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(int(s.sys.ep.Fd()), unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	g := &GreetingProbe{set: s, fd: fd, remote: net.TCPAddrFromAddrPort(ap), need: 4}
	s.open[int32(fd)] = g
	return g, nil
}

// connectNonblocking starts a connect to ap on a non-blocking socket whose
// close will be a reset.
func connectNonblocking(ap netip.AddrPort) (int, error) {
	family := syscall.AF_INET
	var sa syscall.Sockaddr
	if a := ap.Addr().Unmap(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa6 := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if zone := a.Zone(); zone != "" {
			// A zone is an interface's name or index, as net.Dialer takes it.
			if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
				sa6.ZoneId = uint32(n)
			} else if ifi, err := net.InterfaceByName(zone); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			} else {
				return -1, err
			}
		}
		sa = sa6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1}); err != nil {
		_ = syscall.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	switch err := syscall.Connect(fd, sa); err {
	case nil, syscall.EINPROGRESS, syscall.EINTR:
	default:
		_ = syscall.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// wait waits until g's greeting is read, reading the others' that arrive
// meanwhile, and returns its payload. The wait is bounded by the set's
// deadline.
func (g *GreetingProbe) wait() ([]byte, error) {
	if !g.done {
		var herr error
		err := g.set.sys.rc.Read(func(epfd uintptr) bool {
			herr = g.set.harvest(int(epfd))
			return herr != nil || g.done
		})
		if !g.done {
			g.done, g.err = true, cmp.Or(herr, err)
		}
	}
	if g.err != nil {
		return nil, g.err
	}
	return g.buf[4:g.need], nil
}

// harvest reads the sockets the set reports, until it reports no more.
// Called first thing in each wait (the poller forgets a readiness it
// reported before the wait began, and the set's is edge-triggered in it).
func (s *GreetingSet) harvest(epfd int) error {
	for {
		n, errno := rawsys.EpollPoll(epfd, s.sys.events)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return os.NewSyscallError("epoll_wait", errno)
		}
		for _, ev := range s.sys.events[:n] {
			if g := s.open[ev.Fd]; g != nil && !g.done {
				g.fill()
			}
		}
		if n < len(s.sys.events) {
			return nil
		}
	}
}

// fill reads what has come of g's greeting, up to the whole packet of at
// most maxGreeting bytes, or until the read would block.
func (g *GreetingProbe) fill() {
	if g.buf == nil {
		g.buf = make([]byte, 256)
	}
	for g.n < g.need {
		if g.n == len(g.buf) {
			g.buf = append(g.buf, make([]byte, min(g.need, 4+maxGreeting)-g.n)...)
		}
		m, errno := rawsys.Read(uintptr(g.fd), g.buf[g.n:])
		switch {
		case errno == syscall.EAGAIN:
			return
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			g.done, g.err = true, os.NewSyscallError("read", errno)
			return
		case m == 0:
			g.done, g.err = true, io.EOF
			if g.n > 0 {
				g.err = io.ErrUnexpectedEOF
			}
			return
		}
		g.n += m
		if g.n >= 4 && g.need == 4 {
			size := uint24(g.buf)
			if size > maxGreeting {
				g.done, g.err = true, fmt.Errorf("%w: %d bytes, limit %d", ErrPacketTooLarge, size, maxGreeting)
				return
			}
			g.need = 4 + size
		}
	}
	g.done = true
}

// close closes g's socket, which takes it out of the set.
func (g *GreetingProbe) close() {
	if g.fd < 0 {
		return
	}
	delete(g.set.open, int32(g.fd))
	_ = syscall.Close(g.fd)
	g.fd = -1
}

// lingerOff makes the close a normal one again.
func (g *GreetingProbe) lingerOff() {
	_ = syscall.SetsockoptLinger(g.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{})
}

// connected tells whether the connect finished (asked only after a
// timeout, to say which of the two waits ran out).
func (g *GreetingProbe) connected() bool {
	_, err := syscall.Getpeername(g.fd)
	return err == nil
}
