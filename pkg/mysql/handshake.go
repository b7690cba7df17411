package mysql

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// InitialHandshake is the server's Protocol::HandshakeV10.
type InitialHandshake struct {
	ServerVersion string
	ConnID        uint32
	// Salt is the full auth-plugin-data (normally 20 bytes, no trailing NUL).
	Salt       []byte
	Capability uint32
	// ExtCapability holds MariaDB's extended capabilities; it is sent and
	// read only when Capability lacks ClientMySQL.
	ExtCapability uint32
	Charset       byte
	Status        uint16
	AuthPlugin    string
}

// AppendInitialHandshake encodes a HandshakeV10 packet.
func AppendInitialHandshake(b []byte, h *InitialHandshake) []byte {
	b = append(b, 10)
	b = append(b, h.ServerVersion...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, h.ConnID)
	salt := h.Salt
	b = append(b, salt[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.Capability))
	b = append(b, h.Charset)
	b = binary.LittleEndian.AppendUint16(b, h.Status)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.Capability>>16))
	if h.Capability&ClientPluginAuth != 0 {
		b = append(b, byte(len(salt)+1))
	} else {
		b = append(b, 0)
	}
	b = append(b, make([]byte, 6)...)
	if h.Capability&ClientMySQL == 0 {
		b = binary.LittleEndian.AppendUint32(b, h.ExtCapability)
	} else {
		b = append(b, 0, 0, 0, 0)
	}
	if h.Capability&ClientSecureConnection != 0 {
		b = append(b, salt[8:]...)
		b = append(b, 0)
	}
	if h.Capability&ClientPluginAuth != 0 {
		b = append(b, h.AuthPlugin...)
		b = append(b, 0)
	}
	return b
}

// ParseInitialHandshake decodes a HandshakeV10 packet from a backend.
func ParseInitialHandshake(data []byte) (*InitialHandshake, error) {
	if len(data) < 1 {
		return nil, fmt.Errorf("%w: empty handshake", ErrMalformed)
	}
	if data[0] == ErrHeader {
		return nil, ParseErr(data)
	}
	if data[0] != 10 {
		return nil, fmt.Errorf("%w: unsupported protocol version %d", ErrMalformed, data[0])
	}
	h := &InitialHandshake{}
	pos := 1
	ver, n, ok := ReadNulString(data[pos:])
	if !ok {
		return nil, fmt.Errorf("%w: server version", ErrMalformed)
	}
	h.ServerVersion = string(ver)
	pos += n
	if len(data) < pos+4+8+1+2 {
		return nil, fmt.Errorf("%w: handshake too short", ErrMalformed)
	}
	h.ConnID = binary.LittleEndian.Uint32(data[pos:])
	pos += 4
	h.Salt = append(h.Salt, data[pos:pos+8]...)
	pos += 9
	h.Capability = uint32(binary.LittleEndian.Uint16(data[pos:]))
	pos += 2
	if len(data) < pos+1+2+2+1+10 {
		return h, nil
	}
	h.Charset = data[pos]
	h.Status = binary.LittleEndian.Uint16(data[pos+1:])
	h.Capability |= uint32(binary.LittleEndian.Uint16(data[pos+3:])) << 16
	saltLen := int(data[pos+5])
	if h.Capability&ClientMySQL == 0 {
		h.ExtCapability = binary.LittleEndian.Uint32(data[pos+12:])
	}
	pos += 6 + 10
	if h.Capability&ClientSecureConnection != 0 {
		n := max(13, saltLen-8)
		if len(data) < pos+n {
			n = len(data) - pos
		}
		part := data[pos : pos+n]
		// The second part is NUL-terminated; the NUL is not salt.
		if len(part) > 0 && part[len(part)-1] == 0 {
			part = part[:len(part)-1]
		}
		h.Salt = append(h.Salt, part...)
		pos += n
	}
	if h.Capability&ClientPluginAuth != 0 && pos < len(data) {
		name, _, ok := ReadNulString(data[pos:])
		if !ok {
			name = data[pos:] // some servers omit the final NUL
		}
		h.AuthPlugin = string(name)
	}
	return h, nil
}

// HandshakeResponse is Protocol::HandshakeResponse41 (and the SSLRequest,
// which is its first 32 bytes).
type HandshakeResponse struct {
	Capability uint32
	MaxPacket  uint32
	Charset    byte
	User       string
	AuthData   []byte
	DB         string
	AuthPlugin string
	// Attrs is the raw connection-attributes block (without its length
	// prefix), forwarded unchanged.
	Attrs     []byte
	ZstdLevel byte
	// ExtCapability holds a MariaDB client's extended capabilities, in the
	// last four bytes of the reserved area; present only when Capability
	// lacks ClientMySQL.
	ExtCapability uint32
}

// sslRequestLen is the length of an SSLRequest packet.
const sslRequestLen = 32

// IsSSLRequest reports whether a client's first packet is an SSLRequest.
func IsSSLRequest(data []byte) bool {
	return len(data) == sslRequestLen && binary.LittleEndian.Uint32(data)&ClientSSL != 0
}

// ParseHandshakeResponse decodes a HandshakeResponse41. It never panics on
// malformed input.
func ParseHandshakeResponse(data []byte) (*HandshakeResponse, error) {
	if len(data) < sslRequestLen {
		return nil, fmt.Errorf("%w: handshake response of %d bytes is too short", ErrMalformed, len(data))
	}
	r := &HandshakeResponse{}
	r.Capability = binary.LittleEndian.Uint32(data)
	if r.Capability&ClientProtocol41 == 0 {
		return nil, fmt.Errorf("%w: client does not support protocol 4.1", ErrMalformed)
	}
	r.MaxPacket = binary.LittleEndian.Uint32(data[4:])
	r.Charset = data[8]
	if r.Capability&ClientMySQL == 0 {
		r.ExtCapability = binary.LittleEndian.Uint32(data[28:])
	}
	pos := sslRequestLen
	user, n, ok := ReadNulString(data[pos:])
	if !ok {
		return nil, fmt.Errorf("%w: user name", ErrMalformed)
	}
	r.User = string(user)
	pos += n
	switch {
	case r.Capability&ClientPluginAuthLenencClientData != 0:
		auth, n, ok := ReadLenEncString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: auth data", ErrMalformed)
		}
		r.AuthData = append([]byte(nil), auth...)
		pos += n
	case r.Capability&ClientSecureConnection != 0:
		if pos >= len(data) {
			return nil, fmt.Errorf("%w: auth data length", ErrMalformed)
		}
		l := int(data[pos])
		pos++
		if pos+l > len(data) {
			return nil, fmt.Errorf("%w: auth data", ErrMalformed)
		}
		r.AuthData = append([]byte(nil), data[pos:pos+l]...)
		pos += l
	default:
		auth, n, ok := ReadNulString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: auth data", ErrMalformed)
		}
		r.AuthData = append([]byte(nil), auth...)
		pos += n
	}
	if r.Capability&ClientConnectWithDB != 0 && pos < len(data) {
		db, n, ok := ReadNulString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: database name", ErrMalformed)
		}
		r.DB = string(db)
		pos += n
	}
	if r.Capability&ClientPluginAuth != 0 && pos < len(data) {
		name, n, ok := ReadNulString(data[pos:])
		if !ok {
			// Some clients omit the terminating NUL of the last field.
			name, n = data[pos:], len(data)-pos
		}
		r.AuthPlugin = string(name)
		pos += n
	}
	if r.Capability&ClientConnectAttrs != 0 && pos < len(data) {
		attrs, n, ok := ReadLenEncString(data[pos:])
		if !ok {
			return nil, fmt.Errorf("%w: connection attributes", ErrMalformed)
		}
		r.Attrs = append([]byte(nil), attrs...)
		pos += n
	}
	if r.Capability&ClientZstdCompression != 0 && pos < len(data) {
		r.ZstdLevel = data[pos]
	}
	return r, nil
}

// AppendHandshakeResponse encodes a HandshakeResponse41 using r.Capability
// to decide which optional fields are present.
func AppendHandshakeResponse(b []byte, r *HandshakeResponse) []byte {
	b = AppendSSLRequest(b, r)
	b = append(b, r.User...)
	b = append(b, 0)
	switch {
	case r.Capability&ClientPluginAuthLenencClientData != 0:
		b = AppendLenEncString(b, r.AuthData)
	case r.Capability&ClientSecureConnection != 0:
		b = append(b, byte(len(r.AuthData)))
		b = append(b, r.AuthData...)
	default:
		b = append(b, r.AuthData...)
		b = append(b, 0)
	}
	if r.Capability&ClientConnectWithDB != 0 {
		b = append(b, r.DB...)
		b = append(b, 0)
	}
	if r.Capability&ClientPluginAuth != 0 {
		b = append(b, r.AuthPlugin...)
		b = append(b, 0)
	}
	if r.Capability&ClientConnectAttrs != 0 {
		b = AppendLenEncString(b, r.Attrs)
	}
	if r.Capability&ClientZstdCompression != 0 {
		b = append(b, r.ZstdLevel)
	}
	return b
}

// AppendSSLRequest encodes the 32-byte SSLRequest prefix of r.
func AppendSSLRequest(b []byte, r *HandshakeResponse) []byte {
	b = binary.LittleEndian.AppendUint32(b, r.Capability)
	b = binary.LittleEndian.AppendUint32(b, r.MaxPacket)
	b = append(b, r.Charset)
	b = append(b, make([]byte, 19)...)
	if r.Capability&ClientMySQL == 0 {
		return binary.LittleEndian.AppendUint32(b, r.ExtCapability)
	}
	return append(b, 0, 0, 0, 0)
}

// AuthSwitchRequest asks the client to authenticate with another plugin.
type AuthSwitchRequest struct {
	Plugin string
	Data   []byte
}

// ParseAuthSwitchRequest decodes a 0xfe auth switch packet.
func ParseAuthSwitchRequest(data []byte) (*AuthSwitchRequest, error) {
	if len(data) < 1 || data[0] != AuthSwitchHeader {
		return nil, fmt.Errorf("%w: not an auth switch request", ErrMalformed)
	}
	if len(data) == 1 {
		// Old-style request to use mysql_old_password.
		return &AuthSwitchRequest{Plugin: "mysql_old_password"}, nil
	}
	name, n, ok := ReadNulString(data[1:])
	if !ok {
		return nil, fmt.Errorf("%w: auth switch plugin name", ErrMalformed)
	}
	d := data[1+n:]
	if len(d) > 0 && d[len(d)-1] == 0 {
		d = d[:len(d)-1]
	}
	return &AuthSwitchRequest{Plugin: string(name), Data: append([]byte(nil), d...)}, nil
}

// NewSalt returns a random printable scramble without NUL or '$' bytes, as
// MySQL servers generate them.
func NewSalt(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	for i := range b {
		b[i] &= 0x7f
		if b[i] == 0 || b[i] == '$' {
			b[i]++
		}
	}
	return b
}
