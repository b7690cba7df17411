package mysqldouble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

const (
	// maxPayload is the largest payload one wire packet carries; a payload of exactly this
	// length means "more follows in the next packet".
	maxPayload = 1<<24 - 1
	// maxAllowedPacket caps what the double buffers for one logical packet, so a garbage
	// length header cannot make it allocate gigabytes. It is what @@max_allowed_packet
	// reports.
	maxAllowedPacket = 64 << 20
)

var (
	errOutOfOrder     = errors.New("mysqldouble: packet sequence id out of order")
	errPacketTooLarge = errors.New("mysqldouble: packet larger than max_allowed_packet")
)

// packetConn frames MySQL packets over a connection and keeps the sequence id the way
// MySQL does: one counter shared by both directions, reset to 0 at every command.
type packetConn struct {
	conn net.Conn // the raw TCP connection, or the TLS connection after an upgrade
	seq  uint8
	hdr  [4]byte
}

func (p *packetConn) resetSeq() { p.seq = 0 }

// readPacket reads one logical packet (joining continuation packets) and checks that every
// part carries the expected sequence id.
func (p *packetConn) readPacket() ([]byte, error) {
	var payload []byte
	for {
		if _, err := io.ReadFull(p.conn, p.hdr[:]); err != nil {
			return nil, err
		}
		n := int(p.hdr[0]) | int(p.hdr[1])<<8 | int(p.hdr[2])<<16
		if p.hdr[3] != p.seq {
			return nil, fmt.Errorf("%w: got %d, want %d", errOutOfOrder, p.hdr[3], p.seq)
		}
		p.seq++
		if len(payload)+n > maxAllowedPacket {
			return nil, errPacketTooLarge
		}
		start := len(payload)
		payload = append(payload, make([]byte, n)...)
		if _, err := io.ReadFull(p.conn, payload[start:]); err != nil {
			return nil, err
		}
		if n < maxPayload {
			return payload, nil
		}
	}
}

// writePacket sends payload as one logical packet, splitting it when it reaches the
// 16 MiB frame limit (and sending the empty trailer MySQL requires after an exact multiple).
func (p *packetConn) writePacket(payload []byte) error {
	for {
		n := min(len(payload), maxPayload)
		buf := make([]byte, 4, 4+n)
		buf[0], buf[1], buf[2] = byte(n), byte(n>>8), byte(n>>16)
		buf[3] = p.seq
		p.seq++
		buf = append(buf, payload[:n]...)
		if _, err := p.conn.Write(buf); err != nil {
			return err
		}
		payload = payload[n:]
		if n < maxPayload {
			return nil
		}
	}
}

// appendLenEncInt appends a length-encoded integer.
func appendLenEncInt(b []byte, v uint64) []byte {
	switch {
	case v < 0xfb:
		return append(b, byte(v))
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16(append(b, 0xfc), uint16(v))
	case v <= 0xffffff:
		return append(b, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	default:
		return binary.LittleEndian.AppendUint64(append(b, 0xfe), v)
	}
}

func appendLenEncString(b []byte, s string) []byte {
	return append(appendLenEncInt(b, uint64(len(s))), s...)
}

// reader walks a received payload; every method reports false instead of panicking when
// the payload is too short, so malformed input only ends the connection that sent it.
type reader struct {
	b []byte
}

func (r *reader) n(k int) ([]byte, bool) {
	if k < 0 || len(r.b) < k {
		return nil, false
	}
	out := r.b[:k]
	r.b = r.b[k:]
	return out, true
}

func (r *reader) uint8() (byte, bool) {
	b, ok := r.n(1)
	if !ok {
		return 0, false
	}
	return b[0], true
}

func (r *reader) uint32() (uint32, bool) {
	b, ok := r.n(4)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

// nulString reads up to a NUL terminator; at the end of the payload a missing terminator is
// tolerated, as some clients omit the final one.
func (r *reader) nulString() (string, bool) {
	for i, c := range r.b {
		if c == 0 {
			s := string(r.b[:i])
			r.b = r.b[i+1:]
			return s, true
		}
	}
	s := string(r.b)
	r.b = nil
	return s, true
}

func (r *reader) lenEncInt() (uint64, bool) {
	first, ok := r.uint8()
	if !ok {
		return 0, false
	}
	var size int
	switch first {
	case 0xfc:
		size = 2
	case 0xfd:
		size = 3
	case 0xfe:
		size = 8
	case 0xfb, 0xff:
		return 0, false
	default:
		return uint64(first), true
	}
	b, ok := r.n(size)
	if !ok {
		return 0, false
	}
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, true
}

func (r *reader) lenEncBytes() ([]byte, bool) {
	n, ok := r.lenEncInt()
	if !ok || n > uint64(len(r.b)) {
		return nil, false
	}
	return r.n(int(n))
}
