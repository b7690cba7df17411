package backendcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/pkg/health"
	"github.com/switchyard-db/switchyard/pkg/metricsreader"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	// ErrClosed is returned by a runtime that has been closed, typically
	// because a reload replaced or removed its cluster.
	ErrClosed = errors.New("cluster runtime closed")
	// ErrNoEtcd is returned for etcd operations on a static cluster.
	ErrNoEtcd = errors.New("cluster has no etcd")
)

// Bounds for how often a healthy watch checks etcd, and how long a read may
// take, whatever the health-check settings.
const (
	minEtcdProbe = 100 * time.Millisecond
	minEtcdGet   = time.Second
)

// prometheusKey is where TiUP records the cluster's Prometheus.
const prometheusKey = "/topology/prometheus"

// Sink receives the views a runtime publishes (observer.Aggregator).
type Sink interface {
	Publish(v *observer.ClusterView)
	Remove(name string, generation uint64)
}

// spec is everything a runtime is built from; two equal specs make equal
// runtimes, so a reload keeps the running one.
type spec struct {
	Cluster         config.Cluster
	Health          health.HealthConfig
	MetricsInterval time.Duration
}

// Cluster is the runtime of one backend cluster.
type Cluster struct {
	lg   *zap.Logger
	spec spec
	gen  uint64
	sink Sink

	cli     *clientv3.Client // nil for static clusters
	watcher *topology.Watcher
	prober  *health.Prober
	reader  *metricsreader.Reader

	// mu guards closed against in-flight WithEtcd calls: Close cancels ctx,
	// then takes mu, so calls finish (cancelled) before the client closes.
	mu        sync.RWMutex
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once

	view    atomic.Pointer[observer.ClusterView]
	targets []health.Target // owned by the run goroutine
}

// newCluster builds a runtime without network I/O: the etcd client connects
// in the background. It fails only on local problems (unreadable TLS files).
func newCluster(lg *zap.Logger, s spec, gen uint64, sink Sink) (*Cluster, error) {
	// The prober and the reader name the cluster in their own logs.
	base := lg.With(zap.Uint64("generation", gen))
	lg = base.With(zap.String("cluster", s.Cluster.Name))
	c := &Cluster{lg: lg, spec: s, gen: gen, sink: sink, done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if s.Cluster.UsesEtcd() {
		cli, err := etcdclient.FromConfig(lg, s.Cluster.EtcdEndpoints, s.Cluster.EtcdTLS)
		if err != nil {
			c.cancel()
			return nil, fmt.Errorf("cluster %q: %w", s.Cluster.Name, err)
		}
		c.cli = cli
		c.watcher = topology.NewWatcher(lg, cli, s.Cluster.TopologyPrefix)
		// Notice an unreachable etcd at the pace backends are probed.
		c.watcher.SetTimings(max(2*s.Health.Interval, minEtcdProbe), max(2*s.Health.Timeout, minEtcdGet))
	}
	c.prober = health.NewProber(base, s.Cluster.Name, s.Health)
	mcfg := metricsreader.Config{
		PrometheusURL: s.Cluster.Prometheus,
		CPUQuery:      s.Cluster.CPUQuery,
		MemoryQuery:   s.Cluster.MemoryQuery,
		Interval:      s.MetricsInterval,
	}
	if c.cli != nil && s.Cluster.Prometheus == "" {
		c.watcher.Follow(prometheusKey)
		mcfg.Discover = c.discoverPrometheus
	}
	c.reader = metricsreader.NewReader(base, s.Cluster.Name, mcfg)
	c.view.Store(c.buildView())
	return c, nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.spec.Cluster.Name }

// Generation is unique per runtime; a rebuilt cluster has a higher one.
func (c *Cluster) Generation() uint64 { return c.gen }

// Config returns the cluster's config.
func (c *Cluster) Config() config.Cluster { return c.spec.Cluster }

// View returns the latest view the runtime published.
func (c *Cluster) View() *observer.ClusterView { return c.view.Load() }

// Health returns the prober's latest results, including probe times that the
// published view does not carry between verdict changes.
func (c *Cluster) Health() map[string]observer.Health { return c.prober.Results() }

// ProbeNow probes one backend afresh, outside the prober's schedule and
// without changing its verdicts (fleet votes).
func (c *Cluster) ProbeNow(ctx context.Context, addr string) (observer.Health, error) {
	if c.Closed() {
		return observer.Health{}, ErrClosed
	}
	return c.prober.ProbeNow(ctx, addr)
}

// EtcdErrors counts the failed etcd operations of the topology watcher
// (0 for static clusters).
func (c *Cluster) EtcdErrors() uint64 {
	if c.watcher == nil {
		return 0
	}
	return c.watcher.ErrorCount()
}

// Closed reports whether the runtime has been closed.
func (c *Cluster) Closed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// WithEtcd runs fn with the cluster's etcd client, unless the runtime is
// closed (ErrClosed) or static (ErrNoEtcd). ctx passed to fn ends when the
// caller's ctx does or when the runtime closes, whichever is first.
func (c *Cluster) WithEtcd(ctx context.Context, fn func(context.Context, *clientv3.Client) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	if c.cli == nil {
		return ErrNoEtcd
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	return fn(ctx, c.cli)
}

// start publishes the first view (so the cluster is in the topology, if only
// as "connecting", by the time Apply returns) and launches the goroutines.
func (c *Cluster) start() {
	c.startOnce.Do(func() {
		c.sink.Publish(c.view.Load())
		if c.watcher != nil {
			c.watcher.Start(c.ctx)
		}
		c.prober.Start(c.ctx)
		c.reader.Start(c.ctx)
		go func() {
			defer close(c.done)
			c.run()
		}()
	})
}

// Close stops the runtime, waits for its goroutines, closes its etcd client
// and removes its view (unless a newer generation has replaced it). It is
// idempotent and safe without start.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.startOnce.Do(func() { close(c.done) }) // never started
		<-c.done
		if c.watcher != nil {
			c.watcher.Close()
		}
		c.prober.Close()
		c.reader.Close()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.cli != nil {
			if err := c.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
				c.lg.Debug("closing etcd client", zap.Error(err))
			}
		}
		c.sink.Remove(c.Name(), c.gen)
	})
}

// run merges the watcher's, prober's and reader's results into views until
// the runtime closes.
func (c *Cluster) run() {
	var topoUpdates <-chan struct{}
	if c.watcher != nil {
		topoUpdates = c.watcher.Updates()
	}
	c.refresh()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-topoUpdates:
		case <-c.prober.Updates():
		case <-c.reader.Updates():
		}
		c.refresh()
	}
}

// refresh publishes a new view, first giving the prober and reader the
// current backend set.
func (c *Cluster) refresh() {
	targets := c.currentTargets()
	if !slices.Equal(targets, c.targets) {
		c.targets = targets
		c.prober.SetTargets(targets)
		mt := make([]metricsreader.Target, len(targets))
		for i, t := range targets {
			mt[i] = metricsreader.Target{Addr: t.Addr, StatusPort: t.StatusPort}
		}
		c.reader.SetTargets(mt)
	}
	v := c.buildView()
	c.view.Store(v)
	c.sink.Publish(v)
}

func (c *Cluster) currentTargets() []health.Target {
	var ts []health.Target
	if c.watcher == nil {
		for _, a := range c.spec.Cluster.Instances {
			ts = append(ts, health.Target{Addr: a})
		}
	} else if snap := c.watcher.Snapshot(); snap != nil {
		for _, b := range snap.Backends {
			ts = append(ts, health.Target{Addr: b.Addr, StatusPort: b.StatusPort})
		}
	}
	slices.SortFunc(ts, func(a, b health.Target) int { return strings.Compare(a.Addr, b.Addr) })
	return ts
}

// buildView snapshots the runtime's current knowledge.
func (c *Cluster) buildView() *observer.ClusterView {
	name := c.Name()
	v := &observer.ClusterView{
		Name:       name,
		Generation: c.gen,
		Labels:     c.spec.Cluster.Labels,
		UpdatedAt:  time.Now(),
	}
	results := c.prober.Results()
	metrics := c.reader.Results()
	add := func(b topology.Backend) {
		h, ok := results[b.Addr]
		if !ok {
			h = observer.Health{Healthy: true, Reason: health.ErrNotProbed.Error()}
		}
		v.Backends = append(v.Backends, &observer.Backend{
			ID:         observer.BackendID(name, b.Addr),
			Cluster:    name,
			Addr:       b.Addr,
			StatusPort: b.StatusPort,
			Version:    b.Version,
			Labels:     b.Labels,
			Health:     h,
			Metrics:    metrics[b.Addr],
		})
	}
	if c.watcher == nil {
		v.Source, v.State = observer.SourceStatic, observer.StateReady
		for _, a := range c.spec.Cluster.Instances {
			add(topology.Backend{Addr: a})
		}
	} else {
		v.Source = observer.SourceEtcd
		snap, err := c.watcher.Snapshot(), c.watcher.Err()
		if err != nil {
			v.LastError = err.Error()
		}
		switch {
		case snap == nil:
			v.State = observer.StateConnecting
		case err != nil:
			v.State = observer.StateStale
		default:
			v.State = observer.StateReady
		}
		if snap != nil {
			v.Revision = snap.Revision
			for _, b := range snap.Backends {
				add(b)
			}
		}
	}
	slices.SortFunc(v.Backends, func(a, b *observer.Backend) int { return strings.Compare(a.Addr, b.Addr) })
	return v
}

// discoverPrometheus returns the Prometheus address TiUP records in etcd, as
// the topology watcher follows it: no read of its own at each metrics
// interval, and while etcd is unreachable, the last address it gave. Only
// before the watcher's first list does it ask etcd.
func (c *Cluster) discoverPrometheus(ctx context.Context) (string, error) {
	value, listed := c.watcher.Followed()
	if !listed {
		err := c.WithEtcd(ctx, func(ctx context.Context, cli *clientv3.Client) error {
			resp, err := cli.Get(ctx, prometheusKey, clientv3.WithPrefix(), clientv3.WithLimit(1))
			if err == nil && len(resp.Kvs) > 0 {
				value = resp.Kvs[0].Value
			}
			return err
		})
		if err != nil {
			return "", err
		}
	}
	if value == nil {
		return "", errors.New("no Prometheus registered in etcd")
	}
	return metricsreader.PrometheusURLFromTopology(value)
}
