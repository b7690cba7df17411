package observer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	pnet "github.com/switchyard-db/switchyard/pkg/proxy/net"
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
func ReadGreeting(ctx context.Context, d *net.Dialer, addr string) (*pnet.InitialHandshake, error) {
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
	pio := pnet.NewPacketIO(conn)
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
	if len(pkt) > 0 && pkt[0] == pnet.ErrHeader {
		return nil, fmt.Errorf("server refused: %w", pnet.ParseErr(pkt))
	}
	hs, err := pnet.ParseInitialHandshake(pkt)
	if err != nil {
		return nil, fmt.Errorf("bad greeting: %w", err)
	}
	return hs, nil
}

// ErrNotProbed is the reason of a backend that has not been probed yet.
var ErrNotProbed = errors.New("not probed yet")
