package shadow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/switchyard-db/switchyard/lib/ctxerr"
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// conn is a mirror worker's connection to the target cluster: a minimal
// text-protocol client over pkg/mysql, so that its rows are hashed as the
// same bytes a client receives (a driver would convert them first).
type conn struct {
	nc      net.Conn
	pio     *mysql.PacketIO
	caps    uint32
	db      string
	charset byte
}

const nativePlugin = "mysql_native_password"

// errLoginPlugin: the target asked for an authentication plugin the mirror
// does not speak.
var errLoginPlugin = errors.New("the shadow account must use mysql_native_password")

// dial connects to addr and logs in as user with db as the schema and
// charset as the collation. password is read, not kept.
func dial(ctx context.Context, addr, user string, password []byte, db string, charset byte) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// A mirror that closes cancels ctx: that must end a login the target
	// never answers.
	defer ctxerr.Bound(ctx, nc)()
	c := &conn{nc: nc, pio: mysql.NewPacketIO(nc), db: db, charset: charset}
	if err := c.login(user, password); err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *conn) login(user string, password []byte) error {
	pkt, err := c.pio.ReadPacket(1 << 16)
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if len(pkt) > 0 && pkt[0] == mysql.ErrHeader {
		return fmt.Errorf("server refused: %w", mysql.ParseErr(pkt))
	}
	hs, err := mysql.ParseInitialHandshake(pkt)
	if err != nil {
		return err
	}
	c.caps = mysql.ClientProtocol41 | mysql.ClientSecureConnection | mysql.ClientPluginAuth |
		mysql.ClientLongPassword | mysql.ClientTransactions
	if c.db != "" {
		c.caps |= mysql.ClientConnectWithDB
	}
	c.caps &= hs.Capability | mysql.ClientLongPassword
	auth := mysql.Scramble(mysql.AuthNativePassword, password, hs.Salt)
	resp := &mysql.HandshakeResponse{Capability: c.caps, MaxPacket: 1 << 24, Charset: c.charset,
		User: user, AuthData: auth, DB: c.db, AuthPlugin: nativePlugin}
	err = c.pio.WritePacket(mysql.AppendHandshakeResponse(nil, resp))
	clear(auth)
	if err == nil {
		err = c.pio.Flush()
	}
	if err != nil {
		return fmt.Errorf("sending login: %w", err)
	}
	for range 3 {
		pkt, err := c.pio.ReadPacket(1 << 16)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		switch {
		case len(pkt) == 0:
			return errors.New("login: empty answer")
		case pkt[0] == mysql.OKHeader:
			return nil
		case pkt[0] == mysql.ErrHeader:
			return fmt.Errorf("login as %q refused: %w", user, mysql.ParseErr(pkt))
		case pkt[0] == mysql.AuthSwitchHeader:
			sw, err := mysql.ParseAuthSwitchRequest(pkt)
			if err != nil {
				return err
			}
			if sw.Plugin != nativePlugin {
				return fmt.Errorf("%w (the server asked for %s)", errLoginPlugin, sw.Plugin)
			}
			auth := mysql.Scramble(mysql.AuthNativePassword, password, sw.Data)
			err = c.pio.WritePacket(auth)
			clear(auth)
			if err == nil {
				err = c.pio.Flush()
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w (unexpected packet 0x%02x)", errLoginPlugin, pkt[0])
		}
	}
	return errors.New("login: no result after 3 packets")
}

// result is what the target returned for one statement.
type result struct {
	rows     uint64
	checksum uint64
	errCode  uint16
}

// useDB switches the connection's schema (COM_INIT_DB).
func (c *conn) useDB(ctx context.Context, db string) (uint16, error) {
	c.deadline(ctx)
	c.pio.ResetSequence()
	if err := c.pio.WritePacket(append([]byte{mysql.ComInitDB}, db...)); err != nil {
		return 0, err
	}
	if err := c.pio.Flush(); err != nil {
		return 0, err
	}
	pkt, err := c.pio.ReadPacket(1 << 16)
	if err != nil {
		return 0, err
	}
	if len(pkt) > 0 && pkt[0] == mysql.ErrHeader {
		return mysql.ParseErr(pkt).Code, nil
	}
	c.db = db
	return 0, nil
}

func (c *conn) deadline(ctx context.Context) {
	dl, _ := ctx.Deadline()
	_ = c.pio.SetReadDeadline(dl)
}

// query runs text and checksums its rows exactly as the session does. An
// error means the connection is unusable; a server error is a result.
func (c *conn) query(ctx context.Context, text []byte) (result, error) {
	c.deadline(ctx)
	c.pio.ResetSequence()
	if err := c.pio.WritePacket(append([]byte{mysql.ComQuery}, text...)); err != nil {
		return result{}, err
	}
	if err := c.pio.Flush(); err != nil {
		return result{}, err
	}
	var r result
	pkt, err := c.pio.ReadPacket(0)
	if err != nil {
		return r, err
	}
	switch {
	case len(pkt) == 0:
		return r, errors.New("empty response")
	case pkt[0] == mysql.ErrHeader:
		r.errCode = mysql.ParseErr(pkt).Code
		return r, nil
	case pkt[0] == mysql.OKHeader:
		return r, nil
	}
	n, _, _, ok := mysql.ReadLenEncInt(pkt)
	if !ok || n == 0 {
		return r, errors.New("bad column count")
	}
	for i := uint64(0); i <= n; i++ { // the definitions and their EOF
		if _, err := c.pio.ReadPacket(0); err != nil {
			return r, err
		}
	}
	for {
		pkt, err := c.pio.ReadPacket(0)
		if err != nil {
			return r, err
		}
		switch {
		case len(pkt) > 0 && pkt[0] == mysql.ErrHeader:
			r.errCode = mysql.ParseErr(pkt).Code
			return r, nil
		case len(pkt) > 0 && pkt[0] == mysql.EOFHeader && len(pkt) < 9:
			if st, err := mysql.ParseEOFStatus(pkt, false, false); err == nil && st&mysql.ServerMoreResultsExists != 0 {
				return r, errors.New("more than one result set")
			}
			return r, nil
		}
		r.rows++
		r.checksum += mysql.RowChecksum(pkt)
	}
}

func (c *conn) close() {
	c.pio.ResetSequence()
	if c.pio.WritePacket([]byte{mysql.ComQuit}) == nil {
		_ = c.pio.Flush()
	}
	_ = c.pio.Close()
}

// closeNow unblocks a worker stuck in a read (the mirror is closing).
// Only the socket is touched: the worker may be using the PacketIO.
func (c *conn) closeNow() { _ = c.nc.Close() }
