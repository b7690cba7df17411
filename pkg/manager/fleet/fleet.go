package fleet

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/lib/notify"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap"
)

// reconcileEvery is how often a prober leader reconsiders its cluster's
// backends without being woken by a change; rounds that were just blocked
// are not repeated sooner than the vote coordinator's backoff.
const reconcileEvery = time.Second

// Fleet keeps this node in the fleet. New builds it without I/O, Start
// launches its loop, Close stops the loop and then the store.
type Fleet struct {
	lg *zap.Logger
	d  Deps

	mu       sync.Mutex
	self     coordination.NodeInfo
	clusters []string               // the clusters this node serves, sorted
	workers  map[string]*termWorker // cluster → worker of the current term
	down     map[string]bool        // backend IDs voted down, as last applied

	// every is reconcileEvery; tests shorten it.
	every time.Duration

	startOnce, closeOnce sync.Once
	cancel               context.CancelFunc
	done                 chan struct{} // closed when the loop has ended
}

// termWorker runs the vote rounds of one prober term.
type termWorker struct {
	term coordination.Term
	wake notify.Signal
}

// New returns the fleet of the node self, which serves self.Clusters.
func New(lg *zap.Logger, self coordination.NodeInfo, d Deps) *Fleet {
	self.Clusters = sortedCopy(self.Clusters)
	return &Fleet{
		lg: lg.Named("fleet"), d: d, self: self, clusters: self.Clusters,
		workers: map[string]*termWorker{}, down: map[string]bool{},
		every: reconcileEvery,
	}
}

// Self is this node's registration as last published.
func (f *Fleet) Self() coordination.NodeInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.self
}

// Roles are the roles a node serving clusters campaigns for: the fleet's and
// one prober role per cluster.
func Roles(clusters []string) []string {
	out := []string{coordination.RoleFleet}
	for _, name := range sortedCopy(clusters) {
		out = append(out, coordination.ProberRole(name))
	}
	return out
}

// Start registers the node, campaigns, and runs the loop that applies the
// verdicts and drives the vote workers, until ctx ends or Close. A second
// Start, or a Start after Close, does nothing.
func (f *Fleet) Start(ctx context.Context) error {
	var err error
	f.startOnce.Do(func() {
		f.mu.Lock()
		roles := Roles(f.clusters)
		f.mu.Unlock()
		f.d.Store.SetRoles(roles)
		if err = f.d.Store.Start(ctx); err != nil {
			return
		}
		ctx, f.cancel = context.WithCancel(ctx)
		f.done = make(chan struct{})
		storeCh, storeStop := f.d.Store.Subscribe()
		topoCh, topoStop := f.d.Topology.Subscribe()
		go func() {
			defer close(f.done)
			defer storeStop()
			defer topoStop()
			f.sync()
			for {
				select {
				case <-ctx.Done():
					return
				case <-storeCh:
				case <-topoCh:
				}
				f.sync()
			}
		}()
	})
	return err
}

// Apply follows a reload: the clusters this node serves, hence its roles.
func (f *Fleet) Apply(clusters []string) {
	f.mu.Lock()
	f.clusters = sortedCopy(clusters)
	f.self.Clusters = f.clusters
	info := f.self
	f.mu.Unlock()
	f.d.Store.SetInfo(info)
	f.d.Store.SetRoles(Roles(clusters))
}

// Draining tells the fleet this node is leaving.
func (f *Fleet) Draining() {
	f.mu.Lock()
	f.self.State = coordination.NodeDraining
	info := f.self
	f.mu.Unlock()
	f.d.Store.SetInfo(info)
}

// Close stops the loop and waits for it, then closes the store: every term
// ends (its vote worker stops first) and the node deregisters. Idempotent;
// safe without Start.
func (f *Fleet) Close() {
	f.closeOnce.Do(func() {
		f.startOnce.Do(func() {}) // a later Start does nothing
		if f.cancel != nil {
			f.cancel()
			<-f.done
		}
		f.d.Store.Close()
	})
}

// sync applies the verdicts to routing and wakes the vote workers of the
// terms this node holds. Only the loop calls it.
func (f *Fleet) sync() {
	down := map[string]bool{}
	for id, v := range f.d.Store.Verdicts() {
		if v.State == coordination.VerdictDown {
			down[id] = true
		}
	}
	f.d.Routing.SetFleetDown(down)
	f.mu.Lock()
	var newlyDown []string
	for id := range down {
		if !f.down[id] {
			newlyDown = append(newlyDown, id)
		}
	}
	f.down = down
	clusters := f.clusters
	f.mu.Unlock()
	slices.Sort(newlyDown)
	for _, id := range newlyDown {
		cluster, addr, _ := observer.SplitBackendID(id)
		n := f.d.Sessions.EndIdle(cluster, addr)
		f.lg.Warn("backend voted down by the fleet: no new sessions, idle ones closed",
			zap.String("backend", id), zap.Int("sessions", n))
	}

	for _, cluster := range clusters {
		term, _, ok := f.d.Store.Term(coordination.ProberRole(cluster))
		f.mu.Lock()
		w := f.workers[cluster]
		if !ok {
			delete(f.workers, cluster)
			f.mu.Unlock()
			continue
		}
		f.d.Voter.ObserveTerm(cluster, term.Rev)
		if w == nil || w.term != term {
			w = &termWorker{term: term, wake: notify.NewSignal()}
			f.workers[cluster] = w
			f.mu.Unlock()
			f.startWorker(cluster, w)
		} else {
			f.mu.Unlock()
		}
		w.wake.Notify()
	}
	// Workers of clusters no longer served: their roles were dropped, so
	// their terms end (and their workers with them); forget them here.
	f.mu.Lock()
	for cluster := range f.workers {
		if !slices.Contains(clusters, cluster) {
			delete(f.workers, cluster)
		}
	}
	f.mu.Unlock()
}

// startWorker runs cluster's vote rounds for one term, under the term's
// context: the term owns the goroutine, ends it when the term ends and waits
// for it before it resigns.
func (f *Fleet) startWorker(cluster string, w *termWorker) {
	err := f.d.Terms.Go(w.term, func(ctx context.Context) {
		f.lg.Info("leading the prober role", zap.String("cluster", cluster), zap.Int64("term", w.term.Rev))
		// Nothing may change after a blocked round (a peer that could not
		// vote comes back, the backend stays dead): look again regularly too.
		tick := time.NewTicker(f.every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.wake.C():
			case <-tick.C:
			}
			local := f.localHealth(cluster)
			if local == nil {
				continue
			}
			f.d.Rounds.Reconcile(ctx, cluster, local, f.d.Store.Verdicts())
		}
	})
	if err != nil {
		f.lg.Debug("term ended before its worker started", zap.String("cluster", cluster), zap.Error(err))
	}
}

// localHealth is this node's own view of cluster's backends, or nil when it
// has none to offer (unknown or draining cluster).
func (f *Fleet) localHealth(cluster string) map[string]bool {
	v := f.d.Topology.Topology().Cluster(cluster)
	if v == nil || v.State == observer.StateDraining {
		return nil
	}
	out := make(map[string]bool, len(v.Backends))
	for _, b := range v.Backends {
		out[b.Addr] = b.Health.Healthy
	}
	return out
}

// VerdictSource gives the fleet's current verdicts (the Store).
type VerdictSource interface {
	Verdicts() map[string]coordination.Verdict
}

// TopologySource gives the latest topology.
type TopologySource interface {
	Topology() *observer.Topology
}

// HealthyCount counts the backends of cluster, other than except, that this
// node sees healthy and the fleet has not voted down: the vote coordinator
// refuses a verdict that would leave a cluster without any.
func HealthyCount(topo TopologySource, verdicts VerdictSource) func(cluster, except string) int {
	return func(cluster, except string) int {
		v := topo.Topology().Cluster(cluster)
		if v == nil {
			return 0
		}
		vs := verdicts.Verdicts()
		n := 0
		for _, b := range v.Backends {
			if b.Addr == except || !b.Health.Healthy {
				continue
			}
			if vd, ok := vs[b.ID]; ok && vd.State == coordination.VerdictDown {
				continue
			}
			n++
		}
		return n
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
