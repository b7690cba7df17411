package metricsreader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

// errNoPrometheus is the reason for scraping when no Prometheus URL is known.
var errNoPrometheus = errors.New("no prometheus URL configured or discovered")

// fetch runs one round: Prometheus when it is known and answers, status-port
// scrapes otherwise. It runs on the Reader's goroutine only.
func (r *Reader) fetch(ctx context.Context) {
	targets := r.snapshotTargets()
	if len(targets) == 0 {
		clear(r.prev)
		r.publish(map[string]observer.Metrics{})
		return
	}
	url, err := r.prometheusURL(ctx)
	if err == nil {
		var res map[string]observer.Metrics
		if res, err = r.queryPrometheus(ctx, url, targets); err == nil {
			// A scrape sample from before this Prometheus stretch would turn
			// the next fallback's first CPU figure into a long-term average.
			clear(r.prev)
			r.closeConns() // nothing to scrape while Prometheus answers
			r.setSource(SourcePrometheus, url, nil)
			r.publish(res)
			return
		}
	}
	if ctx.Err() != nil {
		return // closing: a cancelled query is no reason to switch sources
	}
	res := r.scrapeAll(ctx, targets)
	if ctx.Err() != nil {
		return
	}
	r.setSource(SourceScrape, url, err)
	r.publish(res)
}

// prometheusURL returns the configured URL, or asks Discover.
func (r *Reader) prometheusURL(ctx context.Context) (string, error) {
	if r.cfg.PrometheusURL != "" {
		return r.cfg.PrometheusURL, nil
	}
	if r.cfg.Discover == nil {
		return "", errNoPrometheus
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	url, err := r.cfg.Discover(dctx)
	if err != nil {
		return "", fmt.Errorf("discover prometheus: %w", err)
	}
	if url == "" {
		return "", errNoPrometheus
	}
	return url, nil
}

// setSource records where results came from and logs only when that changes,
// so a Prometheus that stays down costs one line, not one per interval.
func (r *Reader) setSource(src, url string, reason error) {
	old := r.Source()
	if old == src {
		return
	}
	r.source.Store(&src)
	fields := []zap.Field{zap.String("from", old), zap.String("to", src)}
	if url != "" {
		fields = append(fields, zap.String("prometheus", url))
	}
	if reason != nil {
		fields = append(fields, zap.NamedError("reason", reason))
	}
	r.lg.Info("metrics source changed", fields...)
}

// publish swaps in res, keeping only backends that are still targets: a
// round that raced with SetTargets must not bring a removed backend back.
func (r *Reader) publish(res map[string]observer.Metrics) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.publishLocked(res)
}

func (r *Reader) publishLocked(res map[string]observer.Metrics) {
	next := make(map[string]observer.Metrics, len(res))
	for _, t := range r.targets {
		if m, ok := res[t.Addr]; ok {
			next[t.Addr] = m
		}
	}
	old := *r.results.Load()
	r.results.Store(&next)
	if sameValues(old, next) {
		return
	}
	r.updates.Notify()
}

// sameValues compares readings but not their timestamps: a round that
// reads the same figures again is not worth waking subscribers for.
func sameValues(a, b map[string]observer.Metrics) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok {
			return false
		}
		x.UpdatedAt, y.UpdatedAt = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}
