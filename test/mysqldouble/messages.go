package mysqldouble

import "encoding/binary"

// Capability flags (the CLIENT_* constants of the protocol documentation).
const (
	capLongPassword     uint32 = 1 << 0
	capFoundRows        uint32 = 1 << 1
	capLongFlag         uint32 = 1 << 2
	capConnectWithDB    uint32 = 1 << 3
	capProtocol41       uint32 = 1 << 9
	capSSL              uint32 = 1 << 11
	capTransactions     uint32 = 1 << 13
	capSecureConnection uint32 = 1 << 15
	capMultiStatements  uint32 = 1 << 16
	capMultiResults     uint32 = 1 << 17
	capPluginAuth       uint32 = 1 << 19
	capConnectAttrs     uint32 = 1 << 20
	capPluginAuthLenenc uint32 = 1 << 21
	capSessionTrack     uint32 = 1 << 23
	capDeprecateEOF     uint32 = 1 << 24
	capOptionalMetadata uint32 = 1 << 25
	capQueryAttributes  uint32 = 1 << 27

	baseCapabilities = capLongPassword | capFoundRows | capLongFlag | capConnectWithDB |
		capProtocol41 | capTransactions | capSecureConnection | capMultiStatements |
		capMultiResults | capPluginAuth | capPluginAuthLenenc | capConnectAttrs |
		capDeprecateEOF | capSessionTrack
)

const (
	statusInTrans             uint16 = 0x0001
	statusAutocommit          uint16 = 0x0002
	statusSessionStateChanged uint16 = 0x4000

	charsetUTF8MB4 = 255

	sessionTrackSchema = 0x01

	typeVarString = 0xfd
	typeJSON      = 0xf5

	pluginCachingSHA2 = "caching_sha2_password"
	pluginNative      = "mysql_native_password"
)

// Payload headers and caching_sha2_password status bytes.
const (
	hdrOK           = 0x00
	hdrAuthMoreData = 0x01
	hdrEOF          = 0xfe
	hdrErr          = 0xff

	sha2RequestPublicKey = 0x02
	sha2FastAuthOK       = 0x03
	sha2PerformFullAuth  = 0x04
)

// Error codes and SQL states MySQL uses for the situations the double reproduces.
const (
	codeAccessDenied     = 1045 // ER_ACCESS_DENIED_ERROR
	codeUnknownCommand   = 1047 // ER_UNKNOWN_COM_ERROR
	codeBadHandshake     = 1043 // ER_HANDSHAKE_ERROR
	codeNetOutOfOrder    = 1156 // ER_NET_PACKETS_OUT_OF_ORDER
	codeNotSupportedAuth = 1251 // ER_NOT_SUPPORTED_AUTH_MODE
	sqlStateAccessDenied = "28000"
	sqlStateConnection   = "08S01"
	sqlStateNotSupported = "08004"
)

// handshakeV10 builds the server greeting. The scramble is split 8 + 12 as the protocol
// requires, and the second part carries the terminating NUL MySQL sends.
func handshakeV10(version string, connID uint32, caps, ext uint32, scramble []byte, plugin string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, 10)
	b = append(b, version...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, connID)
	b = append(b, scramble[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps))
	b = append(b, charsetUTF8MB4)
	b = binary.LittleEndian.AppendUint16(b, statusAutocommit)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps>>16))
	b = append(b, byte(len(scramble)+1))
	b = append(b, make([]byte, 6)...)
	// MariaDB's extended capabilities, read by clients only when CLIENT_MYSQL is clear.
	b = binary.LittleEndian.AppendUint32(b, ext)
	b = append(b, scramble[8:]...)
	b = append(b, 0)
	b = append(b, plugin...)
	return append(b, 0)
}

func authSwitchRequest(plugin string, scramble []byte) []byte {
	b := []byte{hdrEOF}
	b = append(b, plugin...)
	b = append(b, 0)
	b = append(b, scramble...)
	return append(b, 0)
}

// okPacket follows MySQL's layout: with CLIENT_SESSION_TRACK the info string is
// length-encoded and only present when non-empty or when session state is attached.
func okPacket(header byte, caps uint32, status uint16, sessionState []byte) []byte {
	return okPacketRows(header, caps, status, 0, sessionState)
}

// okPacketRows is okPacket with a count of affected rows.
func okPacketRows(header byte, caps uint32, status uint16, affected uint64, sessionState []byte) []byte {
	b := appendLenEncInt([]byte{header}, affected)
	b = append(b, 0) // last insert id
	if caps&capSessionTrack == 0 {
		sessionState = nil
	}
	if sessionState != nil {
		status |= statusSessionStateChanged
	}
	b = binary.LittleEndian.AppendUint16(b, status)
	b = binary.LittleEndian.AppendUint16(b, 0) // warnings
	if sessionState != nil {
		b = append(b, 0) // empty info
		b = appendLenEncInt(b, uint64(len(sessionState)))
		b = append(b, sessionState...)
	}
	return b
}

// schemaChange encodes a SESSION_TRACK_SCHEMA entry, which MySQL 8 sends (with the default
// session_track_schema=ON) whenever the current database changes.
func schemaChange(db string) []byte {
	entry := appendLenEncString(nil, db)
	b := []byte{sessionTrackSchema}
	b = appendLenEncInt(b, uint64(len(entry)))
	return append(b, entry...)
}

func errPacket(code uint16, sqlState, msg string) []byte {
	b := []byte{hdrErr}
	b = binary.LittleEndian.AppendUint16(b, code)
	b = append(b, '#')
	b = append(b, sqlState...)
	return append(b, msg...)
}

func eofPacket(status uint16) []byte {
	b := []byte{hdrEOF, 0, 0}
	return binary.LittleEndian.AppendUint16(b, status)
}

// columnDef41 describes a utf8mb4 VAR_STRING column; the text protocol sends every value as
// a string anyway, so drivers convert "1" to an int when scanning.
func columnDef41(name string) []byte {
	b := appendLenEncString(nil, "def")
	b = appendLenEncString(b, "") // schema
	b = appendLenEncString(b, "") // table
	b = appendLenEncString(b, "") // org_table
	b = appendLenEncString(b, name)
	b = appendLenEncString(b, "") // org_name
	b = append(b, 0x0c)           // length of the fixed-length fields
	b = binary.LittleEndian.AppendUint16(b, charsetUTF8MB4)
	b = binary.LittleEndian.AppendUint32(b, 1024) // column length
	b = append(b, typeVarString)
	b = binary.LittleEndian.AppendUint16(b, 0) // flags
	b = append(b, 0x1f)                        // decimals: 31 means "not a fixed-point value"
	return append(b, 0, 0)                     // filler
}
