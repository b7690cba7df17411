package mysql

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/switchyard-db/switchyard/lib/rawsys"
)

// quickGreetings: StartGreeting works here.
const quickGreetings = true

// startGreeting is StartGreeting's connect, made with the fewest system
// calls a greeting probe takes: a health prober makes one per backend per
// interval, 500 a second for 1,000 backends.
//
// net.Dialer's connection costs twelve system calls and two parks: it waits
// for the connect to finish, asks for its error, both addresses and
// TCP_NODELAY, then reads. Here the socket is made with SO_LINGER 0 (the
// close after a greeting is a reset, see withGreeting), the connect is left
// in progress, and the one wait is for the greeting: a refused or
// unreachable connect makes the socket readable too, and the read says why.
// So: socket, setsockopt, connect, fcntl and epoll_ctl (os.NewFile), two
// reads (the first, usually too early, as a raw call), epoll_ctl and close;
// nine calls, one park.
func startGreeting(ap netip.AddrPort) (*GreetingProbe, error) {
	f, err := connectNonblocking(ap)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &GreetingProbe{f: f, rc: rc, remote: net.TCPAddrFromAddrPort(ap)}, nil
}

// connectNonblocking starts a connect to ap on a non-blocking socket whose
// close will be a reset, and hands it to the runtime's poller.
func connectNonblocking(ap netip.AddrPort) (*os.File, error) {
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
				return nil, err
			}
		}
		sa = sa6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1}); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("setsockopt", err)
	}
	switch err := syscall.Connect(fd, sa); err {
	case nil, syscall.EINPROGRESS, syscall.EINTR:
	default:
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	return os.NewFile(uintptr(fd), "probe"), nil
}

// readPacket reads one packet of at most maxGreeting bytes. Its first read
// is made at once, although the greeting has rarely come by then: the
// poller forgets a readiness it reported before the read began, so waiting
// first could wait for an event already gone.
func (g *GreetingProbe) readPacket() ([]byte, error) {
	buf := make([]byte, 256)
	n, need := 0, 4
	var rerr error
	err := g.rc.Read(func(fd uintptr) bool {
		for n < need {
			if n == len(buf) {
				buf = append(buf, make([]byte, min(need, 4+maxGreeting)-n)...)
			}
			m, errno := rawsys.Read(fd, buf[n:])
			switch {
			case errno == syscall.EAGAIN:
				return false
			case errno == syscall.EINTR:
				continue
			case errno != 0:
				rerr = os.NewSyscallError("read", errno)
				return true
			case m == 0:
				rerr = io.EOF
				if n > 0 {
					rerr = io.ErrUnexpectedEOF
				}
				return true
			}
			n += m
			if n >= 4 && need == 4 {
				size := int(buf[0]) | int(buf[1])<<8 | int(buf[2])<<16
				if size > maxGreeting {
					rerr = fmt.Errorf("%w: %d bytes, limit %d", ErrPacketTooLarge, size, maxGreeting)
					return true
				}
				need = 4 + size
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	return buf[4:need], nil
}

// lingerOff makes the close a normal one again.
func (g *GreetingProbe) lingerOff() {
	_ = g.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{})
	})
}

// connected tells whether the connect finished (asked only after a
// timeout, to say which of the two waits ran out).
func (g *GreetingProbe) connected() bool {
	ok := false
	_ = g.rc.Control(func(fd uintptr) {
		_, err := syscall.Getpeername(int(fd))
		ok = err == nil
	})
	return ok
}
