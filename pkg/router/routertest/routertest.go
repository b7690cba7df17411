// Package routertest builds routers for the tests of the layers above the
// router (the proxy, the session), where there is no cluster runtime.
package routertest

import (
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// fixedTopology is a TopologySource that never changes.
type fixedTopology struct{ t *observer.Topology }

func (f fixedTopology) Topology() *observer.Topology { return f.t }

// NewForAddrs returns a router over one static cluster whose backends are
// always healthy, balanced by session count.
func NewForAddrs(cluster string, addrs []string) *router.Balanced {
	v := &observer.ClusterView{Name: cluster, State: observer.StateReady, Source: observer.SourceStatic}
	for _, a := range addrs {
		v.Backends = append(v.Backends, &observer.Backend{
			ID: observer.BackendID(cluster, a), Cluster: cluster, Addr: a, Health: observer.Health{Healthy: true},
		})
	}
	cfg := config.NewDefault()
	cfg.Balance.Policy = config.PolicyConnection
	cfg.Clusters = []config.Cluster{{Name: cluster, Instances: addrs}}
	return router.NewBalanced(fixedTopology{&observer.Topology{Clusters: map[string]*observer.ClusterView{cluster: v}}}, cfg)
}
