package server

import (
	"testing"
	"time"

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
