package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/etcdstore"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/pkg/observer"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// fleet ties this node to the coordination backend: it keeps the node's
// registration and roles in step with the config, applies the fleet's
// verdicts to routing, and runs the vote rounds of the prober roles this
// node leads.
type fleet struct {
	lg    *zap.Logger
	srv   *Server
	be    coordination.Store
	tw    coordination.TermWorker
	cli   *clientv3.Client // nil in single-node mode
	voter *vote.Voter
	coord *vote.Coordinator

	mu      sync.Mutex
	self    coordination.NodeInfo
	workers map[string]*termWorker // cluster → worker of the current term
	down    map[string]bool        // backend IDs voted down, as last applied
}

// reconcileEvery is how often a prober leader reconsiders its cluster's
// backends without being woken by a change; rounds that were just blocked
// are not repeated sooner than the coordinator's backoff.
const reconcileEvery = time.Second

// termWorker runs the vote rounds of one prober term.
type termWorker struct {
	term coordination.Term
	wake chan struct{}
}

// newFleet builds the coordination backend from cfg; nothing starts yet.
func newFleet(lg *zap.Logger, s *Server, cfg *config.Config) (*fleet, error) {
	lg = lg.Named("fleet")
	self, err := nodeInfo(cfg)
	if err != nil {
		return nil, err
	}
	f := &fleet{lg: lg, srv: s, self: self, workers: map[string]*termWorker{}, down: map[string]bool{}}
	c := cfg.Coordination
	if c.Enabled() {
		f.cli, err = etcdclient.FromConfig(lg, c.EtcdEndpoints, c.EtcdTLS)
		if err != nil {
			return nil, fmt.Errorf("coordination: %w", err)
		}
		e := etcdstore.New(lg, f.cli, c.Fleet, self, etcdstore.Options{
			ElectionTTL: c.ElectionTTL.Duration,
			NodeTTL:     c.NodeTTL.Duration,
		})
		f.be, f.tw = e, e
	} else {
		m := coordination.NewMemory(self)
		f.be, f.tw = m, m
	}
	f.voter = vote.NewVoter(lg, self.ID, proberAdapter{s})
	scheme := "http"
	if cfg.API.TLS.HasCert() {
		scheme = "https"
	}
	peerCfg, err := peerTLS(cfg.API)
	if err != nil {
		return nil, err
	}
	f.coord = vote.NewCoordinator(lg, f.be, self, proberAdapter{s},
		&vote.PeerClient{HTTP: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: peerCfg}}, Token: cfg.API.Token, Scheme: scheme},
		vote.CoordinatorOptions{
			AllowSingleVoter: c.AllowSingleVoter || !c.Enabled(),
			MaxDownPerMinute: c.MaxDownPerMinute,
			HealthyCount:     s.healthyCount,
		})
	return f, nil
}

// peerTLS is how this node calls its peers' APIs when the fleet runs
// behind mTLS: it presents its own API certificate (whose name
// api.client-certs.admin lists) and verifies theirs against api.tls.ca.
// nil means the defaults (a token, system roots).
func peerTLS(c config.API) (*tls.Config, error) {
	if !c.MTLS() || !c.TLS.HasCert() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	pool, err := config.LoadCA(c.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("api.tls.ca: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// nodeInfo is this node's registration: the SQL and API ports with the
// host they can be reached at. That is proxy.advertise-addr when set;
// otherwise the host a listener is bound to, so that a proxy on
// 127.0.0.1:6000 advertises 127.0.0.1:6000, not an interface address it does
// not listen on; and only for a wildcard listener (0.0.0.0, ::) the first
// non-loopback address.
func nodeInfo(cfg *config.Config) (coordination.NodeInfo, error) {
	sqlPort, err := portOf(cfg.Proxy.Addr)
	if err != nil {
		return coordination.NodeInfo{}, fmt.Errorf("proxy.addr: %w", err)
	}
	host := cfg.Proxy.AdvertiseAddr
	if host == "" {
		host = boundHost(cfg.Proxy.Addr)
	}
	apiPort, apiHost := 0, ""
	if cfg.API.Addr != "" {
		if apiPort, err = portOf(cfg.API.Addr); err != nil {
			return coordination.NodeInfo{}, fmt.Errorf("api.addr: %w", err)
		}
		if cfg.Proxy.AdvertiseAddr == "" {
			apiHost = boundHost(cfg.API.Addr)
		}
	}
	if host == "" {
		host = firstNonLoopback()
	}
	// An API on a wildcard is reachable at the SQL host as well.
	if apiHost == host {
		apiHost = ""
	}
	id := cfg.Coordination.NodeID
	if id == "" {
		id = net.JoinHostPort(host, strconv.Itoa(sqlPort))
	}
	return coordination.NodeInfo{
		ID:        id,
		Host:      host,
		SQLPort:   sqlPort,
		APIPort:   apiPort,
		APIHost:   apiHost,
		Version:   Version,
		Zone:      cfg.Proxy.Labels["zone"],
		StartTime: time.Now().UTC().Truncate(time.Second),
		State:     coordination.NodeUp,
		Clusters:  clusterNames(cfg),
	}, nil
}

// boundHost is the host addr binds to, or "" for a wildcard (all
// addresses).
func boundHost(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil || h == "" {
		return ""
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip.IsUnspecified() {
			return ""
		}
		return ip.String()
	}
	return h
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

func clusterNames(cfg *config.Config) []string {
	out := make([]string, 0, len(cfg.Clusters))
	for _, c := range cfg.Clusters {
		out = append(out, c.Name)
	}
	slices.Sort(out)
	return out
}

// firstNonLoopback is the host other nodes reach this one at by default.
func firstNonLoopback() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "127.0.0.1"
}

func roles(cfg *config.Config) []string {
	out := []string{coordination.RoleFleet}
	for _, name := range clusterNames(cfg) {
		out = append(out, coordination.ProberRole(name))
	}
	return out
}

// start registers the node, campaigns, and runs the loop that applies
// verdicts and drives vote rounds, until the server's background context
// ends.
func (f *fleet) start(cfg *config.Config) error {
	if !cfg.Coordination.Enabled() {
		f.lg.Warn("running as a single node: no [coordination] etcd-endpoints, so this node's own probes decide alone")
	}
	f.be.SetRoles(roles(cfg))
	if err := f.be.Start(f.srv.bg); err != nil {
		return err
	}
	beCh, beStop := f.be.Subscribe()
	topoCh, topoStop := f.srv.topo.Subscribe()
	f.srv.bgWG.Add(1)
	go func() {
		defer f.srv.bgWG.Done()
		defer beStop()
		defer topoStop()
		f.sync()
		for {
			select {
			case <-f.srv.bg.Done():
				return
			case <-beCh:
			case <-topoCh:
			}
			f.sync()
		}
	}()
	return nil
}

// apply follows a reload: the roles and the clusters this node serves.
func (f *fleet) apply(cfg *config.Config) {
	f.mu.Lock()
	f.self.Clusters = clusterNames(cfg)
	info := f.self
	f.mu.Unlock()
	f.be.SetInfo(info)
	f.be.SetRoles(roles(cfg))
}

// draining tells the fleet this node is leaving.
func (f *fleet) draining() {
	f.mu.Lock()
	f.self.State = coordination.NodeDraining
	info := f.self
	f.mu.Unlock()
	f.be.SetInfo(info)
}

// close resigns, deregisters and closes the fleet client.
func (f *fleet) close() {
	f.be.Close()
	if f.cli != nil {
		_ = f.cli.Close()
	}
}

// sync applies the verdicts to routing and wakes the vote workers of the
// terms this node holds.
func (f *fleet) sync() {
	f.srv.router.SyncTopology(f.srv.topo.Topology())
	verdicts := f.be.Verdicts()
	down := make(map[string]bool)
	for id, v := range verdicts {
		if v.State == coordination.VerdictDown {
			down[id] = true
		}
	}
	f.srv.router.SetFleetDown(down)
	f.mu.Lock()
	var newlyDown []string
	for id := range down {
		if !f.down[id] {
			newlyDown = append(newlyDown, id)
		}
	}
	f.down = down
	f.mu.Unlock()
	for _, id := range newlyDown {
		f.closeIdleSessions(id)
	}

	for _, cluster := range clusterNames(f.srv.cm.Current()) {
		role := coordination.ProberRole(cluster)
		term, _, ok := f.be.Term(role)
		f.mu.Lock()
		w := f.workers[cluster]
		if !ok {
			delete(f.workers, cluster)
			f.mu.Unlock()
			continue
		}
		f.voter.ObserveTerm(cluster, term.Rev)
		if w == nil || w.term != term {
			w = &termWorker{term: term, wake: make(chan struct{}, 1)}
			f.workers[cluster] = w
			f.mu.Unlock()
			f.startWorker(cluster, w)
		} else {
			f.mu.Unlock()
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// startWorker runs cluster's vote rounds for one term, under the term's
// context: when the term ends the worker stops before the term resigns.
func (f *fleet) startWorker(cluster string, w *termWorker) {
	err := f.tw.Go(w.term, func(ctx context.Context) {
		f.lg.Info("leading the prober role", zap.String("cluster", cluster), zap.Int64("term", w.term.Rev))
		// Nothing may change after a blocked round (a peer that could not
		// vote comes back, the backend stays dead): look again regularly too.
		tick := time.NewTicker(reconcileEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			case <-tick.C:
			}
			local := f.localHealth(cluster)
			if local == nil {
				continue
			}
			f.coord.Reconcile(ctx, cluster, local, f.be.Verdicts())
		}
	})
	if err != nil {
		f.lg.Debug("term ended before its worker started", zap.String("cluster", cluster), zap.Error(err))
	}
}

// localHealth is this node's own view of cluster's backends.
func (f *fleet) localHealth(cluster string) map[string]bool {
	v := f.srv.topo.Topology().Cluster(cluster)
	if v == nil || v.State == observer.StateDraining {
		return nil
	}
	out := make(map[string]bool, len(v.Backends))
	for _, b := range v.Backends {
		out[b.Addr] = b.Health.Healthy
	}
	return out
}

// closeIdleSessions ends the sessions on a backend the fleet voted down, each
// at its next transaction boundary, except those that can migrate.
func (f *fleet) closeIdleSessions(id string) {
	cluster, addr, _ := observer.SplitBackendID(id)
	n := 0
	for _, ss := range f.srv.sql.ClusterSessions(cluster) {
		if ss.Info().Backend != addr {
			continue
		}
		if ok, _ := ss.Migratable(); ok {
			// It can move instead: it fails over at its next command if
			// the backend is dead, or is moved away by a Redirect.
			continue
		}
		ss.RequestClose()
		n++
	}
	f.lg.Warn("backend voted down by the fleet: no new sessions, idle ones closed",
		zap.String("backend", id), zap.Int("sessions", n))
}

// proberAdapter gives the fleet fresh probes from the cluster runtimes.
type proberAdapter struct{ s *Server }

func (p proberAdapter) ProbeNow(ctx context.Context, cluster, addr string) (bool, string, error) {
	c := p.s.clusters.Cluster(cluster)
	if c == nil {
		return false, "", fmt.Errorf("cluster %s is not served by this node", cluster)
	}
	h, err := c.ProbeNow(ctx, addr)
	if err != nil {
		return false, "", err
	}
	return h.Healthy, h.Reason, nil
}

// healthyCount counts the backends of cluster, other than except, that this
// node sees healthy and the fleet has not voted down.
func (s *Server) healthyCount(cluster, except string) int {
	v := s.topo.Topology().Cluster(cluster)
	if v == nil {
		return 0
	}
	verdicts := s.fleet.be.Verdicts()
	n := 0
	for _, b := range v.Backends {
		if b.Addr == except || !b.Health.Healthy {
			continue
		}
		if vd, ok := verdicts[b.ID]; ok && vd.State == coordination.VerdictDown {
			continue
		}
		n++
	}
	return n
}
