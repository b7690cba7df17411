//go:build unix

package mysql

import (
	"syscall"
	"time"
)

// replyWait is FlushRequest's state, built on a connection's first
// request: the raw connection and the function RawConn.Read calls, bound
// once so that a request allocates nothing.
type replyWait struct {
	rc    syscall.RawConn
	step  func(fd uintptr) bool
	stage int
}

// replyWaiter returns the connection's replyWait, or nil when the
// connection does not expose its descriptor.
func (p *PacketIO) replyWaiter() *replyWait {
	if p.reply != nil {
		return p.reply
	}
	sc, ok := p.raw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &replyWait{rc: rc}
	w.step = func(fd uintptr) bool {
		if w.stage != stageWrite {
			w.stage = stageReadable // the poller says the answer is there
			return true
		}
		buf := p.wr.buf
		start := time.Now()
		n, err := syscall.Write(int(fd), buf)
		for err == syscall.EINTR {
			n, err = syscall.Write(int(fd), buf)
		}
		if n > 0 {
			p.wr.buf = buf[:copy(buf, buf[n:])]
		}
		if err != nil || len(p.wr.buf) > 0 {
			return true // FlushRequest falls back to Flush
		}
		if time.Since(start) > preemptedWrite {
			// The write took long enough for the peer to have run, and
			// probably answered, in between: reading first is cheaper
			// than a wait that parks before the poller notices.
			w.stage = stageWritten
			return true
		}
		w.stage = stageWait
		return false // wait for readability, without reading first
	}
	p.reply = w
	return w
}
