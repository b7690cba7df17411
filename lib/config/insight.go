package config

// Digests configures the per-digest statement statistics (GET
// /api/v1/digests, proxyctl top). Every key is applied by a reload.
type Digests struct {
	// Enabled records every COM_QUERY and COM_STMT_EXECUTE in the digest
	// tables.
	Enabled bool `toml:"enabled"`
	// MaxPerCluster bounds the digests kept per cluster; the least frequent
	// are folded into the cluster's "others" row. A smaller value shrinks
	// the tables as new digests arrive.
	MaxPerCluster int `toml:"max-per-cluster"`
	// SampleLength cuts each digest's sample statement text (bytes).
	SampleLength int `toml:"sample-length"`
}

// Defaults of [digests].
const (
	DefaultDigestsMaxPerCluster = 1000
	DefaultDigestsSampleLength  = 1024
	// minDigestsPerCluster is the digest table's shard count: a table
	// smaller than that would leave some shards without a row.
	minDigestsPerCluster = 16
	maxDigestsPerCluster = 1_000_000
)

func defaultDigests() Digests {
	return Digests{Enabled: true, MaxPerCluster: DefaultDigestsMaxPerCluster, SampleLength: DefaultDigestsSampleLength}
}

func (d Digests) check(v *validator) {
	if d.MaxPerCluster < minDigestsPerCluster || d.MaxPerCluster > maxDigestsPerCluster {
		v.addf("digests.max-per-cluster", "digests.max-per-cluster %d: must be between %d and %d",
			d.MaxPerCluster, minDigestsPerCluster, maxDigestsPerCluster)
	}
	if d.SampleLength < 0 || d.SampleLength > 1<<20 {
		v.addf("digests.sample-length", "digests.sample-length %d: must be between 0 and 1048576 bytes", d.SampleLength)
	}
}
