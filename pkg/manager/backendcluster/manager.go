package backendcluster

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/health"
	"go.uber.org/zap"
)

const (
	retryStart = time.Second
	retryCap   = 30 * time.Second
)

// Manager keeps one runtime per configured cluster.
type Manager struct {
	lg   *zap.Logger
	sink Sink

	// applyMu serializes Applies from start to end, so that the rules of
	// two reloads cannot be swapped out of order; mu is released before an
	// Apply swaps the rules and retires the old runtimes.
	applyMu sync.Mutex
	// mu serializes builds, retries and Close. Readers never take it: they
	// load clusters, which is swapped whole.
	mu       sync.Mutex
	clusters atomic.Pointer[map[string]*Cluster]
	desired  map[string]spec
	retries  map[string]*retry
	failures map[string]error // last build error of clusters being retried
	gen      uint64
	closed   bool
	stop     chan struct{}  // closed by Close: drains stop waiting
	wg       sync.WaitGroup // retry and drain goroutines

	drainer  Drainer
	rules    Rules
	timeouts map[string]time.Duration // drain-timeout of the clusters last applied

	// newCluster is replaced by tests to make builds fail.
	newCluster func(lg *zap.Logger, s spec, gen uint64, sink Sink) (*Cluster, error)
	retryStart time.Duration
}

// retry is a background rebuild of a cluster whose build failed.
type retry struct {
	spec spec
	stop chan struct{}
}

// Result says what an Apply did, by cluster name.
type Result struct {
	Kept, Added, Replaced, Removed []string
	// Failed maps a cluster to its build error. Its old runtime (if any) keeps
	// running and the build is retried in the background.
	Failed map[string]error
}

// NewManager returns a Manager with no clusters.
func NewManager(lg *zap.Logger, sink Sink) *Manager {
	m := &Manager{
		lg:         lg.Named("clusters"),
		sink:       sink,
		desired:    map[string]spec{},
		retries:    map[string]*retry{},
		failures:   map[string]error{},
		stop:       make(chan struct{}),
		timeouts:   map[string]time.Duration{},
		newCluster: newCluster,
		retryStart: retryStart,
	}
	m.clusters.Store(&map[string]*Cluster{})
	return m
}

// specs derives each cluster's spec from a config.
func specs(cfg *config.Config) map[string]spec {
	out := make(map[string]spec, len(cfg.Clusters))
	for _, cl := range cfg.Clusters {
		// The drain timeout matters only once the cluster is removed; changing
		// it must not restart the runtime.
		cl.DrainTimeout = config.Duration{}
		// The migration account is read by sessions at each use.
		cl.MigrationUser, cl.MigrationPassword = "", ""
		out[cl.Name] = spec{
			Cluster: cl,
			Health: health.HealthConfig{
				Interval:            cfg.HealthCheck.Interval.Duration,
				RetryInterval:       cfg.HealthCheck.RetryInterval.Duration,
				Timeout:             cfg.HealthCheck.Timeout.Duration,
				FailuresToUnhealthy: cfg.HealthCheck.FailuresToUnhealthy,
				SQLUser:             cfg.HealthCheck.SQLUser,
				SQLPassword:         cfg.HealthCheck.SQLPassword,
			},
			MetricsInterval: cfg.Balance.MetricsInterval.Duration,
		}
	}
	return out
}

// Apply makes the running clusters match cfg (which has passed Check), in
// this order: build the new runtimes and publish them in one swap; tell the
// Rules (the router) the new config; then, outside every lock, retire the
// runtimes that were replaced or removed. A removed cluster stays in the
// topology as "draining" while the Drainer ends its sessions.
func (m *Manager) Apply(cfg *config.Config) Result {
	want := specs(cfg)
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	res := Result{Failed: map[string]error{}}
	if m.closed {
		m.mu.Unlock()
		for name := range want {
			res.Failed[name] = ErrClosed
		}
		return res
	}
	m.desired = want
	cur := *m.clusters.Load()
	next := make(map[string]*Cluster, len(want))
	var retired []*Cluster

	for _, name := range slices.Sorted(maps.Keys(want)) {
		s := want[name]
		old := cur[name]
		if old != nil && reflect.DeepEqual(old.spec, s) {
			next[name] = old
			res.Kept = append(res.Kept, name)
			m.stopRetry(name)
			continue
		}
		m.stopRetry(name)
		c, err := m.build(s)
		if err != nil {
			res.Failed[name] = err
			m.failures[name] = err
			if old != nil {
				next[name] = old // the old runtime keeps serving
			}
			m.startRetry(name, s)
			continue
		}
		next[name] = c
		if old != nil {
			retired = append(retired, old)
			res.Replaced = append(res.Replaced, name)
		} else {
			res.Added = append(res.Added, name)
		}
	}
	var removals []removal
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		if _, ok := want[name]; !ok {
			old := cur[name]
			retired = append(retired, old)
			res.Removed = append(res.Removed, name)
			if m.drainer != nil {
				removals = append(removals, m.markDraining(old, m.timeouts[name]))
			}
		}
	}
	m.timeouts = drainTimeouts(cfg)
	for name := range m.retries {
		if _, ok := want[name]; !ok {
			m.stopRetry(name)
		}
	}
	m.clusters.Store(&next)
	rules, drainer := m.rules, m.drainer
	m.mu.Unlock()

	if rules != nil {
		rules.Update(cfg)
	}
	for _, c := range retired {
		c.Close()
	}
	for _, r := range removals {
		m.startDrain(drainer, r)
	}
	for name, err := range res.Failed {
		m.lg.Warn("cluster build failed; retrying in the background", zap.String("cluster", name), zap.Error(err))
	}
	return res
}

// build makes and starts a runtime. Building does no network I/O.
func (m *Manager) build(s spec) (*Cluster, error) {
	m.gen++
	c, err := m.newCluster(m.lg, s, m.gen, m.sink)
	if err != nil {
		return nil, err
	}
	c.start()
	return c, nil
}

// startRetry rebuilds the cluster with backoff until it succeeds, the spec
// changes or the manager closes. The caller holds mu.
func (m *Manager) startRetry(name string, s spec) {
	r := &retry{spec: s, stop: make(chan struct{})}
	m.retries[name] = r
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		wait := m.retryStart
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, retryCap)
			if m.retryOnce(name, r) {
				return
			}
		}
	}()
}

// retryOnce tries one rebuild; it reports whether the retry is over.
func (m *Manager) retryOnce(name string, r *retry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.retries[name] != r {
		return true // superseded by an Apply or Close
	}
	c, err := m.build(r.spec)
	if err != nil {
		m.failures[name] = err
		m.lg.Warn("cluster rebuild failed", zap.String("cluster", name), zap.Error(err))
		return false
	}
	delete(m.retries, name)
	delete(m.failures, name)
	cur := *m.clusters.Load()
	next := maps.Clone(cur)
	next[name] = c
	m.clusters.Store(&next)
	if old := cur[name]; old != nil {
		// Retired outside the lock, like Apply's.
		m.mu.Unlock()
		old.Close()
		m.mu.Lock()
	}
	m.lg.Info("cluster rebuilt after earlier failure", zap.String("cluster", name))
	return true
}

// stopRetry cancels a pending retry. The caller holds mu.
func (m *Manager) stopRetry(name string) {
	if r := m.retries[name]; r != nil {
		close(r.stop)
		delete(m.retries, name)
	}
	delete(m.failures, name)
}

// EtcdErrors returns the etcd error count of each running etcd cluster.
func (m *Manager) EtcdErrors() map[string]uint64 {
	cur := *m.clusters.Load()
	out := make(map[string]uint64, len(cur))
	for name, c := range cur {
		if c.watcher != nil {
			out[name] = c.EtcdErrors()
		}
	}
	return out
}

// BuildErrors returns the last build error of each cluster being retried.
func (m *Manager) BuildErrors() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.failures))
	for name, err := range m.failures {
		out[name] = err.Error()
	}
	return out
}

// Cluster returns the named runtime, or nil. The runtime may be closed by a
// later reload; its methods then fail with ErrClosed.
func (m *Manager) Cluster(name string) *Cluster { return (*m.clusters.Load())[name] }

// Clusters returns the current runtimes by name. The map must not be changed.
func (m *Manager) Clusters() map[string]*Cluster { return *m.clusters.Load() }

// Pending returns the clusters whose build is being retried.
func (m *Manager) Pending() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.retries))
}

// Close closes every runtime and stops retries. Apply after Close fails.
func (m *Manager) Close() {
	// After any Apply in progress, whose drains then belong to wg.
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.stop)
	for name := range m.retries {
		m.stopRetry(name)
	}
	cur := *m.clusters.Load()
	m.clusters.Store(&map[string]*Cluster{})
	m.mu.Unlock()
	m.wg.Wait()
	var wg sync.WaitGroup
	for _, c := range cur {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
}

// String is for logs.
func (r Result) String() string {
	return fmt.Sprintf("kept %v, added %v, replaced %v, removed %v, failed %d", r.Kept, r.Added, r.Replaced, r.Removed, len(r.Failed))
}
