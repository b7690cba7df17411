package server

import (
	"fmt"
	"math/rand/v2"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/pkg/shadow"
	"go.uber.org/zap"
)

// newShadows builds the live-shadowing manager ([[shadow]]), registers its
// metrics and gives it to the sessions; mirrors start with applyShadows.
func newShadows(lg *zap.Logger, topo *observer.Aggregator, s *Server, sess *backend.Config, cfg *config.Config) *shadow.Manager {
	m := shadow.NewManager(lg.Named("shadow"), shadowTargets{topo})
	s.metrics.Registry().MustRegister(shadow.NewCollector(m))
	sess.Shadow = m
	applyShadows(m, cfg)
	return m
}

// applyShadows hands m the config's [[shadow]] sections. The passwords are
// copied into byte slices the mirrors own (and zero when they close); the
// slices built here are cleared once Apply has copied them.
func applyShadows(m *shadow.Manager, cfg *config.Config) {
	opts := make([]shadow.Options, 0, len(cfg.Shadows))
	for _, s := range cfg.Shadows {
		opts = append(opts, shadow.Options{
			Name: s.Name, Source: s.Source, Target: s.Target, Sample: s.Sample,
			User: s.User, Password: []byte(s.Password), Queue: s.Queue, Connections: s.Connections,
			Timeout: s.Timeout.Duration, MaxDigests: s.MaxDigests,
		})
	}
	m.Apply(opts)
	for i := range opts {
		clear(opts[i].Password)
	}
}

// shadowTargets picks a healthy backend of a mirror's target cluster from
// the topology, at random so that a mirror's connections spread.
type shadowTargets struct{ topo *observer.Aggregator }

var _ shadow.Resolver = shadowTargets{}

func (t shadowTargets) Backend(cluster string) (string, error) {
	cv := t.topo.Topology().Cluster(cluster)
	if cv == nil {
		return "", fmt.Errorf("shadow target cluster %s has no topology yet", cluster)
	}
	var healthy []string
	for _, b := range cv.Backends {
		if b.Health.Healthy {
			healthy = append(healthy, b.Addr)
		}
	}
	if len(healthy) == 0 {
		return "", fmt.Errorf("shadow target cluster %s has no healthy backend", cluster)
	}
	return healthy[rand.IntN(len(healthy))], nil
}

// shadowAPI serves GET /api/v1/shadow.
type shadowAPI struct{ m *shadow.Manager }

var _ api.Shadows = shadowAPI{}

func (a shadowAPI) ShadowStatus() []shadow.Status { return a.m.Status() }
