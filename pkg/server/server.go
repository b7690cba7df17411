package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/pkg/manager/fleet"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/pkg/shadow"
	"go.uber.org/zap"
)

// Server is the running proxy: it owns every component and starts and stops
// them in order.
type Server struct {
	lg       *zap.Logger
	loops    *evloop.Group // nil: a goroutine per session
	cm       *cfgmgr.Manager
	topo     *observer.Aggregator
	clusters *backendcluster.Manager
	router   *router.Balanced
	// rebalance moves sessions between the backends of their cluster; its
	// goroutine runs from Start to stopBackground.
	rebalance *router.Rebalancer
	sql       *proxy.Server
	api       *api.Server
	apiTLS    *tls.Config
	metrics   *metrics.Metrics
	insight   *insight
	shadows   *shadow.Manager
	fleet     *fleetParts

	ready        atomic.Bool
	shuttingDown atomic.Bool
	// startedAt is when Start finished; until readyWait after it, the
	// proxy is not ready while a cluster of the start-up config has not
	// loaded its first topology (its logins would get ERR 1429).
	startedAt time.Time
	startup   []string // the start-up config's clusters
	readyWait time.Duration
	override  atomic.Pointer[string]

	// bg is the lifetime of background work (config watcher, fleet loop,
	// router watch); it ends at Close, Shutdown, or when Start's context ends.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	bgUnlink func() bool // stops Start's context from ending bg
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
	apiTLS, err := api.TLSConfig(cfg.API)
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
	loops, err := startLoops(cfg.Proxy.EventLoops.Count(runtime.GOMAXPROCS(0)), lg)
	if err != nil {
		return nil, err
	}
	topo := observer.NewAggregator()
	r := router.NewBalanced(topo, cfg)
	sess := &backend.Config{
		ServerVersion:        cfg.Proxy.ServerVersion,
		Greeting:             r,
		ServerTLS:            stls,
		BackendTLS:           btls,
		RequireBackendTLS:    cfg.Security.RequireBackendTLS,
		BackendProxyProtocol: cfg.Proxy.BackendProxyProtocol == config.ProxyProtocolV2,
		ConnectTimeout:       cfg.Proxy.ConnectTimeout.Duration,
		HandshakeTimeout:     cfg.Proxy.HandshakeTimeout.Duration,
		BackendReadTimeout:   cfg.Proxy.BackendReadTimeout.Duration,
		IdleParkAfter:        idleParkAfter(cfg.Proxy.IdleParkAfter.Duration),
		Loops:                loops,
		RSAKey:               key,
		// Looked up at each use so that a reload applies to running
		// sessions too.
		MigrationAccount: func(cluster string) (string, string, bool) {
			for _, c := range cm.Current().Clusters {
				if c.Name == cluster {
					return c.Migration()
				}
			}
			return "", "", false
		},
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
		loops:     loops,
		lg:        lg,
		readyWait: defaultReadyWait,
		cm:        cm,
		topo:      topo,
		clusters:  backendcluster.NewManager(lg, topo),
		router:    r,
		sql:       sql,
		apiTLS:    apiTLS,
	}
	s.metrics = metrics.New(s, Version, GitHash)
	// Each reload builds the new runtimes, then swaps the router's rules,
	// then retires the old runtimes; removed clusters drain.
	s.clusters.SetRules(r)
	s.clusters.SetDrainer(clusterDrainer{sql: sql, metrics: s.metrics})
	s.rebalance = router.NewRebalancer(lg, r, migrants{s}, s.metrics, cfg)
	sess.Migrations = migrationResults{s.rebalance}
	s.metrics.SetNotMigratable(s.notMigratable)
	// KILL finds the session an id names among this server's (kill.go).
	sess.Sessions = sql
	s.insight = newInsight(lg, s.metrics, cfg)
	sess.CommandMetrics = s.insight.observer
	sess.CapturePackets = &s.insight.capturePackets
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	if s.fleet, err = newFleet(lg, cfg, topo, r, s.clusters, sql); err != nil {
		s.insight.close()
		s.closeLoops()
		return nil, err
	}
	s.metrics.Registry().MustRegister(newFleetCollector(s.fleet))
	s.shadows = newShadows(lg, topo, s, sess, cfg)
	if cfg.API.Addr != "" {
		s.api = api.New(lg, s, cm, s.metrics.Handler(), api.NewAuth(cfg.API))
		s.api.SetCoordination(s.fleet.store, s.fleet.Self().ID)
		s.api.SetMigrations(migrationAPI{r, s.rebalance})
		s.api.SetDigests(s.insight)
		s.api.SetTraffic(s.insight)
		s.api.SetShadows(shadowAPI{s.shadows})
		// The API lets only fleet members (admin) through to the voter.
		s.api.HandleInternal(vote.Path, s.fleet.voter.Handler(""))
	}
	return s, nil
}

// Start starts the cluster runtimes, the listeners, the API and the config
// watcher. It does not wait for any cluster's etcd: clusters that cannot be
// reached yet are "connecting", and their clients get an ERR packet saying
// so until they are reachable. A cluster whose runtime cannot be built (say,
// an unparsable etcd-tls certificate) is retried in the background while the
// others serve. The background work (config watcher, fleet, drains) and
// the API's requests end when ctx does; Shutdown or Close stop the rest.
func (s *Server) Start(ctx context.Context) error {
	s.bgUnlink = context.AfterFunc(ctx, s.bgCancel)
	cfg := s.cm.Current()
	res := s.clusters.Apply(cfg)
	s.lg.Info("clusters started", zap.Stringer("result", res))
	if err := s.sql.Start(); err != nil {
		s.clusters.Close()
		s.closeLoops()
		return err
	}
	if err := s.sql.SetExtraListeners(routeAddrs(cfg)); err != nil {
		s.sql.Close()
		s.clusters.Close()
		s.closeLoops()
		return err
	}
	if s.api != nil {
		if err := s.api.Start(ctx, cfg.API.Addr, s.apiTLS); err != nil {
			s.sql.Close()
			s.clusters.Close()
			return err
		}
	}
	if !cfg.Coordination.Enabled() {
		s.lg.Warn("running as a single node: no [coordination] etcd-endpoints, so this node's own probes decide alone")
	}
	if err := s.fleet.Start(s.bg); err != nil {
		s.Close()
		return err
	}
	s.router.Start(s.bg)
	s.rebalance.Start(s.bg)
	s.cm.SetApply(s.apply, s.metrics.ObserveReload)
	// The start-up config counts as a successful load.
	s.metrics.ObserveReload(true, time.Now())
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		s.cm.Run(s.bg)
	}()
	s.startedAt = time.Now()
	s.startup = clusterNames(cfg)
	s.ready.Store(true)
	return nil
}

// readyWait bounds how long readiness waits for the clusters' first
// topology after a start: a cluster whose etcd stays unreachable must not
// keep the proxy, and the other clusters it serves, out of a load balancer.
const defaultReadyWait = 30 * time.Second

// idleParkAfter maps proxy.idle-park-after to the sessions' setting, where
// 0 means the default: in the file 0 turns parking off.
func idleParkAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func clusterNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Clusters))
	for _, c := range cfg.Clusters {
		names = append(names, c.Name)
	}
	return names
}

// Reload re-reads the config file (SIGHUP).
func (s *Server) Reload(source string) error { return s.cm.Reload(source) }

// apply makes the running components match next; it is the config
// manager's ApplyFunc. Nothing here blocks on the network.
func (s *Server) apply(_, next *config.Config) error {
	s.rebalance.Update(next)
	s.insight.apply(next)
	applyShadows(s.shadows, next)
	// Router rules and removed clusters' drains included (backendcluster).
	res := s.clusters.Apply(next)
	s.fleet.Apply(fleet.ClusterNames(next))
	s.lg.Info("clusters reconfigured", zap.Stringer("result", res))
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

// SessionDocs is Sessions as the API shows them.
func (s *Server) SessionDocs() []libapi.Session {
	infos := s.sql.Sessions()
	out := make([]libapi.Session, 0, len(infos))
	for _, in := range infos {
		out = append(out, sessionDoc(in))
	}
	return out
}

// sessionDoc is how the API shows a session: UTC milliseconds, and the
// backend as its ID (cluster/address), none while the session logs in.
func sessionDoc(in backend.Info) libapi.Session {
	ss := libapi.Session{
		ID:            in.ID,
		ClientAddr:    in.ClientAddr,
		User:          in.User,
		DB:            in.DB,
		Cluster:       in.Cluster,
		InTransaction: in.InTransaction,
		Since:         in.Since.UTC().Truncate(time.Millisecond),

		Migratable:          in.Migratable,
		NotMigratableReason: in.NotMigratableReason,
	}
	if in.Backend != "" {
		ss.Backend = observer.BackendID(in.Cluster, in.Backend)
	}
	return ss
}

// BackendSessions counts routed sessions per backend ID.
func (s *Server) BackendSessions() map[string]int64 { return s.router.Sessions() }

// LastProbes is when each backend was last probed, by backend ID. It reads
// the probers' results, which advance at every probe, where the topology is
// republished only when a verdict changes (so that 1000 backends probed
// every second do not rebuild the snapshot 1000 times a second).
func (s *Server) LastProbes() map[string]time.Time {
	out := map[string]time.Time{}
	for name, c := range s.clusters.Clusters() {
		for addr, h := range c.Health() {
			if !h.LastProbe.IsZero() {
				out[observer.BackendID(name, addr)] = h.LastProbe
			}
		}
	}
	return out
}

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
	if time.Since(s.startedAt) < s.readyWait {
		top := s.topo.Topology()
		for _, name := range s.startup {
			if v := top.Clusters[name]; v != nil && v.State == observer.StateConnecting {
				return false, fmt.Sprintf("starting: cluster %s has not loaded its topology from etcd yet (readiness waits for it at most %s after the start)", name, s.readyWait)
			}
		}
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
	s.fleet.Draining()
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
	if s.bgUnlink != nil {
		s.bgUnlink()
	}
	s.bgCancel()
	s.bgWG.Wait()
	s.rebalance.Close()
	s.router.Close()
	// Sessions are gone (or closed): nothing writes to the query log now.
	s.insight.close()
	s.shadows.Close()
	// Resign and deregister before the API goes, so peers stop asking.
	s.fleet.close()
	if s.api != nil {
		s.api.Close()
	}
	s.clusters.Close()
	s.closeLoops() // after the sessions, which the SQL server closed
}

// closeLoops stops the event loops, if any (again: nothing).
func (s *Server) closeLoops() {
	if s.loops != nil {
		s.loops.Close()
	}
}

// startLoops starts proxy.event-loops event loops (nil for 0). Where there
// are none (not Linux) sessions keep their goroutines, with a warning.
func startLoops(n int, lg *zap.Logger) (*evloop.Group, error) {
	if n == 0 {
		return nil, nil
	}
	if !evloop.Supported {
		lg.Warn("proxy.event-loops is set, but event loops need Linux: a goroutine serves each session")
		return nil, nil
	}
	g, err := evloop.NewGroup(n)
	if err != nil {
		return nil, fmt.Errorf("proxy.event-loops: %w", err)
	}
	return g, nil
}

// Components reports the state of each part of the proxy and of its
// connections to what it depends on, for /api/v1/health.
func (s *Server) Components() map[string]libapi.Component {
	out := map[string]libapi.Component{}
	switch {
	case s.shuttingDown.Load():
		out["sql"] = libapi.Component{State: "stopping"}
	case !s.ready.Load():
		out["sql"] = libapi.Component{State: "initializing"}
	default:
		out["sql"] = libapi.Component{State: "healthy"}
	}
	if st := s.cm.Status(); st.LastResult == cfgmgr.ResultError {
		out["config"] = libapi.Component{State: "abnormal", Reason: "last reload failed: " + st.LastError}
	} else {
		out["config"] = libapi.Component{State: "healthy"}
	}
	for name, v := range s.topo.Topology().Clusters {
		c := libapi.Component{State: "healthy"}
		switch v.State {
		case observer.StateConnecting:
			c = libapi.Component{State: "initializing", Reason: "waiting for etcd: " + v.LastError}
		case observer.StateStale:
			c = libapi.Component{State: "abnormal", Reason: "etcd unreachable, serving the last known backends: " + v.LastError}
		case observer.StateDraining:
			c = libapi.Component{State: "stopping", Reason: "removed from the configuration"}
		}
		out["cluster/"+name] = c
	}
	for name, err := range s.clusters.BuildErrors() {
		out["cluster/"+name] = libapi.Component{State: "abnormal", Reason: "runtime build failing: " + err}
	}
	state, reason := s.fleet.store.Health()
	out["coordination"] = libapi.Component{State: state, Reason: reason}
	return out
}
