package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"go.uber.org/zap"
)

// BenchmarkObserve is the per-command cost of the session's observer for a
// prepared point select (sysbench point_select): the latency histogram
// alone (digests off) and with the digest tables (on).
// With capture=on a traffic capture of the cluster runs too (each command
// then builds a record and queues it).
func BenchmarkObserve(b *testing.B) {
	for _, tc := range []struct {
		name             string
		digests, capture bool
	}{{"digests=off", false, false}, {"digests=on", true, false}, {"digests=on,capture=on", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := config.NewDefault()
			cfg.Digests.Enabled = tc.digests
			cfg.Traffic.CaptureDir = b.TempDir()
			in := newInsight(zap.NewNop(), metrics.New(nil, "", ""), cfg)
			defer in.close()
			if tc.capture {
				if _, err := in.StartCapture(traffic.Options{Cluster: "bench", Duration: time.Hour, Buffer: 1 << 20}); err != nil {
					b.Fatal(err)
				}
			}
			obs := in.observer("bench")
			c := &backend.Command{Cmd: mysql.ComStmtExecute, Start: time.Now(), Duration: 180 * time.Microsecond,
				Text: []byte("SELECT c FROM sbtest1 WHERE id=?"), RowsSent: 1, User: "sbtest", DB: "sbtest", Backend: "127.0.0.1:3306",
				Packet: []byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 42, 0, 0, 0}}
			b.ReportAllocs()
			for b.Loop() {
				obs.Observe(c)
			}
		})
	}
}

// TestQueryLogReload: filter changes apply in place, a new file opens a new
// log (the old one keeps what it had), and mode "off" stops logging.
func TestQueryLogReload(t *testing.T) {
	dir := t.TempDir()
	cfg := config.NewDefault()
	cfg.QueryLog.Mode, cfg.QueryLog.File = config.QueryLogAll, filepath.Join(dir, "a.log")
	in := newInsight(zap.NewNop(), metrics.New(nil, "", ""), cfg)
	defer in.close()
	obs := in.observer("east")
	run := func(text string, code uint16) {
		obs.Observe(&backend.Command{Cmd: mysql.ComQuery, Start: time.Now(), Duration: time.Millisecond,
			Text: []byte(text), ErrCode: code, User: "app", DB: "shop"})
	}
	lines := func(name string) []string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			return nil
		}
		require.NoError(t, err)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	run("SELECT 1", 0)
	first := in.qlog.Load()

	next := *cfg
	next.QueryLog.Mode = config.QueryLogFailed
	in.apply(&next)
	require.Same(t, first, in.qlog.Load(), "a filter change keeps the open log")
	run("SELECT 2", 0)
	run("SELECT 3", 1146)

	next.QueryLog.File = filepath.Join(dir, "b.log")
	in.apply(&next)
	require.NotSame(t, first, in.qlog.Load())
	run("SELECT 4", 1064)
	run("SELECT 5", 0)

	next.QueryLog.Mode = config.QueryLogOff
	in.apply(&next)
	require.Nil(t, in.qlog.Load())
	run("SELECT 6", 1064)
	in.close()

	a, b := lines("a.log"), lines("b.log")
	require.Len(t, a, 2, "%q", a)
	require.Contains(t, a[0], `"text":"SELECT 1"`)
	require.Contains(t, a[1], `"text":"SELECT 3"`)
	require.Len(t, b, 1, "%q", b)
	require.Contains(t, b[0], `"text":"SELECT 4"`)
	require.Contains(t, b[0], `"error_code":1064`)
	require.Equal(t, uint64(3), in.qcounts.Written.Load())
}
