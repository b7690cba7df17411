package mysql

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ErrPacketTooLarge is returned when a packet exceeds the limit set for the
// current phase (e.g. the first packet of a handshake).
var ErrPacketTooLarge = errors.New("packet too large")

// PacketIO reads and writes MySQL packets on one connection. It tracks the
// sequence id, splits and joins payloads of 16 MiB and more, and can switch
// the transport to TLS and to the compressed protocol mid-stream.
//
// A PacketIO is used by one goroutine at a time; only Close may be called
// concurrently.
type PacketIO struct {
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or the TLS connection over it
	comp *CompressedStream
	rd   reader
	wr   writer
	seq  uint8
	// prefix holds the first bytes of a packet too large to inspect in
	// place; allocated by the first such packet.
	prefix *[64]byte
	// cur is the physical packet announced by Next and not yet consumed.
	curLen  int
	pending bool
}

// NewPacketIO wraps a connection.
func NewPacketIO(conn net.Conn) *PacketIO {
	p := &PacketIO{raw: conn, conn: conn}
	p.rd.init(conn)
	p.wr.dst = newSysWriter(conn)
	return p
}

// Socket is a wrapper of a TCP connection with nothing between its Write
// and the socket, which PacketIO writes to as to a *net.TCPConn: with raw
// write(2) calls on SyscallConn's descriptor (syswrite_linux.go).
type Socket interface {
	net.Conn
	SyscallConn() (syscall.RawConn, error)
	// TCPSocket marks the type as such a wrapper.
	TCPSocket()
}

// SocketWriter is how PacketIO writes to conn: raw write(2) calls for a TCP
// connection, else conn itself. Wrappers of a TCP connection use it for
// their own writes.
func SocketWriter(conn net.Conn) io.Writer { return newSysWriter(conn) }

// Conn returns the current transport (TLS once upgraded).
func (p *PacketIO) Conn() net.Conn { return p.conn }

// RawConn returns the underlying TCP connection.
func (p *PacketIO) RawConn() net.Conn { return p.raw }

// IsTLS reports whether the transport has been upgraded to TLS.
func (p *PacketIO) IsTLS() bool { return p.conn != p.raw }

// TLSState returns the TLS connection state, or nil.
func (p *PacketIO) TLSState() *tls.ConnectionState {
	if c, ok := p.conn.(*tls.Conn); ok {
		st := c.ConnectionState()
		return &st
	}
	return nil
}

// Sequence returns the next sequence id.
func (p *PacketIO) Sequence() uint8 { return p.seq }

// SetSequence sets the next sequence id.
func (p *PacketIO) SetSequence(s uint8) { p.seq = s }

// ResetSequence starts a new command: sequence ids (and the compressed
// protocol's own sequence) restart at 0.
func (p *PacketIO) ResetSequence() {
	p.seq = 0
	if p.comp != nil {
		p.comp.ResetSequence()
	}
}

// Buffered reports whether bytes are already buffered for reading, i.e.
// whether the next read can complete without waiting on the network.
func (p *PacketIO) Buffered() bool {
	return p.rd.buffered() > 0 || (p.comp != nil && p.comp.Buffered() > 0)
}

// Plain reports whether the connection has neither TLS nor compression: its
// socket being readable then means that Next has bytes to read.
func (p *PacketIO) Plain() bool { return p.conn == p.raw && p.comp == nil }

// Await waits until at least one byte of the next packet is buffered,
// without consuming anything: a read deadline that interrupts it loses
// nothing, and Next then reads on. The transport must be Plain (the
// buffers of TLS and compression would be read past).
func (p *PacketIO) Await() error {
	if p.rd.buffered() > 0 {
		return nil
	}
	return p.rd.fill(1)
}

// SetReadDeadline sets the read deadline on the underlying connection.
func (p *PacketIO) SetReadDeadline(t time.Time) error { return p.raw.SetReadDeadline(t) }

// SetDeadline sets both deadlines on the underlying connection.
func (p *PacketIO) SetDeadline(t time.Time) error { return p.raw.SetDeadline(t) }

// Packet describes the physical packet announced by Next.
type Packet struct {
	// Len is the payload length of this physical packet. MaxPayloadLen
	// means the logical packet continues in the next one.
	Len int
	// Data is the whole payload when Complete, otherwise a copy of its
	// first bytes (up to 64). It aliases internal buffers: valid until
	// the next read.
	Data []byte
	// Complete is true when Data is the whole logical packet.
	Complete bool
	// Seq is the packet's sequence id.
	Seq uint8
}

// First returns the payload's first byte, or 0 for an empty packet.
func (pk Packet) First() byte {
	if len(pk.Data) == 0 {
		return 0
	}
	return pk.Data[0]
}

// Next reads the header of the next packet and buffers its payload when it
// fits in a buffer, without consuming it. The caller then calls
// ForwardCurrent or DiscardCurrent.
func (p *PacketIO) Next() (Packet, error) {
	if p.pending {
		return Packet{}, errors.New("pnet: Next called twice without consuming the packet")
	}
	if err := p.rd.fill(4); err != nil {
		return Packet{}, err
	}
	h := p.rd.buf[p.rd.r : p.rd.r+4]
	n := uint24(h)
	seq := h[3]
	p.rd.r += 4
	p.seq = seq + 1
	p.curLen, p.pending = n, true
	pk := Packet{Len: n, Seq: seq}
	if n <= largeBufSize {
		if err := p.rd.fillMore(n); err != nil {
			return Packet{}, err
		}
		pk.Data = p.rd.buf[p.rd.r : p.rd.r+n]
		pk.Complete = n < MaxPayloadLen
		return pk, nil
	}
	if p.prefix == nil {
		p.prefix = new([64]byte)
	}
	m := min(n, len(p.prefix))
	if err := p.rd.fillMore(m); err != nil {
		return Packet{}, err
	}
	pk.Data = p.prefix[:copy(p.prefix[:], p.rd.buf[p.rd.r:p.rd.r+m])]
	return pk, nil
}

// DiscardCurrent consumes the packet announced by Next (and its
// continuation packets) without forwarding it.
func (p *PacketIO) DiscardCurrent() error {
	return p.consumeCurrent(nil)
}

// ErrForwardWrite marks ForwardCurrent's errors that are dst's: the packet
// could not be written, and was read to its end all the same, so p is still
// in step with its peer. Any other error is p's own.
var ErrForwardWrite = errors.New("writing the forwarded packet")

// ForwardCurrent writes the packet announced by Next (and its continuation
// packets) to dst with dst's sequence ids, streaming payloads that do not fit
// in a buffer. When dst fails, the rest of the packet is read and dropped,
// and the error wraps ErrForwardWrite.
func (p *PacketIO) ForwardCurrent(dst *PacketIO) error {
	return p.consumeCurrent(dst)
}

func (p *PacketIO) consumeCurrent(dst *PacketIO) error {
	if !p.pending {
		return errors.New("pnet: no packet to consume")
	}
	p.pending = false
	n := p.curLen
	var werr error // dst's, after which the packet is only read
	for {
		if dst != nil {
			if err := dst.writeHeader(n); err != nil {
				dst, werr = nil, err
			}
		}
		failed, err := p.copyPayload(dst, n)
		if err != nil {
			return err
		}
		if failed != nil {
			dst, werr = nil, failed
		}
		if n < MaxPayloadLen {
			if werr != nil {
				return fmt.Errorf("%w: %w", ErrForwardWrite, werr)
			}
			return nil
		}
		if err := p.rd.fillMore(4); err != nil {
			return err
		}
		h := p.rd.buf[p.rd.r : p.rd.r+4]
		n = uint24(h)
		p.seq = h[3] + 1
		p.rd.r += 4
	}
}

// copyPayload moves n payload bytes from the read buffer to dst, or drops
// them when dst is nil. Should dst fail, it drops the rest, and returns
// dst's error as werr; err is the reader's.
func (p *PacketIO) copyPayload(dst *PacketIO, n int) (werr, err error) {
	for n > 0 {
		if p.rd.r == p.rd.w {
			if err := p.rd.fill(1); err != nil {
				if err == io.EOF {
					return werr, io.ErrUnexpectedEOF
				}
				return werr, err
			}
		}
		m := min(n, p.rd.w-p.rd.r)
		if dst != nil {
			if werr = dst.wr.write(p.rd.buf[p.rd.r : p.rd.r+m]); werr != nil {
				dst = nil
			}
		}
		p.rd.r += m
		n -= m
	}
	return werr, nil
}

func (p *PacketIO) writeHeader(n int) error {
	seq := p.seq
	p.seq++
	return p.wr.writeHeader(n, seq)
}

// ReadPacket reads one logical packet, joining continuation packets, into a
// newly allocated slice. maxLen bounds the total size (0: no bound); it is
// meant for the handshake and other control packets, not for result rows.
func (p *PacketIO) ReadPacket(maxLen int) ([]byte, error) {
	var out []byte
	for first := true; ; first = false {
		fill := p.rd.fillMore
		if first {
			fill = p.rd.fill
		}
		if err := fill(4); err != nil {
			return nil, err
		}
		h := p.rd.buf[p.rd.r : p.rd.r+4]
		n := uint24(h)
		p.seq = h[3] + 1
		p.rd.r += 4
		if maxLen > 0 && len(out)+n > maxLen {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPacketTooLarge, len(out)+n, maxLen)
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if err := p.rd.readFull(out[start:]); err != nil {
			return nil, err
		}
		if n < MaxPayloadLen {
			return out, nil
		}
	}
}

// WritePacket writes one logical packet, splitting it as needed. It does
// not flush.
func (p *PacketIO) WritePacket(payload []byte) error {
	for {
		n := min(len(payload), MaxPayloadLen)
		if err := p.writeHeader(n); err != nil {
			return err
		}
		if err := p.wr.write(payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
		if n < MaxPayloadLen {
			return nil
		}
	}
}

// WriteRaw writes bytes that are not a MySQL packet (a PROXY protocol
// header) straight to the transport.
func (p *PacketIO) WriteRaw(b []byte) error { return p.wr.write(b) }

// Flush sends everything written so far.
func (p *PacketIO) Flush() error {
	if err := p.wr.flushBuf(); err != nil {
		return err
	}
	if p.comp != nil {
		return p.comp.Flush()
	}
	return nil
}

// Release returns pooled buffers that hold no data. Sessions call it before
// waiting for the next command so that idle sessions stay small.
func (p *PacketIO) Release() {
	p.rd.release()
	p.wr.release()
}

// HoldsPooledBuffers reports whether the connection holds a buffer from a
// pool, as it does while data flows and must not once Release ran while
// idle.
func (p *PacketIO) HoldsPooledBuffers() bool {
	return p.rd.buf != nil || p.wr.pooled != nil
}

// ServerTLSHandshake upgrades the connection to TLS as the server side.
func (p *PacketIO) ServerTLSHandshake(cfg *tls.Config) error {
	return p.upgradeTLS(tls.Server(p.tlsTransport(), cfg))
}

// ClientTLSHandshake upgrades the connection to TLS as the client side.
func (p *PacketIO) ClientTLSHandshake(cfg *tls.Config) error {
	return p.upgradeTLS(tls.Client(p.tlsTransport(), cfg))
}

// tlsTransport returns the connection the TLS layer reads from. A client
// sends its TLS ClientHello right after the SSLRequest without waiting, so
// the read buffer may already hold the start of it.
func (p *PacketIO) tlsTransport() net.Conn {
	if p.rd.buffered() == 0 {
		return p.raw
	}
	pre := append([]byte(nil), p.rd.buf[p.rd.r:p.rd.w]...)
	p.rd.r = p.rd.w
	return &prefixConn{Conn: p.raw, prefix: pre}
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (p *PacketIO) upgradeTLS(c *tls.Conn) error {
	if err := p.Flush(); err != nil {
		return err
	}
	if err := c.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	p.conn = c
	p.rd.src, p.wr.dst = c, c
	return nil
}

// SetCompression switches to the compressed protocol (after the OK packet
// that ends authentication).
func (p *PacketIO) SetCompression(algo CompressAlgorithm, zstdLevel int) error {
	if algo == CompressNone {
		return nil
	}
	if p.rd.buffered() > 0 {
		return errors.New("unexpected data before switching to compression")
	}
	p.comp = NewCompressedStream(p.conn, algo, zstdLevel)
	p.rd.src, p.wr.dst = p.comp, p.comp
	return nil
}

// Linger sends FIN and drains what the peer still sends for a moment, so
// that a following Close does not reset the connection: closing a socket
// with unread data makes the kernel send a reset, which can destroy an ERR
// packet just written before the peer reads it. Over TLS it does nothing
// (a half-close would break the TLS stream).
func (p *PacketIO) Linger(d time.Duration) {
	tc, ok := p.raw.(interface{ CloseWrite() error })
	if !ok || p.IsTLS() {
		return
	}
	_ = tc.CloseWrite()
	_ = p.raw.SetReadDeadline(time.Now().Add(d))
	_, _ = io.CopyN(io.Discard, p.raw, 4<<20)
}

// Close closes the connection (and the TLS layer over it).
func (p *PacketIO) Close() error {
	return p.conn.Close()
}
