package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// Config is the whole proxy configuration, one TOML document.
type Config struct {
	Proxy        ProxyServer  `toml:"proxy"`
	Security     Security     `toml:"security"`
	Log          Log          `toml:"log"`
	API          API          `toml:"api"`
	Coordination Coordination `toml:"coordination"`
	HealthCheck  HealthCheck  `toml:"health-check"`
	Balance      Balance      `toml:"balance"`
	Digests      Digests      `toml:"digests"`
	QueryLog     QueryLog     `toml:"query-log"`
	Traffic      Traffic      `toml:"traffic"`
	Clusters     []Cluster    `toml:"cluster"`
	Routes       []Route      `toml:"route"`
	Shadows      []Shadow     `toml:"shadow"`
}

// ProxyServer configures the MySQL-protocol listener that clients connect to.
type ProxyServer struct {
	// Addr is the listen address. Port 0 picks a free port, which tests rely on.
	Addr string `toml:"addr"`
	// MaxConnections caps concurrent client connections; 0 means unlimited.
	MaxConnections int `toml:"max-connections"`
	// GracefulWaitBeforeShutdown keeps accepting connections for this long after a
	// shutdown signal, so a load balancer has time to notice the proxy is leaving.
	GracefulWaitBeforeShutdown Duration `toml:"graceful-wait-before-shutdown"`
	// GracefulCloseConnTimeout is how long shutdown waits for clients to finish their
	// current transaction before their connections are closed.
	GracefulCloseConnTimeout Duration `toml:"graceful-close-conn-timeout"`
	// ProxyProtocol is "" or "v2": accept a PROXY v2 header, but only from peers in
	// ProxyProtocolTrustedCIDRs.
	ProxyProtocol string `toml:"proxy-protocol"`
	// ProxyProtocolTrustedCIDRs lists the peers allowed to send a PROXY header.
	// A plain IP means a single host (/32 or /128).
	ProxyProtocolTrustedCIDRs []string `toml:"proxy-protocol-trusted-cidrs"`
	// BackendProxyProtocol is "" or "v2": send a PROXY v2 header to backends so they
	// see the real client address.
	BackendProxyProtocol string `toml:"backend-proxy-protocol"`
	// ServerVersion, when set, overrides the version string in the handshake
	// the proxy sends to clients; empty announces the backends' own version.
	ServerVersion string `toml:"server-version"`
	// ConnectTimeout bounds dialing a backend plus its handshake.
	ConnectTimeout Duration `toml:"connect-timeout"`
	// HandshakeTimeout bounds a client's whole login (greeting to OK):
	// connections that stall in the handshake are closed after it.
	HandshakeTimeout Duration `toml:"handshake-timeout"`
	// BackendReadTimeout bounds how long a session waits for the next packet
	// of a backend's response while a command is in progress; 0 means no
	// limit. When it passes, the client gets an ERR packet and the session
	// ends (the backend connection is in an unknown state).
	BackendReadTimeout Duration `toml:"backend-read-timeout"`
	// IdleParkAfter is how long a session idles before it parks: it gives
	// up its goroutine and read buffers until its client speaks again.
	// 0 turns parking off (each idle session keeps its goroutine).
	IdleParkAfter Duration `toml:"idle-park-after"`
	// EventLoops serves plain-TCP sessions after their login as coroutines
	// of event loops (Linux only), instead of a goroutine each waiting in
	// Go's netpoller: less CPU per query and a shorter tail
	// (docs/benchmarks.md). "auto" (the default) runs one loop fewer than
	// the process has Ps, and at least one; 0 keeps a goroutine per
	// session. Read at start: a reload does not change it.
	EventLoops EventLoops `toml:"event-loops"`
	// DefaultCluster takes the clients no [[route]] matches. Empty: such clients
	// get an ERR packet, unless exactly one cluster is configured.
	DefaultCluster string `toml:"default-cluster"`
	// UserPrefixRouting routes a login "east.alice" to cluster east as user
	// "alice". A prefix that names no cluster is left alone ("john.smith").
	UserPrefixRouting bool `toml:"user-prefix-routing"`
	// Labels describe this proxy; labels.zone makes backends in the same zone
	// preferred.
	Labels map[string]string `toml:"labels"`
	// AdvertiseAddr is the host other nodes and clients use to reach this
	// proxy (no port). Empty: the first non-loopback address.
	AdvertiseAddr string `toml:"advertise-addr"`
}

// Coordination configures the fleet: several proxies that elect leaders and
// vote over one etcd. Without etcd-endpoints the proxy runs as a single node.
type Coordination struct {
	// EtcdEndpoints of the fleet's etcd (not a cluster's PD).
	EtcdEndpoints []string `toml:"etcd-endpoints"`
	// Fleet names the fleet; its keys live under /switchyard/<fleet>/.
	Fleet string `toml:"fleet"`
	// NodeID identifies this node in the fleet. Empty: advertised host and
	// SQL port.
	NodeID string `toml:"node-id"`
	// ElectionTTL is the lease of a leadership term: a crashed leader is
	// replaced after about this long.
	ElectionTTL Duration `toml:"election-ttl"`
	// NodeTTL is the lease of a node's registration.
	NodeTTL Duration  `toml:"node-ttl"`
	EtcdTLS TLSConfig `toml:"etcd-tls"`
	// MaxDownPerMinute bounds the fleet-wide down verdicts per cluster.
	MaxDownPerMinute int `toml:"max-down-per-minute"`
	// AllowSingleVoter lets a lone node serving a cluster mark a backend down
	// on its own probes.
	AllowSingleVoter bool `toml:"allow-single-voter"`
}

// Enabled reports whether the proxy is part of a fleet.
func (c Coordination) Enabled() bool { return len(c.EtcdEndpoints) > 0 }

// ProxyProtocolV2 is the only PROXY protocol version Switchyard speaks.
const ProxyProtocolV2 = "v2"

// TrustedNets parses ProxyProtocolTrustedCIDRs. Prefixes are masked, so "10.1.2.3/8"
// means 10.0.0.0/8. Addresses from the network may be IPv4-mapped IPv6; callers
// should Unmap them before calling Contains.
func (p ProxyServer) TrustedNets() ([]netip.Prefix, error) {
	nets := make([]netip.Prefix, 0, len(p.ProxyProtocolTrustedCIDRs))
	for i, s := range p.ProxyProtocolTrustedCIDRs {
		n, err := parseTrustedNet(s)
		if err != nil {
			return nil, fmt.Errorf("proxy.proxy-protocol-trusted-cidrs[%d] %q: %w", i, s, err)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func parseTrustedNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		n, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR or IP address")
		}
		return n.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR or IP address")
	}
	if ip.Zone() != "" {
		// A zone only means something on one host's interface; a trusted-peer list
		// that silently ignored it would trust more than written.
		return netip.Prefix{}, fmt.Errorf("IPv6 zones are not allowed")
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// TLSConfig names the PEM files for one side of a TLS connection.
type TLSConfig struct {
	// Cert and Key are this side's certificate and private key. For server-tls they
	// are the proxy's server certificate; for backend-tls an optional client certificate.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// CA verifies the peer: client certificates for server-tls, backend certificates
	// for backend-tls (the system roots are used when empty).
	CA string `toml:"ca"`
	// SkipVerify disables verification of the peer's certificate.
	SkipVerify bool `toml:"skip-verify"`
}

// Enabled reports whether any TLS setting is present. For server-tls Check makes
// sure that means a certificate is configured.
func (t TLSConfig) Enabled() bool {
	return t.Cert != "" || t.CA != "" || t.SkipVerify
}

// HasCert reports whether this side presents a certificate of its own.
func (t TLSConfig) HasCert() bool {
	return t.Cert != "" && t.Key != ""
}

// Security holds TLS settings for both directions of the proxy.
type Security struct {
	// ServerTLS is used between clients and the proxy.
	ServerTLS TLSConfig `toml:"server-tls"`
	// BackendTLS is used between the proxy and backends.
	BackendTLS TLSConfig `toml:"backend-tls"`
	// RequireBackendTLS refuses backends that do not offer TLS instead of falling
	// back to plaintext.
	RequireBackendTLS bool `toml:"require-backend-tls"`
}

// Log configures the proxy's own logs.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string `toml:"level"`
	// Format is console or json.
	Format string `toml:"format"`
	// File is the log file; empty means stderr.
	File string `toml:"file"`
}

// Cluster is one backend database cluster. Its backends come from exactly one
// source: the cluster's etcd (EtcdEndpoints), or a static list (Instances).
type Cluster struct {
	// Name identifies the cluster in routes, metrics and the API; a reload matches
	// runtimes to clusters by it.
	Name string `toml:"name"`
	// Instances are the backends' MySQL addresses, host:port.
	Instances []string `toml:"instances"`
	// EtcdEndpoints are the cluster's PD/etcd endpoints; backends are read from
	// TopologyPrefix there.
	EtcdEndpoints []string `toml:"etcd-endpoints"`
	// TopologyPrefix is where backends register (TiDB's layout by default).
	TopologyPrefix string `toml:"topology-prefix"`
	// EtcdTLS secures the etcd connection.
	EtcdTLS TLSConfig `toml:"etcd-tls"`
	// Prometheus is the base URL of a Prometheus holding the backends' metrics.
	// Empty: the one TiUP records at /topology/prometheus in etcd (followed by
	// the topology watch), else scrape each backend's status port.
	Prometheus string `toml:"prometheus"`
	// CPUQuery and MemoryQuery are the PromQL for each backend's CPU and memory
	// use as a fraction of its quota. Empty: TiDB's.
	CPUQuery    string `toml:"cpu-query"`
	MemoryQuery string `toml:"memory-query"`
	// Labels describe the cluster (zone, region ...); they are shown by the API.
	Labels map[string]string `toml:"labels"`
	// DrainTimeout is how long the sessions of a cluster removed by a reload
	// may take to reach a transaction boundary before they are closed.
	DrainTimeout Duration `toml:"drain-timeout"`
	// MigrationUser and MigrationPassword name an account of the cluster's
	// MySQL/MariaDB backends allowed to read mysql.user. With it, sessions
	// of mysql_native_password users can move between backends (drains,
	// rebalancing, failover): the proxy recovers SHA1(password) from the
	// login and the stored hash and keeps it in memory for the session's
	// life. Empty: sessions of this cluster never move.
	MigrationUser     string `toml:"migration-user"`
	MigrationPassword string `toml:"migration-password"`
}

// Migration returns the cluster's migration account (ok false: none).
func (c *Cluster) Migration() (user, password string, ok bool) {
	return c.MigrationUser, c.MigrationPassword, c.MigrationUser != ""
}

// UsesEtcd reports whether the cluster's backends come from etcd.
func (c *Cluster) UsesEtcd() bool { return len(c.EtcdEndpoints) > 0 }

// Route sends the client connections it matches to one cluster. Every
// condition that is set must match; an empty condition matches everything.
// Routes are tried in order and the first match wins.
type Route struct {
	// Cluster receives the matching connections.
	Cluster string `toml:"cluster"`
	// Ports are extra listener ports (on proxy.addr's host) opened for this
	// route; a connection matches when it arrived on one of them.
	Ports []int `toml:"ports"`
	// Users are globs (path.Match syntax: *, ?, [a-z]) over the login user.
	Users []string `toml:"users"`
	// ClientCIDRs match the client address (after PROXY protocol).
	ClientCIDRs []string `toml:"client-cidrs"`
	// ServerNames match the TLS server name (SNI) the client asked for.
	ServerNames []string `toml:"server-names"`
}

// ClientNets parses ClientCIDRs (Check has validated them).
func (r *Route) ClientNets() []netip.Prefix {
	nets := make([]netip.Prefix, 0, len(r.ClientCIDRs))
	for _, s := range r.ClientCIDRs {
		if n, err := parseTrustedNet(s); err == nil {
			nets = append(nets, n)
		}
	}
	return nets
}

// HealthCheck configures the per-cluster backend prober.
type HealthCheck struct {
	// Interval between probes of each backend.
	Interval Duration `toml:"interval"`
	// RetryInterval is the wait before probing again a backend whose last
	// probe failed while it still counts as healthy, so that a failure is
	// confirmed (or cleared) within a fraction of Interval. It has no effect
	// when not shorter than Interval.
	RetryInterval Duration `toml:"retry-interval"`
	// Timeout bounds one probe.
	Timeout Duration `toml:"timeout"`
	// FailuresToUnhealthy consecutive failed probes mark a backend unhealthy;
	// one success marks it healthy again.
	FailuresToUnhealthy int `toml:"failures-to-unhealthy"`
	// SQLUser, when set, makes the prober log in to each backend as this
	// user once and keep the connection, sending COM_PING on it at every
	// probe (and connecting again only when that fails). Without it each
	// probe is a new connection that reads the greeting and hangs up, which
	// MySQL and MariaDB count as an aborted connection.
	SQLUser string `toml:"sql-user"`
	// SQLPassword is SQLUser's password, empty for none. It is never logged
	// and GET /api/v1/config shows it redacted.
	SQLPassword string `toml:"sql-password"`
}

// Balance configures how a backend is chosen inside a cluster.
type Balance struct {
	// Policy is "resource" (health, memory, CPU, zone, then sessions) or
	// "connection" (sessions only).
	Policy string `toml:"policy"`
	// MetricsInterval is how often backend CPU and memory are read.
	MetricsInterval Duration `toml:"metrics-interval"`
	// EnableRebalance lets the proxy move live sessions between the backends of
	// one cluster: away from backends that are drained, unhealthy, voted down or
	// gone, and from busy backends to idle ones. Off: sessions stay where they
	// are (drained backends still take no new sessions, and their sessions are
	// closed at the drain timeout).
	EnableRebalance bool `toml:"enable-rebalance"`
	// MigrationsPerSecond caps the load-driven moves of one cluster, per
	// balance factor (sessions, CPU, memory).
	MigrationsPerSecond float64 `toml:"migrations-per-second"`
	// EvictionsPerSecond caps the moves of one cluster away from backends that
	// are drained, unhealthy, voted down or gone.
	EvictionsPerSecond float64 `toml:"evictions-per-second"`
	// RebalanceRatio is the deadband of session-count balancing: sessions move
	// from A to B only while sessions(A) > (sessions(B)+1) * ratio.
	RebalanceRatio float64 `toml:"rebalance-ratio"`
	// CPUGap is the deadband of CPU balancing: sessions move from A to B only
	// while A's CPU exceeds B's by more than this fraction of a core quota.
	CPUGap float64 `toml:"cpu-gap"`
	// BackendDrainTimeout is how long the sessions of a drained backend get to move
	// before those that could not are closed with an error saying why.
	BackendDrainTimeout Duration `toml:"backend-drain-timeout"`
}

// Balance policies.
const (
	PolicyResource   = "resource"
	PolicyConnection = "connection"
)

// EffectiveDefaultCluster is the cluster that takes unrouted clients: the
// configured default, or the only cluster when there is exactly one.
func (c *Config) EffectiveDefaultCluster() string {
	if c.Proxy.DefaultCluster != "" {
		return c.Proxy.DefaultCluster
	}
	if len(c.Clusters) == 1 {
		return c.Clusters[0].Name
	}
	return ""
}

// Cluster returns the cluster with the given name, or nil.
func (c *Config) Cluster(name string) *Cluster {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	return nil
}
