package backend

import (
	"crypto/rsa"
	"crypto/tls"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// Config holds the settings a session needs. It is shared read-only by all
// sessions started under it.
type Config struct {
	// ServerVersion is announced in the proxy's handshake.
	ServerVersion string
	// ServerTLS enables TLS towards clients (nil: no TLS offered).
	ServerTLS *tls.Config
	// BackendTLS enables TLS towards backends that offer it (nil: none).
	BackendTLS *tls.Config
	// RequireBackendTLS refuses backends that do not offer TLS.
	RequireBackendTLS bool
	// BackendProxyProtocol sends a PROXY v2 header to backends.
	BackendProxyProtocol bool
	// ConnectTimeout bounds dialing a backend and reading its handshake.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the whole client handshake and authentication.
	HandshakeTimeout time.Duration
	// BackendReadTimeout bounds the wait for each packet of a backend's
	// response during a command (0: no limit); see readtimeout.go.
	BackendReadTimeout time.Duration
	// RSAKey answers caching_sha2_password public-key requests when the
	// client side is plain TCP but the backend side is TLS.
	RSAKey *rsa.PrivateKey
	// CommandMetrics, when set, is called once a session is routed to a
	// cluster (the session counts as started) and returns where it records
	// its command latencies.
	CommandMetrics func(cluster string) CommandObserver
}

// CommandObserver records one routed session's metrics.
type CommandObserver interface {
	// Observe records how long one command took, from its arrival to the end
	// of its response. It is called once per command on the query path.
	Observe(cmd byte, d time.Duration)
	// SessionEnded is called once when the session ends.
	SessionEnded()
}

// proxyCapability is what the proxy offers clients. It leaves out what it
// cannot forward faithfully to every backend: query attributes and optional
// result-set metadata change packet layouts that MariaDB does not know.
const proxyCapability = mysql.ClientLongPassword | mysql.ClientFoundRows | mysql.ClientLongFlag |
	mysql.ClientConnectWithDB | mysql.ClientNoSchema | mysql.ClientCompress | mysql.ClientODBC |
	mysql.ClientLocalFiles | mysql.ClientIgnoreSpace | mysql.ClientProtocol41 | mysql.ClientInteractive |
	mysql.ClientIgnoreSigpipe | mysql.ClientTransactions | mysql.ClientSecureConnection |
	mysql.ClientMultiStatements | mysql.ClientMultiResults | mysql.ClientPSMultiResults |
	mysql.ClientPluginAuth | mysql.ClientConnectAttrs | mysql.ClientPluginAuthLenencClientData |
	mysql.ClientCanHandleExpiredPasswords | mysql.ClientSessionTrack | mysql.ClientDeprecateEOF |
	mysql.ClientZstdCompression

// requiredOfBackend lists client capabilities that change the wire format;
// a backend lacking one the client chose cannot serve that client.
const requiredOfBackend = mysql.ClientProtocol41 | mysql.ClientDeprecateEOF |
	mysql.ClientPluginAuth | mysql.ClientSecureConnection | mysql.ClientMultiResults

// Handshake limits: a first packet over 1 MiB is not a handshake.
const (
	maxHandshakePacket = 1 << 20
	maxAuthPacket      = 1 << 20
)
