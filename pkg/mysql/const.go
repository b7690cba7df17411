package mysql

// Capability flags (protocol::CapabilityFlags). Only what the proxy inspects or
// negotiates is named here.
const (
	ClientLongPassword               uint32 = 1 << 0
	ClientFoundRows                  uint32 = 1 << 1
	ClientLongFlag                   uint32 = 1 << 2
	ClientConnectWithDB              uint32 = 1 << 3
	ClientNoSchema                   uint32 = 1 << 4
	ClientCompress                   uint32 = 1 << 5
	ClientODBC                       uint32 = 1 << 6
	ClientLocalFiles                 uint32 = 1 << 7
	ClientIgnoreSpace                uint32 = 1 << 8
	ClientProtocol41                 uint32 = 1 << 9
	ClientInteractive                uint32 = 1 << 10
	ClientSSL                        uint32 = 1 << 11
	ClientIgnoreSigpipe              uint32 = 1 << 12
	ClientTransactions               uint32 = 1 << 13
	ClientReserved                   uint32 = 1 << 14
	ClientSecureConnection           uint32 = 1 << 15
	ClientMultiStatements            uint32 = 1 << 16
	ClientMultiResults               uint32 = 1 << 17
	ClientPSMultiResults             uint32 = 1 << 18
	ClientPluginAuth                 uint32 = 1 << 19
	ClientConnectAttrs               uint32 = 1 << 20
	ClientPluginAuthLenencClientData uint32 = 1 << 21
	ClientCanHandleExpiredPasswords  uint32 = 1 << 22
	ClientSessionTrack               uint32 = 1 << 23
	ClientDeprecateEOF               uint32 = 1 << 24
	ClientOptionalResultsetMetadata  uint32 = 1 << 25
	ClientZstdCompression            uint32 = 1 << 26
	ClientQueryAttributes            uint32 = 1 << 27
	// ClientMySQL is ClientLongPassword under MariaDB's name: a MariaDB
	// server clears it in its greeting to say that the last four reserved
	// bytes carry its extended capabilities, and a client clears it in its
	// answer to send its own there.
	ClientMySQL = ClientLongPassword
)

// MariaDB extended capabilities: the upper 32 bits of MariaDB's 64-bit
// capability word, carried in bytes the MySQL protocol reserves (see
// ClientMySQL). Here they are kept as their own 32-bit word.
const (
	MariaDBClientProgress           uint32 = 1 << 0
	MariaDBClientComMulti           uint32 = 1 << 1
	MariaDBClientStmtBulkOperations uint32 = 1 << 2
	MariaDBClientExtendedMetadata   uint32 = 1 << 3
	MariaDBClientCacheMetadata      uint32 = 1 << 4
	MariaDBClientBulkUnitResults    uint32 = 1 << 5
)

// Command bytes (the first byte of a client request in the command phase).
const (
	ComSleep            byte = 0x00
	ComQuit             byte = 0x01
	ComInitDB           byte = 0x02
	ComQuery            byte = 0x03
	ComFieldList        byte = 0x04
	ComCreateDB         byte = 0x05
	ComDropDB           byte = 0x06
	ComRefresh          byte = 0x07
	ComShutdown         byte = 0x08
	ComStatistics       byte = 0x09
	ComProcessInfo      byte = 0x0a
	ComConnect          byte = 0x0b
	ComProcessKill      byte = 0x0c
	ComDebug            byte = 0x0d
	ComPing             byte = 0x0e
	ComTime             byte = 0x0f
	ComDelayedInsert    byte = 0x10
	ComChangeUser       byte = 0x11
	ComBinlogDump       byte = 0x12
	ComTableDump        byte = 0x13
	ComConnectOut       byte = 0x14
	ComRegisterSlave    byte = 0x15
	ComStmtPrepare      byte = 0x16
	ComStmtExecute      byte = 0x17
	ComStmtSendLongData byte = 0x18
	ComStmtClose        byte = 0x19
	ComStmtReset        byte = 0x1a
	ComSetOption        byte = 0x1b
	ComStmtFetch        byte = 0x1c
	ComDaemon           byte = 0x1d
	ComBinlogDumpGTID   byte = 0x1e
	ComResetConnection  byte = 0x1f
	// ComStmtBulkExecute is MariaDB's bulk execution of a prepared
	// statement (MARIADB_CLIENT_STMT_BULK_OPERATIONS).
	ComStmtBulkExecute byte = 0xfa
)

// Server status flags carried by OK and EOF packets.
const (
	ServerStatusInTrans         uint16 = 0x0001
	ServerStatusAutocommit      uint16 = 0x0002
	ServerMoreResultsExists     uint16 = 0x0008
	ServerStatusCursorExists    uint16 = 0x0040
	ServerStatusLastRowSent     uint16 = 0x0080
	ServerStatusInTransReadonly uint16 = 0x2000
	ServerSessionStateChanged   uint16 = 0x4000
)

// First bytes of response packets.
const (
	OKHeader           byte = 0x00
	EOFHeader          byte = 0xfe
	ErrHeader          byte = 0xff
	LocalInfileHeader  byte = 0xfb
	AuthSwitchHeader   byte = 0xfe
	AuthMoreDataHeader byte = 0x01
)

// Session state change types inside an OK packet (CLIENT_SESSION_TRACK).
const (
	SessionTrackSystemVariables            byte = 0x00
	SessionTrackSchema                     byte = 0x01
	SessionTrackStateChange                byte = 0x02
	SessionTrackGTIDs                      byte = 0x03
	SessionTrackTransactionCharacteristics byte = 0x04
	SessionTrackTransactionState           byte = 0x05
)

// Authentication plugin names the proxy needs to recognise.
const (
	AuthNativePassword = "mysql_native_password"
	AuthCachingSha2    = "caching_sha2_password"
	AuthSha256Password = "sha256_password"
	AuthClearPassword  = "mysql_clear_password"
	// AuthUnknownPlugin is offered to the backend in the forwarded handshake
	// response: no server has it, so every server answers with an
	// AuthSwitchRequest carrying its own scramble, which the client then
	// answers directly. That is what keeps passwords out of the proxy.
	AuthUnknownPlugin = "switchyard_auth_passthrough"
)

// caching_sha2_password AuthMoreData payload bytes.
const (
	CachingSha2FastAuthOK      byte = 0x03
	CachingSha2PerformFullAuth byte = 0x04
	CachingSha2RequestPubKey   byte = 0x02
)

// Error codes the proxy itself produces.
const (
	ErCONCount                uint16 = 1040 // Too many connections
	ErHandshakeError          uint16 = 1043 // Bad handshake
	ErAccessDenied            uint16 = 1045
	ErUnknownCom              uint16 = 1047
	ErServerShutdown          uint16 = 1053
	ErUnknown                 uint16 = 1105
	ErNetPacketTooLarge       uint16 = 1153
	ErNetReadError            uint16 = 1158
	ErMalformedPacket         uint16 = 1835
	ErNoSuchThread            uint16 = 1094 // Unknown thread id
	ErKillDenied              uint16 = 1095 // You are not owner of thread
	ErNotSupportedAuthMode    uint16 = 1251
	ErSecureTransportRequired uint16 = 3159
	// ErConnectToForeignDataSource is what a server says when it cannot
	// reach another server on a client's behalf (FEDERATED, CONNECT); the
	// proxy uses it when no backend can be reached. Sent with SQLSTATE 08S01.
	ErConnectToForeignDataSource uint16 = 1429
	// The proxy never sends client-range codes (2000-2999, CR_*): libmariadb
	// rejects an ERR packet carrying one as "2027 Malformed packet" and
	// hides the message. A backend lost mid-session is ErNetReadError
	// (08S01), the code a server uses when its peer's connection breaks.
)

const (
	// MaxPayloadLen is the largest payload of one physical packet; a logical
	// packet of this length or more continues in the next physical packet.
	MaxPayloadLen = 1<<24 - 1
	// DefaultCharset is utf8mb4_general_ci, announced in the proxy's handshake.
	DefaultCharset = 45
)
