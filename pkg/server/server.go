package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	"github.com/switchyard-db/switchyard/pkg/observer"
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
	lg       *zap.Logger
	cfg      *config.Config
	topo     *observer.Aggregator
	clusters *backendcluster.Manager
	router   *router.Balanced
	sql      *proxy.Server
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
	topo := observer.NewAggregator()
	r := router.NewBalanced(topo, cfg)
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
	return &Server{
		lg:       lg,
		cfg:      cfg,
		topo:     topo,
		clusters: backendcluster.NewManager(lg, topo),
		router:   r,
		sql:      sql,
	}, nil
}

// Start starts the cluster runtimes and the listeners. It does not wait for
// any cluster's etcd: clusters that cannot be reached yet are "connecting",
// and their clients get an ERR packet saying so until they are reachable. A
// cluster whose runtime cannot be built (say, an unparsable etcd-tls
// certificate) is retried in the background while the others serve.
func (s *Server) Start() error {
	res := s.clusters.Apply(s.cfg)
	s.lg.Info("clusters started", zap.Stringer("result", res))
	if err := s.sql.Start(); err != nil {
		s.clusters.Close()
		return err
	}
	if err := s.sql.SetExtraListeners(routeAddrs(s.cfg)); err != nil {
		s.sql.Close()
		s.clusters.Close()
		return err
	}
	return nil
}

// routeAddrs are the listen addresses of the [[route]] ports: proxy.addr's
// host with each port.
func routeAddrs(cfg *config.Config) []string {
	host, _, _ := net.SplitHostPort(cfg.Proxy.Addr)
	var out []string
	seen := map[int]bool{}
	for _, r := range cfg.Routes {
		for _, p := range r.Ports {
			if !seen[p] {
				seen[p] = true
				out = append(out, net.JoinHostPort(host, strconv.Itoa(p)))
			}
		}
	}
	return out
}

// Topology returns the latest merged topology.
func (s *Server) Topology() *observer.Topology { return s.topo.Topology() }

// Clusters returns the cluster manager.
func (s *Server) Clusters() *backendcluster.Manager { return s.clusters }

// Router returns the router.
func (s *Server) Router() *router.Balanced { return s.router }

// ExtraAddrs returns the addresses of the route-port listeners.
func (s *Server) ExtraAddrs() []net.Addr { return s.sql.ExtraAddrs() }

// SQLAddr returns the SQL listener's address.
func (s *Server) SQLAddr() net.Addr { return s.sql.Addr() }

// Sessions returns a snapshot of the live client sessions.
func (s *Server) Sessions() []backend.Info { return s.sql.Sessions() }

// Shutdown drains gracefully (see proxy.Server.Shutdown), then stops the
// cluster runtimes.
func (s *Server) Shutdown(ctx context.Context) {
	s.sql.Shutdown(ctx)
	s.clusters.Close()
}

// Close stops at once.
func (s *Server) Close() {
	s.sql.Close()
	s.clusters.Close()
}
