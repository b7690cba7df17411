package sqlstats

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDigestIgnoresLiterals(t *testing.T) {
	same := [][2]string{
		{"SELECT * FROM t WHERE id = 1", "SELECT * FROM t WHERE id = 2"},
		{"SELECT * FROM t WHERE id = 1", "select *   from t where id='abc'"},
		{"SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (7, 8)"},
		{"INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (3, 'c')"},
	}
	for _, p := range same {
		a, b := Normalize(p[0]), Normalize(p[1])
		require.Equal(t, a.Digest, b.Digest, "%q vs %q", p[0], p[1])
		require.Equal(t, a.Normalized, b.Normalized)
	}
	require.Equal(t, "select * from `t` where `id` = ?", Normalize("SELECT * FROM t WHERE id = 1").Normalized)
	require.NotEqual(t, Normalize("SELECT * FROM t WHERE id = 1").Digest, Normalize("SELECT * FROM u WHERE id = 1").Digest)
	require.Len(t, Normalize("SELECT 1").DigestHex, 64)
	// As in TiDB, a one-element IN keeps its own digest (TiDB's
	// statements_summary digests match ours).
	require.Equal(t, "select * from `t` where `id` in ( ? )", Normalize("SELECT * FROM t WHERE id IN (7)").Normalized)
}

func rec(c *Cluster, text string, lat time.Duration, errCode uint16, rows uint64) {
	c.Record(&Exec{User: "app", Schema: "db", Text: []byte(text), Latency: lat, At: time.Now(), ErrCode: errCode, RowsSent: rows})
}

func TestRecordCountsPerDigest(t *testing.T) {
	s := New(Options{})
	c := s.Cluster("east")
	for i := 1; i <= 100; i++ {
		var code uint16
		if i%10 == 0 {
			code = 1062
		}
		rec(c, fmt.Sprintf("SELECT * FROM t WHERE id = %d", i), time.Duration(i)*time.Millisecond, code, 1)
	}
	rec(c, "SELECT 1", time.Millisecond, 0, 1)
	c.Record(&Exec{User: "other", Schema: "db", Text: []byte("SELECT 2"), Latency: time.Millisecond, At: time.Now()})

	snap, err := s.Snapshot(Query{Sort: SortCount})
	require.NoError(t, err)
	require.Len(t, snap.Rows, 3, "SELECT 1 and SELECT 2 share a digest but not a user")
	r := snap.Rows[0]
	require.Equal(t, "east", r.Cluster)
	require.Equal(t, "app", r.User)
	require.Equal(t, "db", r.Schema)
	require.Equal(t, uint64(100), r.Count)
	require.Equal(t, uint64(10), r.Errors)
	require.Equal(t, uint16(1062), r.LastErrorCode)
	require.Equal(t, uint64(100), r.RowsSent)
	require.Equal(t, time.Millisecond, r.MinLatency)
	require.Equal(t, 100*time.Millisecond, r.MaxLatency)
	require.Equal(t, 5050*time.Millisecond, r.TotalLatency)
	require.Equal(t, "SELECT * FROM t WHERE id = 1", r.SampleText, "the first text is the sample")
	// Latencies 1..100 ms: the histogram's buckets are about 19% wide.
	require.InDelta(t, 50, r.P50Ms, 50*0.2)
	require.InDelta(t, 95, r.P95Ms, 95*0.2)
	require.InDelta(t, 99, r.P99Ms, 99*0.2)
	require.LessOrEqual(t, r.P50, r.P95)
	require.LessOrEqual(t, r.P95, r.P99)
	require.False(t, r.FirstSeen.IsZero())
	require.False(t, r.LastSeen.Before(r.FirstSeen))
	require.Empty(t, snap.Others)

	_, err = s.Snapshot(Query{Sort: "nope"})
	require.ErrorContains(t, err, `unknown sort "nope"`)

	snap, err = s.Snapshot(Query{Sort: SortTotal, Limit: 1, Cluster: "east"})
	require.NoError(t, err)
	require.Len(t, snap.Rows, 1)
	require.Equal(t, 3, snap.Digests)
	snap, err = s.Snapshot(Query{Cluster: "west"})
	require.NoError(t, err)
	require.Empty(t, snap.Rows)

	s.Reset("")
	snap, err = s.Snapshot(Query{})
	require.NoError(t, err)
	require.Empty(t, snap.Rows)
	require.Equal(t, uint64(102), s.Totals()[0].Statements, "totals survive a reset")
}

func TestSensitiveSampleHidesLiterals(t *testing.T) {
	s := New(Options{})
	c := s.Cluster("east")
	rec(c, "CREATE USER 'bob'@'%' IDENTIFIED BY 'hunter2'", time.Millisecond, 0, 0)
	rec(c, "SET PASSWORD FOR 'bob'@'%' = 'hunter3'", time.Millisecond, 0, 0)
	rec(c, "SELECT AES_ENCRYPT('data', 'key-hunter4')", time.Millisecond, 0, 0)
	snap, err := s.Snapshot(Query{})
	require.NoError(t, err)
	require.Len(t, snap.Rows, 3)
	for _, r := range snap.Rows {
		require.NotContains(t, r.SampleText, "hunter")
		require.NotContains(t, r.DigestText, "hunter")
	}
}

// TestHeavyHittersSurviveUniqueFlood: with a small table, a frequent digest
// keeps its row (and an exact count) through thousands of one-off digests,
// which end up in "others", and nothing is lost from the totals.
func TestHeavyHittersSurviveUniqueFlood(t *testing.T) {
	s := New(Options{MaxDigests: 64})
	c := s.Cluster("east")
	for i := 0; i < 20000; i++ {
		if i%10 == 0 {
			rec(c, fmt.Sprintf("SELECT * FROM hot WHERE id = %d", i), time.Millisecond, 0, 1)
		}
		rec(c, fmt.Sprintf("SELECT * FROM cold_%d", i), time.Millisecond, 0, 1)
	}
	require.LessOrEqual(t, c.Len(), 64)
	snap, err := s.Snapshot(Query{Sort: SortCount})
	require.NoError(t, err)
	require.Equal(t, "select * from `hot` where `id` = ?", snap.Rows[0].DigestText)
	require.Equal(t, uint64(2000), snap.Rows[0].Count)
	require.Len(t, snap.Others, 1)
	var sum uint64
	for _, r := range snap.Rows {
		sum += r.Count
	}
	sum += snap.Others[0].Count
	require.Equal(t, uint64(22000), sum, "evicted rows are summed in others")
	require.Equal(t, uint64(22000), snap.Others[0].RowsSent+sumRows(snap.Rows))
	require.Equal(t, time.Millisecond, snap.Others[0].MinLatency)
}

func sumRows(rows []Row) (n uint64) {
	for _, r := range rows {
		n += r.RowsSent
	}
	return n
}

// TestMillionDistinctStatementsStayBounded floods one cluster with distinct
// digests and checks the structure's entry count and the heap it holds.
func TestMillionDistinctStatementsStayBounded(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 50_000 // the race detector makes each statement ~10x slower
	}
	s := New(Options{MaxDigests: 1000, SampleLength: 256})
	c := s.Cluster("east")
	// Warm up to the steady state (the table and caches full) before the
	// baseline, then flood.
	text := make([]byte, 0, 128)
	for i := 0; i < 10_000; i++ {
		text = fmt.Appendf(text[:0], "SELECT c, pad FROM sbtest_warm_%d WHERE id = %d", i, i)
		c.Record(&Exec{User: "u", Schema: "s", Text: text, Latency: time.Microsecond, At: time.Now()})
	}
	base := heapInUse()
	for i := 0; i < n; i++ {
		text = fmt.Appendf(text[:0], "SELECT c, pad FROM sbtest_%d WHERE id = %d", i, i)
		c.Record(&Exec{User: "u", Schema: "s", Text: text, Latency: time.Microsecond, At: time.Now()})
	}
	grown := int64(heapInUse()) - int64(base)
	require.LessOrEqual(t, c.Len(), 1000)
	require.LessOrEqual(t, s.norm.len(), defaultCacheSize)
	require.Less(t, grown, int64(4<<20), "heap grew by %d bytes over the warm steady state", grown)
	tot := s.Totals()[0]
	require.Equal(t, uint64(n+10_000), tot.Statements)
	t.Logf("%d statements: %d digests held, heap growth after warm-up %d bytes", n, c.Len(), grown)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestConcurrentRecordSnapshotReset runs recorders against readers and
// resets (for -race) and checks that, without resets, no execution is lost.
func TestConcurrentRecordSnapshotReset(t *testing.T) {
	s := New(Options{MaxDigests: 32})
	c := s.Cluster("east")
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.Snapshot(Query{Sort: SortP99, Limit: 5})
			require.NoError(t, err)
			_ = s.Totals()
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				text := fmt.Sprintf("SELECT * FROM t%d WHERE id = %d", (w*each+i)%100, i)
				rec(c, text, time.Duration(i)*time.Microsecond, uint16(i%2), 1)
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	snap, err := s.Snapshot(Query{})
	require.NoError(t, err)
	var sum, errs uint64
	for _, r := range append(snap.Rows, snap.Others...) {
		sum += r.Count
		errs += r.Errors
	}
	require.Equal(t, uint64(workers*each), sum)
	require.Equal(t, uint64(workers*each/2), errs)

	// Resets racing with recorders.
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				rec(c, fmt.Sprintf("SELECT %d FROM t%d", i, i%50), time.Microsecond, 0, 0)
				if i%100 == 0 {
					s.Reset("east")
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, uint64(workers*each+2000), s.Totals()[0].Statements)
}

func TestRepeatedStatementDoesNotAllocate(t *testing.T) {
	s := New(Options{})
	c := s.Cluster("east")
	e := &Exec{User: "app", Schema: "db", Text: []byte("SELECT c FROM sbtest1 WHERE id=?"), Latency: time.Millisecond, At: time.Now(), RowsSent: 1}
	c.Record(e)
	allocs := testing.AllocsPerRun(1000, func() { c.Record(e) })
	require.Zero(t, allocs)
}

func TestSmallerMaxDigestsTakesEffect(t *testing.T) {
	s := New(Options{MaxDigests: 320})
	c := s.Cluster("east")
	for i := 0; i < 1000; i++ {
		rec(c, fmt.Sprintf("SELECT * FROM t%d", i), time.Millisecond, 0, 0)
	}
	require.Greater(t, c.Len(), 160)
	s.SetOptions(Options{MaxDigests: 32})
	for i := 0; i < 1000; i++ {
		rec(c, fmt.Sprintf("SELECT * FROM u%d", i), time.Millisecond, 0, 0)
	}
	// Each shard shrinks as new digests arrive in it; 1000 new digests
	// reach every one of the 16 shards.
	require.LessOrEqual(t, c.Len(), 32)
}

func TestCollectorHasNoDigestLabel(t *testing.T) {
	s := New(Options{})
	rec(s.Cluster("east"), "SELECT 1", 2*time.Millisecond, 1146, 3)
	rec(s.Cluster("west"), "SELECT 1", time.Millisecond, 0, 0)
	mfs, err := registryOf(NewCollector(s)).Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			var labels []string
			for _, l := range m.GetLabel() {
				require.Equal(t, "cluster", l.GetName(), "no label but cluster")
				labels = append(labels, l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	require.Equal(t, 13, series, "6 series per cluster and the normaliser counter")
	require.Equal(t, 1.0, got["switchyard_statements_total{east}"])
	require.Equal(t, 1.0, got["switchyard_statement_errors_total{east}"])
	require.Equal(t, 0.0, got["switchyard_statement_errors_total{west}"])
	require.Equal(t, 3.0, got["switchyard_statement_rows_sent_total{east}"])
	require.InDelta(t, 0.002, got["switchyard_statement_latency_seconds_total{east}"], 1e-9)
	require.Equal(t, 1.0, got["switchyard_digests{west}"])
	require.Equal(t, 1.0, got["switchyard_digest_normalizations_total{}"], "one distinct text")
}

// A Normalizer digests like Normalize and normalises a repeated text once.
func TestNormalizerCachesByText(t *testing.T) {
	n := NewNormalizer()
	a := n.Statement([]byte("SELECT c FROM sbtest1 WHERE id = 7"))
	b := n.Statement([]byte("SELECT c FROM sbtest1 WHERE id = 7"))
	c := n.Statement([]byte("SELECT c FROM sbtest1 WHERE id = 8"))
	if a != b {
		t.Fatal("the same text was normalised twice")
	}
	if a == c || a.Digest != c.Digest {
		t.Fatalf("texts differing in a literal: same object %v, digests %s and %s", a == c, a.DigestHex, c.DigestHex)
	}
	if want := Normalize("SELECT c FROM sbtest1 WHERE id = 7"); a.DigestHex != want.DigestHex || a.Normalized != want.Normalized {
		t.Fatalf("Normalizer gave %q %s, Normalize %q %s", a.Normalized, a.DigestHex, want.Normalized, want.DigestHex)
	}
	if got := n.c.misses.Load(); got != 2 {
		t.Fatalf("misses = %d, want 2", got)
	}
}
