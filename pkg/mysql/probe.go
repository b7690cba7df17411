package mysql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
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
func ReadGreeting(ctx context.Context, d *net.Dialer, addr string) (*InitialHandshake, error) {
	return withGreeting(ctx, d, addr, nil)
}

// CheckSQLLogin is CheckSQL that then logs in as user, with no password, and
// quits. MySQL and MariaDB count a connection that hangs up after the
// greeting as an aborted handshake, and block a host after
// max_connect_errors of them; a completed login does not count. The user
// needs no privileges (CREATE USER 'probe'@'%'). A refused login is a
// failure: the server answered, but not as configured.
func CheckSQLLogin(ctx context.Context, d *net.Dialer, addr, user string) error {
	_, err := ReadGreetingLogin(ctx, d, addr, user)
	return err
}

// ReadGreetingLogin is CheckSQLLogin returning the server's greeting, for
// callers that record what the server announces.
func ReadGreetingLogin(ctx context.Context, d *net.Dialer, addr, user string) (*InitialHandshake, error) {
	return withGreeting(ctx, d, addr, func(pio *PacketIO, hs *InitialHandshake) error {
		return loginAndQuit(pio, hs, user)
	})
}

// maxAuthRounds bounds the packets a login may take (greeting answer, one
// auth switch, the result).
const maxAuthRounds = 3

func loginAndQuit(pio *PacketIO, hs *InitialHandshake, user string) error {
	resp := &HandshakeResponse{
		Capability: ClientProtocol41 | ClientSecureConnection | ClientPluginAuth |
			ClientLongPassword | ClientTransactions,
		MaxPacket:  1 << 24,
		Charset:    hs.Charset,
		User:       user,
		AuthPlugin: hs.AuthPlugin,
	}
	if err := pio.WritePacket(AppendHandshakeResponse(nil, resp)); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	if err := pio.Flush(); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	for range maxAuthRounds {
		pkt, err := pio.ReadPacket(maxGreeting)
		if err != nil {
			return fmt.Errorf("login as %q: %w", user, err)
		}
		switch {
		case len(pkt) == 0:
			return fmt.Errorf("login as %q: empty answer", user)
		case pkt[0] == OKHeader:
			pio.ResetSequence()
			if err := pio.WritePacket([]byte{ComQuit}); err == nil {
				_ = pio.Flush()
			}
			return nil
		case pkt[0] == ErrHeader:
			return fmt.Errorf("login as %q refused: %w", user, ParseErr(pkt))
		case pkt[0] == AuthSwitchHeader:
			// Any plugin's answer for an empty password is empty.
			if err := pio.WritePacket(nil); err != nil {
				return err
			}
			if err := pio.Flush(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("login as %q: the server asks for a password (set none for the probe user)", user)
		}
	}
	return fmt.Errorf("login as %q: no result after %d packets", user, maxAuthRounds)
}

// withGreeting connects, reads the greeting and, when then is set, runs it
// on the connection before closing it.
func withGreeting(ctx context.Context, d *net.Dialer, addr string, then func(*PacketIO, *InitialHandshake) error) (*InitialHandshake, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// The deadline alone does not see a cancellation (a prober closing, a
	// target removed): unblock the read then too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	pio := NewPacketIO(conn)
	defer pio.Release()
	pkt, err := pio.ReadPacket(maxGreeting)
	if err != nil {
		// Report a silent server as the context's error rather than the
		// socket's, whose text carries the ephemeral local port and so would
		// differ on every probe.
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if len(pkt) > 0 && pkt[0] == ErrHeader {
		return nil, fmt.Errorf("server refused: %w", ParseErr(pkt))
	}
	hs, err := ParseInitialHandshake(pkt)
	if err != nil {
		return nil, fmt.Errorf("bad greeting: %w", err)
	}
	if then != nil {
		if err := then(pio, hs); err != nil {
			// As above: a timeout's text would carry the local port.
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("login: %w", cerr)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("login: %w", context.DeadlineExceeded)
			}
			return nil, err
		}
	}
	return hs, nil
}
