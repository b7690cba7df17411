package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	path_ "path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	clusterNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	// Client libraries parse the leading X.Y.Z of the handshake version to decide
	// which features to use, so it has to be there.
	serverVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`)
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"console", "json"}
)

// Check validates c and returns every problem at once, joined with errors.Join, so an
// operator can fix a file in one pass. Each error wraps ErrInvalid. It reads the TLS
// files to be sure they exist and are readable, but does not parse them. Messages
// carry TOML line numbers only when Parse runs the same checks on a document.
func (c *Config) Check() error {
	return errors.Join(c.problems(nil)...)
}

// problems is Check with line numbers from a parsed document; lines is nil for a
// Config built in code.
func (c *Config) problems(lines *keyLines) []error {
	v := &validator{lines: lines}
	c.Proxy.check(v)
	c.Security.check(v)
	c.Log.check(v)
	c.HealthCheck.check(v)
	c.Balance.check(v)
	c.Digests.check(v)
	c.QueryLog.check(v)
	c.Traffic.check(v)
	c.API.check(v)
	c.Coordination.check(v)
	if c.Coordination.Enabled() && c.API.Addr == "" {
		v.addf("coordination.etcd-endpoints", "coordination.etcd-endpoints needs api.addr: fleet members reach each other's API to vote and to be discovered")
	}
	if c.Coordination.Enabled() && c.API.Token == "" && len(c.API.ClientCerts.Admin) == 0 {
		v.addf("coordination.etcd-endpoints", "coordination.etcd-endpoints needs api.token (or api.client-certs.admin): fleet members prove who they are with it when they ask each other for probe votes")
	}
	checkClusters(v, c.Clusters)
	c.checkRouting(v)
	c.checkShadows(v)
	return v.errs
}

type validator struct {
	lines *keyLines
	errs  []error
}

// addf records a problem with the key at path; the message names the key itself.
func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, &problem{line: v.lines.lineOf(path), msg: fmt.Sprintf(format, args...), key: path})
}

func (p ProxyServer) check(v *validator) {
	if p.Addr == "" {
		v.addf("proxy.addr", "proxy.addr must not be empty")
	} else if reason := checkHostPort(p.Addr, 0, false); reason != "" {
		v.addf("proxy.addr", "proxy.addr %q: %s", p.Addr, reason)
	}
	if n := p.EventLoops.N; !p.EventLoops.Auto && (n < 0 || n > 256) {
		v.addf("proxy.event-loops", `proxy.event-loops %d: must be "auto", or 0 (a goroutine per session) to 256`, n)
	}
	if p.MaxConnections < 0 {
		v.addf("proxy.max-connections", "proxy.max-connections %d: must be 0 (unlimited) or more", p.MaxConnections)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"proxy.graceful-wait-before-shutdown", p.GracefulWaitBeforeShutdown},
		{"proxy.graceful-close-conn-timeout", p.GracefulCloseConnTimeout},
		{"proxy.backend-read-timeout", p.BackendReadTimeout},
		{"proxy.idle-park-after", p.IdleParkAfter},
	} {
		if d.val.Duration < 0 {
			v.addf(d.key, "%s %q: must not be negative", d.key, d.val)
		}
	}
	if p.ConnectTimeout.Duration <= 0 {
		v.addf("proxy.connect-timeout", "proxy.connect-timeout %q: must be positive, or a dead backend would hang its clients", p.ConnectTimeout)
	}
	if p.HandshakeTimeout.Duration <= 0 {
		v.addf("proxy.handshake-timeout", "proxy.handshake-timeout %q: must be positive, or clients that never finish logging in would hold their connections forever", p.HandshakeTimeout)
	}
	if p.ProxyProtocol != "" && p.ProxyProtocol != ProxyProtocolV2 {
		v.addf("proxy.proxy-protocol", `proxy.proxy-protocol %q: must be "" or "v2"`, p.ProxyProtocol)
	}
	if p.BackendProxyProtocol != "" && p.BackendProxyProtocol != ProxyProtocolV2 {
		v.addf("proxy.backend-proxy-protocol", `proxy.backend-proxy-protocol %q: must be "" or "v2"`, p.BackendProxyProtocol)
	}
	for i, s := range p.ProxyProtocolTrustedCIDRs {
		if _, err := parseTrustedNet(s); err != nil {
			key := fmt.Sprintf("proxy.proxy-protocol-trusted-cidrs[%d]", i)
			v.addf(key, "%s %q: %v", key, s, err)
		}
	}
	if p.ProxyProtocol == ProxyProtocolV2 && len(p.ProxyProtocolTrustedCIDRs) == 0 {
		v.addf("proxy.proxy-protocol", `proxy.proxy-protocol "v2" requires at least one proxy.proxy-protocol-trusted-cidrs entry: trusting every peer would let any client spoof its address`)
	}
	switch {
	case p.ServerVersion == "":
		// Announce what the backends announce.
	case strings.ContainsRune(p.ServerVersion, 0):
		// The handshake writes the version NUL-terminated.
		v.addf("proxy.server-version", "proxy.server-version %q: must not contain a NUL byte", p.ServerVersion)
	case !serverVersionRE.MatchString(p.ServerVersion):
		v.addf("proxy.server-version", "proxy.server-version %q: must start with a MySQL version such as 8.0.11, which clients parse", p.ServerVersion)
	}
}

func (s Security) check(v *validator) {
	s.ServerTLS.check(v, "security.server-tls")
	if !s.ServerTLS.HasCert() && (s.ServerTLS.CA != "" || s.ServerTLS.SkipVerify) {
		v.addf("security.server-tls", "security.server-tls: ca and skip-verify need cert and key, since the proxy cannot offer TLS without a certificate")
	}
	s.BackendTLS.check(v, "security.backend-tls")
}

func (t TLSConfig) check(v *validator, section string) {
	if (t.Cert == "") != (t.Key == "") {
		// Point at the half that is written; the missing one has no line.
		key := section + ".key"
		if t.Cert != "" {
			key = section + ".cert"
		}
		v.addf(key, "%s: cert and key must be set together", section)
	}
	for _, f := range []struct{ name, path string }{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
		if f.path == "" {
			continue
		}
		if reason := checkReadable(f.path); reason != "" {
			key := section + "." + f.name
			v.addf(key, "%s %q: %s", key, f.path, reason)
		}
	}
}

// checkReadable opens the file now so a typo fails the config load instead of the
// first TLS handshake.
func checkReadable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err.Error()
		}
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if st.IsDir() {
		return "is a directory"
	}
	return ""
}

func (l Log) check(v *validator) {
	if !slices.Contains(logLevels, l.Level) {
		v.addf("log.level", "log.level %q: must be one of %s", l.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, l.Format) {
		v.addf("log.format", "log.format %q: must be one of %s", l.Format, strings.Join(logFormats, ", "))
	}
}

func checkClusters(v *validator, clusters []Cluster) {
	if len(clusters) == 0 {
		v.addf("cluster", "at least one [[cluster]] is required")
	}
	firstByName := make(map[string]int, len(clusters))
	for i, c := range clusters {
		path := fmt.Sprintf("cluster[%d]", i)
		// Name the cluster the way the operator wrote it when the name is usable.
		label := path
		switch {
		case c.Name == "":
			v.addf(path+".name", "%s.name must not be empty", path)
		case !clusterNameRE.MatchString(c.Name):
			v.addf(path+".name", "%s.name %q: must match [a-z0-9-]+", path, c.Name)
		default:
			label = fmt.Sprintf("cluster %q", c.Name)
			if first, dup := firstByName[c.Name]; dup {
				v.addf(path+".name", "%s.name %q: duplicates cluster[%d].name", path, c.Name, first)
			} else {
				firstByName[c.Name] = i
			}
		}
		switch {
		case len(c.Instances) > 0 && len(c.EtcdEndpoints) > 0:
			v.addf(path+".etcd-endpoints", "%s: set etcd-endpoints or instances, not both", label)
		case len(c.EtcdEndpoints) > 0:
			checkEtcdCluster(v, path, label, c)
		default:
			checkInstances(v, path, label, c.Instances)
		}
		checkLabels(v, path+".labels", c.Labels)
		if c.DrainTimeout.Duration < 0 {
			v.addf(path+".drain-timeout", "%s: drain-timeout %q: must not be negative", label, c.DrainTimeout)
		}
		if c.MigrationUser == "" && c.MigrationPassword != "" {
			v.addf(path+".migration-password", "%s: migration-password is set without migration-user", label)
		}
		if strings.ContainsAny(c.MigrationUser, "\x00'\\") {
			v.addf(path+".migration-user", "%s: migration-user must not contain quotes, backslashes or NUL", label)
		}
	}
}

func (c Coordination) check(v *validator) {
	for j, ep := range c.EtcdEndpoints {
		if reason := checkEndpoint(ep); reason != "" {
			key := fmt.Sprintf("coordination.etcd-endpoints[%d]", j)
			v.addf(key, "%s %q: %s", key, ep, reason)
		}
	}
	if !clusterNameRE.MatchString(c.Fleet) {
		v.addf("coordination.fleet", "coordination.fleet %q: must match [a-z0-9-]+", c.Fleet)
	}
	if strings.ContainsAny(c.NodeID, "/ \t") {
		v.addf("coordination.node-id", "coordination.node-id %q: must not contain '/' or spaces", c.NodeID)
	}
	// etcd refuses leases under 2 s (with its default election timeout).
	if c.ElectionTTL.Duration < 2*time.Second || c.ElectionTTL.Duration%time.Second != 0 {
		v.addf("coordination.election-ttl", "coordination.election-ttl %q: must be whole seconds, at least 2s", c.ElectionTTL)
	}
	if c.NodeTTL.Duration < 2*time.Second || c.NodeTTL.Duration%time.Second != 0 {
		v.addf("coordination.node-ttl", "coordination.node-ttl %q: must be whole seconds, at least 2s", c.NodeTTL)
	}
	if c.MaxDownPerMinute < 1 {
		v.addf("coordination.max-down-per-minute", "coordination.max-down-per-minute %d: must be at least 1", c.MaxDownPerMinute)
	}
	c.EtcdTLS.check(v, "coordination.etcd-tls")
}

// checkEndpoint validates an etcd endpoint: host:port, optionally with an
// http:// or https:// scheme.
func checkEndpoint(ep string) string {
	hostPort := ep
	if rest, ok := strings.CutPrefix(ep, "http://"); ok {
		hostPort = rest
	} else if rest, ok := strings.CutPrefix(ep, "https://"); ok {
		hostPort = rest
	}
	return checkHostPort(hostPort, 1, true)
}

func checkEtcdCluster(v *validator, path, label string, c Cluster) {
	for j, ep := range c.EtcdEndpoints {
		if reason := checkEndpoint(ep); reason != "" {
			key := fmt.Sprintf("%s.etcd-endpoints[%d]", path, j)
			v.addf(key, "%s: etcd-endpoints[%d] %q: %s", label, j, ep, reason)
		}
	}
	if !strings.HasPrefix(c.TopologyPrefix, "/") || strings.HasSuffix(c.TopologyPrefix, "/") {
		v.addf(path+".topology-prefix", `%s: topology-prefix %q: must start with "/" and not end with one`, label, c.TopologyPrefix)
	}
	c.EtcdTLS.check(v, path+".etcd-tls")
	if c.Prometheus != "" {
		u, err := url.Parse(c.Prometheus)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.addf(path+".prometheus", "%s: prometheus %q: must be an http:// or https:// URL", label, c.Prometheus)
		}
	}
}

func checkLabels(v *validator, path string, labels map[string]string) {
	for k := range labels {
		if strings.TrimSpace(k) == "" {
			v.addf(path, "%s: label names must not be empty", path)
		}
	}
}

func (h HealthCheck) check(v *validator) {
	if h.Interval.Duration <= 0 {
		v.addf("health-check.interval", "health-check.interval %q: must be positive", h.Interval)
	}
	if h.RetryInterval.Duration <= 0 {
		v.addf("health-check.retry-interval", "health-check.retry-interval %q: must be positive", h.RetryInterval)
	}
	if h.Timeout.Duration <= 0 {
		v.addf("health-check.timeout", "health-check.timeout %q: must be positive", h.Timeout)
	}
	if h.FailuresToUnhealthy < 1 {
		v.addf("health-check.failures-to-unhealthy", "health-check.failures-to-unhealthy %d: must be at least 1", h.FailuresToUnhealthy)
	}
	// The password itself is never part of a message.
	switch {
	case h.SQLPassword != "" && h.SQLUser == "":
		v.addf("health-check.sql-password", "health-check.sql-password is set without health-check.sql-user")
	case h.SQLPassword == RedactedSecret:
		v.addf("health-check.sql-password", "health-check.sql-password is %q, the placeholder GET /api/v1/config shows: write the real password", RedactedSecret)
	}
}

func (b Balance) check(v *validator) {
	if b.Policy != PolicyResource && b.Policy != PolicyConnection {
		v.addf("balance.policy", "balance.policy %q: must be %q or %q", b.Policy, PolicyResource, PolicyConnection)
	}
	if b.MetricsInterval.Duration <= 0 {
		v.addf("balance.metrics-interval", "balance.metrics-interval %q: must be positive", b.MetricsInterval)
	}
	// NaN fails every comparison, so the checks are written to catch it too.
	if !(b.MigrationsPerSecond > 0 && b.MigrationsPerSecond <= 10000) {
		v.addf("balance.migrations-per-second", "balance.migrations-per-second %v: must be more than 0 and at most 10000", b.MigrationsPerSecond)
	}
	if !(b.EvictionsPerSecond > 0 && b.EvictionsPerSecond <= 10000) {
		v.addf("balance.evictions-per-second", "balance.evictions-per-second %v: must be more than 0 and at most 10000", b.EvictionsPerSecond)
	}
	if !(b.RebalanceRatio >= 1.05 && b.RebalanceRatio <= 100) {
		v.addf("balance.rebalance-ratio", "balance.rebalance-ratio %v: must be between 1.05 and 100 (a ratio closer to 1 makes sessions move back and forth)", b.RebalanceRatio)
	}
	if !(b.CPUGap >= 0.05 && b.CPUGap <= 1) {
		v.addf("balance.cpu-gap", "balance.cpu-gap %v: must be between 0.05 and 1", b.CPUGap)
	}
	if b.BackendDrainTimeout.Duration <= 0 {
		v.addf("balance.backend-drain-timeout", "balance.backend-drain-timeout %q: must be positive", b.BackendDrainTimeout)
	}
}

// checkRouting validates [[route]] and the routing keys of [proxy] against the
// clusters, so that no rule can name a cluster that does not exist.
func (c *Config) checkRouting(v *validator) {
	checkLabels(v, "proxy.labels", c.Proxy.Labels)
	if d := c.Proxy.DefaultCluster; d != "" && c.Cluster(d) == nil {
		v.addf("proxy.default-cluster", "proxy.default-cluster %q: no [[cluster]] has that name", d)
	}
	_, mainPort, _ := net.SplitHostPort(c.Proxy.Addr)
	portOwner := make(map[int]int)
	for i, r := range c.Routes {
		path := fmt.Sprintf("route[%d]", i)
		switch {
		case r.Cluster == "":
			v.addf(path+".cluster", "%s.cluster must not be empty", path)
		case c.Cluster(r.Cluster) == nil:
			v.addf(path+".cluster", "%s.cluster %q: no [[cluster]] has that name", path, r.Cluster)
		}
		for j, port := range r.Ports {
			key := fmt.Sprintf("%s.ports[%d]", path, j)
			switch {
			case port < 1 || port > 65535:
				v.addf(key, "%s %d: must be from 1 to 65535", key, port)
			case strconv.Itoa(port) == mainPort:
				v.addf(key, "%s %d: is proxy.addr's port; routes add other ports", key, port)
			default:
				if first, dup := portOwner[port]; dup && c.Routes[first].Cluster != r.Cluster {
					v.addf(key, "%s %d: also opened by route[%d] for cluster %q; a port serves one cluster", key, port, first, c.Routes[first].Cluster)
				} else if !dup {
					portOwner[port] = i
				}
			}
		}
		for j, u := range r.Users {
			if _, err := path_.Match(u, ""); err != nil || u == "" {
				key := fmt.Sprintf("%s.users[%d]", path, j)
				v.addf(key, "%s %q: not a valid glob", key, u)
			}
		}
		for j, s := range r.ClientCIDRs {
			if _, err := parseTrustedNet(s); err != nil {
				key := fmt.Sprintf("%s.client-cidrs[%d]", path, j)
				v.addf(key, "%s %q: %v", key, s, err)
			}
		}
		for j, s := range r.ServerNames {
			if s == "" {
				key := fmt.Sprintf("%s.server-names[%d]", path, j)
				v.addf(key, "%s must not be empty", key)
			}
		}
	}
}

func checkInstances(v *validator, path, label string, instances []string) {
	if len(instances) == 0 {
		v.addf(path+".instances", "%s: set instances (static backends) or etcd-endpoints", label)
	}
	firstByAddr := make(map[string]int, len(instances))
	for j, addr := range instances {
		key := fmt.Sprintf("%s.instances[%d]", path, j)
		if reason := checkHostPort(addr, 1, true); reason != "" {
			v.addf(key, "%s: instances[%d] %q: %s", label, j, addr, reason)
			continue
		}
		if first, dup := firstByAddr[addr]; dup {
			v.addf(key, "%s: instances[%d] %q: duplicates instances[%d]", label, j, addr, first)
			continue
		}
		firstByAddr[addr] = j
	}
}

// checkHostPort returns why addr is not host:port with a decimal port from minPort
// to 65535, or "" when it is.
func checkHostPort(addr string, minPort int, needHost bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return ae.Err
		}
		return err.Error()
	}
	if needHost && host == "" {
		return "missing host"
	}
	if strings.ContainsAny(host, " \t") {
		return "host must not contain spaces"
	}
	n, err := strconv.Atoi(port)
	if err != nil || port == "" || port[0] < '0' || port[0] > '9' || n < minPort || n > 65535 {
		return fmt.Sprintf("port must be a number from %d to 65535", minPort)
	}
	return ""
}
