package mysqldouble

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Config describes the accounts and transport of a double. Accounts in Users authenticate
// with caching_sha2_password, accounts in NativeUsers with mysql_native_password.
type Config struct {
	// Users maps user name to cleartext password.
	Users map[string]string
	// NativeUsers maps user name to cleartext password for mysql_native_password accounts.
	// A client that names another plugin gets an AuthSwitchRequest to mysql_native_password,
	// as MySQL does. A name may not appear in both maps.
	NativeUsers map[string]string
	// TLS, when set, makes the server advertise CLIENT_SSL and accept SSLRequest.
	TLS *tls.Config
	// RSAKey serves RSA public-key full authentication; nil generates a 2048-bit key.
	RSAKey *rsa.PrivateKey
	// ServerVersion is sent in the greeting; default DefaultServerVersion.
	ServerVersion string
	// DefaultAuthPlugin is named in the greeting: caching_sha2_password (default) or
	// mysql_native_password, in which case clients answering with the native plugin get an
	// AuthSwitchRequest to caching_sha2_password, as a MySQL 8 server configured that way
	// does for caching_sha2 accounts.
	DefaultAuthPlugin string
	// TiDB, when set, makes the double speak TiDB's session migration protocol
	// (SHOW SESSION_STATES, tidb_session_token, SET SESSION_STATES); see tidb.go.
	TiDB *TiDBConfig
	// MySQL8Extensions makes the double offer CLIENT_QUERY_ATTRIBUTES and
	// CLIENT_OPTIONAL_RESULTSET_METADATA, as MySQL 8 does (MySQL 8 itself is not
	// installable where the tests run).
	MySQL8Extensions bool
	// MariaDBExt, when non-zero, makes the double greet like MariaDB: CLIENT_MYSQL
	// (CLIENT_LONG_PASSWORD) cleared and these extended capabilities in the last four
	// reserved bytes. It only announces them; commands they add are not served.
	MariaDBExt uint32
}

// Negotiated is what the last client to log in chose.
type Negotiated struct {
	Capability uint32
	// MariaDBExt is the client's extended capability word (MariaDB greeting only).
	MariaDBExt uint32
}

// DefaultServerVersion is the greeting version when Config.ServerVersion is empty.
const DefaultServerVersion = "8.0.36-double"

// Stats counts what happened since the server started. Full-auth and fast-auth counters
// count successful logins only; Failures counts denied logins (ERR 1045/1251).
type Stats struct {
	Connections       int64 // accepted TCP connections
	FastAuthOK        int64 // logins completed from the fast-auth cache (0x03)
	FullAuthTLS       int64 // logins completed with a cleartext password over TLS
	FullAuthRSA       int64 // logins completed with an RSA-encrypted password
	PublicKeyRequests int64 // public keys sent on request (0x02)
	AuthSwitches      int64 // AuthSwitchRequests sent
	NativeAuth        int64 // logins completed with mysql_native_password
	Failures          int64 // logins refused
	ProtocolErrors    int64 // connections dropped for malformed or out-of-order packets
	// TiDB migration (Config.TiDB).
	TokenLogins       int64 // logins with a valid tidb_session_token
	TokenFailures     int64 // tidb_session_token logins refused
	StatesShown       int64 // SHOW SESSION_STATES answered with states
	StatesRestored    int64 // SET SESSION_STATES applied
	MigrationRefusals int64 // SHOW SESSION_STATES refused with ERR 8146
}

type counters struct {
	connections, fastAuthOK, fullAuthTLS, fullAuthRSA, publicKeyRequests,
	authSwitches, nativeAuth, failures, protocolErrors, pings, infileLines atomic.Int64
	tokenLogins, tokenFailures, statesShown, statesRestored, migrationRefusals atomic.Int64
}

// Server is a running double. It is safe for concurrent use.
type Server struct {
	cfg    Config
	users  map[string]string
	native map[string]nativeAccount
	key    *rsa.PrivateKey
	pubPEM []byte

	ln     net.Listener
	connID atomic.Uint32
	last   atomic.Pointer[Negotiated]
	stats  counters

	cacheMu sync.Mutex
	cache   map[string][sha256.Size]byte // user -> SHA256(SHA256(password))

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and prepares a server without opening any socket.
func New(cfg Config) (*Server, error) {
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = DefaultServerVersion
	}
	switch cfg.DefaultAuthPlugin {
	case "":
		cfg.DefaultAuthPlugin = pluginCachingSHA2
	case pluginCachingSHA2, pluginNative:
	default:
		return nil, fmt.Errorf("mysqldouble: unsupported DefaultAuthPlugin %q", cfg.DefaultAuthPlugin)
	}
	for user := range cfg.NativeUsers {
		if _, dup := cfg.Users[user]; dup {
			return nil, fmt.Errorf("mysqldouble: user %q is in both Users and NativeUsers", user)
		}
	}
	key := cfg.RSAKey
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("mysqldouble: generate RSA key: %w", err)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("mysqldouble: marshal RSA public key: %w", err)
	}
	return &Server{
		cfg:    cfg,
		users:  maps.Clone(cfg.Users),
		native: nativeAccounts(cfg.NativeUsers),
		key:    key,
		pubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		cache:  make(map[string][sha256.Size]byte),
		conns:  make(map[net.Conn]struct{}),
	}, nil
}

// Start builds a server, listens on 127.0.0.1:0 and registers Close with t.Cleanup.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Listen binds a loopback port and starts accepting connections.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("mysqldouble: listen: %w", err)
	}
	s.mu.Lock()
	if s.closed || s.ln != nil {
		s.mu.Unlock()
		_ = ln.Close()
		return errors.New("mysqldouble: server already listening or closed")
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	go s.acceptLoop(ln)
	return nil
}

// Addr is the host:port clients dial.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// PublicKeyPEM is the PEM the server sends on a public-key request, for clients that want
// to be configured with the key up front.
func (s *Server) PublicKeyPEM() []byte { return append([]byte(nil), s.pubPEM...) }

// FlushAuthCache forgets every cached login, so the next login of each user takes the full
// authentication path (like FLUSH PRIVILEGES on MySQL).
func (s *Server) FlushAuthCache() {
	s.cacheMu.Lock()
	clear(s.cache)
	s.cacheMu.Unlock()
}

// Pings is how many COM_PINGs the double has answered (kept apart from
// Stats, which tests compare whole).
func (s *Server) Pings() int64 { return s.stats.pings.Load() }

// InfileLines is how many lines LOAD DATA LOCAL INFILE statements have
// brought in whole: a file cut short counts none.
func (s *Server) InfileLines() int64 { return s.stats.infileLines.Load() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Connections:       c.connections.Load(),
		FastAuthOK:        c.fastAuthOK.Load(),
		FullAuthTLS:       c.fullAuthTLS.Load(),
		FullAuthRSA:       c.fullAuthRSA.Load(),
		PublicKeyRequests: c.publicKeyRequests.Load(),
		AuthSwitches:      c.authSwitches.Load(),
		NativeAuth:        c.nativeAuth.Load(),
		Failures:          c.failures.Load(),
		ProtocolErrors:    c.protocolErrors.Load(),
		TokenLogins:       c.tokenLogins.Load(),
		TokenFailures:     c.tokenFailures.Load(),
		StatesShown:       c.statesShown.Load(),
		StatesRestored:    c.statesRestored.Load(),
		MigrationRefusals: c.migrationRefusals.Load(),
	}
}

// Close stops the listener, closes every connection and waits for their goroutines. It is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		ln := s.ln
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		if ln != nil {
			s.closeErr = ln.Close()
		}
		for _, c := range conns {
			_ = c.Close()
		}
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			// Accept on loopback only fails for good once the listener is closed.
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.stats.connections.Add(1)
		go s.serveConn(nc)
	}
}

func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
	}()
	c := &session{
		srv:    s,
		raw:    nc,
		pc:     &packetConn{conn: nc},
		connID: s.connID.Add(1),
		st:     newSessionState(),
	}
	if err := c.authenticate(); err != nil {
		c.noteProtocolError(err)
		return
	}
	c.noteProtocolError(c.commandLoop())
}

func (s *Server) cachedDigest(user string) ([sha256.Size]byte, bool) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	d, ok := s.cache[user]
	return d, ok
}

func (s *Server) remember(user string, digest [sha256.Size]byte) {
	s.cacheMu.Lock()
	s.cache[user] = digest
	s.cacheMu.Unlock()
}

// LastNegotiated returns what the last client that sent a handshake response chose, or
// nil before any did.
func (s *Server) LastNegotiated() *Negotiated { return s.last.Load() }
