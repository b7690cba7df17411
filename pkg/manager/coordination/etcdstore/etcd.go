package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/lib/notify"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Store is the fleet's coordination.Store. Keys live under /switchyard/<fleet>/:
//
//	nodes/<id>                          this node's NodeInfo, under its own lease
//	election/<role>/<leaseHex>          concurrency.Election keys, one session per term
//	clusters/<c>/backends/<addr>/state  verdicts, written fenced by the prober's term
type Store struct {
	lg      *zap.Logger
	cli     *clientv3.Client
	id      string // self.ID, which never changes
	prefix  string
	opts    Options
	ttl     int64 // election lease, seconds
	nodeTTL int64 // registration lease, seconds

	mu       sync.Mutex
	self     coordination.NodeInfo
	wanted   map[string]struct{}    // roles to campaign for
	runners  map[string]*roleRunner // running campaign loops
	terms    map[string]*termState  // roles this node leads now
	roleStat map[string]*coordination.RoleStats
	termEnds map[string]uint64
	counters struct{ stuck, campaignErrs, registrations uint64 }
	subs     notify.Fanout
	started  bool
	closing  bool
	reg      regStatus
	watchErr error

	ctx         context.Context
	cancel      context.CancelFunc
	regCancel   context.CancelFunc
	watchCancel context.CancelFunc
	infoCh      notify.Signal // wakes the registrar after SetInfo

	verdicts atomic.Pointer[map[string]coordination.Verdict]

	// hooks let tests observe the exact instants of term changes and
	// interleave writes with the verdict watch; set before Start.
	hooks struct {
		// term runs as a term begins (before it is visible) and as it ends
		// (after its context is cancelled).
		term func(t coordination.Term, began bool)
		// afterList runs between the verdict list and the watch.
		afterList func()
	}

	runnerWG   sync.WaitGroup
	regWG      sync.WaitGroup
	watchWG    sync.WaitGroup
	campaignWG sync.WaitGroup // Campaign calls; see campaignDrain
	closeOnce  sync.Once
}

var (
	_ coordination.Store      = (*Store)(nil)
	_ coordination.TermWorker = (*Store)(nil)
)

// New builds the store without I/O; Start begins the work. self.ID
// names the node; self's other fields can change later with SetInfo.
func New(lg *zap.Logger, cli *clientv3.Client, fleet string, self coordination.NodeInfo, opts Options) *Store {
	opts = opts.withDefaults()
	e := &Store{
		lg:       lg.With(zap.String("fleet", fleet), zap.String("node", self.ID)),
		cli:      cli,
		id:       self.ID,
		prefix:   "/switchyard/" + fleet + "/",
		opts:     opts,
		ttl:      ttlSeconds(opts.ElectionTTL),
		nodeTTL:  ttlSeconds(opts.NodeTTL),
		self:     self,
		wanted:   map[string]struct{}{},
		runners:  map[string]*roleRunner{},
		terms:    map[string]*termState{},
		roleStat: map[string]*coordination.RoleStats{},
		termEnds: map[string]uint64{},
		infoCh:   notify.NewSignal(),
	}
	if e.opts.OnStuck == nil {
		e.opts.OnStuck = func() {
			e.lg.Error("leader-only work did not stop after its term ended; exiting (fail-stop)",
				zap.Duration("stop_budget", opts.StopBudget))
			_ = e.lg.Sync()
			os.Exit(1)
		}
	}
	empty := map[string]coordination.Verdict{}
	e.verdicts.Store(&empty)
	return e
}

// Key layout.
func (e *Store) nodeKey(id string) string          { return e.prefix + "nodes/" + id }
func (e *Store) nodesPrefix() string               { return e.prefix + "nodes/" }
func (e *Store) electionPrefix(role string) string { return e.prefix + "election/" + role }
func (e *Store) clustersPrefix() string            { return e.prefix + "clusters/" }
func (e *Store) verdictKey(cluster, addr string) string {
	return e.clustersPrefix() + cluster + "/backends/" + addr + "/state"
}

// Mode implements Store.
func (e *Store) Mode() string { return coordination.ModeEtcd }

// Start implements Store: it registers the node, campaigns for the roles
// set so far and watches verdicts, all in the background.
func (e *Store) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return errors.New("coordination: start after close")
	}
	if e.started {
		return errors.New("coordination: already started")
	}
	if err := e.self.Validate(); err != nil {
		return fmt.Errorf("coordination: %w", err)
	}
	e.started = true
	e.ctx, e.cancel = context.WithCancel(ctx)

	var regCtx, watchCtx context.Context
	regCtx, e.regCancel = context.WithCancel(e.ctx)
	watchCtx, e.watchCancel = context.WithCancel(e.ctx)
	e.regWG.Add(1)
	go func() {
		defer e.regWG.Done()
		e.runRegistry(regCtx)
	}()
	e.watchWG.Add(1)
	go func() {
		defer e.watchWG.Done()
		e.runVerdictWatch(watchCtx)
	}()
	e.reconcileLocked()
	return nil
}

// SetInfo implements Store. The ID cannot change.
func (e *Store) SetInfo(info coordination.NodeInfo) {
	e.mu.Lock()
	info.ID = e.self.ID
	e.self = info
	e.mu.Unlock()
	e.infoCh.Notify()
}

func (e *Store) info() coordination.NodeInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.self
}

// SetRoles implements Store. A removed role's term ends (its work is
// stopped, then it resigns) in the background.
func (e *Store) SetRoles(roles []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wanted = make(map[string]struct{}, len(roles))
	for _, r := range roles {
		e.wanted[r] = struct{}{}
	}
	if e.started && !e.closing {
		e.reconcileLocked()
	}
}

// reconcileLocked starts and stops campaign loops to match e.wanted.
func (e *Store) reconcileLocked() {
	for role, r := range e.runners {
		if _, ok := e.wanted[role]; !ok {
			r.cancel()
			delete(e.runners, role)
		}
	}
	for role := range e.wanted {
		if _, ok := e.runners[role]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(e.ctx)
		r := &roleRunner{e: e, role: role, cancel: cancel}
		e.runners[role] = r
		if _, ok := e.roleStat[role]; !ok {
			e.roleStat[role] = &coordination.RoleStats{Role: role}
		}
		e.runnerWG.Add(1)
		go func() {
			defer e.runnerWG.Done()
			r.run(ctx)
		}()
	}
}

// Close implements Store: every term ends (work stopped, then resigned),
// the node's own registration is deleted, and the loops stop. Idempotent.
func (e *Store) Close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closing = true
		started := e.started
		for role, r := range e.runners {
			r.cancel()
			delete(e.runners, role)
		}
		e.subs.Notify()
		e.mu.Unlock()
		if !started {
			return
		}
		// Terms first (work stops, keys are resigned), then the node's
		// registration, so that no leader is left without node info.
		e.runnerWG.Wait()
		e.regCancel()
		e.regWG.Wait()
		e.watchCancel()
		e.watchWG.Wait()
		e.cancel()
		if !lifecycle.WaitTimeout(&e.campaignWG, campaignDrain) {
			e.lg.Warn("campaign calls still blocked on an unreachable etcd; they return when the client closes")
		}
	})
}
