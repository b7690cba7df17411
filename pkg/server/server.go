package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"go.uber.org/zap"
)

// Server is the running proxy: it owns every component and starts and stops
// them in order.
type Server struct {
	lg       *zap.Logger
	cm       *cfgmgr.Manager
	topo     *observer.Aggregator
	clusters *backendcluster.Manager
	router   *router.Balanced
	sql      *proxy.Server
	api      *api.Server
	apiTLS   *tls.Config
	metrics  *metrics.Metrics
	fleet    *fleet

	ready        atomic.Bool
	shuttingDown atomic.Bool
	override     atomic.Pointer[string]

	// bg is the lifetime of background work (config watcher, drains).
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

// New builds the proxy from the config manager's running config, without
// starting anything.
func New(lg *zap.Logger, cm *cfgmgr.Manager) (*Server, error) {
	cfg := cm.Current()
	stls, err := serverTLS(cfg.Security.ServerTLS)
	if err != nil {
		return nil, err
	}
	btls, err := backendTLS(cfg.Security.BackendTLS, cfg.Security.RequireBackendTLS)
	if err != nil {
		return nil, err
	}
	var apiTLS *tls.Config
	if cfg.API.TLS.HasCert() {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLS.Cert, cfg.API.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("api.tls: %w", err)
		}
		apiTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
		HandshakeTimeout:     cfg.Proxy.HandshakeTimeout.Duration,
		BackendReadTimeout:   cfg.Proxy.BackendReadTimeout.Duration,
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
	s := &Server{
		lg:       lg,
		cm:       cm,
		topo:     topo,
		clusters: backendcluster.NewManager(lg, topo),
		router:   r,
		sql:      sql,
		apiTLS:   apiTLS,
	}
	s.metrics = metrics.New(s, Version, GitHash)
	sess.CommandMetrics = func(cluster string) backend.CommandObserver {
		cm := s.metrics.ForCluster(cluster)
		cm.SessionStarted()
		return cm
	}
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	if s.fleet, err = newFleet(lg, s, cfg); err != nil {
		return nil, err
	}
	s.metrics.Registry().MustRegister(newFleetCollector(s.fleet))
	if cfg.API.Addr != "" {
		s.api = api.New(lg, s, cm, s.metrics.Handler(), cfg.API.Token)
		s.api.SetCoordination(s.fleet.be, s.fleet.self.ID)
		s.api.HandleInternal(coordination.VotePath, s.fleet.voter.Handler(cfg.API.Token))
	}
	return s, nil
}

// Start starts the cluster runtimes, the listeners, the API and the config
// watcher. It does not wait for any cluster's etcd: clusters that cannot be
// reached yet are "connecting", and their clients get an ERR packet saying
// so until they are reachable. A cluster whose runtime cannot be built (say,
// an unparsable etcd-tls certificate) is retried in the background while the
// others serve.
func (s *Server) Start() error {
	cfg := s.cm.Current()
	res := s.clusters.Apply(cfg)
	s.lg.Info("clusters started", zap.Stringer("result", res))
	if err := s.sql.Start(); err != nil {
		s.clusters.Close()
		return err
	}
	if err := s.sql.SetExtraListeners(routeAddrs(cfg)); err != nil {
		s.sql.Close()
		s.clusters.Close()
		return err
	}
	if s.api != nil {
		if err := s.api.Start(cfg.API.Addr, s.apiTLS); err != nil {
			s.sql.Close()
			s.clusters.Close()
			return err
		}
	}
	if err := s.fleet.start(cfg); err != nil {
		s.Close()
		return err
	}
	s.cm.SetApply(s.apply, s.metrics.ObserveReload)
	// The start-up config counts as a successful load.
	s.metrics.ObserveReload(true, time.Now())
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		s.cm.Run(s.bg)
	}()
	s.ready.Store(true)
	return nil
}

// Reload re-reads the config file (SIGHUP).
func (s *Server) Reload(source string) error { return s.cm.Reload(source) }

// apply makes the running components match next; it is the config
// manager's ApplyFunc. Nothing here blocks on the network.
func (s *Server) apply(prev, next *config.Config) error {
	gens := map[string]uint64{}
	for name, c := range s.clusters.Clusters() {
		gens[name] = c.Generation()
	}
	s.router.Update(next)
	res := s.clusters.Apply(next)
	s.fleet.apply(next)
	s.lg.Info("clusters reconfigured", zap.Stringer("result", res))
	for _, name := range res.Removed {
		timeout := config.DefaultDrainTimeout
		if c := prev.Cluster(name); c != nil {
			timeout = c.DrainTimeout.Duration
		}
		s.startDrain(name, gens[name], timeout)
	}
	return s.sql.SetExtraListeners(routeAddrs(next))
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

// Config returns the config manager.
func (s *Server) Config() *cfgmgr.Manager { return s.cm }

// SQLAddr returns the main SQL listener's address.
func (s *Server) SQLAddr() net.Addr { return s.sql.Addr() }

// ExtraAddrs returns the addresses of the route-port listeners.
func (s *Server) ExtraAddrs() []net.Addr { return s.sql.ExtraAddrs() }

// APIAddr returns the API's address, or nil when the API is off.
func (s *Server) APIAddr() net.Addr {
	if s.api == nil {
		return nil
	}
	return s.api.Addr()
}

// Sessions returns a snapshot of the live client sessions.
func (s *Server) Sessions() []backend.Info { return s.sql.Sessions() }

// BackendSessions counts routed sessions per backend ID.
func (s *Server) BackendSessions() map[string]int64 { return s.router.Sessions() }

// EtcdErrors counts etcd errors per cluster (metrics).
func (s *Server) EtcdErrors() map[string]uint64 { return s.clusters.EtcdErrors() }

// Metrics returns the proxy's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// BuildErrors are the clusters whose runtime build is being retried.
func (s *Server) BuildErrors() map[string]string { return s.clusters.BuildErrors() }

// Health is the proxy's verdict for load balancers: unhealthy while shutting
// down or when an operator said so.
func (s *Server) Health() (bool, string) {
	if s.shuttingDown.Load() {
		return false, "shutting down"
	}
	if r := s.override.Load(); r != nil {
		return false, *r
	}
	return true, ""
}

// Ready reports whether the config is loaded and the listeners are up.
func (s *Server) Ready() (bool, string) {
	switch {
	case s.shuttingDown.Load():
		return false, "shutting down"
	case !s.ready.Load():
		return false, "starting: listeners are not up yet"
	}
	return true, ""
}

// SetOverride marks the proxy unhealthy by hand (for draining it from a load
// balancer); it keeps serving.
func (s *Server) SetOverride(reason string) {
	s.override.Store(&reason)
	s.lg.Warn("health overridden: reporting unhealthy", zap.String("reason", reason))
}

// ClearOverride ends SetOverride.
func (s *Server) ClearOverride() {
	if s.override.Swap(nil) != nil {
		s.lg.Info("health override cleared")
	}
}

// Shutdown drains gracefully (see proxy.Server.Shutdown), then stops the
// rest in reverse order of Start.
func (s *Server) Shutdown(ctx context.Context) {
	s.shuttingDown.Store(true)
	s.fleet.draining()
	s.sql.Shutdown(ctx)
	s.stopBackground()
}

// Close stops at once.
func (s *Server) Close() {
	s.shuttingDown.Store(true)
	s.sql.Close()
	s.stopBackground()
}

func (s *Server) stopBackground() {
	s.bgCancel()
	s.bgWG.Wait()
	// Resign and deregister before the API goes, so peers stop asking.
	s.fleet.close()
	if s.api != nil {
		s.api.Close()
	}
	s.clusters.Close()
}

// Components reports the state of each part of the proxy and of its
// connections to what it depends on, for /api/v1/health.
func (s *Server) Components() map[string]api.Component {
	out := map[string]api.Component{}
	switch {
	case s.shuttingDown.Load():
		out["sql"] = api.Component{State: "stopping"}
	case !s.ready.Load():
		out["sql"] = api.Component{State: "initializing"}
	default:
		out["sql"] = api.Component{State: "healthy"}
	}
	if st := s.cm.Status(); st.LastResult == cfgmgr.ResultError {
		out["config"] = api.Component{State: "abnormal", Reason: "last reload failed: " + st.LastError}
	} else {
		out["config"] = api.Component{State: "healthy"}
	}
	for name, v := range s.topo.Topology().Clusters {
		c := api.Component{State: "healthy"}
		switch v.State {
		case observer.StateConnecting:
			c = api.Component{State: "initializing", Reason: "waiting for etcd: " + v.LastError}
		case observer.StateStale:
			c = api.Component{State: "abnormal", Reason: "etcd unreachable, serving the last known backends: " + v.LastError}
		case observer.StateDraining:
			c = api.Component{State: "stopping", Reason: "removed from the configuration"}
		}
		out["cluster/"+name] = c
	}
	for name, err := range s.clusters.BuildErrors() {
		out["cluster/"+name] = api.Component{State: "abnormal", Reason: "runtime build failing: " + err}
	}
	state, reason := s.fleet.be.Health()
	out["coordination"] = api.Component{State: state, Reason: reason}
	return out
}
