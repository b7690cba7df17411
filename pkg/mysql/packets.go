package mysql

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is returned when a packet does not parse.
var ErrMalformed = errors.New("malformed packet")

// uint24 reads the three-byte little-endian integer that begins b: a
// packet header's payload length, among others.
func uint24(b []byte) int {
	_ = b[2]
	return int(b[0]) | int(b[1])<<8 | int(b[2])<<16
}

// putUint24 writes the low three bytes of v to b, little-endian.
func putUint24(b []byte, v int) {
	_ = b[2]
	b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16)
}

// ReadLenEncInt decodes a length-encoded integer. ok is false when b is too
// short; isNull is set for the 0xfb NULL marker.
func ReadLenEncInt(b []byte) (v uint64, isNull bool, n int, ok bool) {
	if len(b) == 0 {
		return 0, false, 0, false
	}
	switch b[0] {
	case 0xfb:
		return 0, true, 1, true
	case 0xfc:
		if len(b) < 3 {
			return 0, false, 0, false
		}
		return uint64(binary.LittleEndian.Uint16(b[1:])), false, 3, true
	case 0xfd:
		if len(b) < 4 {
			return 0, false, 0, false
		}
		return uint64(uint24(b[1:])), false, 4, true
	case 0xfe:
		if len(b) < 9 {
			return 0, false, 0, false
		}
		return binary.LittleEndian.Uint64(b[1:]), false, 9, true
	case 0xff:
		return 0, false, 0, false
	default:
		return uint64(b[0]), false, 1, true
	}
}

// AppendLenEncInt appends v as a length-encoded integer.
func AppendLenEncInt(b []byte, v uint64) []byte {
	switch {
	case v < 251:
		return append(b, byte(v))
	case v < 1<<16:
		return append(b, 0xfc, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(b, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	default:
		b = append(b, 0xfe)
		return binary.LittleEndian.AppendUint64(b, v)
	}
}

// ReadLenEncString decodes a length-encoded string.
func ReadLenEncString(b []byte) (s []byte, n int, ok bool) {
	v, isNull, m, ok := ReadLenEncInt(b)
	if !ok {
		return nil, 0, false
	}
	if isNull {
		return nil, m, true
	}
	if uint64(len(b)-m) < v {
		return nil, 0, false
	}
	return b[m : m+int(v)], m + int(v), true
}

// AppendLenEncString appends s as a length-encoded string.
func AppendLenEncString(b []byte, s []byte) []byte {
	return append(AppendLenEncInt(b, uint64(len(s))), s...)
}

// ReadNulString reads a NUL-terminated string.
func ReadNulString(b []byte) (s []byte, n int, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], i + 1, true
		}
	}
	return nil, 0, false
}

// IsEOFPacket reports whether a response packet terminates a sequence of
// column definitions or rows: an EOF packet, or with CLIENT_DEPRECATE_EOF
// an OK packet with the 0xfe header. Text rows can start with 0xfe only
// when their first value is 16 MiB or longer, hence the length test.
func IsEOFPacket(pk Packet) bool {
	return pk.Len < MaxPayloadLen && pk.First() == EOFHeader
}

// OKInfo is the part of an OK packet the proxy tracks.
type OKInfo struct {
	AffectedRows uint64
	LastInsertID uint64
	Status       uint16
	Warnings     uint16
	// Info is the human-readable message.
	Info []byte
	// SessionState holds the raw session state changes (CLIENT_SESSION_TRACK
	// with SERVER_SESSION_STATE_CHANGED).
	SessionState []byte
}

// ParseOK parses an OK packet (header 0x00, or 0xfe for the OK that ends a
// result set under CLIENT_DEPRECATE_EOF). sessionTrack says whether
// CLIENT_SESSION_TRACK was negotiated on this connection.
func ParseOK(data []byte, sessionTrack bool) (OKInfo, error) {
	var ok OKInfo
	if len(data) < 1 {
		return ok, fmt.Errorf("%w: empty OK packet", ErrMalformed)
	}
	pos := 1
	var n int
	var good bool
	if ok.AffectedRows, _, n, good = ReadLenEncInt(data[pos:]); !good {
		return ok, fmt.Errorf("%w: OK packet affected rows", ErrMalformed)
	}
	pos += n
	if ok.LastInsertID, _, n, good = ReadLenEncInt(data[pos:]); !good {
		return ok, fmt.Errorf("%w: OK packet last insert id", ErrMalformed)
	}
	pos += n
	if len(data) < pos+4 {
		// Old servers may omit status and warnings.
		return ok, nil
	}
	ok.Status = binary.LittleEndian.Uint16(data[pos:])
	ok.Warnings = binary.LittleEndian.Uint16(data[pos+2:])
	pos += 4
	if !sessionTrack {
		ok.Info = data[pos:]
		return ok, nil
	}
	if pos == len(data) {
		return ok, nil
	}
	if ok.Info, n, good = ReadLenEncString(data[pos:]); !good {
		return ok, fmt.Errorf("%w: OK packet info", ErrMalformed)
	}
	pos += n
	if ok.Status&ServerSessionStateChanged != 0 && pos < len(data) {
		if ok.SessionState, _, good = ReadLenEncString(data[pos:]); !good {
			return ok, fmt.Errorf("%w: OK packet session state", ErrMalformed)
		}
	}
	return ok, nil
}

// AppendOK encodes an OK packet. header is 0x00, or 0xfe for a result-set
// terminator under CLIENT_DEPRECATE_EOF. Session state is written only when
// sessionTrack is true.
func AppendOK(b []byte, header byte, ok OKInfo, sessionTrack bool) []byte {
	b = append(b, header)
	b = AppendLenEncInt(b, ok.AffectedRows)
	b = AppendLenEncInt(b, ok.LastInsertID)
	status := ok.Status
	if !sessionTrack {
		status &^= ServerSessionStateChanged
	}
	b = binary.LittleEndian.AppendUint16(b, status)
	b = binary.LittleEndian.AppendUint16(b, ok.Warnings)
	if !sessionTrack {
		return append(b, ok.Info...)
	}
	if len(ok.Info) == 0 && status&ServerSessionStateChanged == 0 {
		return b
	}
	b = AppendLenEncString(b, ok.Info)
	if status&ServerSessionStateChanged != 0 {
		b = AppendLenEncString(b, ok.SessionState)
	}
	return b
}

// ParseEOFStatus returns the status flags of an EOF packet (or of an OK
// packet with the 0xfe header under CLIENT_DEPRECATE_EOF).
func ParseEOFStatus(data []byte, deprecateEOF, sessionTrack bool) (uint16, error) {
	if deprecateEOF {
		ok, err := ParseOK(data, sessionTrack)
		return ok.Status, err
	}
	if len(data) < 5 {
		if len(data) == 1 {
			return 0, nil // pre-4.1 EOF
		}
		return 0, fmt.Errorf("%w: EOF packet", ErrMalformed)
	}
	return binary.LittleEndian.Uint16(data[3:]), nil
}

// SessionSchema returns the new default schema if the session state changes
// of an OK packet contain one.
func SessionSchema(state []byte) (schema string, found bool) {
	for len(state) > 0 {
		typ := state[0]
		body, n, ok := ReadLenEncString(state[1:])
		if !ok {
			return "", false
		}
		if typ == SessionTrackSchema {
			s, _, ok := ReadLenEncString(body)
			if ok {
				schema, found = string(s), true
			}
		}
		state = state[1+n:]
	}
	return schema, found
}

// MySQLError is an ERR packet.
type MySQLError struct {
	Code    uint16
	State   string
	Message string
	// NoState is set on an error whose packet carried no SQL state: a
	// server's refusal before the handshake (ERR 1040 Too many
	// connections), when it cannot know the client's protocol. State is
	// then HY000 for display, and the packet is re-encoded without one,
	// so a client hears it through the proxy as it would directly.
	NoState bool
}

func (e *MySQLError) Error() string {
	return fmt.Sprintf("ERROR %d (%s): %s", e.Code, e.State, e.Message)
}

// NewError builds an error with the generic SQL state HY000.
func NewError(code uint16, format string, args ...any) *MySQLError {
	return &MySQLError{Code: code, State: "HY000", Message: fmt.Sprintf(format, args...)}
}

// AppendErr encodes an ERR packet (protocol 4.1 layout, without the SQL
// state when e.NoState).
func AppendErr(b []byte, e *MySQLError) []byte {
	b = append(b, ErrHeader)
	b = binary.LittleEndian.AppendUint16(b, e.Code)
	if e.NoState {
		return append(b, e.Message...)
	}
	state := e.State
	if len(state) != 5 {
		state = "HY000"
	}
	b = append(b, '#')
	b = append(b, state...)
	return append(b, e.Message...)
}

// ParseErr decodes an ERR packet.
func ParseErr(data []byte) *MySQLError {
	e := &MySQLError{State: "HY000"}
	if len(data) < 3 || data[0] != ErrHeader {
		e.Message = "malformed error packet"
		return e
	}
	e.Code = binary.LittleEndian.Uint16(data[1:])
	rest := data[3:]
	if len(rest) >= 6 && rest[0] == '#' {
		e.State = string(rest[1:6])
		rest = rest[6:]
	} else {
		e.NoState = true
	}
	e.Message = string(rest)
	return e
}

// WriteError writes an ERR packet and flushes; used for errors the proxy
// itself reports to a client.
func (p *PacketIO) WriteError(e *MySQLError) error {
	if err := p.WritePacket(AppendErr(nil, e)); err != nil {
		return err
	}
	return p.Flush()
}
