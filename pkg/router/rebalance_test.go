package router

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"go.uber.org/zap"
)

// fakeSession is a Migrant that moves as soon as it is asked (or refuses, or
// stays put until told), and records what it was asked.
type fakeSession struct {
	mu        sync.Mutex
	id        uint64
	cluster   string
	addr      string
	notMove   string // Migratable reason when set
	hold      bool   // accept Redirect but do not move until release
	target    string
	redirects []string
	evicted   string
	rb        *Rebalancer
}

func (f *fakeSession) ID() uint64 { return f.id }
func (f *fakeSession) Placement() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cluster, f.addr
}
func (f *fakeSession) Migratable() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notMove == "", f.notMove
}
func (f *fakeSession) Redirect(addr string) bool {
	f.mu.Lock()
	f.redirects = append(f.redirects, addr)
	if f.target != "" {
		f.mu.Unlock()
		return false
	}
	f.target = addr
	hold := f.hold
	f.mu.Unlock()
	if !hold {
		f.complete(ResultOK)
	}
	return true
}

// complete ends the pending move with result, as the session would at its
// safe point.
func (f *fakeSession) complete(result string) {
	f.mu.Lock()
	from, to := f.addr, f.target
	f.target = ""
	if result == ResultOK {
		f.addr = to
	}
	rb := f.rb
	f.mu.Unlock()
	if rb != nil {
		// The session reports from its own goroutine, not under the
		// rebalancer's lock.
		go rb.MigrationDone(MigrationResult{SessionID: f.id, Cluster: f.cluster, From: from, To: to, Result: result, Duration: time.Millisecond})
	}
}

func (f *fakeSession) Evict(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evicted = msg
}

type fakeSessions struct {
	mu     sync.Mutex
	list   []*fakeSession
	rounds int // calls of Migrants: the rounds that looked at the sessions
}

func (fs *fakeSessions) SessionCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.list)
}

func (fs *fakeSessions) Migrants(dst []Migrant) []Migrant {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rounds++
	for _, s := range fs.list {
		dst = append(dst, s)
	}
	return dst
}

func (fs *fakeSessions) add(rb *Rebalancer, cluster, addr string, n int) []*fakeSession {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var added []*fakeSession
	for range n {
		s := &fakeSession{id: uint64(len(fs.list) + 1), cluster: cluster, addr: addr, rb: rb}
		fs.list = append(fs.list, s)
		added = append(added, s)
	}
	return added
}

func (fs *fakeSessions) countOn(cluster, addr string) int {
	n := 0
	for _, s := range fs.Migrants(nil) {
		c, a := s.Placement()
		if c == cluster && a == addr {
			n++
		}
	}
	return n
}

// recordingObserver counts migrations by cluster/reason/result.
type recordingObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *recordingObserver) Migration(cluster, reason, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[cluster+"/"+reason+"/"+result]++
}

func (o *recordingObserver) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}

// harness is a rebalancer on a fake clock over fake sessions.
type harness struct {
	t   *testing.T
	tv  *topoVar
	r   *Balanced
	rb  *Rebalancer
	fs  *fakeSessions
	obs *recordingObserver
	now time.Time
}

func newHarness(t *testing.T, mutate func(*config.Config), views ...*observer.ClusterView) *harness {
	tv := &topoVar{}
	tv.set(views...)
	cfg := config.NewDefault()
	cfg.Balance.Policy = config.PolicyConnection
	if mutate != nil {
		mutate(cfg)
	}
	h := &harness{t: t, tv: tv, fs: &fakeSessions{}, obs: &recordingObserver{}, now: time.Unix(1_700_000_000, 0)}
	h.r = NewBalanced(tv, cfg)
	h.r.now = func() time.Time { return h.now }
	h.rb = NewRebalancer(zap.NewNop(), h.r, h.fs, h.obs, cfg)
	h.rb.now = func() time.Time { return h.now }
	return h
}

// step advances the clock by one tick and runs the ticker's beat (a round,
// unless the last one was quiet and nothing changed); it waits for the
// moves' reports so that rounds see each other's results. Every test below
// thus also checks that no beat skips a round that had work to do.
func (h *harness) step() {
	h.now = h.now.Add(rebalanceTick)
	h.rb.tick()
	require.Eventually(h.t, func() bool { return h.pendingSettled() }, 5*time.Second, time.Millisecond)
}

// pendingSettled: every pending move belongs to a session that holds it.
func (h *harness) pendingSettled() bool {
	h.rb.mu.Lock()
	defer h.rb.mu.Unlock()
	for id := range h.rb.pending {
		for _, s := range h.fs.list {
			if s.id == id {
				s.mu.Lock()
				held := s.hold && s.target != ""
				s.mu.Unlock()
				if !held {
					return false
				}
			}
		}
	}
	return true
}

func (h *harness) steps(n int) {
	for range n {
		h.step()
	}
}

func TestRebalanceDrainMovesEverySessionWithinItsCluster(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.Balance.EvictionsPerSecond = 50 },
		clusterView("east", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}, bk{"c:1", true}),
		// west has a healthy backend with the same address as east's drained one.
		clusterView("west", observer.StateReady, bk{"a:1", true}, bk{"z:1", true}))
	h.fs.add(h.rb, "east", "a:1", 40)
	west := h.fs.add(h.rb, "west", "a:1", 5)

	_, err := h.r.Drain("east/a:1", time.Minute)
	require.NoError(t, err)
	h.step()
	// 50/s at 10 rounds a second: 5 per round.
	require.Equal(t, 35, h.fs.countOn("east", "a:1"))
	h.steps(7)
	require.Zero(t, h.fs.countOn("east", "a:1"))
	require.Equal(t, 20, h.fs.countOn("east", "b:1"), "spread evenly over the remaining backends")
	require.Equal(t, 20, h.fs.countOn("east", "c:1"))
	require.Equal(t, 40, h.obs.get("east/drain/ok"))
	for _, s := range west {
		for _, to := range s.redirects {
			require.Equal(t, "z:1", to, "west's sessions only ever move inside west (by load)")
		}
	}
	require.Equal(t, 0, h.obs.get("west/drain/ok"), "west's a:1 is not drained")

	// Undrained: a:1 takes sessions again, by load.
	require.True(t, h.r.Undrain("east/a:1"))
	h.steps(50)
	require.InDelta(t, 13, h.fs.countOn("east", "a:1"), 1.01)
}

func TestRebalanceNeverTargetsAnotherCluster(t *testing.T) {
	// Every backend of east is unusable; west has healthy ones, even one with
	// the same address. Nothing may move.
	h := newHarness(t, nil,
		clusterView("east", observer.StateReady, bk{"a:1", false}, bk{"b:1", true}),
		clusterView("west", observer.StateReady, bk{"a:1", true}, bk{"w:1", true}))
	east := h.fs.add(h.rb, "east", "a:1", 10)
	h.fs.add(h.rb, "east", "b:1", 10)
	h.fs.add(h.rb, "west", "w:1", 30)
	_, err := h.r.Drain("east/b:1", time.Minute)
	require.NoError(t, err)
	h.r.SetFleetDown(map[string]bool{})
	h.steps(20)
	for _, s := range h.fs.list {
		for _, to := range s.redirects {
			if s.cluster == "east" {
				require.Fail(t, "east session redirected while east has no usable backend", "to %s", to)
			}
		}
	}
	require.Equal(t, 10, h.fs.countOn("east", "a:1"))
	// Claim refuses a backend of another cluster outright.
	_, err = h.r.Claim("east", "w:1")
	require.ErrorIs(t, err, ErrUnknownBackend)
	_, err = h.r.Claim("east", "b:1")
	require.ErrorIs(t, err, ErrNotRoutable)
	l, err := h.r.Claim("west", "w:1")
	require.NoError(t, err)
	require.Equal(t, "west", l.Cluster())
	l.Release()

	// A session of a cluster being removed (draining) is left alone too.
	h.tv.set(clusterView("east", observer.StateDraining, bk{"a:1", false}, bk{"b:1", true}),
		clusterView("west", observer.StateReady, bk{"a:1", true}, bk{"w:1", true}))
	h.steps(5)
	require.Empty(t, east[0].redirects)
}

func TestRebalanceEvictionReasons(t *testing.T) {
	h := newHarness(t, nil,
		clusterView("c", observer.StateReady, bk{"ok:1", true}, bk{"sick:1", false}, bk{"voted:1", true}, bk{"drained:1", true}))
	h.fs.add(h.rb, "c", "sick:1", 2)
	h.fs.add(h.rb, "c", "voted:1", 2)
	h.fs.add(h.rb, "c", "drained:1", 2)
	h.fs.add(h.rb, "c", "gone:1", 2) // not in the topology any more
	h.r.SetFleetDown(map[string]bool{"c/voted:1": true})
	_, err := h.r.Drain("c/drained:1", time.Minute)
	require.NoError(t, err)
	h.steps(3)
	require.Equal(t, 8, h.fs.countOn("c", "ok:1"))
	for _, reason := range []string{ReasonUnhealthy, ReasonVotedDown, ReasonDrain, ReasonRemoved} {
		require.Equal(t, 2, h.obs.get("c/"+reason+"/ok"), reason)
	}
	events, totals := h.rb.Recent()
	require.Len(t, events, 8)
	require.Equal(t, int64(8), totals[ResultOK])
	require.True(t, !events[0].Time.Before(events[7].Time), "newest first")
}

func TestRebalanceDrainTimeoutClosesWhatCannotMove(t *testing.T) {
	h := newHarness(t, nil, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	stuck := h.fs.add(h.rb, "c", "a:1", 2)
	stuck[0].notMove = "holds GET_LOCK"
	_, err := h.r.Drain("c/a:1", 10*time.Second)
	require.NoError(t, err)
	h.steps(5)
	require.Equal(t, "b:1", stuck[1].addr)
	require.Equal(t, "a:1", stuck[0].addr)
	require.Empty(t, stuck[0].evicted, "not before the deadline")

	h.now = h.now.Add(10 * time.Second)
	h.step()
	require.Contains(t, stuck[0].evicted, "backend c/a:1 was drained by an operator")
	require.Contains(t, stuck[0].evicted, "holds GET_LOCK")
	require.Empty(t, stuck[1].evicted)
	require.Equal(t, 1, h.obs.get("c/drain/closed"))
	h.steps(3)
	require.Equal(t, 1, h.obs.get("c/drain/closed"), "closed once")

	// A session whose moves fail is closed with the last failure's reason.
	h3 := newHarness(t, nil, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	ff := h3.fs.add(h3.rb, "c", "a:1", 1)
	ff[0].hold = true
	_, err = h3.r.Drain("c/a:1", 2*time.Second)
	require.NoError(t, err)
	h3.step()
	require.Len(t, ff[0].redirects, 1)
	ff[0].mu.Lock()
	ff[0].target = ""
	ff[0].mu.Unlock()
	h3.rb.MigrationDone(MigrationResult{SessionID: ff[0].id, Cluster: "c", From: "a:1", To: "b:1",
		Result: ResultRefused, Err: errors.New("TiDB: cannot migrate the current session: table locks")})
	h3.now = h3.now.Add(2 * time.Second)
	h3.step()
	require.Contains(t, ff[0].evicted, "its last attempt failed: TiDB: cannot migrate the current session: table locks")

	// Rebalancing off: a drain still closes at its deadline, nothing moves.
	h2 := newHarness(t, func(c *config.Config) { c.Balance.EnableRebalance = false },
		clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	ss := h2.fs.add(h2.rb, "c", "a:1", 2)
	_, err = h2.r.Drain("c/a:1", time.Second)
	require.NoError(t, err)
	h2.steps(5)
	require.Empty(t, ss[0].redirects)
	h2.now = h2.now.Add(time.Second)
	h2.step()
	require.NotEmpty(t, ss[0].evicted)
	require.NotEmpty(t, ss[1].evicted)
}

// The rebalance scenario: 100 sessions on one backend, a second one
// joins. They spread to within the ratio, no faster than the rate, and never
// swing back (moves counted over 60 s).
func TestRebalanceSpreadsWithinRatioAtRateWithoutOscillation(t *testing.T) {
	h := newHarness(t, func(c *config.Config) {
		c.Balance.MigrationsPerSecond = 5
		c.Balance.RebalanceRatio = 1.2
	}, clusterView("c", observer.StateReady, bk{"a:1", true}))
	h.fs.add(h.rb, "c", "a:1", 100)
	h.steps(10)
	require.Equal(t, 100, h.fs.countOn("c", "a:1"), "nowhere to go")

	h.tv.set(clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	moved := func() int {
		n := 0
		for _, s := range h.fs.list {
			n += len(s.redirects)
		}
		return n
	}
	h.steps(10) // one second
	require.LessOrEqual(t, moved(), 5+1, "at most migrations-per-second (plus one saved token)")
	h.steps(600) // a minute
	a, b := h.fs.countOn("c", "a:1"), h.fs.countOn("c", "b:1")
	require.Equal(t, 100, a+b)
	require.LessOrEqual(t, float64(a), float64(b+1)*1.2, "within the ratio: a=%d b=%d", a, b)
	require.LessOrEqual(t, float64(b), float64(a+1)*1.2, "within the ratio: a=%d b=%d", a, b)
	total := moved()
	require.Equal(t, 100-a, total, "every move went a→b: none came back")
	for _, s := range h.fs.list {
		require.LessOrEqual(t, len(s.redirects), 1, "session %d moved more than once", s.id)
	}
	h.steps(600)
	require.Equal(t, total, moved(), "balanced: no more moves")
}

// A quiet rebalancer (nothing to move, nothing pending) does not look at
// every session at every beat: only when the sessions' number, the
// topology or the settings change, and once every quietRoundEvery.
func TestRebalanceQuietBeatsSkipRounds(t *testing.T) {
	h := newHarness(t, nil, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	h.fs.add(h.rb, "c", "a:1", 10)
	h.fs.add(h.rb, "c", "b:1", 10)
	rounds := func() int {
		h.fs.mu.Lock()
		defer h.fs.mu.Unlock()
		return h.fs.rounds
	}
	h.step()
	require.Equal(t, 1, rounds(), "the first beat runs a round")
	h.steps(5)
	require.Equal(t, 1, rounds(), "balanced and unchanged: no round for half a second")

	h.fs.add(h.rb, "c", "a:1", 1)
	h.step()
	require.Equal(t, 2, rounds(), "a new session: a round")
	h.steps(int(quietRoundEvery/rebalanceTick) - 1)
	require.Equal(t, 2, rounds())
	h.step()
	require.Equal(t, 3, rounds(), "a quiet rebalancer still runs a round every %s", quietRoundEvery)

	h.tv.set(clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	h.step()
	require.Equal(t, 4, rounds(), "a new topology: a round")
	h.rb.Update(config.NewDefault())
	h.step()
	require.Equal(t, 5, rounds(), "new settings: a round")

	// Busy: sessions to spread at the default rate take a round at every
	// beat until they are spread, then the beats go quiet again.
	h.fs.add(h.rb, "c", "a:1", 40)
	for i := range 5 {
		h.step()
		require.Equal(t, 6+i, rounds(), "busy: a round at every beat")
	}
	h.steps(200)
	a, b := h.fs.countOn("c", "a:1"), h.fs.countOn("c", "b:1")
	require.LessOrEqual(t, float64(a), float64(b+1)*config.NewDefault().Balance.RebalanceRatio, "spread: a=%d b=%d", a, b)
	settled := rounds()
	h.steps(20)
	require.LessOrEqual(t, rounds()-settled, 2, "spread: quiet again, a round a second in 2 s")
}

func TestRebalanceRespectsMigratableAndFailures(t *testing.T) {
	h := newHarness(t, nil, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	ss := h.fs.add(h.rb, "c", "a:1", 10)
	for _, s := range ss {
		s.notMove = "in a transaction"
	}
	h.steps(20)
	for _, s := range ss {
		require.Empty(t, s.redirects)
	}
	// A session whose move fails is not asked again at once.
	ss[0].notMove, ss[0].hold = "", true
	h.step()
	require.Len(t, ss[0].redirects, 1)
	require.Equal(t, 1, h.rb.Pending())
	h.step()
	require.Len(t, ss[0].redirects, 1, "pending: not asked twice")
	ss[0].complete(ResultFailed)
	require.Eventually(t, func() bool { return h.rb.Pending() == 0 }, 5*time.Second, time.Millisecond)
	h.steps(int(retryAfterFailure/rebalanceTick) - 2)
	require.Len(t, ss[0].redirects, 1, "not within retryAfterFailure")
	h.steps(5)
	require.Len(t, ss[0].redirects, 2, "asked again after retryAfterFailure")
	ss[0].complete(ResultOK)
	require.Eventually(t, func() bool { return h.obs.get("c/load-sessions/failed") == 1 && h.obs.get("c/load-sessions/ok") == 1 }, 5*time.Second, time.Millisecond)
}

func TestRebalanceCPUDeadbandAndPerReadingLimit(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	view := func(cpuA, cpuB float64) *observer.ClusterView {
		v := clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true})
		v.Backends[0].Metrics = observer.Metrics{HasCPU: true, CPU: cpuA, UpdatedAt: at}
		v.Backends[1].Metrics = observer.Metrics{HasCPU: true, CPU: cpuB, UpdatedAt: at}
		return v
	}
	h := newHarness(t, func(c *config.Config) {
		c.Balance.Policy = config.PolicyResource
		c.Balance.MigrationsPerSecond = 100
	}, view(0.8, 0.1))
	h.fs.add(h.rb, "c", "a:1", 20)
	h.fs.add(h.rb, "c", "b:1", 20)
	h.steps(100)
	// 0.04 CPU per session on a: moving n sessions closes the gap by 0.08n;
	// the moves stop once the gap is within cpu-gap (0.2): 0.7-0.08n <= 0.2,
	// n = 7, on this one reading however long the next one takes.
	a := h.fs.countOn("c", "a:1")
	require.Equal(t, 13, a, "moves on one reading stop at the deadband")
	// Sessions balancing must not pull them back: a is still busier by CPU.
	h.steps(100)
	require.Equal(t, 13, h.fs.countOn("c", "a:1"))

	// A gap within the deadband moves nothing.
	h2 := newHarness(t, func(c *config.Config) { c.Balance.Policy = config.PolicyResource }, view(0.5, 0.35))
	h2.fs.add(h2.rb, "c", "a:1", 10)
	h2.fs.add(h2.rb, "c", "b:1", 10)
	h2.steps(50)
	require.Equal(t, 10, h2.fs.countOn("c", "a:1"))
}

func TestRebalanceRateBucket(t *testing.T) {
	rb := &Rebalancer{buckets: map[string]*bucket{}}
	now := time.Unix(0, 0)
	got := 0
	for range 100 { // 10 s in rounds
		now = now.Add(rebalanceTick)
		for rb.take("c", "f", 2, now) {
			got++
		}
	}
	require.InDelta(t, 20, got, 1)
	// Per cluster and factor.
	require.True(t, rb.take("d", "f", 2, now))
	require.True(t, rb.take("c", "g", 2, now))
}

func TestRebalancerStartClose(t *testing.T) {
	h := newHarness(t, nil, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	h.rb.now = time.Now
	h.r.now = time.Now
	h.fs.add(h.rb, "c", "a:1", 4)
	_, err := h.r.Drain("c/a:1", time.Minute)
	require.NoError(t, err)
	h.rb.Start(context.Background())
	require.Eventually(t, func() bool { return h.fs.countOn("c", "b:1") == 4 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return h.obs.get("c/drain/ok") == 4 }, 10*time.Second, 10*time.Millisecond)
	h.rb.Close()
	h.rb.Close()
}

// A reload's [balance] settings apply from the next round: here the rate.
func TestRebalanceUpdateAppliesRate(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.Balance.EvictionsPerSecond = 10 },
		clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	h.fs.add(h.rb, "c", "a:1", 40)
	_, err := h.r.Drain("c/a:1", time.Minute)
	require.NoError(t, err)
	h.step()
	require.Equal(t, 39, h.fs.countOn("c", "a:1"), "10/s: one per round")
	cfg := config.NewDefault()
	cfg.Balance.Policy = config.PolicyConnection
	cfg.Balance.EvictionsPerSecond = 100
	h.rb.Update(cfg)
	h.step()
	require.Equal(t, 29, h.fs.countOn("c", "a:1"), "100/s: ten per round")
	cfg.Balance.EnableRebalance = false
	h.rb.Update(cfg)
	h.steps(5)
	require.Equal(t, 29, h.fs.countOn("c", "a:1"), "rebalancing off: nothing moves")
}
