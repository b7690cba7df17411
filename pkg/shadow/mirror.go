package shadow

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/sqlstats"
)

// Resolver picks the address of a healthy backend of a cluster.
type Resolver interface {
	Backend(cluster string) (addr string, err error)
}

// job is one sampled statement with what its client received.
type job struct {
	text     []byte
	db       string
	charset  byte
	rows     uint64
	checksum uint64
	errCode  uint16
	latency  time.Duration
	// uncomparable: the session could not checksum a row (too large).
	uncomparable bool
}

// state is what survives a reload that keeps a mirror's name, source and
// target: its counters and digests.
type state struct {
	counters Counters
	digests  digests
	lastErr  atomic.Pointer[string]
	// norm digests the compared statements, each distinct text once
	// while it stays in its cache (the profile showed TiDB's normaliser
	// at 2-3 % of the proxy's CPU when every statement was normalised).
	norm *sqlstats.Normalizer
}

// mirror runs one [[shadow]]: a bounded queue and its workers.
type mirror struct {
	lg        *zap.Logger
	opt       Options
	threshold uint64 // a statement is sampled when a random uint64 is below it
	resolve   Resolver
	st        *state
	queue     chan *job
	closed    atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	// conns are the workers' open connections, closed by close() to
	// unblock a worker waiting on a stalled target.
	mu    sync.Mutex
	conns map[*conn]struct{}
}

var _ Sink = (*mirror)(nil)

// retryAfter is how long a worker that could not reach the target counts
// its statements as errors before it dials again.
const retryAfter = time.Second

func newMirror(lg *zap.Logger, opt Options, r Resolver, st *state) *mirror {
	opt.Password = append([]byte(nil), opt.Password...)
	ctx, cancel := context.WithCancel(context.Background())
	m := &mirror{lg: lg, opt: opt, resolve: r, st: st, queue: make(chan *job, opt.Queue),
		ctx: ctx, cancel: cancel, conns: map[*conn]struct{}{}}
	switch {
	case opt.Sample >= 1:
		m.threshold = math.MaxUint64
	case opt.Sample > 0:
		m.threshold = uint64(opt.Sample * (1 << 64))
	}
	return m
}

func (m *mirror) start() {
	for range m.opt.Connections {
		m.wg.Add(1)
		go m.work()
	}
}

// sampled draws whether one statement is mirrored.
func (m *mirror) sampled() bool {
	return m.threshold == math.MaxUint64 || (m.threshold > 0 && rand.Uint64() < m.threshold)
}

// Submit implements Sink: it queues a copy of r or drops it.
func (m *mirror) Submit(r *Result) {
	m.st.counters.Sampled.Add(1)
	if m.closed.Load() {
		m.st.counters.Dropped.Add(1)
		return
	}
	j := &job{text: append([]byte(nil), r.Text...), db: r.DB, charset: r.Charset, rows: r.Rows,
		checksum: r.Checksum, errCode: r.ErrCode, latency: r.Latency, uncomparable: r.Uncomparable}
	select {
	case m.queue <- j:
	default:
		m.st.counters.Dropped.Add(1)
	}
}

// close stops the workers, waits for them and zeroes the password. The
// queue is never closed (a session may still hold the mirror); what is
// left in it is dropped.
func (m *mirror) close() {
	if m.closed.Swap(true) {
		return
	}
	m.cancel()
	m.mu.Lock()
	for c := range m.conns {
		c.closeNow()
	}
	m.mu.Unlock()
	m.wg.Wait()
	for {
		select {
		case <-m.queue:
			m.st.counters.Dropped.Add(1)
			continue
		default:
		}
		break
	}
	clear(m.opt.Password)
}

// pollEvery is how often an idle worker looks at the queue. Workers poll
// rather than wait on the channel so that a session's Submit never has to
// wake a parked goroutine (a futex call on the client's path).
const pollEvery = 5 * time.Millisecond

func (m *mirror) work() {
	defer m.wg.Done()
	w := &worker{m: m}
	defer w.drop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		for m.ctx.Err() == nil {
			select {
			case j := <-m.queue:
				w.run(j)
				continue
			default:
			}
			break
		}
	}
}

// worker is one connection's loop state.
type worker struct {
	m         *mirror
	c         *conn
	downUntil time.Time
}

func (w *worker) drop() {
	if w.c == nil {
		return
	}
	w.m.mu.Lock()
	delete(w.m.conns, w.c)
	w.m.mu.Unlock()
	w.c.close()
	w.c = nil
}

func (w *worker) fail(err error) {
	w.m.st.counters.Errors.Add(1)
	if w.m.ctx.Err() != nil {
		return
	}
	msg := err.Error()
	if old := w.m.st.lastErr.Swap(&msg); old == nil || *old != msg {
		w.m.lg.Warn("shadow target failed", zap.String("target", w.m.opt.Target), zap.Error(err))
	}
}

// run mirrors one statement and records the comparison.
func (w *worker) run(j *job) {
	m := w.m
	if j.uncomparable || refuse(j.text) != "" {
		m.st.counters.Skipped.Add(1)
		return
	}
	if time.Now().Before(w.downUntil) {
		m.st.counters.Errors.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.opt.Timeout)
	defer cancel()
	if w.c != nil && (w.c.charset != j.charset || (j.db == "" && w.c.db != "")) {
		w.drop() // a collation is chosen at login; no schema cannot be chosen again
	}
	if w.c == nil {
		if err := w.connect(ctx, j); err != nil {
			w.downUntil = time.Now().Add(retryAfter)
			w.fail(err)
			return
		}
	}
	if j.db != w.c.db {
		code, err := w.c.useDB(ctx, j.db)
		if err != nil {
			w.drop()
			w.fail(err)
			return
		}
		if code != 0 {
			m.st.counters.Skipped.Add(1)
			return
		}
	}
	t0 := time.Now()
	res, err := w.c.query(ctx, j.text)
	lat := time.Since(t0)
	if err != nil {
		w.drop()
		w.fail(err)
		return
	}
	m.st.lastErr.Store(nil)
	rowsDiffer := j.errCode == 0 && res.errCode == 0 && (res.rows != j.rows || res.checksum != j.checksum)
	errDiffers := j.errCode != res.errCode
	m.st.counters.Compared.Add(1)
	if rowsDiffer || errDiffers {
		m.st.counters.Mismatches.Add(1)
	}
	m.st.digests.record(m.st.norm.Statement(j.text), j.text, j.latency, lat, rowsDiffer, errDiffers)
}

func (w *worker) connect(ctx context.Context, j *job) error {
	addr, err := w.m.resolve.Backend(w.m.opt.Target)
	if err != nil {
		return err
	}
	c, err := dial(ctx, addr, w.m.opt.User, w.m.opt.Password, j.db, j.charset)
	if err != nil {
		return err
	}
	w.m.mu.Lock()
	if w.m.closed.Load() {
		w.m.mu.Unlock()
		c.closeNow()
		return context.Canceled
	}
	w.m.conns[c] = struct{}{}
	w.m.mu.Unlock()
	w.c = c
	return nil
}

func (m *mirror) status() Status {
	s := Status{Name: m.opt.Name, Source: m.opt.Source, Target: m.opt.Target, Sample: m.opt.Sample,
		User: m.opt.User, Connections: m.opt.Connections, QueueLength: len(m.queue), QueueSize: cap(m.queue),
		Sampled: m.st.counters.Sampled.Load(), Dropped: m.st.counters.Dropped.Load(),
		Skipped: m.st.counters.Skipped.Load(), Errors: m.st.counters.Errors.Load(),
		Compared: m.st.counters.Compared.Load(), Mismatches: m.st.counters.Mismatches.Load(),
		Digests: m.st.digests.snapshot()}
	if e := m.st.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}
