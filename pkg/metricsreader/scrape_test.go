package metricsreader

import (
	"context"
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
