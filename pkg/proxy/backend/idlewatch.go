package backend

import (
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
// shutdown, crash) or sent something unasked. It owns the only goroutine a
// session has besides its own, and only while the session idles longer than
// idleWatchDelay: a timer callback that parks in the netpoller on the
// socket's readability without reading (MSG_PEEK), so the session's buffers
// and the stream are untouched. A future idle-parking design replaces this
// type, not the session loop.
type idleWatch struct {
	conn net.Conn // the backend's TCP connection (below TLS and compression)
	// onEnd runs on the watch's goroutine when the socket became readable
	// while armed; disarm waits for it.
	onEnd func()
	timer *time.Timer

	mu      sync.Mutex
	armed   bool
	running bool // the callback is parked on the socket
	seen    bool // the socket became readable while armed
	done    *sync.Cond

	// beforePark, when set (tests only), runs on a watching goroutine just
	// before it parks on the socket.
	beforePark func()
}

func newIdleWatch(conn net.Conn, onEnd func()) *idleWatch {
	w := &idleWatch{conn: conn, onEnd: onEnd}
	w.done = sync.NewCond(&w.mu)
	return w
}

// arm starts watching after idleWatchDelay. Called by the session goroutine
// before it waits for the client.
func (w *idleWatch) arm() {
	if !peekSupported {
		return
	}
	w.mu.Lock()
	w.armed, w.seen = true, false
	w.mu.Unlock()
	if w.timer == nil {
		w.timer = time.AfterFunc(idleWatchDelay, w.watch)
	} else {
		w.timer.Reset(idleWatchDelay)
	}
}

// disarm stops watching and waits until the socket is the session's alone
// again. It reports whether the backend became readable while idle.
func (w *idleWatch) disarm() (seen bool) {
	if w.timer == nil {
		return false
	}
	w.timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.running {
		// Interrupt the parked peek; the deadline is cleared once it has
		// returned, before the session reads the backend again.
		_ = w.conn.SetReadDeadline(time.Unix(1, 0))
		for w.running {
			w.done.Wait()
		}
		_ = w.conn.SetReadDeadline(time.Time{})
	}
	return w.seen
}

// stop ends watching for good (the session is over).
func (w *idleWatch) stop() { w.disarm() }

// watch runs on the timer's goroutine. At most one runs at a time: the
// callback of an earlier arm can start late, after disarm found its timer
// already fired and a new arm reset it (AfterFunc does not wait for a
// previous run), and two watchers would make disarm wait for only one of
// them; the other could then read the backend while the session uses it
// (the soak saw a session closed for an "unsolicited packet" that was the
// answer to its own next statement).
func (w *idleWatch) watch() {
	w.mu.Lock()
	if !w.armed || w.running {
		w.mu.Unlock()
		return
	}
	w.running = true
	park := w.beforePark
	w.mu.Unlock()
	if park != nil {
		park()
	}

	seen := false
	if waitReadable(w.conn) {
		w.mu.Lock()
		armed := w.armed
		w.mu.Unlock()
		if armed {
			// Still running: disarm waits until this returns, so the
			// session's backend is this goroutine's meanwhile.
			w.onEnd()
			seen = true
		}
	}

	w.mu.Lock()
	w.running = false
	w.seen = seen
	w.done.Broadcast()
	w.mu.Unlock()
}
