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

// Conn is a TCP connection that a Task can attach to its loop.
//
// The socket leaves Go's runtime when a loop first registers it: the Conn
// takes a descriptor of its own (a duplicate) and closes the net.TCPConn it
// was given, so that the runtime's poller no longer holds the socket. Were
// it still there, every packet would also wake a thread idle in the
// runtime's netpoller, which finds nothing to run and sleeps again
// (docs/benchmarks.md, "The single loop at 64 threads, explained").
//
// Attached, its Read and Write are raw system calls on that descriptor that
// yield to the loop on EAGAIN. Released or detached (another goroutine may
// use it then), a Read or Write still tries the descriptor first; only one
// that would block thaws the Conn: it makes a net.TCPConn of the socket
// again and waits on Go's netpoller, until the next attach closes that one.
// Before its first registration the Conn is the net.TCPConn it was given.
//
// Deadlines and Close keep net.Conn's meaning in every state, and wake a
// Task that waits in the loop. Close may come from any goroutine: the
// descriptor is closed once no system call on it is in flight, so that its
// number is never reused under one.
type Conn struct {
	// live is the runtime's connection, nil while the socket is bare: the
	// one given to Wrap until the first registration, afterwards one
	// thawed for a blocking call off the loop. Changed under mu.
	live atomic.Pointer[liveConn]
	// sock is the Conn's own descriptor: -1 until the first registration,
	// then fixed until closed (written under mu, before st can say closed).
	sock  int32
	st    fdState
	newW  func(net.Conn) io.Writer // a live connection's writer
	laddr net.Addr
	raddr net.Addr

	// Loop state (see Loop): the attached Task, the registration, and what
	// epoll said about the socket since the last EAGAIN.
	t, owner           *Task
	gen                uint32 // the registration's; 0: not registered
	readable, writable bool
	hup                bool // the peer closed or the socket failed
	rwait, wwait       bool // t waits for readable, writable
	loop               atomic.Pointer[Loop]

	// Deadlines (Unix nanoseconds, 0: none), checked before each system
	// call on the bare descriptor; a timer wakes a Task that waits in the
	// loop when the earlier one passes.
	rdl, wdl atomic.Int64
	mu       sync.Mutex
	timer    *time.Timer
}

// liveConn is a net.TCPConn of the socket with the writer for it.
type liveConn struct {
	tc *net.TCPConn
	w  io.Writer
}

// fdState counts the system calls in flight on a Conn's descriptor and
// says whether the Conn is closed: bit 0 closed, bit 1 the descriptor
// closed, the references from bit 2 up.
type fdState struct{ v atomic.Int64 }

const (
	stClosed   = 1
	stFDClosed = 2
	stRef      = 4
)

// release drops a reference; true when the caller must close the
// descriptor (the Conn was closed while the call was in flight).
func (s *fdState) release() bool {
	return s.v.Add(-stRef) == stClosed && s.v.CompareAndSwap(stClosed, stClosed|stFDClosed)
}

// close marks the Conn closed; true when the caller must close the
// descriptor (no call is in flight), false when the last release will, or
// it was closed before.
func (s *fdState) close() (first, closeFD bool) {
	old := s.v.Or(stClosed)
	if old&stClosed != 0 {
		return false, false
	}
	return true, s.v.CompareAndSwap(stClosed, stClosed|stFDClosed)
}

func (s *fdState) closed() bool { return s.v.Load()&stClosed != 0 }

// Wrap returns tc as a Conn; newWriter makes the writer of a live
// connection (the connection itself when nil).
func Wrap(tc *net.TCPConn, newWriter func(net.Conn) io.Writer) *Conn {
	if newWriter == nil {
		newWriter = func(c net.Conn) io.Writer { return c }
	}
	c := &Conn{sock: -1, newW: newWriter, laddr: tc.LocalAddr(), raddr: tc.RemoteAddr()}
	c.live.Store(&liveConn{tc: tc, w: newWriter(tc)})
	return c
}

// maxRawWrite bounds one raw write(2): it cannot be preempted.
const maxRawWrite = 64 << 10

// acquire takes a reference for a call on the descriptor; false once the
// Conn is closed.
func (c *Conn) acquire() bool {
	if c.st.v.Add(stRef)&stClosed != 0 {
		c.releaseFD() // the last reference closes the descriptor, this one too
		return false
	}
	return true
}

// releaseFD drops a reference, and closes the descriptor when the Conn was
// closed while the call was in flight.
func (c *Conn) releaseFD() {
	if c.st.release() {
		unix.Close(int(c.sock))
	}
}

// sysRead and sysWrite are one raw system call on the descriptor, or
// EBADF once the Conn is closed.
func (c *Conn) sysRead(b []byte) (int, syscall.Errno) {
	if !c.acquire() {
		return 0, unix.EBADF
	}
	n, errno := rawsys.Read(uintptr(c.sock), b)
	c.releaseFD()
	return n, errno
}

func (c *Conn) sysWrite(b []byte) (int, syscall.Errno) {
	if !c.acquire() {
		return 0, unix.EBADF
	}
	n, errno := rawsys.Write(uintptr(c.sock), b[:min(len(b), maxRawWrite)])
	c.releaseFD()
	return n, errno
}

// check says why a call on the descriptor must fail now: the Conn is
// closed, or the deadline dl passed.
func (c *Conn) check(dl *atomic.Int64) error {
	if c.st.closed() {
		return net.ErrClosed
	}
	if d := dl.Load(); d != 0 && time.Now().UnixNano() >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Read reads as net.Conn does. Attached, a read that would block yields to
// the loop; off the loop it waits on the runtime's poller, through the live
// connection (thawed for it if the socket is bare).
func (c *Conn) Read(b []byte) (int, error) {
	t := c.t
	if t == nil {
		if l := c.live.Load(); l != nil {
			return l.tc.Read(b)
		}
	}
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if err := c.check(&c.rdl); err != nil {
			return 0, c.opError("read", err)
		}
		if t != nil && !c.readable {
			if !t.wait(c, false) {
				return 0, c.opError("read", ErrStopped)
			}
			continue
		}
		n, errno := c.sysRead(b)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if t != nil {
				c.readable = false
				continue
			}
			l, err := c.thaw()
			if err != nil {
				return 0, c.opError("read", err)
			}
			return l.tc.Read(b)
		default:
			return 0, c.errnoError("read", errno)
		}
		if n == 0 {
			return 0, io.EOF
		}
		if t != nil && n < len(b) && !c.hup {
			// The socket is drained: the next data comes with an edge.
			c.readable = false
		}
		return n, nil
	}
}

// Write writes as net.Conn does. Attached, a write that would block yields
// to the loop; off the loop it waits on the runtime's poller, through the
// live connection (thawed for it if the socket is bare).
func (c *Conn) Write(b []byte) (int, error) {
	t := c.t
	if t == nil {
		if l := c.live.Load(); l != nil {
			return l.w.Write(b)
		}
	}
	done := 0
	for done < len(b) {
		if err := c.check(&c.wdl); err != nil {
			return done, c.opError("write", err)
		}
		if t != nil && !c.writable {
			if !t.wait(c, true) {
				return done, c.opError("write", ErrStopped)
			}
			continue
		}
		n, errno := c.sysWrite(b[done:])
		switch errno {
		case 0:
			done += n
		case unix.EINTR:
		case unix.EAGAIN:
			if t != nil {
				c.writable = false
				continue
			}
			l, err := c.thaw()
			if err != nil {
				return done, c.opError("write", err)
			}
			n, err = l.w.Write(b[done:])
			return done + n, err
		default:
			return done, c.errnoError("write", errno)
		}
	}
	return done, nil
}

func (c *Conn) errnoError(op string, errno syscall.Errno) error {
	if errno == unix.EBADF {
		return c.opError(op, net.ErrClosed) // closed meanwhile
	}
	return c.opError(op, os.NewSyscallError(op, errno))
}

func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // RawConn's, as "raw-read"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// goBare gives the socket a descriptor of the Conn's own and closes the
// live connection, which takes the socket out of the runtime's poller.
// The caller owns the Conn (it is attaching it).
func (c *Conn) goBare() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.closed() {
		return net.ErrClosed
	}
	l := c.live.Load()
	if c.sock < 0 {
		rc, err := l.tc.SyscallConn()
		if err != nil {
			return err
		}
		nfd := -1
		if cerr := rc.Control(func(fd uintptr) { nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
			return cerr
		}
		if err != nil {
			return err // no descriptor to spare: the Conn stays live
		}
		c.sock = int32(nfd)
	}
	if l != nil {
		c.live.Store(nil)
		_ = l.tc.Close() // the socket stays open through sock
	}
	return nil
}

// thaw makes a live connection of the bare socket, for a call off the loop
// that must wait: it waits on Go's netpoller, with the Conn's deadlines.
func (c *Conn) thaw() (*liveConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.live.Load(); l != nil {
		return l, nil
	}
	if c.st.closed() {
		return nil, net.ErrClosed // the descriptor may be closed: do not touch it
	}
	nfd, err := unix.FcntlInt(uintptr(c.sock), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("dup", err)
	}
	f := os.NewFile(uintptr(nfd), "")
	nc, err := net.FileConn(f) // another descriptor, in the runtime's poller
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	tc := nc.(*net.TCPConn)
	if d := c.rdl.Load(); d != 0 {
		_ = tc.SetReadDeadline(time.Unix(0, d))
	}
	if d := c.wdl.Load(); d != 0 {
		_ = tc.SetWriteDeadline(time.Unix(0, d))
	}
	l := &liveConn{tc: tc, w: c.newW(tc)}
	c.live.Store(l)
	return l, nil
}

// Frozen reports whether the socket is outside the runtime's poller now.
func (c *Conn) Frozen() bool { return c.live.Load() == nil }

// Freeze takes the socket out of the runtime's poller before the Conn is
// on a loop (a parked session's): false when it stays live (closed, or no
// descriptor to spare). Only the Conn's owner calls it; the descriptor
// (SyscallConn's Control) is another number afterwards.
func (c *Conn) Freeze() bool { return c.goBare() == nil }

// LocalAddr is the socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr is the socket's peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// Close closes the connection and wakes a Task that waits for it.
func (c *Conn) Close() error {
	c.mu.Lock()
	first, closeFD := c.st.close()
	l := c.live.Swap(nil)
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	var err error
	if l != nil {
		err = l.tc.Close()
	}
	if closeFD && c.sock >= 0 {
		if cerr := unix.Close(int(c.sock)); err == nil && cerr != nil {
			err = c.opError("close", os.NewSyscallError("close", cerr))
		}
	}
	c.wake()
	return err
}

// CloseWrite shuts down the writing side of the connection.
func (c *Conn) CloseWrite() error {
	if l := c.live.Load(); l != nil {
		return l.tc.CloseWrite()
	}
	if !c.acquire() {
		return c.opError("close", net.ErrClosed)
	}
	err := unix.Shutdown(int(c.sock), unix.SHUT_WR)
	c.releaseFD()
	if err != nil {
		return c.opError("close", os.NewSyscallError("shutdown", err))
	}
	return nil
}

// SyscallConn returns a RawConn of the socket: Control runs on the bare
// descriptor (or the live connection's); Read and Write thaw a bare Conn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	c := r.c
	if c.sock < 0 {
		if l := c.live.Load(); l != nil {
			rc, err := l.tc.SyscallConn()
			if err != nil {
				return err
			}
			return rc.Control(f)
		}
	}
	if !c.acquire() {
		return c.opError("control", net.ErrClosed)
	}
	f(uintptr(c.sock))
	c.releaseFD()
	return nil
}

func (r rawConn) Read(f func(fd uintptr) bool) error {
	rc, err := r.liveRaw()
	if err != nil {
		return err
	}
	return rc.Read(f)
}

func (r rawConn) Write(f func(fd uintptr) bool) error {
	rc, err := r.liveRaw()
	if err != nil {
		return err
	}
	return rc.Write(f)
}

func (r rawConn) liveRaw() (syscall.RawConn, error) {
	l := r.c.live.Load()
	if l == nil {
		var err error
		if l, err = r.c.thaw(); err != nil {
			return nil, r.c.opError("raw", err)
		}
	}
	return l.tc.SyscallConn()
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.setDeadlines(t, true, true) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadlines(t, true, false) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadlines(t, false, true) }

// setDeadlines records the new deadlines (and sets them on a live
// connection) and arranges a wake when the earlier one passes: at once if
// it has, else from a timer.
func (c *Conn) setDeadlines(t time.Time, r, w bool) error {
	ns := int64(0)
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	c.mu.Lock()
	if c.st.closed() {
		c.mu.Unlock()
		return c.opError("set deadline", net.ErrClosed)
	}
	if r {
		c.rdl.Store(ns)
	}
	if w {
		c.wdl.Store(ns)
	}
	var err error
	if l := c.live.Load(); l != nil {
		switch {
		case r && w:
			err = l.tc.SetDeadline(t)
		case r:
			err = l.tc.SetReadDeadline(t)
		default:
			err = l.tc.SetWriteDeadline(t)
		}
	}
	passed := c.armLocked()
	c.mu.Unlock()
	if passed {
		c.wake()
	}
	return err
}

// armLocked sets the timer for the earlier deadline, once c is on a loop
// (before, nothing waits there); true when it has passed already. The
// caller holds c.mu.
func (c *Conn) armLocked() (passed bool) {
	next := c.rdl.Load()
	if w := c.wdl.Load(); next == 0 || (w != 0 && w < next) {
		next = w
	}
	if next == 0 {
		if c.timer != nil {
			c.timer.Stop()
		}
		return false
	}
	switch d := time.Until(time.Unix(0, next)); {
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
