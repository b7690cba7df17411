package mysql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
)

// maxGreeting bounds the first packet; real greetings are under 200 bytes.
const maxGreeting = 64 << 10

// CheckSQL connects to a MySQL server and reads its first packet. The server
// is healthy when that packet is an initial handshake; an ERR packet (too
// many connections, host blocked, shutting down) or no answer before ctx ends
// is a failure whose error says which.
func CheckSQL(ctx context.Context, d *net.Dialer, addr string) error {
	_, err := ReadGreeting(ctx, d, addr)
	return err
}

// ReadGreeting connects to a MySQL server and returns its initial handshake
// (CheckSQL's check, for callers that want the server version too).
//
// An address given as IP and port, dialled with a Dialer that sets nothing
// but KeepAlive (which a connection closed at once does not use), is probed
// by a GreetingProbe: the same check, errors and reset, in fewer system
// calls.
func ReadGreeting(ctx context.Context, d *net.Dialer, addr string) (*InitialHandshake, error) {
	if ap := GreetingAddr(addr); ap.IsValid() && plainDialer(d) {
		return quickGreeting(ctx, ap)
	}
	return withGreeting(ctx, d, addr, nil)
}

// plainDialer tells whether d dials as the zero Dialer does, KeepAlive
// aside.
func plainDialer(d *net.Dialer) bool {
	return d.Timeout == 0 && d.Deadline.IsZero() && d.LocalAddr == nil && d.Control == nil &&
		d.ControlContext == nil && d.Cancel == nil && !d.MultipathTCP()
}

// CheckSQLLogin is CheckSQL that then logs in as user, with no password, and
// quits. MySQL and MariaDB count a connection that hangs up after the
// greeting as an aborted handshake, and block a host after
// max_connect_errors of them; a completed login does not count. The user
// needs no privileges (CREATE USER 'probe'@'%'). A refused login is a
// failure: the server answered, but not as configured.
func CheckSQLLogin(ctx context.Context, d *net.Dialer, addr, user string) error {
	_, err := ReadGreetingLogin(ctx, d, addr, user, "")
	return err
}

// ReadGreetingLogin is CheckSQLLogin with a password ("" for none),
// returning the server's greeting, for callers that record what the server
// announces. The password is never part of an error.
func ReadGreetingLogin(ctx context.Context, d *net.Dialer, addr, user, password string) (*InitialHandshake, error) {
	return withGreeting(ctx, d, addr, func(pio *PacketIO, hs *InitialHandshake) error {
		if err := login(pio, hs, user, password); err != nil {
			return err
		}
		quit(pio)
		return nil
	})
}

// quit sends COM_QUIT, best effort: the connection is closed next anyway.
func quit(pio *PacketIO) {
	pio.ResetSequence()
	if err := pio.WritePacket([]byte{ComQuit}); err == nil {
		_ = pio.Flush()
	}
}

// withGreeting connects, reads the greeting and, when then is set, runs it
// on the connection before closing it.
//
// A probe that leaves after the greeting closes with a reset (SO_LINGER 0),
// as HAProxy's checks do: the server has nothing more to say to it, and a
// normal close would leave the proxy a TIME_WAIT socket per probe, 60,000 at
// a time for 1,000 backends probed each second. A probe that logged in and
// sent COM_QUIT closes normally, so the server reads the quit and does not
// count an aborted connection.
func withGreeting(ctx context.Context, d *net.Dialer, addr string, then func(*PacketIO, *InitialHandshake) error) (*InitialHandshake, error) {
	c, err := open(ctx, d, addr, then)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.conn.(*net.TCPConn); ok && then == nil {
		_ = tc.SetLinger(0)
	}
	_ = c.conn.Close()
	return c.Greeting, nil
}

// open connects, reads the greeting and runs then (when set), all within
// ctx, and returns the connection with no deadline set.
func open(ctx context.Context, d *net.Dialer, addr string, then func(*PacketIO, *InitialHandshake) error) (*ProbeConn, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pio := NewPacketIO(conn)
	c := &ProbeConn{conn: conn, pio: pio}
	hs, err := c.greet(ctx, then)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.Greeting = hs
	return c, nil
}

func (c *ProbeConn) greet(ctx context.Context, then func(*PacketIO, *InitialHandshake) error) (*InitialHandshake, error) {
	stop := c.bound(ctx)
	defer stop()
	defer c.pio.Release()
	pkt, err := c.pio.ReadPacket(maxGreeting)
	if err != nil {
		return nil, fmt.Errorf("read greeting: %w", ctxerr.Stable(ctx, err))
	}
	hs, err := parseGreeting(pkt)
	if err != nil {
		return nil, err
	}
	if then != nil {
		if err := then(c.pio, hs); err != nil {
			// As above: a timeout's text would carry the local port.
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("login: %w", cerr)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("login: %w", context.DeadlineExceeded)
			}
			return nil, err
		}
	}
	if err := c.unbound(ctx, stop); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return hs, nil
}

// parseGreeting reads a server's first packet: an initial handshake, or the
// ERR of a server that refuses the connection.
func parseGreeting(pkt []byte) (*InitialHandshake, error) {
	if len(pkt) > 0 && pkt[0] == ErrHeader {
		return nil, fmt.Errorf("server refused: %w", ParseErr(pkt))
	}
	hs, err := ParseInitialHandshake(pkt)
	if err != nil {
		return nil, fmt.Errorf("bad greeting: %w", err)
	}
	return hs, nil
}

// ProbeConn is a logged-in connection that a health prober keeps open and
// checks with COM_PING, instead of a new TCP handshake and greeting per
// probe. It is used by one goroutine at a time. After an error it is
// unusable: Close it and dial again.
type ProbeConn struct {
	conn net.Conn
	pio  *PacketIO
	// Greeting is what the server announced when the connection was made.
	Greeting *InitialHandshake
}

// DialProbe connects to addr, reads the greeting and logs in as user with
// password ("" for none), all within ctx. The password is never part of an
// error.
func DialProbe(ctx context.Context, d *net.Dialer, addr, user, password string) (*ProbeConn, error) {
	return open(ctx, d, addr, func(pio *PacketIO, hs *InitialHandshake) error {
		return login(pio, hs, user, password)
	})
}

// Ping sends COM_PING and reads the server's OK, within ctx.
func (c *ProbeConn) Ping(ctx context.Context) error {
	stop := c.bound(ctx)
	defer stop()
	err := c.SendPing()
	if err == nil {
		err = c.ReadPong()
	}
	if err != nil {
		return fmt.Errorf("ping: %w", ctxerr.Stable(ctx, err))
	}
	if err := c.unbound(ctx, stop); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// SendPing writes a COM_PING and returns without waiting for the answer,
// which ReadPong reads: a caller can ping many connections, then read
// their answers, and park once for all of them. Neither sets a deadline;
// SetDeadline bounds them.
func (c *ProbeConn) SendPing() error {
	defer c.pio.Release()
	c.pio.ResetSequence()
	if err := c.pio.WritePacket([]byte{ComPing}); err != nil {
		return err
	}
	return c.pio.Flush()
}

// ReadPong reads the answer to SendPing's COM_PING: an OK packet, or an
// error that says what came instead.
func (c *ProbeConn) ReadPong() error {
	defer c.pio.Release()
	pkt, err := c.pio.ReadPacket(maxGreeting)
	switch {
	case err != nil:
		return err
	case len(pkt) > 0 && pkt[0] == ErrHeader:
		return fmt.Errorf("refused: %w", ParseErr(pkt))
	case len(pkt) == 0 || pkt[0] != OKHeader:
		return fmt.Errorf("%w: not an OK packet", ErrMalformed)
	}
	return nil
}

// SetDeadline bounds SendPing and ReadPong (zero: no bound). A deadline
// already past makes the next of them fail at once, even when the answer is
// there to read.
func (c *ProbeConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close sends COM_QUIT, so the server does not count an aborted
// connection, and closes the connection. It does not wait for a server that
// does not read.
func (c *ProbeConn) Close() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	quit(c.pio)
	return c.conn.Close()
}

// bound makes ctx's deadline the connection's and a cancellation of ctx
// unblock it; unbound undoes that.
func (c *ProbeConn) bound(ctx context.Context) (stop func() bool) {
	// A cancellation is a prober closing or a target removed.
	return ctxerr.Bound(ctx, c.conn)
}

// unbound clears the deadline once an exchange succeeded. When ctx ended
// meanwhile, its AfterFunc may be setting a past deadline at any moment, so
// the connection cannot be trusted any more: that is an error.
func (c *ProbeConn) unbound(ctx context.Context, stop func() bool) error {
	if !stop() {
		return ctx.Err()
	}
	return c.conn.SetDeadline(time.Time{})
}
