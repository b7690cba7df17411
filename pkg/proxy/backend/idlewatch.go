package backend

import (
	"errors"
	"net"
	"sync"
	"time"
)

// idleWatchDelay is how long a session waits idle before it starts watching
// its backend. A session that is busy with back-to-back commands never pays
// for the watch; one that idles longer notices a backend that ends it within
// this delay plus the wake-up (the bound is 100 ms).
const idleWatchDelay = 20 * time.Millisecond

// idleWatch notices, while a session waits for its client, that the backend
// connection became readable: the server closed it (wait_timeout, KILL,
// shutdown, crash) or sent something unasked. A session that idles longer
// than idleWatchDelay registers its backend socket with the process's one
// epoll instance (idlePoller, Linux) and holds no goroutine of its own while
// it waits; readability runs owner.onIdleBackendEnd on a short-lived
// goroutine. Nothing is read to notice it, so the session's buffers and the
// stream are untouched.
// Elsewhere than Linux a session does not watch (idleWatchSupported).
//
// The watch's timer beats a second time when the session has idled for
// parkAfter: the watch then freezes the socket (sockConn) and asks the
// session to park (park.go, Session.watchBackend). One timer serves both,
// so a busy session pays for one timer reset per command. The second beat
// drops the timer once it froze the socket: a parked session holds none,
// and the next arm makes a new one.
type idleWatch struct {
	conn net.Conn // the backend's TCP connection (below TLS and compression)
	// owner is told what the watch sees (the session; an interface, not
	// two callbacks, so that a watch allocates no closures).
	owner watchOwner
	// parkAfter is how long the session idles before owner.askPark runs;
	// 0: no second beat.
	parkAfter time.Duration
	timer     *time.Timer
	// parkAt is when owner.askPark is due in this arm (a late callback of an
	// earlier arm finds it ahead, and does nothing).
	parkAt time.Time

	mu         sync.Mutex
	armed      bool
	registered bool   // claimed by the timer callback, then registered with the poller
	gen        uint32 // the registration's generation; events of older ones are dropped
	fd         int32  // the socket's descriptor when it was registered (the poller's key)
	running    bool   // owner.onIdleBackendEnd runs
	seen       bool   // the socket became readable while armed
	// runMu is held by readable while owner.onIdleBackendEnd runs; disarm
	// waits on it.
	runMu sync.Mutex

	// beforePark, when set (tests only), runs on the timer callback just
	// before it registers the socket.
	beforePark func()
}

// watchOwner is what an idle watch tells its session.
type watchOwner interface {
	// onIdleBackendEnd runs on a goroutine of its own when the socket
	// became readable while armed; disarm waits for it.
	onIdleBackendEnd()
	// askPark runs on the timer's goroutine once the session has idled
	// for parkAfter; it must not block, and may run late, after disarm.
	askPark()
}

// errNoPoller: the connection cannot be watched (no socket, or no epoll).
var errNoPoller = errors.New("idle watch: connection cannot be watched")

func newIdleWatch(conn net.Conn, owner watchOwner, parkAfter time.Duration) *idleWatch {
	return &idleWatch{conn: conn, owner: owner, parkAfter: parkAfter}
}

// arm starts watching after idleWatchDelay. Called by the session goroutine
// before it waits for the client.
func (w *idleWatch) arm() {
	if !idleWatchSupported {
		return
	}
	w.mu.Lock()
	w.armed, w.seen = true, false
	w.parkAt = time.Now().Add(w.parkAfter)
	// Under mu: the callback reads the timer to set its second beat.
	if w.timer == nil {
		w.timer = time.AfterFunc(idleWatchDelay, w.watch)
	} else {
		w.timer.Reset(idleWatchDelay)
	}
	w.mu.Unlock()
}

// disarm stops watching and waits until the socket is the session's alone
// again. It reports whether the backend became readable while idle.
func (w *idleWatch) disarm() (seen bool) {
	w.mu.Lock()
	w.haltLocked()
	running := w.running
	w.mu.Unlock()
	if running {
		// Halted, the watch starts no other run: this one's end is the
		// last.
		w.runMu.Lock()
		w.runMu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// disarmUnlessRunning is disarm for a caller that must not wait (a session
// on an event loop): when owner.onIdleBackendEnd is running it returns
// false, the watch stopped from going further; the caller then leaves its
// loop and calls disarm, which waits.
func (w *idleWatch) disarmUnlessRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.haltLocked()
	return !w.running
}

// haltLocked stops the timer and withdraws the registration: no callback
// starts from now on. The caller holds w.mu.
func (w *idleWatch) haltLocked() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.armed = false
	if w.registered {
		pollerRemove(w.conn, w.fd, w, w.gen)
		w.registered = false
	}
}

// stop ends watching for good (the session is over).
func (w *idleWatch) stop() { w.disarm() }

// watch runs on the timer's goroutine. Its first beat registers the socket
// and sets the second; the second (once registered, or after
// owner.onIdleBackendEnd ran) runs owner.askPark. At most one registration
// exists at a time: the callback of an earlier arm can start late, after
// disarm found its timer already fired and a new arm reset it (AfterFunc
// does not wait for a previous run); it finds the watch claimed and
// returns. Two watchers once let one of them read the answer to the
// session's next statement (found by the soak).
func (w *idleWatch) watch() {
	w.mu.Lock()
	if !w.armed || w.running {
		w.mu.Unlock()
		return
	}
	if w.registered || w.seen {
		idle := w.parkAfter > 0 && !time.Now().Before(w.parkAt)
		if idle && w.registered {
			w.freezeLocked()
			// No beat is due before the next arm, which makes a new
			// timer: a parked session keeps none (about 100 bytes).
			w.timer = nil
		}
		w.mu.Unlock()
		if idle {
			w.owner.askPark()
		}
		return
	}
	w.registered = true
	w.gen++
	gen := w.gen
	park := w.beforePark
	w.mu.Unlock()
	if park != nil {
		park()
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || !w.registered || w.gen != gen {
		return // disarmed meanwhile
	}
	fd, err := pollerAdd(w.conn, w, gen)
	if err != nil {
		w.registered = false
		return
	}
	w.fd = fd
	if w.parkAfter > 0 && w.timer != nil {
		w.timer.Reset(time.Until(w.parkAt))
	}
}

// freezeLocked lets the socket of a session that idled parkAfter leave the
// runtime's poller (sockConn): the registration is withdrawn, the socket
// frozen, and registered again as the bare descriptor. Armed and
// registered, the watch owns the connection: whoever reads it disarms the
// watch first. Readability meanwhile is not lost: the new registration
// reports a socket that is readable already. The caller holds w.mu.
func (w *idleWatch) freezeLocked() {
	if !canFreeze(w.conn) {
		return
	}
	if !pollerRemove(w.conn, w.fd, w, w.gen) {
		// It fired meanwhile (its event is dropped: the generation moves
		// on), and stays in the epoll set, which would outlive the
		// number's close.
		pollerForgetConn(w.conn)
	}
	w.registered = false
	freezeConn(w.conn)
	w.gen++
	fd, err := pollerAdd(w.conn, w, w.gen)
	if err != nil {
		return
	}
	w.registered, w.fd = true, fd
}

// readable runs on a goroutine of its own when registration gen saw the
// socket readable.
func (w *idleWatch) readable(gen uint32) {
	w.mu.Lock()
	if !w.armed || !w.registered || w.gen != gen {
		w.mu.Unlock()
		return // disarmed (and perhaps armed again) since
	}
	w.registered = false
	w.running = true
	w.runMu.Lock()
	w.mu.Unlock()

	// Still armed: disarm waits until this returns, so the session's
	// backend is this goroutine's meanwhile.
	w.owner.onIdleBackendEnd()

	w.mu.Lock()
	w.running = false
	w.seen = true
	w.runMu.Unlock()
	if w.armed && w.parkAfter > 0 && w.timer != nil {
		// The second beat may have come meanwhile: set it again. (With
		// no timer it came and ran: the socket was frozen.)
		w.timer.Reset(max(time.Until(w.parkAt), 0))
	}
	w.mu.Unlock()
}
