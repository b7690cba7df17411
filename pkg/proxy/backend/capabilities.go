package backend

import (
	"fmt"
	"net/netip"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// The proxy greets a client before it knows the client's backend. It greets
// with what the backends the client can reach announce (their version,
// collation, and the capabilities they all share and the proxy can forward),
// as recorded by the health prober, and negotiates each side separately:
// the client gets what it asked for within that offer, the backend what the
// client chose within what the backend itself offers. A capability that
// changes the wire format must then be the same on both sides, so a backend
// lacking one the client chose is skipped for another of the cluster (see
// errCapabilityMismatch); capabilities the proxy terminates itself (TLS,
// compression, session tracking towards the backend) are chosen per side.

// GreetingSource tells a session what to announce before it is routed
// (router.Balanced). A nil result means nothing is known yet.
type GreetingSource interface {
	ServerInfo(local, client netip.AddrPort) *observer.ServerInfo
}

// DefaultServerVersion is announced when neither the config overrides the
// version nor any backend has been probed yet.
const DefaultServerVersion = "8.0.11-Switchyard"

// fixedCapability is what the proxy offers before any backend of the
// client's cluster has been probed: what every MySQL, MariaDB and TiDB
// version the proxy supports can serve. It leaves out query attributes and
// optional result-set metadata, which change packet layouts MariaDB does not
// know, and MariaDB's extended capabilities.
const fixedCapability = mysql.ClientLongPassword | mysql.ClientFoundRows | mysql.ClientLongFlag |
	mysql.ClientConnectWithDB | mysql.ClientNoSchema | mysql.ClientCompress | mysql.ClientODBC |
	mysql.ClientLocalFiles | mysql.ClientIgnoreSpace | mysql.ClientProtocol41 | mysql.ClientInteractive |
	mysql.ClientIgnoreSigpipe | mysql.ClientTransactions | mysql.ClientSecureConnection |
	mysql.ClientMultiStatements | mysql.ClientMultiResults | mysql.ClientPSMultiResults |
	mysql.ClientPluginAuth | mysql.ClientConnectAttrs | mysql.ClientPluginAuthLenencClientData |
	mysql.ClientCanHandleExpiredPasswords | mysql.ClientSessionTrack | mysql.ClientDeprecateEOF |
	mysql.ClientZstdCompression

// forwardableCapability is every capability the proxy can forward when the
// backends offer it.
const forwardableCapability = fixedCapability | mysql.ClientQueryAttributes | mysql.ClientOptionalResultsetMetadata

// proxyProvided are offered whatever the backends say: the proxy terminates
// compression on each side and needs plugin authentication and the 4.1
// protocol for its pass-through login.
const proxyProvided = mysql.ClientCompress | mysql.ClientZstdCompression | mysql.ClientProtocol41 |
	mysql.ClientSecureConnection | mysql.ClientPluginAuth

// forwardableExt are the MariaDB extended capabilities the proxy forwards
// (all but COM_MULTI, which MariaDB no longer sends).
const forwardableExt = mysql.MariaDBClientProgress | mysql.MariaDBClientStmtBulkOperations |
	mysql.MariaDBClientExtendedMetadata | mysql.MariaDBClientCacheMetadata | mysql.MariaDBClientBulkUnitResults

// requiredOfBackend lists client capabilities that change the wire format;
// a backend lacking one the client chose cannot serve that client.
const requiredOfBackend = mysql.ClientProtocol41 | mysql.ClientDeprecateEOF |
	mysql.ClientPluginAuth | mysql.ClientSecureConnection | mysql.ClientMultiResults |
	mysql.ClientQueryAttributes | mysql.ClientOptionalResultsetMetadata

// requiredExtOfBackend is requiredOfBackend for MariaDB's extended word.
// Progress reports are not in it: a backend without them just sends none.
const requiredExtOfBackend = mysql.MariaDBClientStmtBulkOperations | mysql.MariaDBClientExtendedMetadata |
	mysql.MariaDBClientCacheMetadata | mysql.MariaDBClientBulkUnitResults

// greetingOffer is what the proxy announces: version, collation and
// capabilities (SSL is added by the caller).
type greetingOffer struct {
	version       string
	capability    uint32
	extCapability uint32
	charset       byte
}

// offer computes the greeting for this session's listener and client.
func (s *Session) offer() greetingOffer {
	var info *observer.ServerInfo
	if s.cfg.Greeting != nil {
		info = s.cfg.Greeting.ServerInfo(s.ci.LocalAddr, s.ci.ClientAddr)
	}
	o := offerFor(info)
	if s.cfg.ServerVersion != "" {
		o.version = s.cfg.ServerVersion
	}
	return o
}

// offerFor turns the backends' common greeting into the proxy's.
func offerFor(info *observer.ServerInfo) greetingOffer {
	if info == nil {
		return greetingOffer{version: DefaultServerVersion, capability: fixedCapability, charset: mysql.DefaultCharset}
	}
	o := greetingOffer{
		version:    info.Version,
		capability: info.Capability&forwardableCapability | proxyProvided,
		charset:    info.Charset,
	}
	if info.Capability&mysql.ClientMySQL == 0 {
		o.extCapability = info.ExtCapability & forwardableExt
	}
	if o.version == "" {
		o.version = DefaultServerVersion
	}
	if o.charset == 0 {
		o.charset = mysql.DefaultCharset
	}
	return o
}

// errCapabilityMismatch is a backend that cannot serve what the client
// negotiated (it announces less than its cluster did when the client was
// greeted): the session tries another backend of the cluster.
type errCapabilityMismatch struct {
	addr, version string
	missing, ext  uint32
}

func (e *errCapabilityMismatch) Error() string {
	return fmt.Sprintf("backend %s (%s) lacks protocol capabilities the client chose (0x%x, MariaDB 0x%x)", e.addr, e.version, e.missing, e.ext)
}

// backendCapabilities chooses what to ask of a backend that greeted with hs:
// what the client chose and the backend offers, minus what the proxy
// terminates, plus session tracking, which the proxy always follows.
func (s *Session) backendCapabilities(addr string, hs *mysql.InitialHandshake) (capability, ext uint32, err error) {
	var backendExt uint32
	if hs.Capability&mysql.ClientMySQL == 0 {
		backendExt = hs.ExtCapability
	}
	missing := s.clientCap & requiredOfBackend &^ hs.Capability
	missingExt := s.clientExt & requiredExtOfBackend &^ backendExt
	if missing != 0 || missingExt != 0 {
		return 0, 0, &errCapabilityMismatch{addr: addr, version: hs.ServerVersion, missing: missing, ext: missingExt}
	}
	bc := s.clientCap & hs.Capability &^ (mysql.ClientSSL | mysql.ClientCompress | mysql.ClientZstdCompression)
	// Session tracking is always asked for, so that the proxy sees USE and
	// transaction state even when the client does not; OK packets are
	// rewritten for clients that did not ask for it.
	bc |= hs.Capability & mysql.ClientSessionTrack
	switch compressionOf(s.clientCap) {
	case mysql.CompressZstd:
		if hs.Capability&mysql.ClientZstdCompression != 0 {
			bc |= mysql.ClientZstdCompression
		} else {
			bc |= hs.Capability & mysql.ClientCompress
		}
	case mysql.CompressZlib:
		bc |= hs.Capability & mysql.ClientCompress
	}
	// The backend's greeting may also be an old-style one without plugin
	// auth; pass-through needs it.
	bc |= mysql.ClientPluginAuth
	if hs.Capability&mysql.ClientMySQL == 0 {
		// A MariaDB backend reads extended capabilities only from a client
		// that clears CLIENT_MYSQL.
		bc &^= mysql.ClientMySQL
		ext = s.clientExt & backendExt
	}
	return bc, ext, nil
}

// metadataOptional reports whether column-count packets from the backend
// carry a "metadata follows" byte (MySQL's optional result-set metadata or
// MariaDB's metadata caching; both sides negotiated the same).
func (s *Session) metadataOptional() bool {
	return s.backendCap&mysql.ClientOptionalResultsetMetadata != 0 || s.backendExt&mysql.MariaDBClientCacheMetadata != 0
}
