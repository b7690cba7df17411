package config

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCheckRules(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem")
	key := writeFile(t, dir, "key.pem")
	ca := writeFile(t, dir, "ca.pem")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // "" means valid
	}{
		// proxy.addr
		{name: "addr any interface", modify: func(c *Config) { c.Proxy.Addr = ":6000" }},
		{name: "addr ephemeral port", modify: func(c *Config) { c.Proxy.Addr = "127.0.0.1:0" }},
		{name: "addr ipv6", modify: func(c *Config) { c.Proxy.Addr = "[::]:6000" }},
		{name: "addr empty", modify: func(c *Config) { c.Proxy.Addr = "" }, want: "proxy.addr must not be empty"},
		{name: "addr no port", modify: func(c *Config) { c.Proxy.Addr = "x" }, want: `proxy.addr "x": missing port in address`},
		{name: "addr named port", modify: func(c *Config) { c.Proxy.Addr = "x:mysql" }, want: `proxy.addr "x:mysql": port must be a number from 0 to 65535`},
		{name: "addr port too big", modify: func(c *Config) { c.Proxy.Addr = "x:65536" }, want: `proxy.addr "x:65536": port must be a number from 0 to 65535`},
		{name: "addr signed port", modify: func(c *Config) { c.Proxy.Addr = "x:+80" }, want: `proxy.addr "x:+80": port must be a number`},
		{name: "addr bare ipv6", modify: func(c *Config) { c.Proxy.Addr = "::1:6000" }, want: `proxy.addr "::1:6000": too many colons in address`},

		// numbers and durations
		{name: "max-connections limit", modify: func(c *Config) { c.Proxy.MaxConnections = 1 }},
		{name: "max-connections negative", modify: func(c *Config) { c.Proxy.MaxConnections = -1 }, want: "proxy.max-connections -1: must be 0 (unlimited) or more"},
		{name: "graceful wait negative", modify: func(c *Config) { c.Proxy.GracefulWaitBeforeShutdown = NewDuration(-time.Second) }, want: `proxy.graceful-wait-before-shutdown "-1s": must not be negative`},
		{name: "graceful close zero", modify: func(c *Config) { c.Proxy.GracefulCloseConnTimeout = NewDuration(0) }},
		{name: "graceful close negative", modify: func(c *Config) { c.Proxy.GracefulCloseConnTimeout = NewDuration(-time.Millisecond) }, want: `proxy.graceful-close-conn-timeout "-1ms": must not be negative`},
		{name: "connect-timeout zero", modify: func(c *Config) { c.Proxy.ConnectTimeout = NewDuration(0) }, want: `proxy.connect-timeout "0s": must be positive`},
		{name: "connect-timeout negative", modify: func(c *Config) { c.Proxy.ConnectTimeout = NewDuration(-time.Second) }, want: `proxy.connect-timeout "-1s": must be positive`},

		// PROXY protocol
		{name: "proxy-protocol v2 trusted", modify: func(c *Config) {
			c.Proxy.ProxyProtocol = "v2"
			c.Proxy.ProxyProtocolTrustedCIDRs = []string{"10.0.0.0/8", "192.168.0.1", "::1", "fd00::/8"}
		}},
		{name: "proxy-protocol v1", modify: func(c *Config) { c.Proxy.ProxyProtocol = "v1" }, want: `proxy.proxy-protocol "v1": must be "" or "v2"`},
		{name: "proxy-protocol V2", modify: func(c *Config) {
			c.Proxy.ProxyProtocol = "V2"
			c.Proxy.ProxyProtocolTrustedCIDRs = []string{"10.0.0.0/8"}
		}, want: `proxy.proxy-protocol "V2": must be "" or "v2"`},
		{name: "proxy-protocol v2 untrusted", modify: func(c *Config) { c.Proxy.ProxyProtocol = "v2" }, want: `proxy.proxy-protocol "v2" requires at least one proxy.proxy-protocol-trusted-cidrs entry`},
		{name: "trusted cidr bad", modify: func(c *Config) { c.Proxy.ProxyProtocolTrustedCIDRs = []string{"10.0.0.0/8", "10.0.0.0/99"} }, want: `proxy.proxy-protocol-trusted-cidrs[1] "10.0.0.0/99": not a CIDR or IP address`},
		{name: "trusted cidr empty", modify: func(c *Config) { c.Proxy.ProxyProtocolTrustedCIDRs = []string{""} }, want: `proxy.proxy-protocol-trusted-cidrs[0] "": not a CIDR or IP address`},
		{name: "trusted cidr hostname", modify: func(c *Config) { c.Proxy.ProxyProtocolTrustedCIDRs = []string{"lb.local"} }, want: `proxy.proxy-protocol-trusted-cidrs[0] "lb.local": not a CIDR or IP address`},
		{name: "trusted cidr zone", modify: func(c *Config) { c.Proxy.ProxyProtocolTrustedCIDRs = []string{"fe80::1%eth0"} }, want: `proxy.proxy-protocol-trusted-cidrs[0] "fe80::1%eth0": IPv6 zones are not allowed`},
		{name: "trusted cidrs without proxy-protocol", modify: func(c *Config) { c.Proxy.ProxyProtocolTrustedCIDRs = []string{"10.0.0.0/8"} }},
		{name: "backend-proxy-protocol v2", modify: func(c *Config) { c.Proxy.BackendProxyProtocol = "v2" }},
		{name: "backend-proxy-protocol v1", modify: func(c *Config) { c.Proxy.BackendProxyProtocol = "v1" }, want: `proxy.backend-proxy-protocol "v1": must be "" or "v2"`},

		// server-version
		{name: "server-version tidb", modify: func(c *Config) { c.Proxy.ServerVersion = "8.0.11-TiDB-v7.5.0" }},
		{name: "server-version empty: the backends'", modify: func(c *Config) { c.Proxy.ServerVersion = "" }},
		{name: "server-version nul", modify: func(c *Config) { c.Proxy.ServerVersion = "8.0.11\x00x" }, want: `proxy.server-version "8.0.11\x00x": must not contain a NUL byte`},
		{name: "server-version no number", modify: func(c *Config) { c.Proxy.ServerVersion = "Switchyard" }, want: `proxy.server-version "Switchyard": must start with a MySQL version such as 8.0.11`},

		// TLS
		{name: "server tls cert and key", modify: func(c *Config) { c.Security.ServerTLS = TLSConfig{Cert: cert, Key: key} }},
		{name: "server tls client ca", modify: func(c *Config) { c.Security.ServerTLS = TLSConfig{Cert: cert, Key: key, CA: ca, SkipVerify: true} }},
		{name: "server tls cert only", modify: func(c *Config) { c.Security.ServerTLS.Cert = cert }, want: "security.server-tls: cert and key must be set together"},
		{name: "server tls key only", modify: func(c *Config) { c.Security.ServerTLS.Key = key }, want: "security.server-tls: cert and key must be set together"},
		{name: "server tls ca without cert", modify: func(c *Config) { c.Security.ServerTLS.CA = ca }, want: "security.server-tls: ca and skip-verify need cert and key"},
		{name: "server tls skip-verify without cert", modify: func(c *Config) { c.Security.ServerTLS.SkipVerify = true }, want: "security.server-tls: ca and skip-verify need cert and key"},
		{name: "server tls missing cert", modify: func(c *Config) { c.Security.ServerTLS = TLSConfig{Cert: missing, Key: key} }, want: `security.server-tls.cert "` + missing + `": no such file or directory`},
		{name: "server tls missing key", modify: func(c *Config) { c.Security.ServerTLS = TLSConfig{Cert: cert, Key: missing} }, want: `security.server-tls.key "` + missing + `": no such file or directory`},
		{name: "server tls ca is dir", modify: func(c *Config) { c.Security.ServerTLS = TLSConfig{Cert: cert, Key: key, CA: dir} }, want: `security.server-tls.ca "` + dir + `": is a directory`},
		{name: "backend tls system roots", modify: func(c *Config) { c.Security.RequireBackendTLS = true }},
		{name: "backend tls ca", modify: func(c *Config) { c.Security.BackendTLS = TLSConfig{CA: ca} }},
		{name: "backend tls skip-verify", modify: func(c *Config) { c.Security.BackendTLS = TLSConfig{SkipVerify: true} }},
		{name: "backend tls client cert", modify: func(c *Config) { c.Security.BackendTLS = TLSConfig{Cert: cert, Key: key} }},
		{name: "backend tls cert only", modify: func(c *Config) { c.Security.BackendTLS.Cert = cert }, want: "security.backend-tls: cert and key must be set together"},
		{name: "backend tls missing ca", modify: func(c *Config) { c.Security.BackendTLS.CA = missing }, want: `security.backend-tls.ca "` + missing + `": no such file or directory`},

		// log
		{name: "log debug json file", modify: func(c *Config) { c.Log = Log{Level: "debug", Format: "json", File: "/tmp/x.log"} }},
		{name: "log level warn", modify: func(c *Config) { c.Log.Level = "warn" }},
		{name: "log level error", modify: func(c *Config) { c.Log.Level = "error" }},
		{name: "log level bad", modify: func(c *Config) { c.Log.Level = "warning" }, want: `log.level "warning": must be one of debug, info, warn, error`},
		{name: "log level empty", modify: func(c *Config) { c.Log.Level = "" }, want: `log.level "": must be one of debug, info, warn, error`},
		{name: "log format bad", modify: func(c *Config) { c.Log.Format = "text" }, want: `log.format "text": must be one of console, json`},

		// clusters
		{name: "no clusters", modify: func(c *Config) { c.Clusters = nil }, want: "at least one [[cluster]] is required"},
		{name: "two clusters", modify: func(c *Config) {
			c.Clusters = append(c.Clusters, Cluster{Name: "west-2", Instances: []string{"db.example.com:4000", "[fd00::1]:4000"}})
		}},
		{name: "name empty", modify: func(c *Config) { c.Clusters[0].Name = "" }, want: "cluster[0].name must not be empty"},
		{name: "name upper case", modify: func(c *Config) { c.Clusters = append(c.Clusters, Cluster{Name: "East", Instances: []string{"h:1"}}) }, want: `cluster[1].name "East": must match [a-z0-9-]+`},
		{name: "name with dot", modify: func(c *Config) { c.Clusters[0].Name = "a.b" }, want: `cluster[0].name "a.b": must match [a-z0-9-]+`},
		{name: "name duplicate", modify: func(c *Config) {
			c.Clusters = append(c.Clusters, Cluster{Name: "west", Instances: []string{"h:1"}}, Cluster{Name: "east", Instances: []string{"h:2"}})
		}, want: `cluster[2].name "east": duplicates cluster[0].name`},
		{name: "instances empty", modify: func(c *Config) { c.Clusters[0].Instances = nil }, want: `cluster "east": set instances (static backends) or etcd-endpoints`},
		{name: "instance no port", modify: func(c *Config) { c.Clusters[0].Instances = []string{"h:1", "db1"} }, want: `cluster "east": instances[1] "db1": missing port in address`},
		{name: "instance no host", modify: func(c *Config) { c.Clusters[0].Instances = []string{":3306"} }, want: `cluster "east": instances[0] ":3306": missing host`},
		{name: "instance port zero", modify: func(c *Config) { c.Clusters[0].Instances = []string{"h:0"} }, want: `cluster "east": instances[0] "h:0": port must be a number from 1 to 65535`},
		{name: "instance port named", modify: func(c *Config) { c.Clusters[0].Instances = []string{"h:mysql"} }, want: `cluster "east": instances[0] "h:mysql": port must be a number from 1 to 65535`},
		{name: "instance port big", modify: func(c *Config) { c.Clusters[0].Instances = []string{"h:70000"} }, want: `cluster "east": instances[0] "h:70000": port must be a number from 1 to 65535`},
		{name: "instance space in host", modify: func(c *Config) { c.Clusters[0].Instances = []string{"db 1:3306"} }, want: `cluster "east": instances[0] "db 1:3306": host must not contain spaces`},
		{name: "instance duplicate", modify: func(c *Config) { c.Clusters[0].Instances = []string{"h:1", "h:2", "h:1"} }, want: `cluster "east": instances[2] "h:1": duplicates instances[0]`},
		{name: "same instance in two clusters", modify: func(c *Config) {
			c.Clusters = append(c.Clusters, Cluster{Name: "west", Instances: c.Clusters[0].Instances})
		}},

		// etcd clusters
		{name: "etcd cluster", modify: func(c *Config) { c.Clusters = append(c.Clusters, etcdCluster("tidb")) }},
		{name: "etcd endpoint with scheme", modify: func(c *Config) {
			cl := etcdCluster("tidb")
			cl.EtcdEndpoints = []string{"https://pd:2379"}
			c.Clusters = append(c.Clusters, cl)
		}},
		{name: "etcd and instances", modify: func(c *Config) { c.Clusters[0].EtcdEndpoints = []string{"h:2379"} }, want: `cluster "east": set etcd-endpoints or instances, not both`},
		{name: "etcd endpoint no port", modify: func(c *Config) {
			cl := etcdCluster("tidb")
			cl.EtcdEndpoints = []string{"pd"}
			c.Clusters = append(c.Clusters, cl)
		}, want: `cluster "tidb": etcd-endpoints[0] "pd": missing port in address`},
		{name: "topology prefix relative", modify: func(c *Config) {
			cl := etcdCluster("tidb")
			cl.TopologyPrefix = "topology/tidb"
			c.Clusters = append(c.Clusters, cl)
		}, want: `cluster "tidb": topology-prefix "topology/tidb": must start with "/"`},
		{name: "prometheus not a URL", modify: func(c *Config) {
			cl := etcdCluster("tidb")
			cl.Prometheus = "127.0.0.1:9090"
			c.Clusters = append(c.Clusters, cl)
		}, want: `cluster "tidb": prometheus "127.0.0.1:9090": must be an http:// or https:// URL`},
		{name: "etcd-tls missing file", modify: func(c *Config) {
			cl := etcdCluster("tidb")
			cl.EtcdTLS.CA = missing
			c.Clusters = append(c.Clusters, cl)
		}, want: `cluster[1].etcd-tls.ca`},
		{name: "empty label name", modify: func(c *Config) { c.Clusters[0].Labels = map[string]string{"": "x"} }, want: `cluster[0].labels: label names must not be empty`},

		// routing
		{name: "default cluster", modify: func(c *Config) { c.Proxy.DefaultCluster = "east" }},
		{name: "default cluster unknown", modify: func(c *Config) { c.Proxy.DefaultCluster = "nope" }, want: `proxy.default-cluster "nope": no [[cluster]] has that name`},
		{name: "route", modify: func(c *Config) {
			c.Routes = []Route{{Cluster: "east", Ports: []int{7001}, Users: []string{"app_*", "[ab]?"}, ClientCIDRs: []string{"10.0.0.0/8", "::1"}, ServerNames: []string{"east.example.com"}}}
		}},
		{name: "route catch-all", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east"}} }},
		{name: "route no cluster", modify: func(c *Config) { c.Routes = []Route{{Users: []string{"a"}}} }, want: `route[0].cluster must not be empty`},
		{name: "route unknown cluster", modify: func(c *Config) { c.Routes = []Route{{Cluster: "west"}} }, want: `route[0].cluster "west": no [[cluster]] has that name`},
		{name: "route port range", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east", Ports: []int{0}}} }, want: `route[0].ports[0] 0: must be from 1 to 65535`},
		{name: "route main port", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east", Ports: []int{6000}}} }, want: `route[0].ports[0] 6000: is proxy.addr's port`},
		{name: "route port two clusters", modify: func(c *Config) {
			c.Clusters = append(c.Clusters, Cluster{Name: "west", Instances: []string{"h:1"}})
			c.Routes = []Route{{Cluster: "east", Ports: []int{7001}}, {Cluster: "west", Ports: []int{7001}}}
		}, want: `route[1].ports[0] 7001: also opened by route[0] for cluster "east"`},
		{name: "route port twice same cluster", modify: func(c *Config) {
			c.Routes = []Route{{Cluster: "east", Ports: []int{7001}, Users: []string{"a"}}, {Cluster: "east", Ports: []int{7001}}}
		}},
		{name: "route bad glob", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east", Users: []string{"[a"}}} }, want: `route[0].users[0] "[a": not a valid glob`},
		{name: "route bad cidr", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east", ClientCIDRs: []string{"10/8"}}} }, want: `route[0].client-cidrs[0] "10/8": not a CIDR or IP address`},
		{name: "route empty server name", modify: func(c *Config) { c.Routes = []Route{{Cluster: "east", ServerNames: []string{""}}} }, want: `route[0].server-names[0] must not be empty`},

		// api and drain
		{name: "api disabled", modify: func(c *Config) { c.API.Addr = "" }},
		{name: "api bad addr", modify: func(c *Config) { c.API.Addr = "3080" }, want: `api.addr "3080": missing port in address`},
		{name: "api tls ca without roles", modify: func(c *Config) { c.API.TLS = TLSConfig{Cert: cert, Key: key, CA: ca} }, want: `api.tls.ca verifies client certificates, but api.client-certs maps none to a role`},
		{name: "api mtls", modify: func(c *Config) {
			c.API.TLS = TLSConfig{Cert: cert, Key: key, CA: ca}
			c.API.ClientCerts = ClientCerts{Admin: []string{"ops"}, Read: []string{"grafana"}}
		}},
		{name: "api mtls without https", modify: func(c *Config) {
			c.API.TLS = TLSConfig{CA: ca}
			c.API.ClientCerts = ClientCerts{Read: []string{"grafana"}}
		}, want: `api.tls.ca verifies client certificates, which needs HTTPS: set api.tls.cert and api.tls.key`},
		{name: "api client-certs without ca", modify: func(c *Config) { c.API.ClientCerts = ClientCerts{Admin: []string{"ops"}} }, want: `api.client-certs needs api.tls.ca`},
		{name: "api client-certs empty name", modify: func(c *Config) {
			c.API.TLS = TLSConfig{Cert: cert, Key: key, CA: ca}
			c.API.ClientCerts = ClientCerts{Admin: []string{"ops"}, Read: []string{""}}
		}, want: `api.client-certs.read[0] must not be empty`},
		{name: "api tls skip-verify", modify: func(c *Config) { c.API.TLS = TLSConfig{Cert: cert, Key: key, SkipVerify: true} }, want: `api.tls.skip-verify: not supported`},
		// Beyond loopback only with a credential.
		{name: "api loopback no token", modify: func(c *Config) { c.API.Addr = "127.0.0.1:3080" }},
		{name: "api localhost no token", modify: func(c *Config) { c.API.Addr = "localhost:3080" }},
		{name: "api ipv6 loopback no token", modify: func(c *Config) { c.API.Addr = "[::1]:3080" }},
		{name: "api any interface no token", modify: func(c *Config) { c.API.Addr = "0.0.0.0:3080" }, want: `api.addr "0.0.0.0:3080" listens beyond this host with no credential`},
		{name: "api empty host no token", modify: func(c *Config) { c.API.Addr = ":3080" }, want: `api.addr ":3080" listens beyond this host with no credential`},
		{name: "api ipv6 any no token", modify: func(c *Config) { c.API.Addr = "[::]:3080" }, want: `listens beyond this host with no credential`},
		{name: "api host name no token", modify: func(c *Config) { c.API.Addr = "proxy1.example.com:3080" }, want: `listens beyond this host with no credential`},
		{name: "api private ip no token", modify: func(c *Config) { c.API.Addr = "10.0.0.5:3080" }, want: `listens beyond this host with no credential`},
		{name: "api any interface admin token", modify: func(c *Config) { c.API.Addr = "0.0.0.0:3080"; c.API.Token = "t0ken" }},
		{name: "api any interface read token", modify: func(c *Config) { c.API.Addr = "0.0.0.0:3080"; c.API.ReadToken = "t0ken" }},
		{name: "api any interface mtls", modify: func(c *Config) {
			c.API.Addr = "0.0.0.0:3080"
			c.API.TLS = TLSConfig{Cert: cert, Key: key, CA: ca}
			c.API.ClientCerts = ClientCerts{Admin: []string{"ops"}}
		}},
		{name: "api any interface tls without ca", modify: func(c *Config) { c.API.Addr = "0.0.0.0:3080"; c.API.TLS = TLSConfig{Cert: cert, Key: key} }, want: `listens beyond this host with no credential`},
		// Tokens.
		{name: "api read token same as admin", modify: func(c *Config) { c.API.Token, c.API.ReadToken = "same", "same" }, want: `api.read-token must differ from api.token`},
		{name: "api token with space", modify: func(c *Config) { c.API.Token = "two words" }, want: `api.token must be printable ASCII without spaces`},
		{name: "api read token non-ascii", modify: func(c *Config) { c.API.ReadToken = "caf\u00e9" }, want: `api.read-token must be printable ASCII without spaces`},
		{name: "api token placeholder", modify: func(c *Config) { c.API.Token = "<redacted>" }, want: `api.token is "<redacted>", the placeholder GET /api/v1/config shows`},
		{name: "api public endpoints closed", modify: func(c *Config) { c.API.PublicEndpoints = nil }},
		{name: "api public endpoints some", modify: func(c *Config) { c.API.PublicEndpoints = []string{"/livez", "/readyz"} }},
		{name: "api public endpoints other", modify: func(c *Config) { c.API.PublicEndpoints = []string{"/livez", "/api/v1/sessions"} }, want: `api.public-endpoints[1] "/api/v1/sessions": only /livez, /readyz, /metrics, /api/v1/ha/leader can be public`},
		{name: "api tls half", modify: func(c *Config) { c.API.TLS = TLSConfig{Cert: cert} }, want: `api.tls: cert and key must be set together`},
		{name: "drain timeout negative", modify: func(c *Config) { c.Clusters[0].DrainTimeout = NewDuration(-time.Second) }, want: `cluster "east": drain-timeout "-1s": must not be negative`},

		// coordination
		{name: "fleet", modify: func(c *Config) { c.Coordination.EtcdEndpoints = []string{"127.0.0.1:2379"}; c.API.Token = "t0ken" }},
		{name: "fleet mtls", modify: func(c *Config) {
			c.Coordination.EtcdEndpoints = []string{"127.0.0.1:2379"}
			c.API.TLS = TLSConfig{Cert: cert, Key: key, CA: ca}
			c.API.ClientCerts = ClientCerts{Admin: []string{"node"}}
		}},
		{name: "fleet without admin credential", modify: func(c *Config) { c.Coordination.EtcdEndpoints = []string{"127.0.0.1:2379"}; c.API.ReadToken = "t0ken" }, want: `coordination.etcd-endpoints needs api.token (or api.client-certs.admin)`},
		{name: "fleet without api", modify: func(c *Config) {
			c.Coordination.EtcdEndpoints = []string{"127.0.0.1:2379"}
			c.API.Addr = ""
			c.API.Token = "t0ken"
		}, want: `coordination.etcd-endpoints needs api.addr`},
		{name: "fleet endpoint bad", modify: func(c *Config) { c.Coordination.EtcdEndpoints = []string{"etcd"}; c.API.Token = "t0ken" }, want: `coordination.etcd-endpoints[0] "etcd": missing port in address`},
		{name: "fleet name", modify: func(c *Config) { c.Coordination.Fleet = "Prod" }, want: `coordination.fleet "Prod": must match [a-z0-9-]+`},
		{name: "node id slash", modify: func(c *Config) { c.Coordination.NodeID = "a/b" }, want: `coordination.node-id "a/b": must not contain '/' or spaces`},
		{name: "election ttl short", modify: func(c *Config) { c.Coordination.ElectionTTL = NewDuration(time.Second) }, want: `coordination.election-ttl "1s": must be whole seconds, at least 2s`},
		{name: "election ttl fraction", modify: func(c *Config) { c.Coordination.ElectionTTL = NewDuration(2500 * time.Millisecond) }, want: `coordination.election-ttl "2.5s": must be whole seconds`},
		{name: "node ttl short", modify: func(c *Config) { c.Coordination.NodeTTL = NewDuration(0) }, want: `coordination.node-ttl "0s": must be whole seconds, at least 2s`},
		{name: "max down zero", modify: func(c *Config) { c.Coordination.MaxDownPerMinute = 0 }, want: `coordination.max-down-per-minute 0: must be at least 1`},

		// health check and balance
		{name: "health interval zero", modify: func(c *Config) { c.HealthCheck.Interval = NewDuration(0) }, want: `health-check.interval "0s": must be positive`},
		{name: "health retry interval zero", modify: func(c *Config) { c.HealthCheck.RetryInterval = NewDuration(0) }, want: `health-check.retry-interval "0s": must be positive`},
		{name: "health timeout negative", modify: func(c *Config) { c.HealthCheck.Timeout = NewDuration(-time.Second) }, want: `health-check.timeout "-1s": must be positive`},
		{name: "health failures zero", modify: func(c *Config) { c.HealthCheck.FailuresToUnhealthy = 0 }, want: `health-check.failures-to-unhealthy 0: must be at least 1`},
		{name: "health probe user and password", modify: func(c *Config) { c.HealthCheck.SQLUser, c.HealthCheck.SQLPassword = "probe", "pw" }},
		{name: "health probe password without user", modify: func(c *Config) { c.HealthCheck.SQLPassword = "pw" }, want: `health-check.sql-password is set without health-check.sql-user`},
		{name: "health probe password placeholder", modify: func(c *Config) { c.HealthCheck.SQLUser, c.HealthCheck.SQLPassword = "probe", RedactedSecret }, want: `health-check.sql-password is "<redacted>", the placeholder GET /api/v1/config shows: write the real password`},
		{name: "balance connection", modify: func(c *Config) { c.Balance.Policy = PolicyConnection }},
		{name: "balance unknown policy", modify: func(c *Config) { c.Balance.Policy = "random" }, want: `balance.policy "random": must be "resource" or "connection"`},
		{name: "migrations per second zero", modify: func(c *Config) { c.Balance.MigrationsPerSecond = 0 }, want: `balance.migrations-per-second 0: must be more than 0 and at most 10000`},
		{name: "evictions per second negative", modify: func(c *Config) { c.Balance.EvictionsPerSecond = -1 }, want: `balance.evictions-per-second -1: must be more than 0 and at most 10000`},
		{name: "rebalance ratio 1", modify: func(c *Config) { c.Balance.RebalanceRatio = 1 }, want: `balance.rebalance-ratio 1: must be between 1.05 and 100`},
		{name: "rebalance ratio NaN", modify: func(c *Config) { c.Balance.RebalanceRatio = math.NaN() }, want: `balance.rebalance-ratio NaN: must be between 1.05 and 100`},
		{name: "cpu gap too small", modify: func(c *Config) { c.Balance.CPUGap = 0.01 }, want: `balance.cpu-gap 0.01: must be between 0.05 and 1`},
		{name: "drain timeout zero", modify: func(c *Config) { c.Balance.BackendDrainTimeout = NewDuration(0) }, want: `balance.backend-drain-timeout "0s": must be positive`},
		{name: "rebalance off", modify: func(c *Config) { c.Balance.EnableRebalance = false }},
		{name: "metrics interval zero", modify: func(c *Config) { c.Balance.MetricsInterval = NewDuration(0) }, want: `balance.metrics-interval "0s": must be positive`},
		{name: "digests table too small", modify: func(c *Config) { c.Digests.MaxPerCluster = 15 }, want: `digests.max-per-cluster 15: must be between 16 and 1000000`},
		{name: "query log mode", modify: func(c *Config) { c.QueryLog.Mode = "some" }, want: `query-log.mode "some": must be one of off, all, slow, failed, slow-or-failed`},
		{name: "query log without file", modify: func(c *Config) { c.QueryLog.Mode = "all" }, want: `query-log.file must be set when query-log.mode is "all"`},
		{name: "query log file dir missing", modify: func(c *Config) { c.QueryLog.File = "/nonexistent-dir/q.log" }, want: `query-log.file "/nonexistent-dir/q.log": directory "/nonexistent-dir" does not exist`},
		{name: "query log buffer", modify: func(c *Config) { c.QueryLog.Buffer = 0 }, want: `query-log.buffer 0: must be between 1 and 1000000`},
		{name: "query log max size", modify: func(c *Config) { c.QueryLog.MaxSize = 0 }, want: `query-log.max-size 0: must be at least 1 (megabytes)`},
		{name: "capture dir missing", modify: func(c *Config) { c.Traffic.CaptureDir = "/nonexistent-dir" }, want: `traffic.capture-dir "/nonexistent-dir": not an existing directory`},
		{name: "digests sample negative", modify: func(c *Config) { c.Digests.SampleLength = -1 }, want: `digests.sample-length -1: must be between 0 and 1048576 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(c)
			err := c.Check()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			lines := errorLines(err)
			require.Len(t, lines, 1, "exactly one problem expected, got %q", lines)
			require.Contains(t, lines[0], tt.want)
		})
	}
}

func TestCheckUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can read a file without read permission")
	}
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem")
	key := writeFile(t, dir, "key.pem")
	require.NoError(t, os.Chmod(key, 0))
	c := validConfig()
	c.Security.ServerTLS = TLSConfig{Cert: cert, Key: key}
	require.ErrorContains(t, c.Check(), `security.server-tls.key "`+key+`": permission denied`)
}

// TestCheckReportsEverything: an operator fixes a file in one pass only if every
// problem is reported at once.
func TestCheckReportsEverything(t *testing.T) {
	c := validConfig()
	c.Proxy.Addr = "x"
	c.Proxy.ProxyProtocol = "v2"
	c.Log.Format = "xml"
	c.Clusters = append(c.Clusters, Cluster{Name: "east"}, Cluster{Name: "E"})
	require.Equal(t, []string{
		`proxy.addr "x": missing port in address`,
		`proxy.proxy-protocol "v2" requires at least one proxy.proxy-protocol-trusted-cidrs entry: trusting every peer would let any client spoof its address`,
		`log.format "xml": must be one of console, json`,
		`cluster[1].name "east": duplicates cluster[0].name`,
		`cluster "east": set instances (static backends) or etcd-endpoints`,
		// A cluster whose name is unusable is named by its index.
		`cluster[2].name "E": must match [a-z0-9-]+`,
		`cluster[2]: set instances (static backends) or etcd-endpoints`,
	}, errorLines(c.Check()))
}

// TestCheckLinesFromParse: problems found after parsing point at the line of the
// offending key, down to the element of a multi-line array.
func TestCheckLinesFromParse(t *testing.T) {
	doc := `# comment
[proxy]
addr = "x"
proxy-protocol = "v2"
proxy-protocol-trusted-cidrs = [
  "10.0.0.0/8",   # fine
  "10.0.0.0/40",
]

[security.server-tls]
cert = "/nonexistent/cert.pem"

[log]
level = """
loud"""
format = 'xml'

[[cluster]]
name = "East"
instances = [
  "h:1",
  "h",
]

[[cluster]]
name = "west"

[[cluster]]
name = "west"
instances = ["h:1"]
`
	_, err := Parse([]byte(doc))
	require.Equal(t, []string{
		`line 3: proxy.addr "x": missing port in address`,
		`line 7: proxy.proxy-protocol-trusted-cidrs[1] "10.0.0.0/40": not a CIDR or IP address`,
		`line 11: security.server-tls: cert and key must be set together`,
		`line 11: security.server-tls.cert "/nonexistent/cert.pem": no such file or directory`,
		`line 14: log.level "loud": must be one of debug, info, warn, error`,
		`line 16: log.format "xml": must be one of console, json`,
		`line 19: cluster[0].name "East": must match [a-z0-9-]+`,
		`line 22: cluster[0]: instances[1] "h": missing port in address`,
		`line 25: cluster "west": set instances (static backends) or etcd-endpoints`,
		`line 29: cluster[2].name "west": duplicates cluster[1].name`,
	}, errorLines(err))
}

func etcdCluster(name string) Cluster {
	return Cluster{Name: name, EtcdEndpoints: []string{"127.0.0.1:2379"}, TopologyPrefix: DefaultTopologyPrefix}
}

func TestEffectiveDefaultCluster(t *testing.T) {
	c := validConfig()
	require.Equal(t, "east", c.EffectiveDefaultCluster(), "the only cluster is the default")
	c.Clusters = append(c.Clusters, Cluster{Name: "west", Instances: []string{"h:1"}})
	require.Empty(t, c.EffectiveDefaultCluster(), "two clusters and no default: unrouted clients are refused")
	c.Proxy.DefaultCluster = "west"
	require.Equal(t, "west", c.EffectiveDefaultCluster())
}

func TestCheckMigrationAccount(t *testing.T) {
	c := validConfig()
	c.Clusters[0].MigrationPassword = "pw"
	require.ErrorContains(t, c.Check(), "migration-password is set without migration-user")
	c.Clusters[0].MigrationUser = "o'brien"
	require.ErrorContains(t, c.Check(), "migration-user must not contain quotes")
	c.Clusters[0].MigrationUser = "migrator"
	require.NoError(t, c.Check())
	user, pw, ok := c.Clusters[0].Migration()
	require.True(t, ok)
	require.Equal(t, "migrator", user)
	require.Equal(t, "pw", pw)
}
