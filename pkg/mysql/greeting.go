package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
)

// GreetingProbe is a greeting probe under way, on Linux: StartGreeting
// starts its connect and returns, Read waits for the server's greeting and
// closes the connection. A health prober can so start the probes of many
// backends, then read their greetings in turn, and park about once for
// them all. Its errors read as those of ReadGreeting on a net.Dialer's
// connection, which are what an operator reads as a backend's unhealthy
// reason.
type GreetingProbe struct {
	f      *os.File
	rc     syscall.RawConn
	remote *net.TCPAddr
}

// GreetingAddr tells whether StartGreeting can probe addr: an IP and port,
// on Linux. Other addresses, for which it returns the zero AddrPort, are
// probed by ReadGreeting, which resolves them.
func GreetingAddr(addr string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !quickGreetings {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// StartGreeting starts connecting to ap (from GreetingAddr). An error says
// the connect could not even start.
func StartGreeting(ap netip.AddrPort) (*GreetingProbe, error) {
	g, err := startGreeting(ap)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err})
	}
	return g, nil
}

// SetDeadline bounds Read (zero: no bound). A deadline already past makes
// Read fail at once, even when the greeting is there to read.
func (g *GreetingProbe) SetDeadline(t time.Time) error { return g.f.SetReadDeadline(t) }

// Read reads the greeting and closes the connection: with a reset after a
// greeting, normally otherwise (withGreeting's rule). ctx is the one whose
// end set a past deadline, if any: a deadline that passed reads as
// context.DeadlineExceeded, and ctx's end as its error.
func (g *GreetingProbe) Read(ctx context.Context) (*InitialHandshake, error) {
	defer g.f.Close()
	pkt, err := g.readPacket()
	if err == nil {
		hs, err := parseGreeting(pkt)
		if err != nil {
			g.lingerOff()
		}
		return hs, err
	}
	g.lingerOff()
	err = ctxerr.Stable(ctx, err)
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

// quickGreeting is ReadGreeting on a GreetingProbe, within ctx.
func quickGreeting(ctx context.Context, ap netip.AddrPort) (*InitialHandshake, error) {
	g, err := StartGreeting(ap)
	if err != nil {
		return nil, err
	}
	defer ctxerr.Bound(ctx, g)()
	return g.Read(ctx)
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
