package soak

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func testPolicy() Policy {
	return Policy{FaultedCluster: "disc", RestartedProxy: "p2", Before: 2 * time.Second, After: 10 * time.Second, MaxStall: 20 * time.Second}
}

var testFaults = []Fault{
	{Kind: FaultBackendKill, Target: "127.0.0.1:1", Cluster: "disc", Start: at(30), End: at(40)},
	{Kind: FaultProxyRestart, Target: "p2", Start: at(100), End: at(110)},
	{Kind: FaultBackendKill, Target: "127.0.0.1:2", Cluster: "disc", Start: at(95), End: at(105)},
}

func TestJudge(t *testing.T) {
	p := testPolicy()
	cases := []struct {
		name      string
		s         Stream
		untouched bool
		violation string // "" for none
		disc      int
	}{
		{"untouched clean", Stream{Cluster: "static", Proxy: "p1", Ops: 10, ErrorTotal: -1}, true, "", 0},
		{"untouched stream with an error inside a window", Stream{Cluster: "static", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(31), Kind: ErrServer, Code: 1158}}}, true, "no fault touched", 0},
		{"faulted cluster, clean error in the kill window", Stream{Cluster: "disc", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(45), Kind: ErrServer, Code: 1158}}}, false, "", 0},
		{"faulted cluster, error after the window", Stream{Cluster: "disc", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(51), Kind: ErrServer, Code: 1158}}}, false, "outside every fault window", 0},
		{"faulted cluster, client-range code in the window", Stream{Cluster: "disc", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(31), Kind: ErrClientCode, Code: 2013}}}, false, "not a clean MySQL error", 0},
		{"faulted cluster, a hang in the window", Stream{Cluster: "disc", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(31), Kind: ErrTimeout}}}, false, "not a clean MySQL error", 0},
		{"static cluster through p1 at p2's restart", Stream{Cluster: "static", Proxy: "p1", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(101), Kind: ErrDisconnect}}}, true, "no fault touched", 0},
		{"p2's own restart: disconnects counted apart", Stream{Cluster: "static", Proxy: "p2", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(101), Kind: ErrDisconnect}, {At: at(105), Kind: ErrClientCode, Code: 2013}}}, false, "", 2},
		{"p2 disc stream: a disconnect while p2 restarts inside a backend-kill window", Stream{Cluster: "disc", Proxy: "p2", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(101), Kind: ErrDisconnect}}}, false, "", 1},
		{"p2 disc stream: a disconnect in a backend-kill window alone", Stream{Cluster: "disc", Proxy: "p2", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(31), Kind: ErrDisconnect}}}, false, "not a clean MySQL error", 0},
		{"p2 static stream in the backend-kill window", Stream{Cluster: "static", Proxy: "p2", Ops: 10, ErrorTotal: -1,
			Errors: []ClientError{{At: at(31), Kind: ErrServer, Code: 1158}}}, false, "outside every fault window", 0},
		{"sysbench counts more errors than it logged", Stream{Cluster: "disc", Proxy: "p1", Ops: 10, ErrorTotal: 3,
			Errors: []ClientError{{At: at(31), Kind: ErrServer, Code: 1158}}}, false, "logged 1", 0},
		{"no transaction", Stream{Cluster: "static", Proxy: "p1", ErrorTotal: -1}, true, "no transaction completed", 0},
		{"a stall is a hang", Stream{Cluster: "static", Proxy: "p1", Ops: 10, ErrorTotal: -1, MaxStall: 25 * time.Second}, true, "client hang", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := p.Judge([]Stream{c.s}, testFaults)[0]
			require.Equal(t, c.untouched, v.Untouched)
			require.Equal(t, c.disc, v.Disconnects)
			if c.violation == "" {
				require.Empty(t, v.Violations)
				return
			}
			require.Len(t, v.Violations, 1)
			require.Contains(t, v.Violations[0], c.violation)
		})
	}
}

func TestExceeds(t *testing.T) {
	base := Resources{Goroutines: 1000, FDs: 2000, RSSKiB: 100000}
	require.Empty(t, Exceeds(base, Resources{Goroutines: 1100, FDs: 1500, RSSKiB: 109999}, 0.10))
	over := Exceeds(base, Resources{Goroutines: 1101, FDs: 2201, RSSKiB: 110001}, 0.10)
	require.Len(t, over, 3)
	require.Contains(t, over[0], "goroutines 1101")
}

func TestCheckLedger(t *testing.T) {
	outcomes := map[int]Outcome{1: Acked, 2: Acked, 3: Unknown, 4: Failed, 5: Acked, 6: Failed}
	// 2 lost, 3 present (either is fine), 4 present although it failed, 5 on two backends.
	found := map[int]int{1: 1, 3: 1, 4: 1, 5: 2}
	v := CheckLedger("c", outcomes, found, 5)
	require.Equal(t, 3, v.Acked)
	require.Equal(t, 1, v.Unknown)
	require.Equal(t, 2, v.Failed)
	require.Equal(t, []int{2}, v.Missing)
	require.Equal(t, []int{4}, v.Phantom)
	require.Equal(t, []int{5}, v.Duplicates)
	require.Equal(t, int64(0), v.CounterDiff)
	require.Len(t, v.Violations(), 3)

	ok := CheckLedger("c", map[int]Outcome{1: Acked, 2: Unknown, 3: Failed}, map[int]int{1: 1}, 2)
	require.Equal(t, []string{"c: counter sum 2 differs from ledger rows 1"}, ok.Violations())
	require.Empty(t, CheckLedger("c", map[int]Outcome{1: Acked, 2: Unknown}, map[int]int{1: 1, 2: 1}, 2).Violations())
}

func TestParseSysbench(t *testing.T) {
	out := `sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)
Threads started!

[ 1s ] thds: 4 tps: 19.98 qps: 399.58 (r/w/o: 279.71/79.92/39.96) lat (ms,95%): 12.08 err/s: 0.00 reconn/s: 0.00
SOAK-ERROR 1796374802 1158 08S01
SOAK-ERROR 1796374802 2013 HY000
[ 2s ] thds: 4 tps: 0.00 qps: 0.00 (r/w/o: 0.00/0.00/0.00) lat (ms,95%): 0.00 err/s: 2.00 reconn/s: 1.00
[ 3s ] thds: 4 tps: 0.00 qps: 0.00 (r/w/o: 0.00/0.00/0.00) lat (ms,95%): 0.00 err/s: 0.00 reconn/s: 0.00
[ 4s ] thds: 4 tps: 20.00 qps: 400.00 (r/w/o: 280.00/80.00/40.00) lat (ms,95%): 11.00 err/s: 0.00 reconn/s: 0.00
SQL statistics:
    transactions:                        1234   (20.56 per sec.)
    queries:                             24680  (411.27 per sec.)
    ignored errors:                      2      (0.03 per sec.)
    reconnects:                          1      (0.02 per sec.)
`
	run, err := ParseSysbench(strings.NewReader(out), t0)
	require.NoError(t, err)
	require.Len(t, run.Seconds, 4)
	require.Equal(t, at(2), run.Seconds[1].At)
	require.Equal(t, 2.0, run.Seconds[1].ErrPS)
	require.Equal(t, 2*time.Second, run.MaxStall())
	require.Equal(t, int64(1234), run.Transactions)
	require.Equal(t, int64(2), run.Ignored)
	require.Equal(t, int64(1), run.Reconnects)
	require.Equal(t, []ClientError{
		{At: time.Unix(1796374802, 0), Kind: ErrServer, Code: 1158, Msg: "sqlstate 08S01"},
		{At: time.Unix(1796374802, 0), Kind: ErrClientCode, Code: 2013, Msg: "sqlstate HY000"},
	}, run.Errors)

	_, err = ParseSysbench(strings.NewReader("SOAK-ERROR x 1158\n"), t0)
	require.Error(t, err)
}

func TestReportText(t *testing.T) {
	r := &Report{Started: t0, Ended: at(600), Policy: testPolicy(), Faults: testFaults,
		Streams: testPolicy().Judge([]Stream{{Name: "counter/static/p1", Cluster: "static", Proxy: "p1", Ops: 5, ErrorTotal: -1,
			Errors: []ClientError{{At: at(5), Kind: ErrServer, Code: 1105}}}}, testFaults)}
	r.Finish()
	require.False(t, r.Pass)
	require.Len(t, r.Violations, 1)
	txt := r.Text()
	require.Contains(t, txt, "Switchyard soak: FAIL")
	require.Contains(t, txt, "server 1105 x1")

	dir := t.TempDir()
	require.NoError(t, r.Write(dir))
}
