package fleet

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
)

// NodeInfo is this node's registration: the SQL and API ports with the
// host they can be reached at. That is proxy.advertise-addr when set;
// otherwise the host a listener is bound to, so that a proxy on
// 127.0.0.1:6000 advertises 127.0.0.1:6000, not an interface address it does
// not listen on; and only for a wildcard listener (0.0.0.0, ::) the first
// non-loopback address.
func NodeInfo(cfg *config.Config, version string) (coordination.NodeInfo, error) {
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
		Version:   version,
		Zone:      cfg.Proxy.Labels["zone"],
		StartTime: time.Now().UTC().Truncate(time.Second),
		State:     coordination.NodeUp,
		Clusters:  ClusterNames(cfg),
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

// ClusterNames are the names of cfg's clusters, sorted.
func ClusterNames(cfg *config.Config) []string {
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

// PeerTLS is how this node calls its peers' APIs when the fleet runs
// behind mTLS: it presents its own API certificate (whose name
// api.client-certs.admin lists) and verifies theirs against api.tls.ca.
// nil means the defaults (a token, system roots).
func PeerTLS(c config.API) (*tls.Config, error) {
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
