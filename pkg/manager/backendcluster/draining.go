package backendcluster

import (
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap"
)

// Drainer ends the sessions of a cluster that a reload removed (pkg/proxy's
// Drain, wired by pkg/server).
type Drainer interface {
	// DrainCluster begins ending the sessions of cluster alive now, forcing
	// those still open after timeout. It must not block.
	DrainCluster(cluster string, timeout time.Duration) Draining
	// Drained is told once a removed cluster's sessions have ended and its
	// view has left the topology, unless a reload has brought it back.
	Drained(cluster string)
}

// Draining is one cluster drain in progress.
type Draining interface {
	// Done is closed when every session the drain took has ended.
	Done() <-chan struct{}
	// Sessions is how many sessions it took; Forced how many were still open
	// at the deadline.
	Sessions() int
	Forced() int
}

// Rules learns each applied config once the runtimes it routes to exist, and
// before the runtimes it replaces or removes are retired (the router).
type Rules interface {
	Update(cfg *config.Config)
}

// SetDrainer makes removed clusters drain: their view stays in the topology
// as "draining" (no new sessions, the rebalancer and the fleet leave them
// alone) until d reports their sessions ended. Without a Drainer a removed
// cluster leaves the topology at once. Call it before the first Apply.
func (m *Manager) SetDrainer(d Drainer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainer = d
}

// SetRules sets who learns each config between building the new runtimes
// and retiring the old ones. Call it before the first Apply.
func (m *Manager) SetRules(r Rules) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = r
}

// drainTimeouts is each cluster's drain-timeout in cfg.
func drainTimeouts(cfg *config.Config) map[string]time.Duration {
	out := make(map[string]time.Duration, len(cfg.Clusters))
	for _, c := range cfg.Clusters {
		out[c.Name] = c.DrainTimeout.Duration
	}
	return out
}

// removal is a cluster that an Apply removed while a Drainer is set.
type removal struct {
	name    string
	gen     uint64
	timeout time.Duration
}

// markDraining publishes the draining view of a removed cluster, under a
// generation of its own: newer than the retiring runtime's (whose last
// publications and whose Close then leave it alone), older than any runtime
// a later reload builds for the same name. The caller holds mu.
func (m *Manager) markDraining(old *Cluster, timeout time.Duration) removal {
	m.gen++
	src := observer.SourceStatic
	if v := old.View(); v != nil {
		src = v.Source
	}
	m.sink.Publish(&observer.ClusterView{
		Name:       old.Name(),
		Generation: m.gen,
		State:      observer.StateDraining,
		Source:     src,
		LastError:  "removed from the configuration",
		UpdatedAt:  time.Now(),
	})
	if timeout <= 0 {
		timeout = config.DefaultDrainTimeout
	}
	return removal{name: old.Name(), gen: m.gen, timeout: timeout}
}

// startDrain drains a removed cluster's sessions and, once they have ended
// (or the manager closes), removes its draining view. The goroutine is the
// manager's (wg).
func (m *Manager) startDrain(d Drainer, r removal) {
	lg := m.lg.With(zap.String("cluster", r.name))
	dr := d.DrainCluster(r.name, r.timeout)
	lg.Info("cluster removed: draining its sessions", zap.Int("sessions", dr.Sessions()), zap.Duration("drain_timeout", r.timeout))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-dr.Done():
		case <-m.stop:
			m.sink.Remove(r.name, r.gen)
			return
		}
		m.sink.Remove(r.name, r.gen)
		if n := dr.Forced(); n > 0 {
			lg.Warn("drain timeout: closed the sessions still open", zap.Int("sessions", n))
		} else {
			lg.Info("cluster drained")
		}
		m.mu.Lock()
		_, again := m.desired[r.name]
		m.mu.Unlock()
		if !again {
			d.Drained(r.name)
		}
	}()
}
