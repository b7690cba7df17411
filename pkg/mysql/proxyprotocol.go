package mysql

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// PROXY protocol v2 commands (low nibble of the version/command byte).
const (
	// ProxyCommandLocal: the connection was made by the proxy itself (e.g. a
	// health check); the real endpoints are those of the connection.
	ProxyCommandLocal byte = 0x0
	// ProxyCommandProxy: the connection is relayed for the client in Src.
	ProxyCommandProxy byte = 0x1
)

// ProxyHeader is a parsed PROXY protocol v2 header. TLVs are skipped.
// Src and Dst are invalid (zero) for the LOCAL command and for AF_UNSPEC;
// IPv4-mapped IPv6 addresses are returned as IPv4.
type ProxyHeader struct {
	Command  byte
	Src, Dst netip.AddrPort
}

var (
	// ErrNoProxyHeader means the stream does not start with a PROXY protocol
	// v2 signature. Up to 16 bytes of it have been consumed.
	ErrNoProxyHeader = errors.New("no PROXY protocol v2 header")
	// ErrBadProxyHeader means the signature matched but the rest of the
	// header is invalid or unsupported.
	ErrBadProxyHeader = errors.New("invalid PROXY protocol v2 header")
)

// proxyV2Signature opens every v2 header; it cannot occur at the start of a
// v1 header or of a MySQL packet.
var proxyV2Signature = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const (
	proxyV2FixedLen = 16
	// proxyV2MaxLen bounds the address block plus TLVs. The spec allows
	// 65535, but real senders (HAProxy, cloud load balancers) stay far
	// below; a small cap keeps a hostile client from making us read 64 KiB
	// before the MySQL handshake.
	proxyV2MaxLen = 4096

	proxyV2Version = 0x2

	proxyV2FamUnspec = 0x0
	proxyV2FamInet   = 0x1
	proxyV2FamInet6  = 0x2
	proxyV2FamUnix   = 0x3

	proxyV2TransStream = 0x1

	proxyV2Inet4Len = 4 + 4 + 2 + 2
	proxyV2Inet6Len = 16 + 16 + 2 + 2
)

// ReadProxyHeaderV2 reads one PROXY protocol v2 header from r. It reads
// exactly the header's bytes, so r can be the raw connection and the MySQL
// handshake continues right after. Only TCP (STREAM over INET/INET6) is
// accepted for the PROXY command; LOCAL and AF_UNSPEC yield zero addresses.
func ReadProxyHeaderV2(r io.Reader) (*ProxyHeader, error) {
	var fixed [proxyV2FixedLen]byte
	n, err := io.ReadFull(r, fixed[:])
	if err != nil {
		if n == 0 {
			// Closed (or timed out) before sending anything.
			return nil, fmt.Errorf("read PROXY protocol header: %w", err)
		}
		if !bytes.HasPrefix(proxyV2Signature[:], fixed[:min(n, len(proxyV2Signature))]) {
			return nil, ErrNoProxyHeader
		}
		return nil, proxyV2Truncated(err)
	}
	if !bytes.Equal(fixed[:12], proxyV2Signature[:]) {
		if bytes.HasPrefix(fixed[:], []byte("PROXY ")) {
			return nil, fmt.Errorf("%w (PROXY protocol v1 is not supported)", ErrNoProxyHeader)
		}
		return nil, ErrNoProxyHeader
	}
	verCmd, famTrans := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	if v := verCmd >> 4; v != proxyV2Version {
		return nil, fmt.Errorf("%w: version %d", ErrBadProxyHeader, v)
	}
	cmd := verCmd & 0x0f
	if cmd != ProxyCommandLocal && cmd != ProxyCommandProxy {
		return nil, fmt.Errorf("%w: unknown command %#x", ErrBadProxyHeader, cmd)
	}
	if length > proxyV2MaxLen {
		return nil, fmt.Errorf("%w: length %d exceeds %d", ErrBadProxyHeader, length, proxyV2MaxLen)
	}

	fam, trans := famTrans>>4, famTrans&0x0f
	addrLen := 0
	// The spec says receivers ignore the address block of LOCAL headers and
	// of AF_UNSPEC, whatever it claims to contain.
	if cmd == ProxyCommandProxy && fam != proxyV2FamUnspec {
		switch fam {
		case proxyV2FamInet:
			addrLen = proxyV2Inet4Len
		case proxyV2FamInet6:
			addrLen = proxyV2Inet6Len
		case proxyV2FamUnix:
			return nil, fmt.Errorf("%w: AF_UNIX addresses are not supported", ErrBadProxyHeader)
		default:
			return nil, fmt.Errorf("%w: unknown address family %#x", ErrBadProxyHeader, fam)
		}
		if trans != proxyV2TransStream {
			return nil, fmt.Errorf("%w: transport %#x is not STREAM", ErrBadProxyHeader, trans)
		}
		if length < addrLen {
			return nil, fmt.Errorf("%w: length %d too short for the addresses", ErrBadProxyHeader, length)
		}
	}

	var addrs [proxyV2Inet6Len]byte
	if _, err := io.ReadFull(r, addrs[:addrLen]); err != nil {
		return nil, proxyV2Truncated(err)
	}
	// TLVs are not needed; discarding through a LimitReader consumes exactly
	// the declared bytes.
	if _, err := io.CopyN(io.Discard, r, int64(length-addrLen)); err != nil {
		return nil, proxyV2Truncated(err)
	}

	h := &ProxyHeader{Command: cmd}
	switch addrLen {
	case proxyV2Inet4Len:
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addrs[0:4])), binary.BigEndian.Uint16(addrs[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addrs[4:8])), binary.BigEndian.Uint16(addrs[10:12]))
	case proxyV2Inet6Len:
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addrs[0:16])).Unmap(), binary.BigEndian.Uint16(addrs[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addrs[16:32])).Unmap(), binary.BigEndian.Uint16(addrs[34:36]))
	}
	return h, nil
}

func proxyV2Truncated(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: truncated: %w", ErrBadProxyHeader, err)
}

// AppendProxyHeaderV2 appends a v2 header announcing a TCP connection from
// src to dst: IPv4 when both are IPv4 (or IPv4-mapped), else IPv6 with any
// IPv4 side mapped. If either address is invalid it appends a LOCAL header,
// which tells the receiver to use the connection's own endpoints.
func AppendProxyHeaderV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, proxyV2Signature[:]...)
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case !s.IsValid() || !d.IsValid():
		return append(b, proxyV2Version<<4|ProxyCommandLocal, proxyV2FamUnspec<<4, 0, 0)
	case s.Is4() && d.Is4():
		b = append(b, proxyV2Version<<4|ProxyCommandProxy, proxyV2FamInet<<4|proxyV2TransStream)
		b = binary.BigEndian.AppendUint16(b, proxyV2Inet4Len)
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
	default:
		b = append(b, proxyV2Version<<4|ProxyCommandProxy, proxyV2FamInet6<<4|proxyV2TransStream)
		b = binary.BigEndian.AppendUint16(b, proxyV2Inet6Len)
		s16, d16 := s.As16(), d.As16() // As16 maps IPv4 and drops zones
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
