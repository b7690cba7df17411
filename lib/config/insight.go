package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

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

// QueryLog configures the JSON-lines statement log. Every key is applied by
// a reload; changing a file setting (file, max-size, max-backups, max-age,
// compress, buffer) reopens the log, the others apply in place.
type QueryLog struct {
	// Mode is "off", "all", "slow" (slower than SlowThreshold), "failed"
	// (answered with an ERR packet) or "slow-or-failed".
	Mode string `toml:"mode"`
	// SlowThreshold is the latency from which a statement is slow.
	SlowThreshold Duration `toml:"slow-threshold"`
	// File is the log's path; needed unless Mode is "off".
	File string `toml:"file"`
	// MaxTextLength cuts each statement's text (bytes).
	MaxTextLength int `toml:"max-text-length"`
	// MaxSize rotates the file when it reaches this many megabytes.
	MaxSize int `toml:"max-size"`
	// MaxBackups rotated files are kept (0: all, bounded by MaxAge).
	MaxBackups int `toml:"max-backups"`
	// MaxAge removes rotated files older than this many days (0: never).
	MaxAge int `toml:"max-age"`
	// Compress gzips rotated files.
	Compress bool `toml:"compress"`
	// Buffer is the queue between sessions and the writer, in statements;
	// when it is full, statements are dropped and counted.
	Buffer int `toml:"buffer"`
}

// Query log modes.
const (
	QueryLogOff          = "off"
	QueryLogAll          = "all"
	QueryLogSlow         = "slow"
	QueryLogFailed       = "failed"
	QueryLogSlowOrFailed = "slow-or-failed"
)

var queryLogModes = []string{QueryLogOff, QueryLogAll, QueryLogSlow, QueryLogFailed, QueryLogSlowOrFailed}

// Defaults of [query-log].
const (
	DefaultQueryLogSlowThreshold = time.Second
	DefaultQueryLogMaxTextLength = 1024
	DefaultQueryLogMaxSize       = 100
	DefaultQueryLogMaxBackups    = 5
	DefaultQueryLogBuffer        = 8192
)

func defaultQueryLog() QueryLog {
	return QueryLog{Mode: QueryLogOff, SlowThreshold: NewDuration(DefaultQueryLogSlowThreshold),
		MaxTextLength: DefaultQueryLogMaxTextLength, MaxSize: DefaultQueryLogMaxSize,
		MaxBackups: DefaultQueryLogMaxBackups, Buffer: DefaultQueryLogBuffer}
}

// Enabled reports whether statements are logged.
func (q QueryLog) Enabled() bool { return q.Mode != QueryLogOff }

func (q QueryLog) check(v *validator) {
	if !slices.Contains(queryLogModes, q.Mode) {
		v.addf("query-log.mode", "query-log.mode %q: must be one of %s", q.Mode, strings.Join(queryLogModes, ", "))
	}
	if q.Enabled() && slices.Contains(queryLogModes, q.Mode) && q.File == "" {
		v.addf("query-log.file", "query-log.file must be set when query-log.mode is %q", q.Mode)
	}
	if q.File != "" {
		dir := filepath.Dir(q.File)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			v.addf("query-log.file", "query-log.file %q: directory %q does not exist", q.File, dir)
		}
	}
	if q.SlowThreshold.Duration < 0 {
		v.addf("query-log.slow-threshold", "query-log.slow-threshold %q: must not be negative", q.SlowThreshold)
	}
	if q.MaxTextLength < 0 || q.MaxTextLength > 1<<20 {
		v.addf("query-log.max-text-length", "query-log.max-text-length %d: must be between 0 and 1048576 bytes", q.MaxTextLength)
	}
	if q.MaxSize < 1 {
		v.addf("query-log.max-size", "query-log.max-size %d: must be at least 1 (megabytes)", q.MaxSize)
	}
	if q.MaxBackups < 0 {
		v.addf("query-log.max-backups", "query-log.max-backups %d: must be 0 (keep all) or more", q.MaxBackups)
	}
	if q.MaxAge < 0 {
		v.addf("query-log.max-age", "query-log.max-age %d: must be 0 (keep) or more days", q.MaxAge)
	}
	if q.Buffer < 1 || q.Buffer > 1_000_000 {
		v.addf("query-log.buffer", "query-log.buffer %d: must be between 1 and 1000000", q.Buffer)
	}
}

// Traffic configures traffic capture (POST /api/v1/traffic/capture,
// proxyctl traffic capture). Applied by a reload.
type Traffic struct {
	// CaptureDir is where capture files are written; empty disables
	// capture. The API never chooses the path.
	CaptureDir string `toml:"capture-dir"`
}

func (t Traffic) check(v *validator) {
	if t.CaptureDir == "" {
		return
	}
	if st, err := os.Stat(t.CaptureDir); err != nil || !st.IsDir() {
		v.addf("traffic.capture-dir", "traffic.capture-dir %q: not an existing directory", t.CaptureDir)
	}
}
