package api

import "time"

// ShadowDigest is one digest's comparison between a [[shadow]]'s source and target.
type ShadowDigest struct {
	Digest     string `json:"digest"`
	DigestText string `json:"digest_text"`
	Compared   uint64 `json:"compared"`
	// Mismatches counts executions that differed; RowMismatches those with
	// another row count or checksum, ErrorMismatches another error code.
	Mismatches      uint64 `json:"mismatches"`
	RowMismatches   uint64 `json:"row_mismatches"`
	ErrorMismatches uint64 `json:"error_mismatches"`
	// SourceAvgMs is the latency the client saw (to the end of its
	// result), TargetAvgMs the mirror's on the target.
	SourceAvgMs float64 `json:"source_avg_ms"`
	TargetAvgMs float64 `json:"target_avg_ms"`
	TargetMaxMs float64 `json:"target_max_ms"`
	// Example is the text of the last mismatching execution (the
	// normalised text when it may carry a credential).
	Example      string    `json:"example,omitempty"`
	LastMismatch time.Time `json:"last_mismatch,omitzero"`
}

// ShadowStatus is one [[shadow]] mirror as GET /api/v1/shadow shows it. It never carries
// the mirror's credentials.
type ShadowStatus struct {
	Name        string  `json:"name"`
	Source      string  `json:"source"`
	Target      string  `json:"target"`
	Sample      float64 `json:"sample"`
	User        string  `json:"user"`
	Connections int     `json:"connections"`
	QueueLength int     `json:"queue_length"`
	QueueSize   int     `json:"queue_size"`
	Sampled     uint64  `json:"sampled"`
	Dropped     uint64  `json:"dropped"`
	Skipped     uint64  `json:"skipped"`
	Errors      uint64  `json:"errors"`
	Compared    uint64  `json:"compared"`
	Mismatches  uint64  `json:"mismatches"`
	// LastError is the target's last connection error ("" when none since
	// the last success), for the operator.
	LastError string         `json:"last_error,omitempty"`
	Digests   []ShadowDigest `json:"digests"`
}

// ShadowList is GET /api/v1/shadow's body.
type ShadowList struct {
	Shadows []ShadowStatus `json:"shadows"`
}
