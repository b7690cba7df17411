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

// checkShadowKey checks value, at field (shadow[i].name, say), of a shadow
// field that must be set, valid and held by one shadow only. empty says
// what an unset field must be; bad is why value is not valid ("": it is);
// dup, a format with the first holder's index (%d), why a second shadow
// may not hold it. seen maps each value to its first holder.
func checkShadowKey(v *validator, field, value string, i int, seen map[string]int, empty, bad, dup string) {
	switch {
	case value == "":
		v.addf(field, "%s %s", field, empty)
	case bad != "":
		v.addf(field, "%s %q: %s", field, value, bad)
	default:
		if first, taken := seen[value]; taken {
			v.addf(field, "%s %q: "+dup, field, value, first)
		} else {
			seen[value] = i
		}
	}
}

func (c *Config) checkShadows(v *validator) {
	names := map[string]int{}
	sources := map[string]int{}
	for i, s := range c.Shadows {
		path := fmt.Sprintf("shadow[%d]", i)
		badName := ""
		if !clusterNameRE.MatchString(s.Name) {
			badName = "must match [a-z0-9-]+"
		}
		checkShadowKey(v, path+".name", s.Name, i, names,
			"must not be empty", badName, "duplicates shadow[%d].name")
		badSource := ""
		if c.Cluster(s.Source) == nil {
			badSource = "no [[cluster]] has that name"
		}
		checkShadowKey(v, path+".source", s.Source, i, sources,
			"must name a [[cluster]]", badSource, "already the source of shadow[%d]; a cluster is mirrored once")
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
