package coordination

import (
	"context"
	"sort"
	"sync"
)

// cancelledCtx is the context of a term that is not held.
var cancelledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Members implements Store.
func (m *Memory) Members(context.Context) ([]Member, error) {
	m.mu.Lock()
	self := m.self
	m.mu.Unlock()
	mb := Member{ID: self.ID, TTL: -1}
	if err := self.Validate(); err != nil {
		mb.Err = err.Error()
	} else {
		mb.Info = &self
	}
	return []Member{mb}, nil
}

// Leader implements Store.
func (m *Memory) Leader(_ context.Context, role string) (LeaderInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.terms[role]
	if mt == nil {
		return LeaderInfo{}, ErrNoLeader
	}
	li := LeaderInfo{Role: role, LeaderID: m.self.ID, Term: mt.term.Rev}
	self := m.self
	if err := self.Validate(); err != nil {
		li.NodeErr = err.Error()
	} else {
		li.Node = &self
	}
	return li, nil
}

func (m *Memory) currentLocked(t Term) *memTerm {
	mt := m.terms[t.Role]
	if mt == nil || mt.ended || mt.term != t {
		return nil
	}
	return mt
}

// Term implements Store.
func (m *Memory) Term(role string) (Term, context.Context, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.terms[role]
	if mt == nil {
		return Term{}, cancelledCtx, false
	}
	return mt.term, mt.ctx, true
}

// Go implements TermWorker.
func (m *Memory) Go(term Term, fn func(ctx context.Context)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.currentLocked(term)
	if mt == nil {
		return ErrNotLeader
	}
	mt.wg.Add(1)
	go func() {
		defer mt.wg.Done()
		fn(mt.ctx)
	}()
	return nil
}

// Hold implements TermWorker.
func (m *Memory) Hold(term Term) (context.Context, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.currentLocked(term)
	if mt == nil {
		return cancelledCtx, func() {}, ErrNotLeader
	}
	mt.wg.Add(1)
	return mt.ctx, sync.OnceFunc(mt.wg.Done), nil
}

// Subscribe implements Store.
func (m *Memory) Subscribe() (<-chan struct{}, func()) { return m.subs.Subscribe() }

// WriteVerdict implements Store.
func (m *Memory) WriteVerdict(_ context.Context, term Term, v Verdict) error {
	if err := CheckVerdict(term, v); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.currentLocked(term) == nil {
		return ErrNotLeader
	}
	v.Term = term.Rev
	cur := *m.verdicts.Load()
	next := make(map[string]Verdict, len(cur)+1)
	for k, old := range cur {
		next[k] = old
	}
	next[BackendID(v.Cluster, v.Backend)] = v
	m.verdicts.Store(&next)
	m.subs.Notify()
	return nil
}

// Verdicts implements Store.
func (m *Memory) Verdicts() map[string]Verdict { return *m.verdicts.Load() }

// Health implements Store.
func (m *Memory) Health() (string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return StateStopping, "closing"
	case !m.started:
		return StateInitializing, "not started"
	}
	return StateHealthy, ""
}

// Stats returns the counters and gauges for metrics.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Stats{TermEnds: make(map[string]uint64, len(m.termEnds)), Stuck: m.stuck}
	for k, v := range m.termEnds {
		s.TermEnds[k] = v
	}
	for role, rs := range m.roleStat {
		if _, wanted := m.wanted[role]; wanted || rs.Leader {
			s.Roles = append(s.Roles, *rs)
		}
	}
	sort.Slice(s.Roles, func(i, j int) bool { return s.Roles[i].Role < s.Roles[j].Role })
	return s
}
