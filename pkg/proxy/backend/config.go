package backend

import (
	"crypto/rsa"
	"crypto/tls"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
	"github.com/switchyard-db/switchyard/pkg/shadow"
)

// Config holds the settings a session needs. It is shared read-only by all
// sessions started under it.
type Config struct {
	// Loops, when set, serves sessions as Tasks of event loops after their
	// login (onloop.go); nil keeps a goroutine per session.
	Loops *evloop.Group
	// ServerVersion, when set, overrides the version announced in the
	// proxy's handshake (otherwise the backends', see Greeting).
	ServerVersion string
	// Sessions finds other sessions by id for KILL (kill.go); nil answers
	// every KILL of another session with "Unknown thread id".
	Sessions SessionLookup
	// Greeting gives the backends' common greeting for a listener and
	// client; nil greets with the fixed set.
	Greeting GreetingSource
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
	// IdleParkAfter is how long a session idles before it parks (park.go):
	// 0 is the default (a second), negative turns parking off.
	IdleParkAfter time.Duration
	// RSAKey answers caching_sha2_password public-key requests when the
	// client side is plain TCP but the backend side is TLS.
	RSAKey *rsa.PrivateKey
	// CommandMetrics, when set, is called once a session is routed to a
	// cluster (the session counts as started) and returns where it records
	// its commands (latency metrics, digests, the query log).
	CommandMetrics func(cluster string) CommandObserver
	// MigrationAccount returns the account allowed to read the stored
	// password hashes of cluster's backends (ok false: sessions of that
	// cluster cannot move). It is called when a session logs in and when it
	// moves, so a reload applies to both.
	MigrationAccount func(cluster string) (user, password string, ok bool)
	// Migrations learns the outcome of migrations (nil: nobody).
	Migrations MigrationObserver
	// CapturePackets, when set and true, makes sessions hand their observer
	// the raw packet of each command (Command.Packet) for a traffic capture.
	CapturePackets *atomic.Bool
	// Shadow samples read-only statements for live shadowing (shadow.go);
	// nil: none.
	Shadow shadow.Sampler
}

// CommandObserver records one routed session's commands.
type CommandObserver interface {
	// Observe records one finished command (see Command). It is called once
	// per command on the query path, on the session goroutine, and must not
	// block or keep c.
	Observe(c *Command)
	// SessionEnded is called once when the session ends.
	SessionEnded()
}

// Handshake limits: a first packet over 1 MiB is not a handshake.
const (
	maxHandshakePacket = 1 << 20
	maxAuthPacket      = 1 << 20
)
