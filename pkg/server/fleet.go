package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/pkg/manager/backendcluster"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/etcdstore"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/pkg/manager/fleet"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/router"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// fleetParts are the pieces of this node's fleet membership as the server
// builds them: the coordination store (with its etcd client), the voter that
// answers peers, the coordinator of vote rounds, and pkg/manager/fleet that
// drives them.
type fleetParts struct {
	*fleet.Fleet
	store coordination.Store
	cli   *clientv3.Client // nil in single-node mode
	voter *vote.Voter
	coord *vote.Coordinator
}

// newFleet builds the fleet from cfg over the server's finished parts;
// nothing starts yet.
func newFleet(lg *zap.Logger, cfg *config.Config, topo *observer.Aggregator, r *router.Balanced,
	clusters *backendcluster.Manager, sql *proxy.Server) (*fleetParts, error) {
	flg := lg.Named("fleet")
	self, err := fleet.NodeInfo(cfg, Version)
	if err != nil {
		return nil, err
	}
	peerCfg, err := fleet.PeerTLS(cfg.API)
	if err != nil {
		return nil, err
	}
	p := &fleetParts{}
	var terms coordination.TermWorker
	c := cfg.Coordination
	if c.Enabled() {
		p.cli, err = etcdclient.FromConfig(flg, c.EtcdEndpoints, c.EtcdTLS)
		if err != nil {
			return nil, fmt.Errorf("coordination: %w", err)
		}
		e := etcdstore.New(flg, p.cli, c.Fleet, self, etcdstore.Options{
			ElectionTTL: c.ElectionTTL.Duration,
			NodeTTL:     c.NodeTTL.Duration,
		})
		p.store, terms = e, e
	} else {
		m := coordination.NewMemory(self)
		p.store, terms = m, m
	}
	probes := proberAdapter{clusters}
	p.voter = vote.NewVoter(flg, self.ID, probes)
	scheme := "http"
	if cfg.API.TLS.HasCert() {
		scheme = "https"
	}
	p.coord = vote.NewCoordinator(flg, p.store, self, probes,
		&vote.PeerClient{HTTP: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: peerCfg}}, Token: cfg.API.Token, Scheme: scheme},
		vote.CoordinatorOptions{
			AllowSingleVoter: c.AllowSingleVoter || !c.Enabled(),
			MaxDownPerMinute: c.MaxDownPerMinute,
			HealthyCount:     fleet.HealthyCount(topo, p.store),
		})
	p.Fleet = fleet.New(lg, self, fleet.Deps{
		Store:    p.store,
		Terms:    terms,
		Rounds:   voteRounds{p.coord},
		Voter:    p.voter,
		Routing:  r,
		Topology: topo,
		Sessions: sessionEnder{sql},
	})
	return p, nil
}

// close stops the fleet (loop, then terms, then the registration) and closes
// the fleet's etcd client, which also ends the Campaign calls that
// etcdstore.Store.Close abandoned to an unreachable etcd.
func (p *fleetParts) close() {
	p.Fleet.Close()
	if p.cli != nil {
		_ = p.cli.Close()
	}
}

// voteRounds adapts the vote coordinator to fleet.Rounds.
type voteRounds struct{ c *vote.Coordinator }

func (v voteRounds) Reconcile(ctx context.Context, cluster string, local map[string]bool, verdicts map[string]coordination.Verdict) {
	v.c.Reconcile(ctx, cluster, local, verdicts)
}

// proberAdapter gives the fleet fresh probes from the cluster runtimes.
type proberAdapter struct{ clusters *backendcluster.Manager }

func (p proberAdapter) ProbeNow(ctx context.Context, cluster, addr string) (bool, string, error) {
	c := p.clusters.Cluster(cluster)
	if c == nil {
		return false, "", fmt.Errorf("cluster %s is not served by this node", cluster)
	}
	h, err := c.ProbeNow(ctx, addr)
	if err != nil {
		return false, "", err
	}
	return h.Healthy, h.Reason, nil
}

// sessionEnder ends the sessions on a backend the fleet voted down, each at
// its next transaction boundary, except those that can migrate: they fail
// over at their next command if the backend is dead, or are moved away by
// the rebalancer.
type sessionEnder struct{ sql *proxy.Server }

func (e sessionEnder) EndIdle(cluster, addr string) int {
	d := e.sql.Drain(func(ss *backend.Session) bool {
		if in := ss.Info(); in.Cluster != cluster || in.Backend != addr {
			return false
		}
		ok, _ := ss.Migratable()
		return !ok
	}, 0, nil)
	return d.Sessions()
}
