package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/proxy"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// handshakeTimeout bounds a client's whole login. Clients that stall in the
// handshake hold a connection slot; real logins take milliseconds.
const handshakeTimeout = 30 * time.Second

// Server is the running proxy.
type Server struct {
	lg  *zap.Logger
	cfg *config.Config
	sql *proxy.Server
}

// New builds the proxy from cfg without starting anything.
func New(lg *zap.Logger, cfg *config.Config) (*Server, error) {
	stls, err := serverTLS(cfg.Security.ServerTLS)
	if err != nil {
		return nil, err
	}
	btls, err := backendTLS(cfg.Security.BackendTLS, cfg.Security.RequireBackendTLS)
	if err != nil {
		return nil, err
	}
	trusted, err := cfg.Proxy.TrustedNets()
	if err != nil {
		return nil, err
	}
	if cfg.Proxy.ProxyProtocol == "" {
		trusted = nil
	}
	// The key lets plain-TCP clients send a caching_sha2_password safely when
	// the backend side is TLS. It lives only in memory.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	if len(cfg.Clusters) != 1 {
		return nil, fmt.Errorf("exactly one [[cluster]] is supported by this version, got %d", len(cfg.Clusters))
	}
	cl := cfg.Clusters[0]
	r := router.NewStatic(cl.Name, cl.Instances)
	sess := &backend.Config{
		ServerVersion:        cfg.Proxy.ServerVersion,
		ServerTLS:            stls,
		BackendTLS:           btls,
		RequireBackendTLS:    cfg.Security.RequireBackendTLS,
		BackendProxyProtocol: cfg.Proxy.BackendProxyProtocol == config.ProxyProtocolV2,
		ConnectTimeout:       cfg.Proxy.ConnectTimeout.Duration,
		HandshakeTimeout:     handshakeTimeout,
		RSAKey:               key,
	}
	sql := proxy.New(lg.Named("proxy"), proxy.Options{
		Addr:                 cfg.Proxy.Addr,
		MaxConnections:       cfg.Proxy.MaxConnections,
		ProxyProtocolTrusted: trusted,
		GracefulWait:         cfg.Proxy.GracefulWaitBeforeShutdown.Duration,
		GracefulCloseTimeout: cfg.Proxy.GracefulCloseConnTimeout.Duration,
		Session:              sess,
	}, r)
	return &Server{lg: lg, cfg: cfg, sql: sql}, nil
}

// Start starts listening.
func (s *Server) Start() error { return s.sql.Start() }

// SQLAddr returns the SQL listener's address.
func (s *Server) SQLAddr() net.Addr { return s.sql.Addr() }

// Sessions returns a snapshot of the live client sessions.
func (s *Server) Sessions() []backend.Info { return s.sql.Sessions() }

// Shutdown drains gracefully (see proxy.Server.Shutdown).
func (s *Server) Shutdown(ctx context.Context) { s.sql.Shutdown(ctx) }

// Close stops at once.
func (s *Server) Close() { s.sql.Close() }
