package coordination

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/lib/notify"
)

// Memory is the single-node Store: the node is the only member and always
// leads every role it campaigns for. Terms of a role start at 1 and grow
// each time the role is added again. It keeps the same per-term discipline
// as etcdstore.Store: a removed role's work must stop before the role's next term
// begins, and a fenced write from an ended term is refused.
type Memory struct {
	mu         sync.Mutex
	self       NodeInfo
	wanted     map[string]struct{}
	terms      map[string]*memTerm // held now
	stopping   map[string]*memTerm // ended, work may still be stopping
	lastRev    map[string]int64
	roleStat   map[string]*RoleStats
	termEnds   map[string]uint64
	stuck      uint64
	verdicts   atomic.Pointer[map[string]Verdict]
	subs       notify.Fanout
	started    bool
	closed     bool
	stopBudget time.Duration
	onStuck    func()
	wg         sync.WaitGroup
}

// memTerm is one term of a role. Leader-only work registers in wg (Go,
// Hold) while the term is not ended; the term waits for it before it ends.
type memTerm struct {
	term    Term
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ended   bool          // under Memory.mu; no work registers once set
	stopped chan struct{} // closed once the work stopped or overran the budget
}

var (
	_ Store      = (*Memory)(nil)
	_ TermWorker = (*Memory)(nil)
)

// NewMemory returns the single-node Store for self.
func NewMemory(self NodeInfo) *Memory {
	m := &Memory{
		self:       self,
		wanted:     map[string]struct{}{},
		terms:      map[string]*memTerm{},
		stopping:   map[string]*memTerm{},
		lastRev:    map[string]int64{},
		roleStat:   map[string]*RoleStats{},
		termEnds:   map[string]uint64{},
		stopBudget: DefaultStopBudget,
	}
	m.onStuck = func() {
		fmt.Fprintf(os.Stderr, "coordination: leader-only work did not stop within %s after its term ended; exiting\n", m.stopBudget)
		os.Exit(1)
	}
	empty := map[string]Verdict{}
	m.verdicts.Store(&empty)
	return m
}

// SetStopPolicy replaces the stop budget of leader-only work and what
// happens when work overruns it (default: exit the process). Call it
// before Start.
func (m *Memory) SetStopPolicy(budget time.Duration, onStuck func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if budget > 0 {
		m.stopBudget = budget
	}
	if onStuck != nil {
		m.onStuck = onStuck
	}
}

// Mode implements Store.
func (m *Memory) Mode() string { return ModeSingleNode }

// Start implements Store: the node takes every role set so far.
func (m *Memory) Start(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("coordination: start after close")
	}
	if m.started {
		return errors.New("coordination: already started")
	}
	m.started = true
	m.reconcileLocked()
	return nil
}

// SetInfo implements Store. The ID cannot change.
func (m *Memory) SetInfo(info NodeInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	info.ID = m.self.ID
	m.self = info
}

// SetRoles implements Store.
func (m *Memory) SetRoles(roles []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wanted = make(map[string]struct{}, len(roles))
	for _, r := range roles {
		m.wanted[r] = struct{}{}
	}
	if m.started && !m.closed {
		m.reconcileLocked()
	}
}

func (m *Memory) reconcileLocked() {
	for role, mt := range m.terms {
		if _, ok := m.wanted[role]; !ok {
			m.endLocked(mt, EndRoleRemoved)
		}
	}
	for role := range m.wanted {
		if _, ok := m.terms[role]; ok {
			continue
		}
		prev := m.stopping[role]
		if prev == nil {
			m.beginLocked(role)
			continue
		}
		// The previous term's work is still stopping: begin after it.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			<-prev.stopped
			m.mu.Lock()
			defer m.mu.Unlock()
			_, wanted := m.wanted[role]
			if wanted && !m.closed && m.terms[role] == nil {
				m.beginLocked(role)
			}
		}()
	}
}

func (m *Memory) beginLocked(role string) {
	m.lastRev[role]++
	ctx, cancel := context.WithCancel(context.Background())
	mt := &memTerm{
		term: Term{Role: role, Rev: m.lastRev[role]}, ctx: ctx, cancel: cancel,
		stopped: make(chan struct{}),
	}
	m.terms[role] = mt
	rs := m.roleStat[role]
	if rs == nil {
		rs = &RoleStats{Role: role}
		m.roleStat[role] = rs
	}
	rs.Leader, rs.Term = true, mt.term.Rev
	rs.LeaderChanges++
	m.subs.Notify()
}

// endLocked ends mt and waits for its work in the background.
func (m *Memory) endLocked(mt *memTerm, reason string) {
	role := mt.term.Role
	mt.ended = true
	delete(m.terms, role)
	m.stopping[role] = mt
	if rs := m.roleStat[role]; rs != nil {
		rs.Leader = false
		rs.LeaderChanges++
	}
	m.termEnds[reason]++
	m.subs.Notify()
	mt.cancel()
	budget, onStuck := m.stopBudget, m.onStuck
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if !lifecycle.WaitTimeout(&mt.wg, budget) {
			m.mu.Lock()
			m.stuck++
			m.mu.Unlock()
			onStuck()
		}
		m.mu.Lock()
		if m.stopping[role] == mt {
			delete(m.stopping, role)
		}
		m.mu.Unlock()
		close(mt.stopped)
	}()
}

// Close implements Store: every term ends and its work is waited for
// (within the stop budget). Idempotent.
func (m *Memory) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	for _, mt := range m.terms {
		m.endLocked(mt, EndShutdown)
	}
	m.subs.Notify()
	m.mu.Unlock()
	m.wg.Wait()
}
