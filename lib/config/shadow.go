package config

import (
	"fmt"
	"strings"
	"time"
)

// Shadow mirrors a sampled fraction of one cluster's read-only autocommit
// statements to another cluster and compares the results (pkg/shadow).
// Every key is applied by a reload; a changed section restarts its mirror,
// keeping its counters while name, source and target stay.
type Shadow struct {
	// Name identifies the mirror (API, metrics, logs).
	Name string `toml:"name"`
	// Source is the [[cluster]] whose statements are sampled; Target the
	// [[cluster]] they are run on. A cluster is the source of one mirror at
	// most.
	Source string `toml:"source"`
	Target string `toml:"target"`
	// Sample is the fraction of eligible statements mirrored, above 0 and
	// at most 1.
	Sample float64 `toml:"sample"`
	// User and Password are the mirror's own account on Target
	// (mysql_native_password). The password never reaches a log or the
	// API.
	User     string `toml:"user"`
	Password string `toml:"password"`
	// Queue bounds the sampled statements waiting for a connection; more
	// are dropped and counted.
	Queue int `toml:"queue"`
	// Connections is the number of connections (and workers) to Target.
	Connections int `toml:"connections"`
	// Timeout bounds one statement or login on Target.
	Timeout Duration `toml:"timeout"`
	// MaxDigests bounds the digests reported; the rest share one row.
	MaxDigests int `toml:"max-digests"`
}

// Defaults of [[shadow]].
const (
	DefaultShadowQueue       = 1000
	DefaultShadowConnections = 4
	DefaultShadowTimeout     = 5 * time.Second
	DefaultShadowMaxDigests  = 1000
)

func (s *Shadow) normalize() {
	s.Name = strings.TrimSpace(s.Name)
	s.Source = strings.TrimSpace(s.Source)
	s.Target = strings.TrimSpace(s.Target)
	s.User = strings.TrimSpace(s.User)
	if s.Queue == 0 {
		s.Queue = DefaultShadowQueue
	}
	if s.Connections == 0 {
		s.Connections = DefaultShadowConnections
	}
	if s.Timeout.Duration == 0 {
		s.Timeout = NewDuration(DefaultShadowTimeout)
	}
	if s.MaxDigests == 0 {
		s.MaxDigests = DefaultShadowMaxDigests
	}
}

func (c *Config) checkShadows(v *validator) {
	names := map[string]int{}
	sources := map[string]int{}
	for i, s := range c.Shadows {
		path := fmt.Sprintf("shadow[%d]", i)
		switch {
		case s.Name == "":
			v.addf(path+".name", "%s.name must not be empty", path)
		case !clusterNameRE.MatchString(s.Name):
			v.addf(path+".name", "%s.name %q: must match [a-z0-9-]+", path, s.Name)
		default:
			if first, dup := names[s.Name]; dup {
				v.addf(path+".name", "%s.name %q: duplicates shadow[%d].name", path, s.Name, first)
			} else {
				names[s.Name] = i
			}
		}
		switch {
		case s.Source == "":
			v.addf(path+".source", "%s.source must name a [[cluster]]", path)
		case c.Cluster(s.Source) == nil:
			v.addf(path+".source", "%s.source %q: no [[cluster]] has that name", path, s.Source)
		default:
			if first, dup := sources[s.Source]; dup {
				v.addf(path+".source", "%s.source %q: already the source of shadow[%d]; a cluster is mirrored once", path, s.Source, first)
			} else {
				sources[s.Source] = i
			}
		}
		switch {
		case s.Target == "":
			v.addf(path+".target", "%s.target must name a [[cluster]]", path)
		case c.Cluster(s.Target) == nil:
			v.addf(path+".target", "%s.target %q: no [[cluster]] has that name", path, s.Target)
		case s.Target == s.Source:
			v.addf(path+".target", "%s.target %q: is its source; mirror to another cluster", path, s.Target)
		}
		if !(s.Sample > 0 && s.Sample <= 1) {
			v.addf(path+".sample", "%s.sample %v: must be above 0 and at most 1", path, s.Sample)
		}
		if s.User == "" {
			v.addf(path+".user", "%s.user must be set: the mirror logs in to the target with its own account", path)
		}
		if s.Password == RedactedSecret {
			v.addf(path+".password", "%s.password is %q, the placeholder GET /api/v1/config shows: write the real password", path, RedactedSecret)
		}
		if s.Queue < 1 || s.Queue > 1_000_000 {
			v.addf(path+".queue", "%s.queue %d: must be between 1 and 1000000", path, s.Queue)
		}
		if s.Connections < 1 || s.Connections > 64 {
			v.addf(path+".connections", "%s.connections %d: must be between 1 and 64", path, s.Connections)
		}
		if s.Timeout.Duration <= 0 {
			v.addf(path+".timeout", "%s.timeout %q: must be positive", path, s.Timeout)
		}
		if s.MaxDigests < 1 || s.MaxDigests > 100_000 {
			v.addf(path+".max-digests", "%s.max-digests %d: must be between 1 and 100000", path, s.MaxDigests)
		}
	}
}
