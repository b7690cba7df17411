package shadow

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/sqlstats"
)

// Manager holds the running mirrors and is the sessions' Sampler. Apply
// (the config applier) and Close are serialised; Sample reads an immutable
// map behind an atomic pointer.
type Manager struct {
	lg      *zap.Logger
	resolve Resolver

	mu      sync.Mutex
	closed  bool
	mirrors atomic.Pointer[map[string]*mirror] // by source cluster
	byName  map[string]*mirror
	// states keep counters and digests across reloads that keep a mirror's
	// name, source and target.
	states map[string]*state
}

var _ Sampler = (*Manager)(nil)

// NewManager builds a Manager without mirrors; Apply starts them.
func NewManager(lg *zap.Logger, r Resolver) *Manager {
	m := &Manager{lg: lg, resolve: r, byName: map[string]*mirror{}, states: map[string]*state{}}
	m.mirrors.Store(&map[string]*mirror{})
	return m
}

// Sample implements Sampler.
func (m *Manager) Sample(cluster string) Sink {
	mm := *m.mirrors.Load()
	if len(mm) == 0 {
		return nil
	}
	if mr := mm[cluster]; mr != nil && mr.sampled() {
		return mr
	}
	return nil
}

func stateKey(o *Options) string { return o.Name + "\x00" + o.Source + "\x00" + o.Target }

// Apply makes the running mirrors those of opts (validated: names and
// sources unique): unchanged mirrors keep running, changed ones are
// replaced (new one first, then the old one closed), removed ones closed.
// It does no I/O; workers connect when their first statement arrives.
func (m *Manager) Apply(opts []Options) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	next := make(map[string]*mirror, len(opts))
	bySource := make(map[string]*mirror, len(opts))
	var started, retired []*mirror
	states := make(map[string]*state, len(opts))
	for i := range opts {
		o := opts[i]
		key := stateKey(&o)
		if old := m.byName[o.Name]; old != nil && old.opt.same(&o) {
			next[o.Name], bySource[o.Source], states[key] = old, old, old.st
			continue
		}
		st := m.states[key]
		if st == nil {
			st = &state{digests: digests{m: map[string]*digestRow{}}, norm: sqlstats.NewNormalizer()}
		}
		st.digests.mu.Lock()
		st.digests.max = max(o.MaxDigests, 1)
		st.digests.mu.Unlock()
		states[key] = st
		mr := newMirror(m.lg.With(zap.String("shadow", o.Name), zap.String("cluster", o.Source)), o, m.resolve, st)
		next[o.Name], bySource[o.Source] = mr, mr
		started = append(started, mr)
	}
	for name, old := range m.byName {
		if next[name] != old {
			retired = append(retired, old)
		}
	}
	for _, mr := range started {
		mr.start()
	}
	m.byName, m.states = next, states
	m.mirrors.Store(&bySource)
	for _, old := range retired {
		old.close()
	}
	for _, mr := range started {
		m.lg.Info("shadow started", zap.String("shadow", mr.opt.Name), zap.String("source", mr.opt.Source),
			zap.String("target", mr.opt.Target), zap.Float64("sample", mr.opt.Sample))
	}
	for _, old := range retired {
		if next[old.opt.Name] == nil {
			m.lg.Info("shadow stopped", zap.String("shadow", old.opt.Name))
		}
	}
}

// Status returns every mirror's counters and digests, sorted by name.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	mirrors := make([]*mirror, 0, len(m.byName))
	for _, mr := range m.byName {
		mirrors = append(mirrors, mr)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(mirrors))
	for _, mr := range mirrors {
		out = append(out, mr.status())
	}
	sortStatus(out)
	return out
}

// Close stops every mirror; later Applies do nothing.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	m.mirrors.Store(&map[string]*mirror{})
	for _, mr := range m.byName {
		mr.close()
	}
	m.byName = map[string]*mirror{}
}
