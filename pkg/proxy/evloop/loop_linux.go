package evloop

import (
	"github.com/switchyard-db/switchyard/lib/rawsys"

	"errors"
	"fmt"
	"iter"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported reports whether this platform has event loops.
const Supported = true

// Group is a set of loops; sessions are spread over them.
type Group struct {
	loops []*Loop
	rr    atomic.Uint32
}

// NewGroup starts n loops (at least one).
func NewGroup(n int) (*Group, error) {
	g := &Group{}
	n = max(n, 1)
	for range n {
		l, err := newLoop(n)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.loops = append(g.loops, l)
		go l.run()
	}
	return g, nil
}

// Pick returns the next loop, round robin.
func (g *Group) Pick() *Loop {
	return g.loops[int(g.rr.Add(1))%len(g.loops)]
}

// Len is the number of loops.
func (g *Group) Len() int { return len(g.loops) }

// Close stops the loops: every Task still on a loop sees its waits fail
// (ErrStopped) and runs to its end. It waits for the loops to finish.
func (g *Group) Close() {
	for _, l := range g.loops {
		l.post(msg{kind: msgStop})
	}
	for _, l := range g.loops {
		<-l.done
	}
}

// ErrStopped is what a Task's socket wait returns once its loop stopped.
var ErrStopped = errors.New("event loop stopped")

// Loop is one event loop: a goroutine that waits for the events of the
// sockets its Tasks attached and resumes the Task that waits for each.
//
// Loop state (the table, the flags of attached Conns, the Tasks) is touched
// only by the loop goroutine and by the Task it is running at the moment:
// a coroutine runs while the loop waits for it to yield, so the two never
// run at once.
type Loop struct {
	epfd  int
	efd   int // eventfd: post wakes the loop through it
	evbuf []unix.EpollEvent
	nev   int
	// How the loop waits when nothing is ready (setWait): blocked in
	// epoll_wait while the process has a P to spare for everything else,
	// else parked in Go's netpoller through epf, a duplicate of the epoll
	// descriptor there (nil while blocking: the runtime's poller must not
	// hold it then, see setWait).
	nloops int
	waits  uint32
	epf    *os.File
	epr    syscall.RawConn
	waitf  func(uintptr) bool
	// parked: the last wait found nothing ready and parked the loop.
	// busySince is when the loop last parked or yielded (yieldIfBusy), and
	// yields counts the yields.
	parked    bool
	busySince time.Time
	yields    uint64
	table     []*Conn // registered Conns by descriptor
	tasks     map[*Task]struct{}
	gen       uint32
	stop      bool

	mu     sync.Mutex
	closed bool
	inbox  []msg
	spare  []msg
	done   chan struct{}
}

type msgKind uint8

const (
	msgStart msgKind = iota // start fn as a new Task
	msgAdopt                // a detached Task comes back
	msgEnded                // a detached Task ended
	msgWake                 // a deadline or Close of c: resume its waiter
	msgStop
)

type msg struct {
	kind msgKind
	t    *Task
	c    *Conn
	fn   func(*Task)
}

const eventsMask = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func newLoop(nloops int) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &Loop{epfd: epfd, efd: efd, nloops: nloops, evbuf: make([]unix.EpollEvent, 128), tasks: map[*Task]struct{}{}, done: make(chan struct{})}
	l.waitf = l.pollOnce
	fail := func(err error) (*Loop, error) {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, err
	}
	// The eventfd's events carry generation 0, which no Conn has.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		return fail(fmt.Errorf("epoll_ctl: %w", err))
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		return fail(err)
	}
	l.setWait()
	return l, nil
}

// waitMode, when not waitAuto, fixes how loops wait (tests).
var waitMode atomic.Int32

const (
	waitAuto = iota
	waitPark
	waitBlock
)

// setWait chooses how the loop waits when nothing is ready.
//
// Blocked in epoll_wait, the loop's thread sleeps until an event and runs
// on; nothing else is woken. The wait is a raw system call, so the loop
// keeps its P and the runtime sees it running: as an ordinary one, the
// runtime's monitor took the P back whenever no other P was idle (after 20
// µs) and then polled every 20 µs, 10 % of a core at 200 short
// connections a second, whose logins keep the other P busy. Running, the
// loop is interrupted by a preemption signal (EINTR) when it has held its
// P for 10 ms or the world must stop, so goroutines that want its P wait
// at most that long. So the loop blocks only while GOMAXPROCS leaves a P
// beyond the loops' for the logins, probes, API and garbage collector.
//
// Parked in the netpoller, the loop gives its P back, but the runtime's
// epoll set then holds the loop's descriptor, and an event that comes while
// the loop runs also wakes a thread idle in the netpoller, which finds
// nothing to run and sleeps again: one loop at 64 threads made 1.3 context
// switches per query that way, against 0.6-0.7 blocking (docs/benchmarks.md,
// "The single loop at 64 threads"). GOMAXPROCS can change while the process
// runs, so the loop looks again every 1024 waits.
func (l *Loop) setWait() {
	block := runtime.GOMAXPROCS(0) > l.nloops
	if m := waitMode.Load(); m != waitAuto {
		block = m == waitBlock
	}
	switch {
	case block && l.epf != nil:
		l.epf.Close() // the duplicate: the loop's own descriptor stays open
		l.epf, l.epr = nil, nil
	case !block && l.epf == nil:
		nfd, err := unix.FcntlInt(uintptr(l.epfd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return // no descriptor to spare: the loop blocks for now
		}
		f := os.NewFile(uintptr(nfd), "evloop")
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return
		}
		l.epf, l.epr = f, rc
	}
}

// wait fills evbuf with the next events (l.nev of them), blocking or
// parking until there is one (setWait).
func (l *Loop) wait() error {
	if l.waits++; l.waits%1024 == 0 {
		l.setWait()
	}
	if l.epr != nil {
		return l.epr.Read(l.waitf)
	}
	if l.pollOnce(0) {
		return nil
	}
	n, errno := rawsys.EpollBlock(l.epfd, l.evbuf)
	if errno != 0 {
		n = 0 // EINTR (a preemption signal): the loop polls again
	}
	l.nev = n
	return nil
}

// pollOnce is epoll_wait without waiting, as a raw system call (it cannot
// block); false makes the RawConn wait until the epoll descriptor is
// readable, that is until some event is ready: the loop parks.
func (l *Loop) pollOnce(uintptr) bool {
	n, errno := rawsys.EpollPoll(l.epfd, l.evbuf)
	l.nev = n
	done := n > 0
	if errno != 0 {
		l.nev = 0
		done = errno != unix.EINTR && errno != unix.EAGAIN
	}
	if !done {
		l.parked = true
	}
	return done
}

// busySlice is how long a loop that always finds events ready runs before
// it lets the other goroutines of its P run (yieldIfBusy).
const busySlice = 100 * time.Microsecond

// yieldIfBusy yields the loop's P to the goroutines waiting for it once the
// loop has run for busySlice without parking. A loop that always finds
// events ready never parks, and Go would preempt it only after 10 ms: with
// fewer Ps than loops (GOMAXPROCS follows the CPUs the process may use) the
// other loops' sessions, and the logins, probes and API on goroutines,
// would wait that long. A loop that parks between batches never yields,
// nor does a loop that blocks in epoll_wait (setWait).
func (l *Loop) yieldIfBusy() {
	now := time.Now()
	switch {
	case l.parked:
		l.parked = false
		l.busySince = now
	case now.Sub(l.busySince) >= busySlice:
		runtime.Gosched()
		l.yields++
		l.busySince = time.Now()
	}
}

func (l *Loop) run() {
	defer func() {
		// Later posts fail; what was posted runs, then every Task on the
		// loop sees its waits fail and runs to its end.
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.drain()
		for t := range l.tasks {
			if !t.detached {
				t.stop()
				l.finish(t)
			}
		}
		unix.Close(l.efd)
		if l.epf != nil {
			l.epf.Close()
		}
		unix.Close(l.epfd)
		close(l.done)
	}()
	for !l.stop {
		if err := l.wait(); err != nil {
			return // the descriptor was closed: cannot happen while running
		}
		for i := range l.nev {
			l.event(l.evbuf[i])
		}
		if l.epr != nil {
			// Only a parking loop yields: a blocking one leaves a P to the
			// other goroutines (setWait), and a yield there only costs (a
			// trip through the scheduler, and a thread woken to look for
			// work: 3-4 % of one loop's CPU at 64 client threads).
			l.yieldIfBusy()
		}
	}
}

// event handles one epoll event.
func (l *Loop) event(ev unix.EpollEvent) {
	fd, gen := ev.Fd, uint32(ev.Pad)
	if gen == 0 {
		var b [8]byte
		_, _ = rawsys.Read(uintptr(l.efd), b[:])
		l.drain()
		return
	}
	c := l.lookup(fd, gen)
	if c == nil {
		return
	}
	if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.hup = true
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
		if c.rwait && c.t != nil {
			l.resume(c.t)
		}
	}
	if l.lookup(fd, gen) != c {
		return // the resumed Task let go of c
	}
	if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.writable = true
		if c.wwait && c.t != nil {
			l.resume(c.t)
		}
	}
}

func (l *Loop) lookup(fd int32, gen uint32) *Conn {
	if fd < 0 || int(fd) >= len(l.table) {
		return nil
	}
	if c := l.table[fd]; c != nil && c.gen == gen {
		return c
	}
	return nil
}

// post hands m to the loop from any goroutine; false when the loop has
// stopped.
func (l *Loop) post(m msg) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	first := len(l.inbox) == 0
	l.inbox = append(l.inbox, m)
	l.mu.Unlock()
	if first {
		one := [8]byte{1}
		_, _ = rawsys.Write(uintptr(l.efd), one[:])
	}
	return true
}

// drain handles what was posted.
func (l *Loop) drain() {
	l.mu.Lock()
	in := l.inbox
	l.inbox, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for i, m := range in {
		switch m.kind {
		case msgStart:
			l.start(m.fn)
		case msgAdopt:
			m.t.detached = false
			l.resume(m.t)
		case msgEnded:
			l.finish(m.t)
		case msgWake:
			// Whether c's Task waits for it now or later, its next read or
			// write tries the socket, and the runtime reports the deadline
			// or the close.
			c := m.c
			if c.loop.Load() != l {
				break
			}
			c.readable, c.writable = true, true
			if t := c.t; t != nil && t.loop == l && (c.rwait || c.wwait) {
				l.resume(t)
			}
		case msgStop:
			l.stop = true
		}
		in[i] = msg{}
	}
	l.mu.Lock()
	if l.spare == nil {
		l.spare = in[:0]
	}
	l.mu.Unlock()
}

// Go starts fn as a Task on l; false when the loop has stopped. It may be
// called from any goroutine. fn should contain its own panics; one that
// escapes ends the Task alone.
func (l *Loop) Go(fn func(*Task)) bool { return l.post(msg{kind: msgStart, fn: fn}) }

// Task is a coroutine on a loop: a session's code, which waits for its
// attached Conns by yielding to the loop.
type Task struct {
	loop     *Loop
	next     func() (struct{}, bool)
	stop     func()
	yield    func(struct{}) bool
	req      taskReq
	done     bool // the body returned
	stopped  bool // the loop stopped under it: its waits fail
	detached bool // on a goroutine of its own (Detach)
	attached []*Conn
	regs     []*Conn // registered by this Task with the loop
	panicked any
	stack    []byte
}

type taskReq uint8

const (
	reqWait taskReq = iota
	reqDetach
	reqAttach
)

func (l *Loop) start(fn func(*Task)) {
	t := &Task{loop: l}
	t.next, t.stop = iter.Pull(func(yield func(struct{}) bool) {
		t.yield = yield
		defer func() {
			if r := recover(); r != nil {
				t.panicked, t.stack = r, debug.Stack()
			}
			t.done = true
		}()
		fn(t)
	})
	l.tasks[t] = struct{}{}
	l.resume(t)
}

// resume runs t until it waits, detaches or ends. Only the loop calls it.
func (l *Loop) resume(t *Task) {
	if t.done || t.detached {
		return
	}
	t.req = reqWait
	t.next()
	switch {
	case t.done:
		l.finish(t)
	case t.req == reqDetach:
		t.detached = true
		go t.drive()
	}
}

// drive runs a detached Task on its own goroutine until it asks to come
// back or ends.
func (t *Task) drive() {
	for {
		t.next()
		switch {
		case t.done:
			t.loop.post(msg{kind: msgEnded, t: t})
			return
		case t.req == reqAttach:
			if !t.loop.post(msg{kind: msgAdopt, t: t}) {
				t.stop() // the loop stopped: the body runs to its end here
			}
			return
		}
	}
}

// finish lets go of an ended Task's registrations.
func (l *Loop) finish(t *Task) {
	delete(l.tasks, t)
	for _, c := range t.regs {
		if c.owner == t {
			l.unregister(c)
		}
	}
	t.regs, t.attached = nil, nil
	if t.panicked != nil {
		// The body is expected to contain its panics; this one escaped it.
		fmt.Fprintf(os.Stderr, "evloop: task panicked: %v\n%s", t.panicked, t.stack)
	}
}

// register adds c to the loop's epoll set, for t; false when it cannot be
// (closed, or no descriptor to spare to take it out of the runtime).
func (l *Loop) register(t *Task, c *Conn) bool {
	if err := c.goBare(); err != nil {
		return false
	}
	if c.owner != nil && c.owner.loop == l {
		c.owner = t // a Task of the same session before this one
		t.regs = append(t.regs, c)
		return true
	}
	l.gen++
	if l.gen == 0 {
		l.gen = 1
	}
	gen := l.gen
	if !c.acquire() {
		return false
	}
	ev := unix.EpollEvent{Events: eventsMask, Fd: c.sock, Pad: int32(gen)}
	err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(c.sock), &ev)
	c.releaseFD()
	if err != nil {
		return false
	}
	for int(c.sock) >= len(l.table) {
		l.table = append(l.table, make([]*Conn, max(64, len(l.table)))...)
	}
	c.readable, c.writable, c.hup = true, true, false
	c.gen, c.owner = gen, t
	l.table[c.sock] = c
	t.regs = append(t.regs, c)
	if c.loop.Swap(l) == nil {
		// A deadline set before c was on a loop wakes its waits from now
		// (one that has passed already is found by the next read or
		// write).
		c.mu.Lock()
		c.armLocked()
		c.mu.Unlock()
	}
	return true
}

func (l *Loop) unregister(c *Conn) {
	if l.table[c.sock] == c {
		l.table[c.sock] = nil
	}
	// Under a reference: the descriptor cannot be closed (and its number
	// reused by another socket) meanwhile; once it is closed, epoll has
	// forgotten it.
	if c.acquire() {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(c.sock), nil)
		c.releaseFD()
	}
	c.owner, c.gen = nil, 0
	c.rwait, c.wwait = false, false
	if c.t != nil {
		// A released Conn (t nil) may be in another goroutine's hands.
		c.t = nil
	}
}

// Attach makes c's I/O yield to the loop from now on (after Reattach, if
// t is detached). Only t's body calls it, and nothing else may use c until
// Release. False when c cannot be on a loop (closed, or no descriptor to
// spare): it does ordinary blocking I/O, and the caller must Detach before
// it waits for c.
func (t *Task) Attach(c *Conn) bool {
	for _, a := range t.attached {
		if a == c {
			return true
		}
	}
	if !t.detached && !t.bind(c) {
		return false
	}
	t.attached = append(t.attached, c)
	return true
}

// bind puts c under t: registered with the loop and out of the runtime's
// poller (a connection thawed off the loop is closed again).
func (t *Task) bind(c *Conn) bool {
	if c.owner != t {
		if !t.loop.register(t, c) {
			return false
		}
	} else if !c.Frozen() && c.goBare() != nil {
		return false
	}
	c.t = t
	return true
}

// Release gives c back to ordinary blocking I/O: another goroutine may use
// it from now on.
func (t *Task) Release(c *Conn) {
	for i, a := range t.attached {
		if a == c {
			t.attached = append(t.attached[:i], t.attached[i+1:]...)
			break
		}
	}
	if c.t != nil { // only while t is on the loop: the loop reads c.t
		c.t = nil
	}
}

// Detach continues t's body on a goroutine of its own, where it may block
// on anything; its attached Conns do ordinary I/O until Reattach. Detaching
// a detached Task does nothing.
func (t *Task) Detach() {
	if t.detached {
		return
	}
	for _, c := range t.attached {
		c.t = nil
	}
	t.req = reqDetach
	t.yield(struct{}{})
}

// Reattach brings a detached Task back to its loop.
func (t *Task) Reattach() {
	if !t.detached || t.stopped {
		return
	}
	t.req = reqAttach
	if !t.yield(struct{}{}) {
		t.stopped = true
		return
	}
	for _, c := range t.attached {
		if !t.bind(c) {
			// c cannot be on the loop (closed, or no descriptor to spare):
			// the Task goes on off it until it Reattaches again.
			t.Detach()
			return
		}
	}
}

// Detached reports whether t runs on a goroutine of its own.
func (t *Task) Detached() bool { return t.detached }

// wait yields until the loop resumes t for c (readiness or a wake); false
// means the loop stopped.
func (t *Task) wait(c *Conn, write bool) bool {
	if t.stopped {
		return false
	}
	if write {
		c.wwait = true
	} else {
		c.rwait = true
	}
	t.req = reqWait
	ok := t.yield(struct{}{})
	c.rwait, c.wwait = false, false
	if !ok {
		t.stopped = true
	}
	return ok
}
