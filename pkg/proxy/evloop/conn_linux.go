package evloop

import (
	"github.com/switchyard-db/switchyard/lib/rawsys"

	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a TCP connection that a Task can attach to its loop. Detached it
// is its net.TCPConn (writes go through the writer given to Wrap).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	w  io.Writer // detached writes

	// Loop state (see Loop): the attached Task, the registration, and what
	// epoll said about the socket since the last EAGAIN.
	t, owner           *Task
	gen                uint32
	fd                 int32
	readable, writable bool
	hup                bool // the peer closed or the socket failed
	rwait, wwait       bool // t waits for readable, writable
	loop               atomic.Pointer[Loop]

	// The raw calls' arguments and results (bound once: no allocation per
	// call).
	rb, wb     []byte
	rn, wn     int
	rerr, werr syscall.Errno
	readf      func(uintptr) bool
	writef     func(uintptr) bool

	// Deadlines, to wake a Task that waits in the loop when one passes
	// (the runtime keeps them for the raw calls themselves).
	mu       sync.Mutex
	rdl, wdl time.Time
	timer    *time.Timer
}

// Wrap returns tc as a Conn; w does its writes while detached (tc itself
// when nil).
func Wrap(tc *net.TCPConn, w io.Writer) (*Conn, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	if w == nil {
		w = tc
	}
	c := &Conn{TCPConn: tc, rc: rc, w: w, fd: -1}
	c.readf, c.writef = c.rawRead, c.rawWrite
	return c, nil
}

// maxRawWrite bounds one raw write(2): it cannot be preempted.
const maxRawWrite = 64 << 10

func (c *Conn) rawRead(fd uintptr) bool {
	c.rn, c.rerr = rawsys.Read(fd, c.rb)
	return true
}

func (c *Conn) rawWrite(fd uintptr) bool {
	c.wn, c.werr = rawsys.Write(fd, c.wb)
	return true
}

// Read reads as net.Conn does; attached, a read that would block yields to
// the loop.
func (c *Conn) Read(b []byte) (int, error) {
	t := c.t
	if t == nil {
		return c.TCPConn.Read(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if !c.readable {
			if !t.wait(c, false) {
				return 0, c.opError("read", ErrStopped)
			}
			continue
		}
		c.rb = b
		err := c.rc.Read(c.readf) // closed, or the deadline passed
		c.rb = nil
		if err != nil {
			return 0, c.opError("read", err)
		}
		switch c.rerr {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			c.readable = false
			continue
		default:
			return 0, c.opError("read", os.NewSyscallError("read", c.rerr))
		}
		if c.rn == 0 {
			return 0, io.EOF
		}
		if c.rn < len(b) && !c.hup {
			// The socket is drained: the next data comes with an edge.
			c.readable = false
		}
		return c.rn, nil
	}
}

// Write writes as net.Conn does; attached, a write that would block yields
// to the loop.
func (c *Conn) Write(b []byte) (int, error) {
	t := c.t
	if t == nil {
		return c.w.Write(b)
	}
	done := 0
	for done < len(b) {
		if !c.writable {
			if !t.wait(c, true) {
				return done, c.opError("write", ErrStopped)
			}
			continue
		}
		c.wb = b[done:min(len(b), done+maxRawWrite)]
		err := c.rc.Write(c.writef)
		c.wb = nil
		if err != nil {
			return done, c.opError("write", err)
		}
		switch c.werr {
		case 0:
			done += c.wn
		case unix.EINTR:
		case unix.EAGAIN:
			c.writable = false
		default:
			return done, c.opError("write", os.NewSyscallError("write", c.werr))
		}
	}
	return done, nil
}

func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // RawConn's, as "raw-read"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close closes the connection and wakes a Task that waits for it.
func (c *Conn) Close() error {
	err := c.TCPConn.Close()
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.wake()
	return err
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	err := c.TCPConn.SetDeadline(t)
	c.setDeadlines(t, t, true, true)
	return err
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	err := c.TCPConn.SetReadDeadline(t)
	c.setDeadlines(t, time.Time{}, true, false)
	return err
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	err := c.TCPConn.SetWriteDeadline(t)
	c.setDeadlines(time.Time{}, t, false, true)
	return err
}

// setDeadlines records the new deadlines and arranges a wake when the
// earlier one passes: at once if it has, else from a timer.
func (c *Conn) setDeadlines(rd, wd time.Time, setR, setW bool) {
	c.mu.Lock()
	if setR {
		c.rdl = rd
	}
	if setW {
		c.wdl = wd
	}
	now := c.armLocked()
	c.mu.Unlock()
	if now {
		c.wake()
	}
}

// armLocked sets the timer for the earlier deadline, once c is on a loop
// (before, nothing waits there); true when it has passed already. The
// caller holds c.mu.
func (c *Conn) armLocked() (passed bool) {
	next := c.rdl
	if next.IsZero() || (!c.wdl.IsZero() && c.wdl.Before(next)) {
		next = c.wdl
	}
	switch d := time.Until(next); {
	case next.IsZero():
		if c.timer != nil {
			c.timer.Stop()
		}
	case d <= 0:
		return true
	case c.loop.Load() == nil:
	case c.timer == nil:
		c.timer = time.AfterFunc(d, c.wake)
	default:
		c.timer.Reset(d)
	}
	return false
}

// wake asks c's loop to resume a Task that waits for c, which then tries
// again and finds the deadline or the close.
func (c *Conn) wake() {
	if l := c.loop.Load(); l != nil {
		l.post(msg{kind: msgWake, c: c})
	}
}
