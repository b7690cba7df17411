package register

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultPrefix is where TiDB registers itself.
	DefaultPrefix = "/topology/tidb"
	// DefaultTTL is shorter than TiDB's 45s so that a killed sidecar's
	// backend leaves the topology sooner; keepalives go out every TTL/3.
	DefaultTTL = 15 * time.Second
	// UnknownVersion is registered when no version is configured and the
	// backend's greeting could not be read.
	UnknownVersion = "unknown"
)

// Config describes the one backend a Registrar registers.
type Config struct {
	EtcdEndpoints []string
	// EtcdTLS may be nil for plain connections.
	EtcdTLS *tls.Config
	// Prefix defaults to DefaultPrefix.
	Prefix string
	// Addr is the backend's SQL address (host:port); the keys are
	// <Prefix>/<Addr>/info and <Prefix>/<Addr>/ttl, and the info's ip is
	// its host.
	Addr string
	// StatusAddr is where /status and /metrics listen; its port (the bound
	// one, when it is 0) is the info's status_port.
	StatusAddr string
	// Pid is the backend process whose CPU and memory /metrics reports.
	// When it is 0, PidFile is read on every scrape because the backend may
	// restart under a new pid. With neither, only the host metrics are served.
	Pid     int
	PidFile string
	// TTL is the lease TTL, whole seconds (rounded up), default DefaultTTL.
	TTL    time.Duration
	Labels map[string]string
	// Version defaults to the server version in the backend's greeting, or
	// UnknownVersion until the backend has answered once.
	Version string
}

// ErrConfig is wrapped by every validation error of New.
var ErrConfig = errors.New("invalid register config")

// withDefaults validates c and returns a copy with defaults filled in. The
// copy owns its slices and maps, so the caller may reuse its Config.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	eps := make([]string, 0, len(c.EtcdEndpoints))
	for _, ep := range c.EtcdEndpoints {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		bad("no etcd endpoints")
	}
	c.EtcdEndpoints = eps
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	c.Prefix = strings.TrimRight(c.Prefix, "/")
	if !strings.HasPrefix(c.Prefix, "/") {
		bad("prefix %q must start with /", c.Prefix)
	}
	if err := checkHostPort(c.Addr, false); err != nil {
		bad("addr: %v", err)
	}
	if err := checkHostPort(c.StatusAddr, true); err != nil {
		bad("status addr: %v", err)
	}
	if c.Pid < 0 {
		bad("pid %d is negative", c.Pid)
	}
	if c.Pid != 0 && c.PidFile != "" {
		bad("pid and pid file are mutually exclusive")
	}
	switch {
	case c.TTL == 0:
		c.TTL = DefaultTTL
	case c.TTL < 0:
		bad("ttl %s is negative", c.TTL)
	case c.TTL%time.Second != 0:
		c.TTL = c.TTL.Truncate(time.Second) + time.Second
	}
	for k := range c.Labels {
		if k == "" {
			bad("empty label name")
		}
	}
	c.Labels = maps.Clone(c.Labels)
	if c.Labels == nil {
		// TiDB writes "labels":{} rather than null.
		c.Labels = map[string]string{}
	}
	if c.EtcdTLS != nil {
		c.EtcdTLS = c.EtcdTLS.Clone()
	}
	return c, errors.Join(errs...)
}

// checkHostPort accepts host:port with a numeric port. The SQL address needs
// a host (it becomes the info's ip); a listen address may leave it empty.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (p == 0 && !listen) {
		return fmt.Errorf("%q has a bad port", addr)
	}
	return nil
}

func (c *Config) infoKey() string { return c.Prefix + "/" + c.Addr + "/info" }
func (c *Config) ttlKey() string  { return c.Prefix + "/" + c.Addr + "/ttl" }
