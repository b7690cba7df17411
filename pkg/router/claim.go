package router

import (
	"fmt"
)

// Claim gives a lease on the backend addr of cluster, for a session that
// moves there. It refuses a backend that is not in that cluster's topology,
// is unhealthy or was voted down. (Minimal version for session migration;
// issue9-control's rebalancer carries the full one.)
func (r *Balanced) Claim(cluster, addr string) (Lease, error) {
	view := r.topo.Topology().Cluster(cluster)
	if view == nil {
		return nil, fmt.Errorf("%w: cluster %s is not running", ErrNoBackend, cluster)
	}
	for _, b := range view.Backends {
		if b.Addr != addr {
			continue
		}
		if p := r.fleetDown.Load(); p != nil && (*p)[b.ID] {
			return nil, fmt.Errorf("%w: %s was voted down", ErrNoBackend, b.ID)
		}
		if !b.Health.Healthy {
			return nil, fmt.Errorf("%w: %s is unhealthy", ErrNoBackend, b.ID)
		}
		r.mu.Lock()
		r.state(b.ID).sessions++
		r.mu.Unlock()
		return &lease{r: r, b: b}, nil
	}
	return nil, fmt.Errorf("%w: %s is not a backend of cluster %s", ErrNoBackend, addr, cluster)
}
