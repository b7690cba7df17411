package shadow

import (
	"bytes"
	"time"
)

// Options configure one mirror (a [[shadow]] section).
type Options struct {
	// Name identifies the mirror in the API and the metrics.
	Name string
	// Source is the cluster whose statements are sampled; Target the
	// cluster they are run on.
	Source, Target string
	// Sample is the fraction of eligible statements mirrored (0 to 1).
	Sample float64
	// User and Password log the mirror's connections in to Target.
	// Password is copied by New and zeroed when the mirror closes.
	User     string
	Password []byte
	// Queue bounds the statements waiting for a worker; Connections is the
	// number of workers, each with one connection.
	Queue, Connections int
	// Timeout bounds one statement (and a login) on the target.
	Timeout time.Duration
	// MaxDigests bounds the digests reported; the rest are folded into one
	// "others" row.
	MaxDigests int
}

// same reports whether a mirror built from o would do what one built from
// p does, so a reload keeps it running.
func (o *Options) same(p *Options) bool {
	return o.Name == p.Name && o.Source == p.Source && o.Target == p.Target && o.Sample == p.Sample &&
		o.User == p.User && bytes.Equal(o.Password, p.Password) && o.Queue == p.Queue &&
		o.Connections == p.Connections && o.Timeout == p.Timeout && o.MaxDigests == p.MaxDigests
}
