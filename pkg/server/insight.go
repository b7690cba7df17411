package server

import (
	"cmp"
	"fmt"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/metrics"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/proxy/backend"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/pkg/sqlstats"
)

// insight is what the proxy learns from the statements it forwards: the
// latency metrics, the digest tables and (when configured) the query log.
// Sessions reach it through one commandObserver each.
type insight struct {
	metrics   *metrics.Metrics
	digests   *sqlstats.Store
	digestsOn atomic.Bool
}

func newInsight(m *metrics.Metrics, cfg *config.Config) *insight {
	in := &insight{metrics: m, digests: sqlstats.New(digestOptions(cfg.Digests))}
	in.digestsOn.Store(cfg.Digests.Enabled)
	m.Registry().MustRegister(sqlstats.NewCollector(in.digests))
	return in
}

func digestOptions(d config.Digests) sqlstats.Options {
	return sqlstats.Options{MaxDigests: d.MaxPerCluster, SampleLength: d.SampleLength}
}

// apply takes a reloaded config's [digests].
func (in *insight) apply(cfg *config.Config) {
	in.digests.SetOptions(digestOptions(cfg.Digests))
	in.digestsOn.Store(cfg.Digests.Enabled)
}

// observer is backend.Config.CommandMetrics: one observer per routed session.
func (in *insight) observer(cluster string) backend.CommandObserver {
	cm := in.metrics.ForCluster(cluster)
	cm.SessionStarted()
	return &commandObserver{in: in, metrics: cm, digests: in.digests.Cluster(cluster)}
}

// commandObserver records one session's commands. Only its session's
// goroutine calls it, so exec is reused without a lock.
type commandObserver struct {
	in      *insight
	metrics *metrics.ClusterMetrics
	digests *sqlstats.Cluster
	exec    sqlstats.Exec
}

var _ backend.CommandObserver = (*commandObserver)(nil)

// Observe implements backend.CommandObserver.
func (o *commandObserver) Observe(c *backend.Command) {
	o.metrics.Observe(c.Cmd, c.Duration)
	if (c.Cmd != mysql.ComQuery && c.Cmd != mysql.ComStmtExecute) || len(c.Text) == 0 {
		return
	}
	if !o.in.digestsOn.Load() {
		return
	}
	e := &o.exec
	*e = sqlstats.Exec{
		User: c.User, Schema: c.DB, Text: c.Text, Latency: c.Duration, At: c.Start.Add(c.Duration),
		RowsSent: c.RowsSent, RowsAffected: c.RowsAffected, ErrCode: c.ErrCode,
	}
	o.digests.Record(e)
	e.Text = nil
}

// SessionEnded implements backend.CommandObserver.
func (o *commandObserver) SessionEnded() { o.metrics.SessionEnded() }

// Digests implements api.Digests.
func (in *insight) Digests(q api.DigestQuery) (api.DigestList, error) {
	snap, err := in.digests.Snapshot(sqlstats.Query{Cluster: q.Cluster, Sort: q.Sort, Limit: q.Limit})
	if err != nil {
		return api.DigestList{}, fmt.Errorf("%w: %w", api.ErrBadDigestQuery, err)
	}
	out := api.DigestList{
		Enabled: in.digestsOn.Load(), Sort: cmp.Or(q.Sort, sqlstats.SortTotal), Total: snap.Digests,
		Digests: make([]api.Digest, 0, len(snap.Rows)), Others: make([]api.Digest, 0, len(snap.Others)),
	}
	for i := range snap.Rows {
		out.Digests = append(out.Digests, apiDigest(&snap.Rows[i]))
	}
	for i := range snap.Others {
		out.Others = append(out.Others, apiDigest(&snap.Others[i]))
	}
	return out, nil
}

// ResetDigests implements api.Digests.
func (in *insight) ResetDigests(cluster string) { in.digests.Reset(cluster) }

func apiDigest(r *sqlstats.Row) api.Digest {
	return api.Digest{
		Cluster: r.Cluster, User: r.User, Schema: r.Schema, Digest: r.Digest, DigestText: r.DigestText,
		SampleText: r.SampleText, Count: r.Count, Errors: r.Errors, LastErrorCode: r.LastErrorCode,
		RowsSent: r.RowsSent, RowsAffected: r.RowsAffected,
		TotalMs: r.TotalMs, AvgMs: r.AvgMs, MinMs: r.MinMs, MaxMs: r.MaxMs, P50Ms: r.P50Ms, P95Ms: r.P95Ms, P99Ms: r.P99Ms,
		FirstSeen: r.FirstSeen, LastSeen: r.LastSeen,
	}
}
