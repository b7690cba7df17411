package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
)

// GreetingSet starts greeting probes and reads their greetings, on Linux.
// A health prober starts the probes of many backends with one set, then
// reads their greetings in turn: the set waits on an epoll set of its own,
// which is in the runtime's poller once, so a probe costs six system calls
// (socket, setsockopt, connect, epoll_ctl, read, close) and the round's
// waits are shared. Its probes' errors read as those of ReadGreeting on a
// net.Dialer's connection, which are what an operator reads as a
// backend's unhealthy reason.
//
// A set is used by one goroutine at a time, SetDeadline aside.
type GreetingSet struct {
	sys greetingSys
	// open are the probes started and not read yet, by descriptor.
	open map[int32]*GreetingProbe
	// deadline: a deadline is set on the set's wait (a probe's
	// SetDeadline); the next Start on an idle set clears it.
	deadline atomic.Bool
}

// GreetingProbe is a greeting probe under way, started by a GreetingSet:
// Read waits for the server's greeting and closes the connection.
type GreetingProbe struct {
	set    *GreetingSet
	fd     int
	remote *net.TCPAddr
	// buf holds what was read of the greeting: n bytes, of need.
	buf     []byte
	n, need int
	// done: the greeting was read whole, or err says why not.
	done bool
	err  error
}

// GreetingAddr is addr for a GreetingSet, which probes an IP and port, on
// Linux. Other addresses, for which it returns the zero (not valid)
// AddrPort, are probed by ReadGreeting, which resolves them.
func GreetingAddr(addr string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !quickGreetings {
		return netip.AddrPort{}
	}
	return ap
}

// Start starts connecting to ap (from GreetingAddr). An error says the
// connect could not even start.
func (s *GreetingSet) Start(ap netip.AddrPort) (*GreetingProbe, error) {
	if len(s.open) == 0 && s.deadline.Swap(false) {
		// A new batch: the last one's deadline is not its own.
		if err := s.sys.setDeadline(time.Time{}); err != nil {
			return nil, err
		}
	}
	g, err := s.start(ap)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err})
	}
	return g, nil
}

// SetDeadline bounds Read (zero: no bound): the set's wait, so every probe
// read until the next Start on an idle set. A deadline already past makes
// Read fail at once, unless the greeting was read meanwhile, while another
// probe's was waited for.
func (g *GreetingProbe) SetDeadline(t time.Time) error {
	g.set.deadline.Store(true)
	return g.set.sys.setDeadline(t)
}

// Read reads the greeting and closes the connection: with a reset after a
// greeting, normally otherwise (withGreeting's rule). ctx is the one whose
// end set a past deadline, if any: a deadline that passed reads as
// context.DeadlineExceeded, and ctx's end as its error.
func (g *GreetingProbe) Read(ctx context.Context) (*InitialHandshake, error) {
	defer g.close()
	pkt, err := g.wait()
	if err == nil {
		hs, err := parseGreeting(pkt)
		if err != nil {
			g.lingerOff()
		}
		return hs, err
	}
	g.lingerOff()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The wait ran out: say whether by time or by ctx's end. An error
		// read before (the probe's own) stays as it was read.
		err = ctxerr.Stable(ctx, err)
	}
	switch {
	case connectFailed(err) || errors.Is(err, context.DeadlineExceeded) && !g.connected():
		// The read reported the connect's failure, or the wait for a
		// greeting ended before the connect finished: say so as
		// net.Dialer would.
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError("connect", errno)
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = errDialTimeout
		}
		return nil, fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Addr: g.remote, Err: err})
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrPacketTooLarge):
		return nil, fmt.Errorf("read greeting: %w", err)
	default:
		return nil, fmt.Errorf("read greeting: %w", &net.OpError{Op: "read", Net: "tcp", Addr: g.remote, Err: err})
	}
}

// quickGreeting is ReadGreeting on a GreetingProbe, within ctx, with a set
// from idleSets.
func quickGreeting(ctx context.Context, ap netip.AddrPort) (*InitialHandshake, error) {
	s, err := idleSets.get()
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	g, err := s.Start(ap)
	if err != nil {
		idleSets.put(s)
		return nil, err
	}
	stop := ctxerr.Bound(ctx, g)
	hs, err := g.Read(ctx)
	if stop() {
		idleSets.put(s)
	} else {
		// ctx's end may still set a deadline on the set: not for another
		// probe's.
		_ = s.Close()
	}
	return hs, err
}

// idleSets keeps a few sets for quickGreeting, as many as a prober's
// workers (MaxInFlight's default), so that a probe made alone (a backend's
// first, one after a failure, a fleet's vote) does not make and close an
// epoll set each time: six system calls more, 500 a second with 1,000
// backends down.
var idleSets = &setPool{max: 8}

type setPool struct {
	mu   sync.Mutex
	sets []*GreetingSet
	max  int
}

func (p *setPool) get() (*GreetingSet, error) {
	p.mu.Lock()
	if n := len(p.sets); n > 0 {
		s := p.sets[n-1]
		p.sets = p.sets[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	return NewGreetingSet()
}

// put keeps s, idle (its probes read), or closes it when enough are kept.
func (p *setPool) put(s *GreetingSet) {
	p.mu.Lock()
	if len(p.sets) < p.max {
		p.sets = append(p.sets, s)
		s = nil
	}
	p.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// errDialTimeout is net.Dialer's words for a connect that did not finish
// in time ("dial tcp 10.0.0.1:4000: i/o timeout"), which tells an operator
// that no one answered the SYN, where "read greeting: context deadline
// exceeded" says a server accepted and did not speak.
var errDialTimeout = errors.New("i/o timeout")

// connectFailed tells the errors a read returns for a connect that failed.
func connectFailed(err error) bool {
	for _, e := range []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
