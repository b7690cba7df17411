package metricsreader

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const gib = 1 << 30

func TestScrapeComputesCPUFromTwoScrapes(t *testing.T) {
	backend := newStatusServer(t, tidbPage(100, 1*gib, 4, 4*gib))
	clock := newFakeClock()
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	r.now = clock.now
	r.SetTargets([]Target{{Addr: "127.0.0.1:4000", StatusPort: backend.port}})

	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	m := r.Results()["127.0.0.1:4000"]
	require.False(t, m.HasCPU, "one scrape gives no rate")
	require.True(t, m.HasMemory)
	require.InDelta(t, 0.25, m.Memory, 1e-9)
	require.Equal(t, SourceScrape, m.Source)
	require.Equal(t, clock.now(), m.UpdatedAt)

	// 20 CPU seconds in 10 wall seconds on 4 procs: half the quota.
	clock.advance(10 * time.Second)
	backend.set(tidbPage(120, 2*gib, 4, 4*gib))
	r.fetch(context.Background())
	m = r.Results()["127.0.0.1:4000"]
	require.True(t, m.HasCPU)
	require.InDelta(t, 0.5, m.CPU, 1e-9)
	require.InDelta(t, 0.5, m.Memory, 1e-9)

	// The backend restarted: its counter went back, so there is no rate yet.
	clock.advance(10 * time.Second)
	backend.set(tidbPage(3, 2*gib, 4, 4*gib))
	r.fetch(context.Background())
	require.False(t, r.Results()["127.0.0.1:4000"].HasCPU)

	clock.advance(5 * time.Second)
	backend.set(tidbPage(8, 2*gib, 4, 4*gib))
	r.fetch(context.Background())
	require.InDelta(t, 0.25, r.Results()["127.0.0.1:4000"].CPU, 1e-9)
}

func TestScrapeMissingQuotaOrMaxProcs(t *testing.T) {
	noQuota := newStatusServer(t, tidbPage(100, gib, 4, -1))
	zeroQuota := newStatusServer(t, tidbPage(100, gib, 4, 0))
	zeroProcs := newStatusServer(t, tidbPage(100, gib, 0, 2*gib))
	clock := newFakeClock()
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	r.now = clock.now
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: noQuota.port},
		{Addr: "127.0.0.1:4002", StatusPort: zeroQuota.port},
		{Addr: "127.0.0.1:4003", StatusPort: zeroProcs.port},
	})
	r.fetch(context.Background())
	require.Equal(t, []string{"127.0.0.1:4003"}, keys(r.Results()), "only memory before a second scrape")

	clock.advance(time.Second)
	noQuota.set(tidbPage(101, gib, 4, -1))
	zeroQuota.set(tidbPage(101, gib, 4, 0))
	zeroProcs.set(tidbPage(101, gib, 0, 2*gib))
	r.fetch(context.Background())
	res := r.Results()
	for _, addr := range []string{"127.0.0.1:4001", "127.0.0.1:4002"} {
		require.True(t, res[addr].HasCPU, addr)
		require.InDelta(t, 0.25, res[addr].CPU, 1e-9, addr)
		require.False(t, res[addr].HasMemory, addr)
	}
	require.False(t, res["127.0.0.1:4003"].HasCPU)
	require.True(t, res["127.0.0.1:4003"].HasMemory)
}

func TestScrapeMalformedTargetHasNoMetrics(t *testing.T) {
	good := newStatusServer(t, tidbPage(100, gib, 4, 2*gib))
	bad := newStatusServer(t, "process_resident_memory_bytes one-gigabyte\n")
	failing := newStatusServer(t, "")
	failing.srv.Close() // refuses connections

	r := NewReader(zaptest.NewLogger(t), "c1", Config{Timeout: 5 * time.Second})
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: good.port},
		{Addr: "127.0.0.1:4002", StatusPort: bad.port},
		{Addr: "127.0.0.1:4003", StatusPort: failing.port},
	})
	r.fetch(context.Background())
	res := r.Results()
	require.Len(t, res, 1)
	require.InDelta(t, 0.5, res["127.0.0.1:4001"].Memory, 1e-9)
}

func TestParseExpositionKeepsOnlyNeededMetrics(t *testing.T) {
	page := tidbPage(12.5, 300, 8, 600) +
		// Broken lines of metrics the reader does not need must not matter.
		"tidb_other_metric{ broken\n" +
		"process_cpu_seconds_total_extra 99\n" +
		strings.Repeat("tidb_server_handle_query_duration_seconds_bucket{le=\"0.1\"} 1\n", 1000)
	s, err := parseExposition(strings.NewReader(page))
	require.NoError(t, err)
	require.Equal(t, scraped{
		cpuSeconds: 12.5, hasCPUSeconds: true,
		rss: 300, hasRSS: true,
		maxProcs: 8, hasMaxProcs: true,
		quota: 600, hasMemoryQuota: true,
	}, s)

	_, err = parseExposition(strings.NewReader("tidb_server_maxprocs{x=\"1\" 4\n"))
	require.Error(t, err)
}

func TestWanted(t *testing.T) {
	for line, want := range map[string]bool{
		"process_cpu_seconds_total 1":                      true,
		"process_cpu_seconds_total{a=\"b\"} 1":             true,
		"process_cpu_seconds_total":                        true,
		"# TYPE process_cpu_seconds_total counter":         true,
		"# HELP tidb_server_memory_quota_bytes memory":     true,
		"#  TYPE  tidb_server_maxprocs gauge":              true,
		"process_cpu_seconds_total_x 1":                    false,
		"# some comment process_cpu_seconds_total":         false,
		"go_goroutines 3":                                  false,
		"":                                                 false,
		"# TYPE process_resident_memory_bytes_total gauge": false,
		"process_resident_memory_bytes\t7":                 true,
	} {
		require.Equal(t, want, wanted([]byte(line)), line)
	}
}

// The scrapes keep their connections, one per backend, from round to round;
// a backend gone, or without a status port now, has its connection closed,
// and so do they all once Prometheus answers, and on Close.
func TestScrapeKeepsConnections(t *testing.T) {
	a := newStatusServer(t, tidbPage(100, gib, 4, 4*gib))
	b := newStatusServer(t, tidbPage(100, gib, 4, 4*gib))
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	ta := Target{Addr: "127.0.0.1:4001", StatusPort: a.port}
	tb := Target{Addr: "127.0.0.1:4002", StatusPort: b.port}
	r.SetTargets([]Target{ta, tb})
	for range 3 {
		r.fetch(context.Background())
		require.Len(t, r.Results(), 2)
	}
	require.EqualValues(t, 1, a.cc.New.Load(), "one connection for three scrapes")
	require.EqualValues(t, 1, b.cc.New.Load())
	require.EqualValues(t, 2, r.scraper.Dials())

	r.SetTargets([]Target{ta, {Addr: tb.Addr}})
	r.fetch(context.Background())
	require.Eventually(t, func() bool { return b.cc.Closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the connection of a target without a status port now is closed")
	r.SetTargets([]Target{tb})
	r.fetch(context.Background())
	require.Eventually(t, func() bool { return a.cc.Closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the connection of a target gone is closed")

	r.SetTargets([]Target{ta})
	r.fetch(context.Background())
	require.EqualValues(t, 2, a.cc.New.Load())
	r.Close()
	require.Eventually(t, func() bool { return a.cc.Closed.Load() == 2 }, 5*time.Second, 5*time.Millisecond,
		"Close closes the kept connections")
}

// readSimple feeds page's wanted lines to simpleLines, as parseExposition
// does, and returns them too.
func readSimple(page string) (l simpleLines, kept bytes.Buffer) {
	for line := range strings.Lines(page) {
		if line := []byte(strings.TrimSuffix(line, "\n")); wanted(line) {
			l.read(line)
			kept.Write(line)
			kept.WriteByte('\n')
		}
	}
	return l, kept
}

// A TiDB page's lines are read without the text format's parser, and as
// it reads them; lines in other forms go to the parser.
func TestSimpleLines(t *testing.T) {
	read := func(page string) (simpleLines, scraped) {
		l, _ := readSimple(page)
		return l, l.scraped()
	}
	l, s := read(tidbPage(12.5, 300, 8, 600))
	require.False(t, l.other, "a TiDB page's lines are simple")
	require.Equal(t, scraped{
		cpuSeconds: 12.5, hasCPUSeconds: true, rss: 300, hasRSS: true,
		maxProcs: 8, hasMaxProcs: true, quota: 600, hasMemoryQuota: true,
	}, s)
	l, s = read(tidbPage(1e+06, 3.2e+09, 4, -1))
	require.False(t, l.other)
	require.Equal(t, 1e6, s.cpuSeconds)
	require.False(t, s.hasMemoryQuota)

	for _, page := range []string{
		"process_cpu_seconds_total{a=\"b\"} 1\n",
		"process_cpu_seconds_total 1 1700000000000\n",
		"process_cpu_seconds_total  1\n",
		"process_cpu_seconds_total\t1\n",
		"process_cpu_seconds_total 0x1p-2\n",
		"process_cpu_seconds_total 1_000\n",
		"process_cpu_seconds_total one\n",
		"# TYPE process_cpu_seconds_total counter\n# TYPE process_cpu_seconds_total counter\n",
		"process_cpu_seconds_total 1\n# TYPE process_cpu_seconds_total counter\n",
		"# TYPE process_cpu_seconds_total histogram\n",
		"# TYPE process_cpu_seconds_total COUNTER\n",
		"# HELP process_cpu_seconds_total a\n# HELP process_cpu_seconds_total b\n",
		"# HELP process_cpu_seconds_total a \\\\ b\n",
		"#  TYPE process_cpu_seconds_total counter\n",
	} {
		l, _ := read(page)
		require.True(t, l.other, "%q goes to the parser", page)
	}
}

// Whatever simpleLines reads, the text format's parser reads the same, from
// the same lines.
func FuzzParseExposition(f *testing.F) {
	f.Add(tidbPage(12.5, 300, 8, 600))
	f.Add(tidbPage(0, 0, 0, -1))
	f.Add("process_cpu_seconds_total NaN\nprocess_resident_memory_bytes +Inf\ntidb_server_maxprocs -inf\n")
	f.Add("process_cpu_seconds_total 1\nprocess_cpu_seconds_total 2\n# HELP process_cpu_seconds_total x\n")
	f.Add("# TYPE tidb_server_maxprocs untyped\n# HELP tidb_server_maxprocs \"q\"\ntidb_server_maxprocs 1e3\n")
	f.Add("process_cpu_seconds_total 1 2\n")
	for _, typ := range []string{"counter", "gauge", "untyped", "histogram", "summary", "gaugehistogram", "info"} {
		f.Add("# TYPE process_resident_memory_bytes " + typ + "\nprocess_resident_memory_bytes 7\n")
	}
	f.Add("# TYPE process_cpu_seconds_total gauge\nprocess_cpu_seconds_total .5\n")
	f.Fuzz(func(t *testing.T, page string) {
		l, kept := readSimple(page)
		if l.other {
			return
		}
		want, err := parseText(&kept)
		require.NoError(t, err, "simpleLines read lines the parser refuses:\n%s", kept.String())
		got := l.scraped()
		same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
		require.True(t, same(want.cpuSeconds, got.cpuSeconds) && same(want.rss, got.rss) &&
			same(want.maxProcs, got.maxProcs) && same(want.quota, got.quota),
			"parser %+v, simpleLines %+v, from:\n%s", want, got, kept.String())
		want.cpuSeconds, want.rss, want.maxProcs, want.quota = 0, 0, 0, 0
		got.cpuSeconds, got.rss, got.maxProcs, got.quota = 0, 0, 0, 0
		require.Equal(t, want, got, "from:\n%s", kept.String())
	})
}
