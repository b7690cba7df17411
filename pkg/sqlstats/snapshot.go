package sqlstats

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/switchyard-db/switchyard/lib/api"
)

// Row is one digest row: the API's document (api.Digest, latencies in
// milliseconds) and the same latencies as durations, which the sort keys
// and the Prometheus collector read. The "others" row of a cluster (in
// Snapshot.Others) sums the rows evicted to keep the table bounded.
type Row struct {
	api.Digest

	TotalLatency time.Duration
	MinLatency   time.Duration
	MaxLatency   time.Duration
	P50, P95     time.Duration
	P99          time.Duration
}

// AvgLatency is TotalLatency over Count.
func (r *Row) AvgLatency() time.Duration {
	if r.Count == 0 {
		return 0
	}
	return r.TotalLatency / time.Duration(r.Count)
}

// Sort keys of Snapshot; every order is descending (biggest first).
const (
	SortTotal    = "total"
	SortCount    = "count"
	SortAvg      = "avg"
	SortMax      = "max"
	SortP99      = "p99"
	SortErrors   = "errors"
	SortRows     = "rows"
	SortLastSeen = "last_seen"
)

// SortKeys lists the accepted sort keys.
var SortKeys = []string{SortTotal, SortCount, SortAvg, SortMax, SortP99, SortErrors, SortRows, SortLastSeen}

var sorters = map[string]func(a, b *Row) int{
	SortTotal:    func(a, b *Row) int { return cmp.Compare(b.TotalLatency, a.TotalLatency) },
	SortCount:    func(a, b *Row) int { return cmp.Compare(b.Count, a.Count) },
	SortAvg:      func(a, b *Row) int { return cmp.Compare(b.AvgLatency(), a.AvgLatency()) },
	SortMax:      func(a, b *Row) int { return cmp.Compare(b.MaxLatency, a.MaxLatency) },
	SortP99:      func(a, b *Row) int { return cmp.Compare(b.P99, a.P99) },
	SortErrors:   func(a, b *Row) int { return cmp.Compare(b.Errors, a.Errors) },
	SortRows:     func(a, b *Row) int { return cmp.Compare(b.RowsSent, a.RowsSent) },
	SortLastSeen: func(a, b *Row) int { return b.LastSeen.Compare(a.LastSeen) },
}

// Query selects and orders rows for Snapshot.
type Query struct {
	// Cluster limits the rows to one cluster ("" = all).
	Cluster string
	// Sort is one of SortKeys ("" = total).
	Sort string
	// Limit caps the digest rows returned (0 = all). The "others" rows are
	// returned apart and never count against it.
	Limit int
}

// Snapshot is a point-in-time copy of the tables.
type Snapshot struct {
	Rows   []Row
	Others []Row
	// Digests is the number of digest rows held before Limit.
	Digests int
}

// Snapshot copies the rows q asks for. Counters are read one by one while
// sessions keep recording, so a row may be a few executions ahead in one
// field of another.
func (s *Store) Snapshot(q Query) (Snapshot, error) {
	if q.Sort == "" {
		q.Sort = SortTotal
	}
	less, ok := sorters[q.Sort]
	if !ok {
		return Snapshot{}, fmt.Errorf("unknown sort %q: want one of %v", q.Sort, SortKeys)
	}
	if q.Limit < 0 {
		return Snapshot{}, fmt.Errorf("limit %d: must be 0 (all) or more", q.Limit)
	}
	var snap Snapshot
	for _, c := range s.clusterList(q.Cluster) {
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.RLock()
			for _, en := range sh.entries {
				snap.Rows = append(snap.Rows, en.row(c.name))
			}
			sh.mu.RUnlock()
		}
		c.othersMu.Lock()
		o := c.others.row(c.name)
		c.othersMu.Unlock()
		if o.Count > 0 {
			snap.Others = append(snap.Others, o)
		}
	}
	snap.Digests = len(snap.Rows)
	slices.SortFunc(snap.Rows, func(a, b Row) int {
		if c := less(&a, &b); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Digest.Digest, b.Digest.Digest),
			cmp.Compare(a.User, b.User), cmp.Compare(a.Schema, b.Schema))
	})
	slices.SortFunc(snap.Others, func(a, b Row) int { return cmp.Compare(a.Cluster, b.Cluster) })
	if q.Limit > 0 && len(snap.Rows) > q.Limit {
		snap.Rows = snap.Rows[:q.Limit]
	}
	return snap, nil
}

func (en *entry) row(cluster string) Row {
	r := Row{
		Digest: api.Digest{
			Cluster:       cluster,
			User:          en.key.user,
			Schema:        en.key.schema,
			SampleText:    en.sample,
			Count:         en.count.Load(),
			Errors:        en.errors.Load(),
			LastErrorCode: uint16(en.lastErr.Load()),
			RowsSent:      en.rowsSent.Load(),
			RowsAffected:  en.rowsAffected.Load(),
		},
		TotalLatency: time.Duration(en.latencyNs.Load()),
		MaxLatency:   time.Duration(en.maxNs.Load()),
	}
	if en.st != nil {
		r.Digest.Digest, r.DigestText = en.st.DigestHex, en.st.Normalized
	}
	if m := en.minNs.Load(); m >= 0 {
		r.MinLatency = time.Duration(m)
	}
	if en.first != 0 {
		r.FirstSeen = time.Unix(0, en.first).UTC()
	}
	if l := en.last.Load(); l != 0 {
		r.LastSeen = time.Unix(0, l).UTC()
	}
	c := en.hist.counts()
	r.P50 = quantile(&c, 0.50, r.MinLatency, r.MaxLatency)
	r.P95 = quantile(&c, 0.95, r.MinLatency, r.MaxLatency)
	r.P99 = quantile(&c, 0.99, r.MinLatency, r.MaxLatency)
	r.TotalMs, r.AvgMs = ms(r.TotalLatency), ms(r.AvgLatency())
	r.MinMs, r.MaxMs = ms(r.MinLatency), ms(r.MaxLatency)
	r.P50Ms, r.P95Ms, r.P99Ms = ms(r.P50), ms(r.P95), ms(r.P99)
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Totals are one cluster's running totals since start-up (Reset does not
// touch them).
type Totals struct {
	Cluster                  string
	Statements, Errors, Rows uint64
	Latency                  time.Duration
	Evictions                uint64
	Digests                  int
}

// Totals returns every cluster's running totals.
func (s *Store) Totals() []Totals {
	var out []Totals
	for _, c := range s.clusterList("") {
		out = append(out, Totals{
			Cluster:    c.name,
			Statements: c.totalExecs.Load(),
			Errors:     c.totalErrors.Load(),
			Rows:       c.totalRows.Load(),
			Latency:    time.Duration(c.totalLatencyNs.Load()),
			Evictions:  c.evictions.Load(),
			Digests:    c.Len(),
		})
	}
	slices.SortFunc(out, func(a, b Totals) int { return cmp.Compare(a.Cluster, b.Cluster) })
	return out
}
