package backend

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/pkg/proxy/evloop"
	"golang.org/x/sys/unix"
)

// sockConn is a session's TCP connection, to its client or to its backend,
// whose socket can leave Go's runtime while the session idles: frozen, it is
// a bare file descriptor, and the *net.TCPConn that served it is closed and
// garbage. Each open net.TCPConn costs about 0.95 KiB (bench/connfloor: its
// netFD and addresses on the heap, and the netpoller's pollDesc, padded to
// 512 bytes, off it), twice per session, which is as much as the rest of a
// parked session together.
//
// A frozen connection thaws by itself: the first Read, Write or any other
// use of the connection makes a new net.TCPConn of the descriptor
// (net.FileConn) and goes on with it, so nothing above it (the PacketIO,
// TLS, the idle watch, an idle migration) knows about freezing. Close and
// the deadlines act on a frozen connection without thawing it: a deadline
// is kept and set on the thawed connection.
//
// Who freezes it must own it: nobody reads or writes it meanwhile (the
// parking session for its client, park.go; the idle watch for the backend,
// whose readers disarm it first). Close and the deadlines may come from
// anywhere, as on a net.Conn.
//
// The frozen descriptor can be registered with the idle poller. A
// registration is keyed by the descriptor's number and the socket together,
// and outlives the number's close while another descriptor of the socket is
// open; so thawing withdraws it before it closes the frozen number.
type sockConn struct {
	// live is the connection serving the socket, nil while frozen. Read
	// and Write load it without the lock: only its owner freezes it.
	live atomic.Pointer[liveConn]

	mu     sync.Mutex
	fd     int32 // the frozen descriptor; -1 while live
	closed bool
	// rdl and wdl are the deadlines set while frozen (Unix nanoseconds,
	// 0: none).
	rdl, wdl int64
}

// liveConn is a live sockConn's connection with its RawConn, got once: each
// SyscallConn call of a net.TCPConn allocates one, and every raw write of
// PacketIO asks for it.
type liveConn struct {
	tc *net.TCPConn
	rc syscall.RawConn // nil when tc gave none: raw asks tc
}

// raw returns the connection's RawConn.
func (l *liveConn) raw() (syscall.RawConn, error) {
	if l.rc != nil {
		return l.rc, nil
	}
	return l.tc.SyscallConn()
}

func newSockConn(tc *net.TCPConn) *sockConn {
	c := &sockConn{fd: -1}
	c.setLive(tc)
	return c
}

func (c *sockConn) setLive(tc *net.TCPConn) {
	rc, _ := tc.SyscallConn()
	c.live.Store(&liveConn{tc: tc, rc: rc})
}

// liveTCP returns the live connection, nil while frozen.
func (c *sockConn) liveTCP() *net.TCPConn {
	if l := c.live.Load(); l != nil {
		return l.tc
	}
	return nil
}

// conn returns the live connection, thawing a frozen one.
func (c *sockConn) conn() (*net.TCPConn, error) {
	if tc := c.liveTCP(); tc != nil {
		return tc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.thawLocked()
}

// Freeze makes the socket a bare descriptor and drops its net.TCPConn;
// false when it stays live (closed, or no descriptor to spare). The caller
// owns the connection (see sockConn), and no deadline is set on it.
func (c *sockConn) Freeze() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.liveTCP()
	if tc == nil || c.closed {
		return tc == nil && !c.closed
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil || err != nil {
		return false
	}
	// Blocking while frozen, so that os.NewFile in thawLocked does not
	// register it with the runtime's poller on the way (the flag belongs to
	// the socket: the thawed connection sets it back).
	_ = unix.SetNonblock(nfd, false)
	c.fd = int32(nfd)
	c.live.Store(nil)
	_ = tc.Close() // the socket stays open through nfd
	return true
}

// Frozen reports whether the socket is a bare descriptor now.
func (c *sockConn) Frozen() bool { return c.live.Load() == nil }

// thawLocked makes a net.TCPConn of the frozen descriptor. The caller holds
// c.mu.
func (c *sockConn) thawLocked() (*net.TCPConn, error) {
	if tc := c.liveTCP(); tc != nil {
		return tc, nil
	}
	if c.closed {
		return nil, net.ErrClosed
	}
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f) // a new descriptor of the same socket
	pollerForget(c.fd)
	_ = f.Close() // the frozen number; nc has its own
	c.fd = -1
	if err != nil {
		// No descriptor to spare (EMFILE): the socket is closed with f,
		// and this use fails, as on any broken connection.
		c.closed = true
		return nil, &net.OpError{Op: "thaw", Net: "tcp", Err: err}
	}
	tc := nc.(*net.TCPConn)
	if c.rdl != 0 {
		_ = tc.SetReadDeadline(time.Unix(0, c.rdl))
	}
	if c.wdl != 0 {
		_ = tc.SetWriteDeadline(time.Unix(0, c.wdl))
	}
	c.rdl, c.wdl = 0, 0
	c.setLive(tc)
	return tc, nil
}

func (c *sockConn) Read(b []byte) (int, error) {
	tc, err := c.conn()
	if err != nil {
		return 0, c.opError("read", err)
	}
	return tc.Read(b)
}

func (c *sockConn) Write(b []byte) (int, error) {
	tc, err := c.conn()
	if err != nil {
		return 0, c.opError("write", err)
	}
	return tc.Write(b)
}

// SyscallConn returns the live connection's RawConn; frozen, a RawConn
// whose Control runs on the bare descriptor (the idle poller registers it)
// and whose Read and Write thaw it first.
func (c *sockConn) SyscallConn() (syscall.RawConn, error) {
	if l := c.live.Load(); l != nil {
		return l.raw()
	}
	return frozenRaw{c}, nil
}

// TCPSocket marks sockConn as a plain TCP socket for mysql.Socket: its
// writes may be raw system calls on SyscallConn.
func (c *sockConn) TCPSocket() {}

func (c *sockConn) CloseWrite() error {
	tc, err := c.conn()
	if err != nil {
		return c.opError("close", err)
	}
	return tc.CloseWrite()
}

func (c *sockConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc := c.liveTCP(); tc != nil {
		c.closed = true
		return tc.Close()
	}
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	// The only descriptor of the socket: closing it also ends any
	// registration of it with the idle poller.
	err := unix.Close(int(c.fd))
	c.fd = -1
	return err
}

func (c *sockConn) LocalAddr() net.Addr {
	if tc, err := c.conn(); err == nil {
		return tc.LocalAddr()
	}
	return nil
}

func (c *sockConn) RemoteAddr() net.Addr {
	if tc, err := c.conn(); err == nil {
		return tc.RemoteAddr()
	}
	return nil
}

func (c *sockConn) SetDeadline(t time.Time) error {
	return c.setDeadlines(t, true, true)
}

func (c *sockConn) SetReadDeadline(t time.Time) error {
	return c.setDeadlines(t, true, false)
}

func (c *sockConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadlines(t, false, true)
}

func (c *sockConn) setDeadlines(t time.Time, r, w bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc := c.liveTCP(); tc != nil {
		switch {
		case r && w:
			return tc.SetDeadline(t)
		case r:
			return tc.SetReadDeadline(t)
		default:
			return tc.SetWriteDeadline(t)
		}
	}
	if c.closed {
		return c.opError("set deadline", net.ErrClosed)
	}
	ns := int64(0)
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	if r {
		c.rdl = ns
	}
	if w {
		c.wdl = ns
	}
	return nil
}

func (c *sockConn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

// frozenRaw is the RawConn of a frozen sockConn.
type frozenRaw struct{ c *sockConn }

// Control runs f on the frozen descriptor, which stays open meanwhile; on a
// connection thawed since, on the live one's.
func (r frozenRaw) Control(f func(fd uintptr)) error {
	r.c.mu.Lock()
	if l := r.c.live.Load(); l != nil {
		r.c.mu.Unlock()
		rc, err := l.raw()
		if err != nil {
			return err
		}
		return rc.Control(f)
	}
	defer r.c.mu.Unlock()
	if r.c.closed {
		return r.c.opError("control", net.ErrClosed)
	}
	f(uintptr(r.c.fd))
	return nil
}

func (r frozenRaw) Read(f func(fd uintptr) bool) error {
	rc, err := r.thawed("read")
	if err != nil {
		return err
	}
	return rc.Read(f)
}

func (r frozenRaw) Write(f func(fd uintptr) bool) error {
	rc, err := r.thawed("write")
	if err != nil {
		return err
	}
	return rc.Write(f)
}

// thawed thaws the connection for op and returns its RawConn.
func (r frozenRaw) thawed(op string) (syscall.RawConn, error) {
	if _, err := r.c.conn(); err != nil {
		return nil, r.c.opError(op, err)
	}
	return r.c.SyscallConn()
}

// freezable wraps a session's TCP connection so that it can be frozen.
func freezable(tc *net.TCPConn) net.Conn { return newSockConn(tc) }

// freezer is a session's connection whose socket can leave Go's runtime
// while the session idles: a sockConn (a session on goroutines), or an
// event loop's Conn (a session on a loop).
type freezer interface {
	Freeze() bool
	Frozen() bool
}

var _, _ freezer = (*sockConn)(nil), (*evloop.Conn)(nil)

// freezeConn freezes conn when it is a freezer; false when it stays live.
func freezeConn(conn net.Conn) bool {
	f, ok := conn.(freezer)
	return ok && f.Freeze()
}

// canFreeze reports whether conn is a live freezer.
func canFreeze(conn net.Conn) bool {
	f, ok := conn.(freezer)
	return ok && !f.Frozen()
}

// isFrozen reports whether conn is a frozen freezer.
func isFrozen(conn net.Conn) bool {
	f, ok := conn.(freezer)
	return ok && f.Frozen()
}

// cork sets TCP_CORK on conn's socket: what is written next is held until
// the writing side is shut down, which sends it with the FIN (sayLast).
func cork(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
}
