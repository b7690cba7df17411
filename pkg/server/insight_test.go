package server

import (
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"go.uber.org/zap"
)

// BenchmarkObserve is the per-command cost of the session's observer for a
// prepared point select (sysbench point_select): the latency histogram
// alone (digests off) and with the digest tables (on).
func BenchmarkObserve(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "digests=off"
		if on {
			name = "digests=on"
		}
		b.Run(name, func(b *testing.B) {
			cfg := config.NewDefault()
			cfg.Digests.Enabled = on
			in := newInsight(zap.NewNop(), metrics.New(nil, "", ""), cfg)
			defer in.close()
			obs := in.observer("bench")
			c := &backend.Command{Cmd: mysql.ComStmtExecute, Start: time.Now(), Duration: 180 * time.Microsecond,
				Text: []byte("SELECT c FROM sbtest1 WHERE id=?"), RowsSent: 1, User: "sbtest", DB: "sbtest", Backend: "127.0.0.1:3306"}
			b.ReportAllocs()
			for b.Loop() {
				obs.Observe(c)
			}
		})
	}
}
