package health

import (
	"cmp"
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/lib/cadence"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/ctxerr"
	"github.com/switchyard-db/switchyard/lib/httpkeep"
	"github.com/switchyard-db/switchyard/lib/lifecycle"
	"github.com/switchyard-db/switchyard/lib/notify"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Health prober defaults, for the fields of a HealthConfig left zero: the
// [health-check] defaults of the configuration, so the two cannot part.
const (
	DefaultHealthInterval      = config.DefaultHealthInterval
	DefaultHealthRetryInterval = config.DefaultHealthRetryInterval
	DefaultHealthTimeout       = config.DefaultHealthTimeout
	DefaultFailuresToUnhealthy = config.DefaultFailuresToUnhealthy
	// DefaultMaxInFlight bounds the probes of one cluster that run at once:
	// more backends than this hanging together delay the others' probes by
	// up to a probe timeout.
	DefaultMaxInFlight = 8
)

// maxStatusBody bounds how much of a /status answer is read; TiDB's is a
// small JSON object.
const maxStatusBody = 64 << 10

var (
	// ErrUnknownTarget is returned by ProbeNow for an address the prober does
	// not probe.
	ErrUnknownTarget = errors.New("health: not a probe target")
	// ErrProberClosed is returned by ProbeNow after Close.
	ErrProberClosed = errors.New("health: prober closed")
)

// ErrNotProbed is the reason of a backend that has not been probed yet.
var ErrNotProbed = errors.New("not probed yet")

// Target is one backend to probe.
type Target struct {
	// Addr is the SQL host:port; it identifies the target.
	Addr string
	// StatusPort is TiDB's HTTP status port on the same host; 0 skips the
	// HTTP check (plain MySQL servers have none).
	StatusPort uint
}

// HealthConfig tunes a Prober. Zero values mean the defaults.
type HealthConfig struct {
	Interval time.Duration // between probes of a backend, default 2s
	// RetryInterval, default 500ms, is the wait before probing again a
	// backend whose last probe failed while it still counts as healthy
	// (HAProxy's fastinter). So a failure is confirmed or cleared in a
	// fraction of Interval, and a dead backend is noticed within Interval
	// plus (FailuresToUnhealthy-1) retries, while a healthy one costs one
	// probe per Interval. An unhealthy backend is probed every Interval. It
	// has no effect when not shorter than Interval.
	RetryInterval       time.Duration
	Timeout             time.Duration // per probe (SQL and status together), default 1s
	FailuresToUnhealthy int           // consecutive failures, default 3
	// SQLUser, when set, makes the prober log in to each backend as this
	// user once and keep the connection, checking it with COM_PING at each
	// probe; it connects again only when that fails. Without it, each probe
	// is a new connection that reads the greeting and hangs up.
	SQLUser string
	// SQLPassword is SQLUser's password ("" for none). It is never logged
	// nor part of a Reason or an error.
	SQLPassword string
	// StatusTLS, when non-nil, makes the status check use https.
	StatusTLS *tls.Config
	// MaxInFlight bounds the workers running at once, default
	// DefaultMaxInFlight. A worker runs one probe at a time; the due probes
	// on kept connections (pings, and status checks) are the loop's own
	// job, besides.
	MaxInFlight int
}

// String leaves the password out, should a HealthConfig be logged.
func (c HealthConfig) String() string {
	pw := ""
	if c.SQLPassword != "" {
		pw = " sql-password=<redacted>"
	}
	return fmt.Sprintf("interval=%s retry-interval=%s timeout=%s failures-to-unhealthy=%d sql-user=%q%s tls=%t max-in-flight=%d",
		c.Interval, c.RetryInterval, c.Timeout, c.FailuresToUnhealthy, c.SQLUser, pw, c.StatusTLS != nil, c.MaxInFlight)
}

// GoString is String, for %#v.
func (c HealthConfig) GoString() string { return c.String() }

func (c HealthConfig) withDefaults() HealthConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultHealthRetryInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultHealthTimeout
	}
	if c.FailuresToUnhealthy <= 0 {
		c.FailuresToUnhealthy = DefaultFailuresToUnhealthy
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	return c
}

// Prober probes the backends of one cluster. Each cluster runtime owns its
// own Prober, so a cluster whose backends hang only slows its own verdicts.
//
// One loop goroutine schedules every target by the time its next probe is
// due (a heap); due targets queue for at most MaxInFlight short-lived
// workers, which exit when the queue is empty. The due probes that need
// nothing but kept connections (a COM_PING, and a GET of /status) are the
// loop's own job, which it runs together (roundLocked): a worker for them
// cost a goroutine's start and one more wake-up per round, 0.6-0.9 point of
// a core for 1,000 backends. So a prober costs one goroutine while idle,
// however many backends it probes.
// (Workers that waited an interval for more work measured worse: more
// goroutines, and more CPU in timers and wake-ups than the stack growth of
// new ones.)
//
// A target's first probe runs at once; then it is probed in its prober's
// phase: every Interval at an instant of the process's cadence grid chosen
// at random per prober (lib/cadence). So one cluster's backends are probed
// together (at most MaxInFlight at a time), and the clusters that drew the
// same instant run their rounds on one wake-up of the process, while the
// rounds still spread over the interval's instants. (A random phase per
// backend measured worse: a thousand wake-ups a second cost more than the
// probes they run; a random phase per prober, watcher and metrics reader
// made the process's threads sleep and wake about 2,000 times a second for
// 100 clusters, against about 400 with all three on the grid.) A failed
// probe of a target that still counts as healthy is made again after
// RetryInterval instead, off the phase, until a verdict is reached.
type Prober struct {
	lg     *zap.Logger
	cfg    HealthConfig
	dialer *net.Dialer
	// statusTLS, when set, is the status check's TLS client config.
	statusTLS *tls.Config

	// rounds is a test seam. When set, it replaces the schedule: each
	// receive makes every target that is not being probed due at once, and
	// apart from a new target's first probe nothing else is scheduled.
	rounds <-chan time.Time

	results atomic.Pointer[map[string]observer.Health]
	updates notify.Signal
	// wake asks the loop to look at the schedule again: a target was added,
	// or is now due before the loop's timer fires.
	wake notify.Signal

	// life ends with Close; it also bounds ProbeNow.
	life     context.Context
	lifeStop context.CancelFunc

	// phase is when this prober's probes are due, modulo Interval: an
	// instant of the cadence grid, at random.
	phase time.Time

	// dials counts the connections made to keep a probe connection.
	dials atomic.Uint64
	// statusKept makes the scheduled status checks, on kept connections;
	// statusOnce ProbeNow's, each on a new connection.
	statusKept, statusOnce *httpkeep.Client

	mu      sync.Mutex
	targets map[string]*targetState
	sched   schedule       // targets waiting for their next probe, earliest first
	ready   []*targetState // due, waiting for a worker, in order
	changed bool           // a verdict changed that Updates has not signalled yet
	armed   time.Time      // when the loop's timer fires; zero: not armed
	workers int

	loop   lifecycle.Loop // the schedule loop
	probes sync.WaitGroup // workers; Added under mu
	// greetings starts and reads the greeting probes of the loop's rounds
	// (roundLocked), made at the first; Close closes it.
	greetings *mysql.GreetingSet
}

// farFuture is the due time of a target that only a test's round makes due.
var farFuture = time.Now().Add(100 * 365 * 24 * time.Hour)

// targetState is the state machine of one target. It is replaced, not
// reused, when a target is removed and added again, so that a late result of
// the old probe can be recognised and dropped.
type targetState struct {
	t Target
	// status is the GET of t's /status (HostPort empty without a status
	// port), worked out when t is set, not at each probe.
	status httpkeep.Target
	// greetAt is t's address for a round's greeting probe (zero when
	// mysql.GreetingAddr takes no such address): without SQLUser, such a
	// target's probe is the round's too. Set when the target is made, never
	// changed, so a round reads it without the lock.
	greetAt netip.AddrPort
	h       observer.Health
	// due is when the next probe should start. idx is the target's place in
	// the schedule, -1 while it is not there (queued, being probed, removed).
	due time.Time
	idx int
	// phased: the next probe is due in the prober's phase. It is not for a
	// new target's first probe, nor for a retry (RetryInterval).
	phased  bool
	removed bool               // gone from the targets; a queued entry is skipped
	cancel  context.CancelFunc // of the probe in flight, or nil
	// kept are the target's kept connections while no probe runs; the probe
	// (a worker's, or the loop's round) holds them meanwhile.
	kept keptConns
}

// keptConns are the connections a target keeps between probes.
type keptConns struct {
	sql    *mysql.ProbeConn // logged in as SQLUser (set), pinged
	status *httpkeep.Conn   // to the status port, asked for /status
}

// take hands the connections over: k is empty afterwards.
func (k *keptConns) take() keptConns {
	out := *k
	*k = keptConns{}
	return out
}

// minus is the connections of k that keep does not hold.
func (k keptConns) minus(keep keptConns) keptConns {
	if k.sql == keep.sql {
		k.sql = nil
	}
	if k.status == keep.status {
		k.status = nil
	}
	return k
}

func (k keptConns) close() {
	if k.sql != nil {
		_ = k.sql.Close()
	}
	k.status.Close()
}

// schedule is a min-heap of targets by due time.
type schedule []*targetState

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].idx, s[j].idx = i, j
}
func (s *schedule) Push(x any) {
	st := x.(*targetState)
	st.idx = len(*s)
	*s = append(*s, st)
}
func (s *schedule) Pop() any {
	old := *s
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*s = old[:len(old)-1]
	st.idx = -1
	return st
}

// NewProber builds a prober for one cluster without doing any I/O.
func NewProber(lg *zap.Logger, cluster string, cfg HealthConfig) *Prober {
	cfg = cfg.withDefaults()
	// No TCP keep-alive: a kept probe connection is pinged every interval,
	// and the others live for one handshake.
	dialer := &net.Dialer{KeepAlive: -1}
	life, stop := context.WithCancel(context.Background())
	p := &Prober{
		lg:        lg.Named("health").With(zap.String("cluster", cluster)),
		cfg:       cfg,
		dialer:    dialer,
		statusTLS: cfg.StatusTLS.Clone(),
		updates:   notify.NewSignal(),
		wake:      notify.NewSignal(),
		life:      life,
		lifeStop:  stop,
		targets:   map[string]*targetState{},
	}
	p.statusKept = &httpkeep.Client{Dialer: dialer, Keep: true, OnRetry: func(hostPort string, err error) {
		p.lg.Debug("kept status connection failed, connecting again", zap.String("addr", hostPort), zap.Error(err))
	}}
	p.statusOnce = &httpkeep.Client{Dialer: dialer}
	p.phase = cadence.Phase(cfg.Interval)
	p.results.Store(&map[string]observer.Health{})
	return p
}

// Start launches the probe loop: the targets known are probed at once, then
// each every Interval. Calls after the first, or after Close, do nothing.
func (p *Prober) Start(ctx context.Context) { p.loop.Start(ctx, p.run) }

// Close stops probing, cancels the probes in flight, closes the kept probe
// connections and waits for every goroutine. It is idempotent and safe
// without Start.
func (p *Prober) Close() {
	p.lifeStop()
	p.loop.Close()
	if p.greetings != nil {
		_ = p.greetings.Close()
	}
}

// Dials is how many connections the prober has made to log in and keep
// (SQLUser set): one per backend, plus one each time a kept connection
// failed. Probes without a user, and ProbeNow, are not counted.
func (p *Prober) Dials() uint64 { return p.dials.Load() }

// StatusDials is how many connections the scheduled status checks have
// made: one per backend with a status port, plus one each time a kept one
// failed, was closed by the server or aged out (httpkeep.MaxAge). ProbeNow's
// are not counted.
func (p *Prober) StatusDials() uint64 { return p.statusKept.Dials() }

// SetTargets replaces the set of targets. New ones are probed at once and are
// healthy until probed; removed ones are forgotten, their probes in flight
// cancelled and their kept connections closed. A target already known keeps
// its state (a new StatusPort is used from its next probe). Safe from any
// goroutine.
func (p *Prober) SetTargets(ts []Target) {
	want := make(map[string]Target, len(ts))
	for _, t := range ts {
		want[t.Addr] = t
	}
	var closing []keptConns
	defer func() {
		for _, k := range closing {
			k.close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	changed, added := false, false
	for addr, st := range p.targets {
		if _, ok := want[addr]; !ok {
			st.removed = true
			if st.cancel != nil {
				st.cancel()
			}
			if st.idx >= 0 {
				heap.Remove(&p.sched, st.idx)
			}
			closing = append(closing, st.kept.take())
			delete(p.targets, addr)
			changed = true
		}
	}
	now := time.Now()
	for addr, t := range want {
		if st, ok := p.targets[addr]; ok {
			st.t, st.status = t, p.statusTarget(t)
			continue
		}
		st := &targetState{t: t, status: p.statusTarget(t), h: observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, due: now, idx: -1}
		st.greetAt = mysql.GreetingAddr(addr)
		p.targets[addr] = st
		heap.Push(&p.sched, st)
		changed, added = true, true
	}
	if !changed {
		return
	}
	p.changed = true
	p.publishLocked()
	if added {
		p.wake.Notify()
	}
}

// Results returns the latest verdicts keyed by Addr. The map is shared and
// must not be modified; a new one replaces it after every probe.
func (p *Prober) Results() map[string]observer.Health { return *p.results.Load() }

// Updates signals that some target's Healthy or Reason changed, or that the
// target set changed. It holds at most one pending signal; read Results after
// each receive. Probes that only advance LastProbe or Failures do not signal.
func (p *Prober) Updates() <-chan struct{} { return p.updates.C() }

// ProbeNow probes addr once, now, without touching its state machine: the
// verdict is that one probe's (Failures 0 or 1). It is for callers that need
// a fresh opinion, such as a fleet vote. The error is ErrUnknownTarget or
// ErrProberClosed; a failed probe is reported in the Health.
func (p *Prober) ProbeNow(ctx context.Context, addr string) (observer.Health, error) {
	p.mu.Lock()
	st, ok := p.targets[addr]
	var t Target
	if ok {
		t = st.t
	}
	p.mu.Unlock()
	if p.life.Err() != nil {
		return observer.Health{}, ErrProberClosed
	}
	if !ok {
		return observer.Health{}, fmt.Errorf("%w: %s", ErrUnknownTarget, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(p.life, cancel)
	defer stop()
	server, err := p.probe(ctx, t)
	if err != nil && p.life.Err() != nil {
		return observer.Health{}, ErrProberClosed
	}
	h := observer.Health{Healthy: err == nil, LastProbe: time.Now(), Server: server}
	if err != nil {
		h.Reason, h.Failures = reasonOf(err), 1
	}
	return h, nil
}

// run hands due targets to workers, and probes on kept connections itself,
// until ctx ends, then waits for the probes in flight, which ctx has
// cancelled, and closes the kept connections.
func (p *Prober) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		timer.Stop()
		p.probes.Wait()
		p.closeConns()
	}()
	for {
		p.mu.Lock()
		next := p.dispatchLocked(ctx, time.Now())
		p.armed = next
		p.mu.Unlock()
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-fire:
		case <-p.wake.C():
		case <-p.rounds:
			p.mu.Lock()
			now := time.Now()
			for _, st := range p.sched {
				st.due = now
			}
			p.mu.Unlock()
		}
		timer.Stop()
	}
}

// dispatchLocked queues the due targets that need to connect for workers,
// starts the workers they need, up to MaxInFlight, and runs the round of
// the others (inRound). It returns when the next target is due (zero: none
// is scheduled).
func (p *Prober) dispatchLocked(ctx context.Context, now time.Time) time.Time {
	var round []*targetState
	for len(p.sched) > 0 && !p.sched[0].due.After(now) {
		st := heap.Pop(&p.sched).(*targetState)
		if p.inRound(st) {
			round = append(round, st)
		} else {
			p.ready = append(p.ready, st)
		}
	}
	p.startWorkersLocked(ctx)
	if len(round) > 0 {
		// Bounded by Timeout, which also bounds how long a target that
		// becomes due meanwhile waits to be dispatched.
		p.roundLocked(ctx, round)
	}
	if len(p.sched) == 0 {
		return time.Time{}
	}
	return p.sched[0].due
}

// startWorkersLocked starts a worker for each target queued to be probed
// alone, up to MaxInFlight.
func (p *Prober) startWorkersLocked(ctx context.Context) {
	for n := min(len(p.ready), p.cfg.MaxInFlight-p.workers); n > 0; n-- {
		p.workers++
		p.probes.Add(1)
		go p.worker(ctx)
	}
}

// worker probes queued targets one after another and exits when none is
// left, so that an idle prober has no worker. A target is queued at most
// once and is back in the schedule only after its probe, so it is never
// probed concurrently with itself: one slower than Interval is probed back
// to back while the others keep their pace.
func (p *Prober) worker(ctx context.Context) {
	defer p.probes.Done()
	p.mu.Lock()
	for {
		if ctx.Err() != nil || len(p.ready) == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		st := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		if st.removed {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		st.cancel = cancel
		t, status, kept := st.t, st.status, st.kept.take()
		p.mu.Unlock()

		server, kept, err := p.probeKept(pctx, t, status, kept)
		cancel()

		p.mu.Lock()
		if p.finishLocked(ctx, st, server, err, kept) {
			p.publishLocked()
		} else {
			p.mu.Unlock()
			kept.close()
			p.mu.Lock()
		}
	}
}

// pingGrace is how long an answer is waited for once the round's time is
// up: long enough to read one that is already there, also when the
// goroutine is descheduled between setting the deadline and the read (Go
// fails a read whose deadline has passed without trying it). At 1 ms, about
// one round in a hundred lost an answer that was there, on a loaded machine
// (TestRoundWithStatusPorts).
const pingGrace = 10 * time.Millisecond

// inRound reports whether st's probe needs nothing but its kept
// connections, or a greeting on a new connection: a COM_PING on the kept
// SQL connection (SQLUser set) or a greeting (mysql.GreetingProbe, when
// st's address is an IP and its last probe passed) and, with a status
// port, a GET of /status on the kept status connection while that is fresh
// (httpkeep.MaxAge). The loop runs those probes itself, together
// (roundLocked); the others connect (or read a greeting from an address to
// resolve), and run in workers.
//
// A round lasts until its slowest answer, up to Timeout, and the loop
// dispatches nothing meanwhile. So a target whose probe failed is probed by
// a worker until one passes: a backend that went silent stalls one round,
// as a kept connection's unanswered ping does, not every round. A new
// target's first probe is a worker's too.
func (p *Prober) inRound(st *targetState) bool {
	k := st.kept
	switch {
	case p.cfg.SQLUser == "" && !(st.greetAt.IsValid() && passed(st.h)), p.cfg.SQLUser != "" && k.sql == nil:
		return false
	case st.t.StatusPort == 0:
		return k.status == nil
	default:
		return k.status != nil && k.status.Fresh(st.status.HostPort)
	}
}

// passed tells whether a target's last probe passed.
func passed(h observer.Health) bool { return !h.LastProbe.IsZero() && h.Failures == 0 }

// roundProbe is one target's probe in a round.
type roundProbe struct {
	kept keptConns
	// greet is the SQL port's probe without SQLUser, a greeting; server is
	// what the greeting announced.
	greet  *mysql.GreetingProbe
	server *observer.ServerInfo
	status httpkeep.Target // the GET, when kept.status is set
	code   int             // the status port's answer
	// reusable: the status connection can carry the next GET.
	reusable          bool
	sqlErr, statusErr error
}

// roundLocked probes batch, targets whose probe needs only their kept
// connections (inRound), together: it writes every COM_PING and every GET of
// /status, then reads the answers in turn. So the loop parks about once for
// them all instead of twice per target, and no probe needs a context, a
// deadline or a goroutine of its own. One timer bounds them all by Timeout:
// when it fires, the connection being written or read gets a deadline in
// the past, and each one after it pingGrace to show an answer already
// there. The verdicts are probeKept's: an answer that does not come in time
// fails the probe; a connection that failed otherwise (the server may have
// closed it while it was idle) sends the target to a worker, with the
// connections that still work, to connect anew within the same probe. It
// is called with p.mu held, and releases it while it waits on the network.
func (p *Prober) roundLocked(ctx context.Context, batch []*targetState) {
	probes := make([]roundProbe, len(batch))
	for i, st := range batch {
		probes[i].kept = st.kept.take()
		if probes[i].kept.status != nil {
			probes[i].status = st.status
		}
	}
	p.mu.Unlock()

	var (
		mu      sync.Mutex
		cur     ctxerr.Deadliner // the connection being written or read
		expired bool             // Timeout passed, or ctx ended
		done    bool             // the round is over: expire must not touch the connections
	)
	expire := func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			expired = true
			if cur != nil {
				_ = cur.SetDeadline(time.Now())
			}
		}
	}
	timer := time.AfterFunc(p.cfg.Timeout, expire)
	stop := context.AfterFunc(ctx, expire)
	step := func(c ctxerr.Deadliner, f func() error) error {
		mu.Lock()
		cur = c
		if expired {
			_ = c.SetDeadline(time.Now().Add(pingGrace))
		}
		mu.Unlock()
		err := f()
		mu.Lock()
		cur = nil
		mu.Unlock()
		return err
	}
	greeting := p.cfg.SQLUser == ""
	var setErr error
	if greeting && p.greetings == nil {
		p.greetings, setErr = mysql.NewGreetingSet()
	}
	for i := range probes {
		pr := &probes[i]
		switch {
		case setErr != nil:
			pr.sqlErr = fmt.Errorf("connect: %w", setErr)
		case greeting:
			pr.greet, pr.sqlErr = p.greetings.Start(batch[i].greetAt)
		default:
			pr.sqlErr = step(pr.kept.sql, pr.kept.sql.SendPing)
		}
		if pr.kept.status != nil {
			pr.statusErr = step(pr.kept.status, pr.kept.status.Send)
		}
	}
	for i := range probes {
		switch pr := &probes[i]; {
		case pr.sqlErr != nil:
		case greeting:
			pr.sqlErr = step(pr.greet, func() error {
				hs, err := pr.greet.Read(ctx)
				pr.server = serverInfo(hs)
				return err
			})
		default:
			pr.sqlErr = step(pr.kept.sql, pr.kept.sql.ReadPong)
		}
	}
	for i := range probes {
		if pr := &probes[i]; pr.kept.status != nil && pr.statusErr == nil {
			pr.statusErr = step(pr.kept.status, func() (err error) {
				pr.code, pr.reusable, err = pr.kept.status.Receive(pr.status, nil)
				return err
			})
		}
	}
	timer.Stop()
	stop()
	mu.Lock()
	done = true
	deadlines := expired
	mu.Unlock()

	var closing []keptConns
	p.mu.Lock()
	for i, st := range batch {
		keep, err, retry := p.roundVerdict(ctx, &probes[i])
		closing = append(closing, probes[i].kept.minus(keep))
		if deadlines {
			if keep.sql != nil {
				_ = keep.sql.SetDeadline(time.Time{})
			}
			if keep.status != nil {
				_ = keep.status.SetDeadline(time.Time{})
			}
		}
		if retry != nil && !st.removed {
			p.lg.Debug("kept probe connection failed, connecting again", zap.String("addr", st.t.Addr), zap.Error(retry))
			st.kept = keep
			p.ready = append(p.ready, st)
			continue
		}
		if !p.finishLocked(ctx, st, probes[i].server, err, keep) {
			closing = append(closing, keep)
		}
	}
	p.publishLocked()
	p.startWorkersLocked(ctx)
	p.mu.Unlock()
	for _, k := range closing {
		k.close()
	}
	p.mu.Lock()
}

// roundVerdict is a round's probe's outcome: the connections to keep, and
// either the probe's error (nil: healthy) or, when a connection failed
// otherwise than by time and none did by time, why the probe is to be
// made again by a worker (retry).
func (p *Prober) roundVerdict(ctx context.Context, pr *roundProbe) (keep keptConns, err, retry error) {
	late := func(err error) bool { return ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) }
	keep = pr.kept
	if p.cfg.SQLUser == "" {
		// A greeting probe: its failure is the verdict (a full server's
		// refusal passes).
		err = sqlPortErr(pr.sqlErr)
	} else if pr.sqlErr != nil {
		keep.sql = nil
		if late(pr.sqlErr) {
			err = fmt.Errorf("sql port: ping: %w", ctxerr.Stable(ctx, pr.sqlErr))
		} else {
			retry = fmt.Errorf("sql port: ping: %w", pr.sqlErr)
		}
	}
	if keep.status == nil {
		return keep, err, retry
	}
	switch {
	case pr.statusErr != nil:
		keep.status = nil
		if !late(pr.statusErr) {
			retry = cmp.Or(retry, statusError(pr.status, pr.statusErr))
		} else if err == nil {
			err = statusError(pr.status, ctxerr.Stable(ctx, pr.statusErr))
		}
	case !pr.reusable:
		keep.status = nil
	}
	if err != nil {
		return keep, err, nil
	}
	if retry != nil {
		return keep, nil, retry
	}
	return keep, statusVerdict(pr.code), nil
}

// finishLocked records a probe's result, keeps its connection and
// schedules the target's next probe, unless the probe was cut short by
// Close or the target was removed meanwhile: neither says anything about the
// backend. It reports whether the target took kept.
func (p *Prober) finishLocked(ctx context.Context, st *targetState, server *observer.ServerInfo, err error, kept keptConns) bool {
	if ctx.Err() != nil || p.targets[st.t.Addr] != st {
		return false
	}
	st.cancel = nil
	st.kept = kept
	p.recordLocked(st, server, err)
	now := time.Now()
	switch {
	case p.rounds != nil:
		st.due = farFuture
	case err != nil && st.h.Healthy && p.cfg.RetryInterval < p.cfg.Interval:
		// A failure that is not a verdict yet: look again soon, off the
		// phase, so that it is confirmed or cleared within a fraction of
		// an interval. The probe after that returns to the phase.
		st.phased = false
		st.due = now.Add(p.cfg.RetryInterval)
	case !st.phased:
		// From the first probe on, and after a retry, the prober's phase.
		st.phased = true
		st.due = p.nextSlot(now)
	default:
		// Keep the phase; a probe that overran its interval is followed
		// by the next slot.
		st.due = st.due.Add(p.cfg.Interval)
		if st.due.Before(now) {
			st.due = p.nextSlot(now)
		}
	}
	heap.Push(&p.sched, st)
	if p.armed.IsZero() || st.due.Before(p.armed) {
		p.wake.Notify()
	}
	return true
}

// nextSlot is the first time after now in the prober's phase: the same
// instant for every target, and for every prober with the same phase.
func (p *Prober) nextSlot(now time.Time) time.Time {
	return cadence.Next(p.phase, p.cfg.Interval, now)
}

// closeConns closes the kept connections once no worker runs.
func (p *Prober) closeConns() {
	var closing []keptConns
	p.mu.Lock()
	for _, st := range p.targets {
		closing = append(closing, st.kept.take())
	}
	p.mu.Unlock()
	for _, k := range closing {
		k.close()
	}
}

// record feeds one probe result into the target's state machine, unless the
// probe was cut short by Close or the target was removed meanwhile.
func (p *Prober) record(ctx context.Context, st *targetState, server *observer.ServerInfo, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil || p.targets[st.t.Addr] != st {
		return
	}
	st.cancel = nil
	p.recordLocked(st, server, err)
	p.publishLocked()
}

// recordLocked feeds one probe result into the target's state machine. The
// caller then publishes it (publishLocked), once for all the results it
// records together.
func (p *Prober) recordLocked(st *targetState, server *observer.ServerInfo, err error) {
	old := st.h
	st.h = nextHealth(old, err, time.Now(), p.cfg.FailuresToUnhealthy)
	if server != nil {
		st.h.Server = server
	}
	serverChanged := !sameServer(old.Server, st.h.Server)
	if serverChanged {
		// The greeting the proxy offers clients follows the backends'.
		p.lg.Info("backend greeting", zap.String("addr", st.t.Addr), zap.String("version", server.Version),
			zap.Uint32("capabilities", server.Capability), zap.Uint32("mariadb_capabilities", server.ExtCapability))
		p.changed = true
	}
	if st.h.Healthy == old.Healthy && st.h.Reason == old.Reason {
		if err != nil {
			p.lg.Debug("probe failed", zap.String("addr", st.t.Addr),
				zap.Int("failures", st.h.Failures), zap.Error(err))
		}
		return
	}
	switch {
	case !st.h.Healthy && old.Healthy:
		p.lg.Warn("backend unhealthy", zap.String("addr", st.t.Addr),
			zap.Int("failures", st.h.Failures), zap.String("reason", st.h.Reason))
	case st.h.Healthy && !old.Healthy:
		p.lg.Info("backend healthy again", zap.String("addr", st.t.Addr))
	case !st.h.Healthy:
		p.lg.Info("backend still unhealthy, new reason", zap.String("addr", st.t.Addr),
			zap.String("reason", st.h.Reason))
	}
	p.changed = true
}

// nextHealth is the state machine: unhealthy after n consecutive failures,
// healthy again after one success.
func nextHealth(old observer.Health, err error, now time.Time, n int) observer.Health {
	if err == nil {
		return observer.Health{Healthy: true, LastProbe: now, Server: old.Server}
	}
	h := observer.Health{LastProbe: now, Failures: old.Failures + 1, Server: old.Server}
	h.Healthy = h.Failures < n
	if !h.Healthy {
		h.Reason = reasonOf(err)
	}
	return h
}

// publishLocked makes the targets' verdicts the Results, then signals
// Updates if one changed in a way it reports.
func (p *Prober) publishLocked() {
	m := make(map[string]observer.Health, len(p.targets))
	for addr, st := range p.targets {
		m[addr] = st.h
	}
	p.results.Store(&m)
	if p.changed {
		p.changed = false
		p.updates.Notify()
	}
}

// probeKept is one scheduled probe, on the target's kept connections, which
// it returns (a field is nil when there is none to keep). With SQLUser set
// it pings the kept SQL connection, and connects and logs in again when
// there is none or the ping failed while time was left; without, it reads
// the greeting on a new connection. Then it asks the status port, on the
// kept status connection (checkStatus); status is t's GET of /status.
func (p *Prober) probeKept(ctx context.Context, t Target, status httpkeep.Target, kept keptConns) (*observer.ServerInfo, keptConns, error) {
	var server *observer.ServerInfo
	if p.cfg.SQLUser == "" {
		hs, err := mysql.ReadGreeting(ctx, p.dialer, t.Addr)
		if err := sqlPortErr(err); err != nil {
			return nil, kept, err
		}
		server = serverInfo(hs)
	} else {
		var err error
		if server, kept.sql, err = p.pingOrLogin(ctx, t, kept.sql); err != nil {
			return nil, kept, err
		}
	}
	if t.StatusPort == 0 {
		kept.status.Close()
		kept.status = nil
		return server, kept, nil
	}
	var err error
	kept.status, err = p.checkStatus(ctx, status, kept.status, true)
	return server, kept, err
}

// pingOrLogin pings conn (nil: none yet), and connects and logs in again
// when there is none or the ping failed while time was left. It returns
// the connection to keep (nil after a failure), and the greeting when it
// read one.
func (p *Prober) pingOrLogin(ctx context.Context, t Target, conn *mysql.ProbeConn) (*observer.ServerInfo, *mysql.ProbeConn, error) {
	if conn != nil {
		err := conn.Ping(ctx)
		if err == nil {
			return nil, conn, nil
		}
		_ = conn.Close()
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			// A backend that does not answer in time: no time is left
			// to connect again, and that is the verdict. (The
			// connection's deadline may pass just before ctx's timer.)
			return nil, nil, fmt.Errorf("sql port: %w", err)
		}
		// The server may have closed an idle connection (wait_timeout,
		// KILL, a restart): a new one decides.
		p.lg.Debug("kept probe connection failed, connecting again", zap.String("addr", t.Addr), zap.Error(err))
	}
	p.dials.Add(1)
	c, err := mysql.DialProbe(ctx, p.dialer, t.Addr, p.cfg.SQLUser, p.cfg.SQLPassword)
	if err != nil {
		return nil, nil, sqlPortErr(err)
	}
	return serverInfo(c.Greeting), c, nil
}

// sqlPortErr is the verdict on the SQL port's error err (nil: none). A
// server that refused because it is full (ERR 1040 before any login) is up
// and answering: it passes, as it would be wrong to take a full server out
// of routing and answer its clients "no healthy backend" instead of its own
// "Too many connections" (sessions try the cluster's other backends first).
func sqlPortErr(err error) error {
	var me *mysql.MySQLError
	if err == nil || errors.As(err, &me) && me.Code == mysql.ErCONCount {
		return nil
	}
	return fmt.Errorf("sql port: %w", err)
}

// probe checks the SQL port on a new connection (logging in when SQLUser is
// set), then the status port on a new connection, within ctx: it keeps
// nothing, so it also tests that both ports accept. It returns what the
// greeting announced whenever one was read, even if the probe then failed.
func (p *Prober) probe(ctx context.Context, t Target) (*observer.ServerInfo, error) {
	check := mysql.ReadGreeting
	if user := p.cfg.SQLUser; user != "" {
		check = func(ctx context.Context, d *net.Dialer, addr string) (*mysql.InitialHandshake, error) {
			return mysql.ReadGreetingLogin(ctx, d, addr, user, p.cfg.SQLPassword)
		}
	}
	hs, err := check(ctx, p.dialer, t.Addr)
	if err := sqlPortErr(err); err != nil {
		return nil, err
	}
	server := serverInfo(hs)
	if t.StatusPort == 0 {
		return server, nil
	}
	_, err = p.checkStatus(ctx, p.statusTarget(t), nil, false)
	return server, err
}

// serverInfo records hs; nil (a full server's refusal) records nothing.
func serverInfo(hs *mysql.InitialHandshake) *observer.ServerInfo {
	if hs == nil {
		return nil
	}
	return &observer.ServerInfo{Version: hs.ServerVersion, Capability: hs.Capability,
		ExtCapability: hs.ExtCapability, Charset: hs.Charset}
}

// sameServer compares two greetings' records (nil for none).
func sameServer(a, b *observer.ServerInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// reasonOf renders err without the local address that socket errors carry
// ("read tcp 127.0.0.1:53122->10.0.0.1:4000: ..."): its ephemeral port
// would make every failed probe a new Reason, and so an update.
func reasonOf(err error) string {
	msg := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Source != nil {
		stable := *op
		stable.Source = nil
		msg = strings.Replace(msg, op.Error(), stable.Error(), 1)
	}
	return msg
}
