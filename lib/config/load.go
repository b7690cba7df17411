package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults for keys whose zero value is not what an operator would expect.
const (
	DefaultAddr                     = "0.0.0.0:6000"
	DefaultGracefulCloseConnTimeout = 15 * time.Second
	DefaultConnectTimeout           = 5 * time.Second
	DefaultHandshakeTimeout         = 30 * time.Second
	DefaultIdleParkAfter            = time.Second
	DefaultLogLevel                 = "info"
	DefaultLogFormat                = "console"
	DefaultTopologyPrefix           = "/topology/tidb"
	DefaultHealthInterval           = 2 * time.Second
	DefaultHealthRetryInterval      = 500 * time.Millisecond
	DefaultHealthTimeout            = time.Second
	DefaultFailuresToUnhealthy      = 3
	DefaultMetricsInterval          = 5 * time.Second
	DefaultMigrationsPerSecond      = 10
	DefaultEvictionsPerSecond       = 100
	DefaultRebalanceRatio           = 1.2
	DefaultCPUGap                   = 0.2
	DefaultBackendDrainTimeout      = 60 * time.Second
	DefaultDrainTimeout             = 30 * time.Second
	DefaultAPIAddr                  = "127.0.0.1:3080"
	DefaultFleet                    = "default"
	DefaultElectionTTL              = 5 * time.Second
	DefaultNodeTTL                  = 10 * time.Second
	DefaultMaxDownPerMinute         = 2
)

// ErrInvalid is wrapped by every error that Parse, Load and Check return for a bad
// configuration (as opposed to, say, an unreadable file), so that an API can answer
// 400 rather than 500.
var ErrInvalid = errors.New("invalid configuration")

// problem is one thing wrong with a configuration, with the TOML line where it was
// found when that is known.
type problem struct {
	line int
	msg  string
	err  error  // the decoder's error, kept for errors.As
	key  string // the key it is about ("cluster[0].name"), when known
}

func (p *problem) Error() string {
	if p.line > 0 {
		return fmt.Sprintf("line %d: %s", p.line, p.msg)
	}
	return p.msg
}

func (p *problem) Unwrap() error        { return p.err }
func (p *problem) Is(target error) bool { return target == ErrInvalid }

// NewDefault returns a Config with every default filled in. It has no clusters, so
// it does not pass Check on its own.
func NewDefault() *Config {
	return &Config{
		Proxy: ProxyServer{
			Addr:                     DefaultAddr,
			GracefulCloseConnTimeout: NewDuration(DefaultGracefulCloseConnTimeout),
			ConnectTimeout:           NewDuration(DefaultConnectTimeout),
			HandshakeTimeout:         NewDuration(DefaultHandshakeTimeout),
			IdleParkAfter:            NewDuration(DefaultIdleParkAfter),
			EventLoops:               AutoEventLoops,
		},
		Log: Log{
			Level:  DefaultLogLevel,
			Format: DefaultLogFormat,
		},
		API: API{Addr: DefaultAPIAddr, PublicEndpoints: slices.Clone(DefaultPublicEndpoints)},
		Coordination: Coordination{
			Fleet:            DefaultFleet,
			ElectionTTL:      NewDuration(DefaultElectionTTL),
			NodeTTL:          NewDuration(DefaultNodeTTL),
			MaxDownPerMinute: DefaultMaxDownPerMinute,
		},
		HealthCheck: HealthCheck{
			Interval:            NewDuration(DefaultHealthInterval),
			RetryInterval:       NewDuration(DefaultHealthRetryInterval),
			Timeout:             NewDuration(DefaultHealthTimeout),
			FailuresToUnhealthy: DefaultFailuresToUnhealthy,
		},
		Balance: Balance{
			Policy:              PolicyResource,
			MetricsInterval:     NewDuration(DefaultMetricsInterval),
			EnableRebalance:     true,
			MigrationsPerSecond: DefaultMigrationsPerSecond,
			EvictionsPerSecond:  DefaultEvictionsPerSecond,
			RebalanceRatio:      DefaultRebalanceRatio,
			CPUGap:              DefaultCPUGap,
			BackendDrainTimeout: NewDuration(DefaultBackendDrainTimeout),
		},
		Digests:  defaultDigests(),
		QueryLog: defaultQueryLog(),
	}
}

// Load reads and parses the TOML file at path. Every error message starts with path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseNamed(path, data)
}

// ParseNamed is Parse with every error message starting with name (the file
// the data came from).
func ParseNamed(name string, data []byte) (*Config, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, prefixErrors(name, err)
	}
	return cfg, nil
}

// prefixErrors puts path in front of each joined error rather than only the first,
// so every line of the message reads "path: line N: ...".
func prefixErrors(path string, err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", path, err)
	}
	errs := joined.Unwrap()
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", path, e)
	}
	return errors.Join(out...)
}

// Parse decodes a TOML document into fresh defaults, rejects unknown keys and runs
// Check. It reports every problem it finds, joined with errors.Join and each
// wrapping ErrInvalid, with one exception: a syntax error is reported alone. A value
// of the wrong type is reported, and the rest of the file is still decoded and
// validated without it (a problem that only follows from the bad value's absence,
// such as a required key, is not reported twice).
func Parse(data []byte) (*Config, error) {
	src := string(data)
	// Decode into a plain map first: errors here are syntax errors, and keeping them
	// apart from type errors lets each get a message that fits.
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		return nil, syntaxProblem(src, err)
	}
	lines := scanKeyLines(src)
	typeErrs := typeProblems(raw, lines)
	decodeSrc := src
	if len(typeErrs) > 0 {
		// typeProblems removed the bad values from raw: decode what is left.
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(raw); err != nil {
			return nil, joinProblems(typeErrs)
		}
		decodeSrc = buf.String()
	}
	cfg := NewDefault()
	md, err := toml.Decode(decodeSrc, cfg)
	if err != nil {
		if len(typeErrs) > 0 {
			return nil, joinProblems(typeErrs)
		}
		return nil, typeProblem(err) // typeProblems should have caught it
	}
	cfg.normalize()
	errs := unknownKeys(md.Undecoded(), lines)
	for _, e := range cfg.problems(lines) {
		if !aboutBadValue(e, typeErrs) {
			errs = append(errs, e)
		}
	}
	if len(typeErrs) > 0 {
		all := make([]error, 0, len(typeErrs)+len(errs))
		for _, p := range typeErrs {
			all = append(all, p)
		}
		all = append(all, errs...)
		// One list in file order, problems without a line last.
		sort.SliceStable(all, func(i, j int) bool { return lineKey(all[i]) < lineKey(all[j]) })
		errs = all
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func joinProblems(ps []*problem) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// aboutBadValue reports whether validation problem e is about a key whose value
// had the wrong type (or a table holding it, or a key inside it): with the value
// removed, such a problem only restates the type error.
func aboutBadValue(e error, bad []*problem) bool {
	p, ok := e.(*problem)
	if !ok || p.key == "" {
		return false
	}
	for _, b := range bad {
		if within(p.key, b.key) || within(b.key, p.key) {
			return true
		}
	}
	return false
}

// within reports whether key is outer or inside it.
func within(key, outer string) bool {
	if !strings.HasPrefix(key, outer) {
		return false
	}
	rest := key[len(outer):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

func lineKey(e error) int {
	if p, ok := e.(*problem); ok && p.line > 0 {
		return p.line
	}
	return math.MaxInt
}

func syntaxProblem(src string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		// The parser's line is one too far when the offending character is the
		// newline itself ("[proxy" then Enter); the byte offset is exact.
		line := pe.Position.Line
		if start := pe.Position.Start; start >= 0 && start <= len(src) {
			line = strings.Count(src[:start], "\n") + 1
		}
		return &problem{line: line, msg: "syntax error: " + pe.Message, err: err}
	}
	return &problem{msg: "syntax error: " + strings.TrimPrefix(err.Error(), "toml: "), err: err}
}

// typeProblem formats a decoder error. typeProblems checks the same things first
// with better messages, so this is a fallback for a case it misses.
func typeProblem(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = pe.LastKey + ": " + msg
		}
		return &problem{line: pe.Position.Line, msg: msg, err: err}
	}
	return &problem{msg: strings.TrimPrefix(err.Error(), "toml: "), err: err}
}

// unknownKeys reports keys the schema does not have, one error per place each is
// written. A key below an unknown table is not reported again.
func unknownKeys(undecoded []toml.Key, lines *keyLines) []error {
	unknown := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		unknown[k.String()] = true
	}
	var errs []error
	seen := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		name := k.String()
		if seen[name] || underUnknown(k, unknown) {
			continue
		}
		seen[name] = true
		places := lines.placesOf(name)
		if len(places) == 0 {
			errs = append(errs, &problem{msg: fmt.Sprintf("unknown key %s", name)})
			continue
		}
		for _, pl := range places {
			errs = append(errs, &problem{line: pl.line, msg: fmt.Sprintf("unknown key %s", pl.path)})
		}
	}
	return errs
}

func underUnknown(k toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if unknown[k[:i].String()] {
			return true
		}
	}
	return false
}

// normalize trims surrounding spaces, which are never meaningful in any value here
// and are easy to paste by accident.
func (c *Config) normalize() {
	p := &c.Proxy
	p.Addr = strings.TrimSpace(p.Addr)
	p.ProxyProtocol = strings.TrimSpace(p.ProxyProtocol)
	trimAll(p.ProxyProtocolTrustedCIDRs)
	p.BackendProxyProtocol = strings.TrimSpace(p.BackendProxyProtocol)
	p.ServerVersion = strings.TrimSpace(p.ServerVersion)
	c.Security.ServerTLS.trim()
	c.Security.BackendTLS.trim()
	c.Log.Level = strings.TrimSpace(c.Log.Level)
	c.Log.Format = strings.TrimSpace(c.Log.Format)
	c.Log.File = strings.TrimSpace(c.Log.File)
	c.QueryLog.Mode = strings.TrimSpace(c.QueryLog.Mode)
	c.QueryLog.File = strings.TrimSpace(c.QueryLog.File)
	c.Traffic.CaptureDir = strings.TrimSpace(c.Traffic.CaptureDir)
	p.DefaultCluster = strings.TrimSpace(p.DefaultCluster)
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		cl.Name = strings.TrimSpace(cl.Name)
		trimAll(cl.Instances)
		trimAll(cl.EtcdEndpoints)
		cl.TopologyPrefix = strings.TrimSpace(cl.TopologyPrefix)
		if cl.DrainTimeout.Duration == 0 {
			cl.DrainTimeout = NewDuration(DefaultDrainTimeout)
		}
		if cl.TopologyPrefix == "" && cl.UsesEtcd() {
			cl.TopologyPrefix = DefaultTopologyPrefix
		}
		cl.Prometheus = strings.TrimSpace(cl.Prometheus)
		cl.EtcdTLS.trim()
	}
	for i := range c.Shadows {
		c.Shadows[i].normalize()
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		r.Cluster = strings.TrimSpace(r.Cluster)
		trimAll(r.Users)
		trimAll(r.ClientCIDRs)
		trimAll(r.ServerNames)
	}
	c.Balance.Policy = strings.TrimSpace(c.Balance.Policy)
	c.API.Addr = strings.TrimSpace(c.API.Addr)
	p.AdvertiseAddr = strings.TrimSpace(p.AdvertiseAddr)
	trimAll(c.Coordination.EtcdEndpoints)
	c.Coordination.Fleet = strings.TrimSpace(c.Coordination.Fleet)
	c.Coordination.NodeID = strings.TrimSpace(c.Coordination.NodeID)
	c.Coordination.EtcdTLS.trim()
	c.API.TLS.trim()
	trimAll(c.API.PublicEndpoints)
	trimAll(c.API.ClientCerts.Admin)
	trimAll(c.API.ClientCerts.Read)
}

func (t *TLSConfig) trim() {
	t.Cert = strings.TrimSpace(t.Cert)
	t.Key = strings.TrimSpace(t.Key)
	t.CA = strings.TrimSpace(t.CA)
}

func trimAll(ss []string) {
	for i := range ss {
		ss[i] = strings.TrimSpace(ss[i])
	}
}
