package observer

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// BackendID names a backend across clusters: "<cluster>/<addr>". The same
// address in two clusters is two backends. Cluster names never contain "/",
// so the first "/" splits the ID.
func BackendID(cluster, addr string) string { return cluster + "/" + addr }

// SplitBackendID is the inverse of BackendID.
func SplitBackendID(id string) (cluster, addr string, ok bool) {
	return strings.Cut(id, "/")
}

// StatusAddr is the host:port of a backend's HTTP status port: the host of
// its SQL address addr (or addr itself, a bare host) with port statusPort;
// "" when statusPort is 0, a backend without one. The health prober asks
// it for /status, the metrics reader scrapes its /metrics, and Prometheus
// labels the backend's samples with it as their instance.
func StatusAddr(addr string, statusPort uint) string {
	if statusPort == 0 {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr // a bare host
	}
	return net.JoinHostPort(host, strconv.FormatUint(uint64(statusPort), 10))
}

// Health is the prober's verdict on one backend.
type Health struct {
	// Healthy backends take new sessions. A backend nobody has probed yet is
	// healthy, so that a newly registered one is routable at once; the first
	// probe runs as soon as it is seen.
	Healthy bool
	// Reason says why the backend is unhealthy (the last probe error), or
	// "not probed yet".
	Reason string
	// LastProbe is when the last probe finished; zero before the first.
	LastProbe time.Time
	// Failures counts consecutive failed probes.
	Failures int
	// Server is what the backend announced in its greeting at the last
	// probe that read one; it is kept across failures and nil before.
	Server *ServerInfo
}

// Metrics are the load figures of one backend, as fractions of its quota.
type Metrics struct {
	// CPU is the CPU usage over the backend's CPU quota (1 = all of it).
	CPU    float64
	HasCPU bool
	// Memory is the resident memory over the backend's memory quota.
	Memory    float64
	HasMemory bool
	// Source is "prometheus" or "scrape".
	Source    string
	UpdatedAt time.Time
}

// Backend is one backend as the router sees it. Values published in a
// Topology are never mutated.
type Backend struct {
	ID         string
	Cluster    string
	Addr       string
	StatusPort uint
	Version    string
	Labels     map[string]string
	Health     Health
	Metrics    Metrics
}

// ClusterState is the lifecycle state of one cluster's topology source.
type ClusterState string

const (
	// StateConnecting: the cluster's etcd has not answered yet; it has no
	// backends.
	StateConnecting ClusterState = "connecting"
	// StateReady: the topology is current.
	StateReady ClusterState = "ready"
	// StateStale: etcd is unreachable; the last known backends keep serving.
	StateStale ClusterState = "stale"
	// StateDraining: the cluster was removed from the config; it takes no new
	// sessions.
	StateDraining ClusterState = "draining"
)

// Topology sources.
const (
	SourceEtcd   = "etcd"
	SourceStatic = "static"
)

// ClusterView is one cluster runtime's published state. It is immutable.
type ClusterView struct {
	Name       string
	Generation uint64
	State      ClusterState
	Source     string
	// Revision is the etcd revision the backends reflect (0 for static).
	Revision int64
	// LastError is the last topology error, or "".
	LastError string
	Labels    map[string]string
	// Backends are sorted by Addr.
	Backends []*Backend
	// UpdatedAt is when the view was built.
	UpdatedAt time.Time
}

// Backend returns the backend with the given address.
func (v *ClusterView) Backend(addr string) *Backend {
	for _, b := range v.Backends {
		if b.Addr == addr {
			return b
		}
	}
	return nil
}

// Topology is the merged, immutable view of every cluster.
type Topology struct {
	// Version increases with every published Topology.
	Version  uint64
	Clusters map[string]*ClusterView
}

// Cluster returns the named cluster's view, or nil.
func (t *Topology) Cluster(name string) *ClusterView {
	if t == nil {
		return nil
	}
	return t.Clusters[name]
}

// Backend looks a backend up by ID.
func (t *Topology) Backend(id string) *Backend {
	cluster, addr, ok := SplitBackendID(id)
	if !ok {
		return nil
	}
	v := t.Cluster(cluster)
	if v == nil {
		return nil
	}
	return v.Backend(addr)
}
