package api

import "time"

// Digest is one row of GET /api/v1/digests: the statements of one cluster,
// user and schema that share a digest (TiDB's normalised text). Latencies
// are in milliseconds; the percentiles come from a histogram whose buckets
// are about 19% wide.
type Digest struct {
	Cluster    string `json:"cluster"`
	User       string `json:"user"`
	Schema     string `json:"schema"`
	Digest     string `json:"digest"`
	DigestText string `json:"digest_text"`
	// SampleText is the first statement seen (cut at digests.sample-length;
	// the normalised text for statements that may carry a credential).
	SampleText    string    `json:"sample_text"`
	Count         uint64    `json:"count"`
	Errors        uint64    `json:"errors"`
	LastErrorCode uint16    `json:"last_error_code,omitempty"`
	RowsSent      uint64    `json:"rows_sent"`
	RowsAffected  uint64    `json:"rows_affected"`
	TotalMs       float64   `json:"total_ms"`
	AvgMs         float64   `json:"avg_ms"`
	MinMs         float64   `json:"min_ms"`
	MaxMs         float64   `json:"max_ms"`
	P50Ms         float64   `json:"p50_ms"`
	P95Ms         float64   `json:"p95_ms"`
	P99Ms         float64   `json:"p99_ms"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
}

// DigestList is GET /api/v1/digests.
type DigestList struct {
	// Enabled is digests.enabled: when false nothing new is recorded.
	Enabled bool `json:"enabled"`
	// Sort is the order of Digests (descending).
	Sort string `json:"sort"`
	// Total counts the digest rows held, before limit.
	Total   int      `json:"total"`
	Digests []Digest `json:"digests"`
	// Others holds, per cluster, the sums of the rows evicted to keep the
	// table within digests.max-per-cluster (user, schema and digest empty).
	Others []Digest `json:"others"`
}
