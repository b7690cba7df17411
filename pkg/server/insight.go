package server

import (
	"cmp"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	libapi "github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/querylog"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/pkg/sqlstats"
	"github.com/switchyard-db/switchyard/pkg/traffic"
	"go.uber.org/zap"
)

// insight is what the proxy learns from the statements it forwards: the
// latency metrics, the digest tables and (when configured) the query log.
// Sessions reach it through one commandObserver each.
type insight struct {
	lg        *zap.Logger
	metrics   *metrics.Metrics
	digests   *sqlstats.Store
	digestsOn atomic.Bool

	// qlog is the running query log, nil when off. Only apply (the config
	// manager's single applier) and close replace it.
	qlog     atomic.Pointer[querylog.Logger]
	qlogFile querylog.FileOptions
	qlogBuf  int
	qcounts  querylog.Counters
	// capture is the running or last traffic capture; capturePackets is
	// backend.Config.CapturePackets, on while one runs; captureDir is
	// [traffic] capture-dir. captureMu serialises starting captures.
	capture        atomic.Pointer[traffic.Capture]
	capturePackets atomic.Bool
	captureDir     atomic.Pointer[string]
	captureMu      sync.Mutex

	// closers waits for query logs replaced by a reload while they write
	// out their queue, and for the watchers of captures.
	closers sync.WaitGroup
}

// queryLogCloseTimeout bounds how long a replaced or final query log may
// take to write its queue; a writer stuck on a stalled disk is abandoned.
const queryLogCloseTimeout = 2 * time.Second

func newInsight(lg *zap.Logger, m *metrics.Metrics, cfg *config.Config) *insight {
	in := &insight{lg: lg.Named("insight"), metrics: m, digests: sqlstats.New(digestOptions(cfg.Digests))}
	in.digestsOn.Store(cfg.Digests.Enabled)
	m.Registry().MustRegister(sqlstats.NewCollector(in.digests), querylog.NewCollector(&in.qcounts))
	in.applyQueryLog(cfg.QueryLog)
	in.captureDir.Store(&cfg.Traffic.CaptureDir)
	return in
}

// applyQueryLog starts, changes or stops the query log. Filter settings
// apply in place; file settings open a new log, and the old one writes out
// its queue in the background.
func (in *insight) applyQueryLog(q config.QueryLog) {
	old := in.qlog.Load()
	if !q.Enabled() {
		if old != nil {
			in.qlog.Store(nil)
			in.retire(old)
			in.lg.Info("query log stopped")
		}
		return
	}
	filter := querylog.Filter{Mode: q.Mode, SlowThreshold: q.SlowThreshold.Duration, MaxTextLength: q.MaxTextLength}
	file := querylog.FileOptions{Path: q.File, MaxSizeMB: q.MaxSize, MaxBackups: q.MaxBackups, MaxAgeDays: q.MaxAge, Compress: q.Compress}
	if old != nil && file == in.qlogFile && q.Buffer == in.qlogBuf {
		old.SetFilter(filter)
		return
	}
	in.qlogFile, in.qlogBuf = file, q.Buffer
	in.qlog.Store(querylog.New(in.lg.Named("querylog"), querylog.NewFileSink(file), filter, q.Buffer, &in.qcounts))
	in.lg.Info("query log started", zap.String("file", q.File), zap.String("mode", q.Mode))
	if old != nil {
		in.retire(old)
	}
}

func (in *insight) retire(l *querylog.Logger) {
	in.closers.Add(1)
	go func() {
		defer in.closers.Done()
		_ = l.Close(queryLogCloseTimeout)
	}()
}

// close stops the query log once no session writes to it any more.
func (in *insight) close() {
	in.stopCapture()
	if l := in.qlog.Swap(nil); l != nil {
		_ = l.Close(queryLogCloseTimeout)
	}
	in.closers.Wait()
}

func digestOptions(d config.Digests) sqlstats.Options {
	return sqlstats.Options{MaxDigests: d.MaxPerCluster, SampleLength: d.SampleLength}
}

// apply takes a reloaded config's [digests].
func (in *insight) apply(cfg *config.Config) {
	in.digests.SetOptions(digestOptions(cfg.Digests))
	in.digestsOn.Store(cfg.Digests.Enabled)
	in.applyQueryLog(cfg.QueryLog)
	in.captureDir.Store(&cfg.Traffic.CaptureDir)
}

// observer is backend.Config.CommandMetrics: one observer per routed session.
func (in *insight) observer(cluster string) backend.CommandObserver {
	cm := in.metrics.ForCluster(cluster)
	cm.SessionStarted()
	return &commandObserver{in: in, cluster: cluster, metrics: cm, digests: in.digests.Cluster(cluster)}
}

// commandObserver records one session's commands, on its session's
// goroutine.
type commandObserver struct {
	in      *insight
	cluster string
	metrics *metrics.ClusterMetrics
	digests *sqlstats.Cluster
}

var _ backend.CommandObserver = (*commandObserver)(nil)

// Observe implements backend.CommandObserver.
func (o *commandObserver) Observe(c *backend.Command) {
	o.metrics.Observe(c.Cmd, c.Duration)
	var st *sqlstats.Statement
	defer func() {
		// After the digest: a capture reuses its normalised statement.
		if cp := o.in.capture.Load(); cp != nil && cp.Cluster() == o.cluster && o.in.capturePackets.Load() {
			o.captureRecord(cp, c, st)
		}
	}()
	if (c.Cmd != mysql.ComQuery && c.Cmd != mysql.ComStmtExecute) || len(c.Text) == 0 {
		return
	}
	if o.in.digestsOn.Load() {
		// On the stack (Record keeps none of it), not in the observer: an
		// idle session's observer stays small.
		e := sqlstats.Exec{
			User: c.User, Schema: c.DB, Text: c.Text, Latency: c.Duration, At: c.Start.Add(c.Duration),
			RowsSent: c.RowsSent, RowsAffected: c.RowsAffected, ErrCode: c.ErrCode,
		}
		st = o.digests.Record(&e)
	}
	if ql := o.in.qlog.Load(); ql != nil {
		if f := ql.Filter(); f.Wants(c.Duration, c.ErrCode) {
			if st == nil {
				st = o.in.digests.Statement(c.Text)
			}
			ql.Log(o.logEntry(c, st, f.MaxTextLength))
		}
	}
}

// logEntry builds the query log's line for c. Statements that may carry a
// credential are logged as their normalised text.
func (o *commandObserver) logEntry(c *backend.Command, st *sqlstats.Statement, maxText int) *querylog.Entry {
	e := &querylog.Entry{
		Time: c.Start.Add(c.Duration).UTC(), ConnID: c.ConnID, Cluster: o.cluster, Backend: c.Backend,
		User: c.User, Schema: c.DB, Digest: st.DigestHex, LatencyMs: float64(c.Duration) / float64(time.Millisecond),
		Rows: c.RowsSent, RowsAffected: c.RowsAffected, ErrorCode: c.ErrCode,
	}
	if st.Sensitive {
		e.Text, e.Truncated = querylog.CutText([]byte(st.Normalized), maxText)
	} else {
		e.Text, e.Truncated = querylog.CutText(c.Text, maxText)
	}
	return e
}

// SessionEnded implements backend.CommandObserver.
func (o *commandObserver) SessionEnded() { o.metrics.SessionEnded() }

// Digests implements api.Digests.
func (in *insight) Digests(q api.DigestQuery) (libapi.DigestList, error) {
	snap, err := in.digests.Snapshot(sqlstats.Query{Cluster: q.Cluster, Sort: q.Sort, Limit: q.Limit})
	if err != nil {
		return libapi.DigestList{}, fmt.Errorf("%w: %w", api.ErrBadDigestQuery, err)
	}
	out := libapi.DigestList{
		Enabled: in.digestsOn.Load(), Sort: cmp.Or(q.Sort, sqlstats.SortTotal), Total: snap.Digests,
		Digests: make([]libapi.Digest, 0, len(snap.Rows)), Others: make([]libapi.Digest, 0, len(snap.Others)),
	}
	for i := range snap.Rows {
		out.Digests = append(out.Digests, snap.Rows[i].Digest)
	}
	for i := range snap.Others {
		out.Others = append(out.Others, snap.Others[i].Digest)
	}
	return out, nil
}

// ResetDigests implements api.Digests.
func (in *insight) ResetDigests(cluster string) { in.digests.Reset(cluster) }
