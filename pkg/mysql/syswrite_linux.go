package mysql

import (
	"github.com/switchyard-db/switchyard/lib/rawsys"

	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// sysWriter writes to a TCP socket with raw write(2) calls, made from inside
// the connection's RawConn.Write: the socket is non-blocking, so a call never
// blocks, and when the socket is full the callback reports it and the
// runtime's poller waits for room, honouring the write deadline, as
// net.Conn.Write does.
//
// Why not net.Conn.Write: that write is an ordinary system call, which tells
// the runtime the goroutine may block. On loopback a write runs the receiver's
// TCP input and wakes it, 10-20 µs on the paravirtualised machines measured
// here, and a goroutine that stays in a system call that long has its P taken
// back by the runtime's monitor thread (sysmon), which hands it to another
// thread, polls again 20 µs later, and leaves the writer to find a P when it
// returns. perf put that monitor thread at 6-7 % of bench/relay's CPU samples
// and 0.7 % with raw writes; in the proxy at 64 client threads, raw writes
// took the work from six busy threads to three and the context switches per
// query from 0.90-0.97 to 0.73-0.84 (docs/benchmarks.md, "What a Go process
// can reach"). A raw system call cannot be preempted, so writes larger than
// rawWriteMax, whose copy takes longer, still go through net.Conn.Write.
type sysWriter struct {
	conn rawSocket
	// rc is a *net.TCPConn's RawConn, got once (each SyscallConn call
	// allocates one); nil for a Socket, whose RawConn changes as it is
	// frozen and thawed: a write asks the Socket (which keeps its own).
	rc syscall.RawConn
}

// rawSocket is a *net.TCPConn, or a Socket.
type rawSocket interface {
	net.Conn
	SyscallConn() (syscall.RawConn, error)
}

// rawWriteMax is the largest write made as a raw system call.
const rawWriteMax = 64 << 10

// newSysWriter returns the writer for conn: a sysWriter for a TCP connection,
// else conn itself.
func newSysWriter(conn net.Conn) io.Writer {
	switch c := conn.(type) {
	case *net.TCPConn:
		rc, err := c.SyscallConn()
		if err != nil {
			return conn
		}
		return sysWriter{conn: c, rc: rc}
	case Socket:
		return sysWriter{conn: c}
	}
	return conn
}

// writeState is one Write in progress, pooled so that a write allocates
// nothing beyond the RawConn.
type writeState struct {
	rest []byte
	n    int
	err  error
	fn   func(fd uintptr) bool // st.write, bound once
}

var writeStates = sync.Pool{New: func() any {
	st := new(writeState)
	st.fn = st.write
	return st
}}

func (w sysWriter) Write(b []byte) (int, error) {
	if len(b) > rawWriteMax || len(b) == 0 {
		return w.conn.Write(b)
	}
	rc := w.rc
	if rc == nil {
		var err error
		if rc, err = w.conn.SyscallConn(); err != nil {
			return 0, err
		}
	}
	st := writeStates.Get().(*writeState)
	st.rest, st.n, st.err = b, 0, nil
	err := rc.Write(st.fn) // deadline passed or connection closed
	n, werr := st.n, st.err
	st.rest, st.err = nil, nil
	writeStates.Put(st)
	if err == nil && werr != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Source: w.conn.LocalAddr(), Addr: w.conn.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	}
	return n, err
}

// write writes what is left; false asks the poller to wait until the socket
// has room.
func (st *writeState) write(fd uintptr) bool {
	for len(st.rest) > 0 {
		n, errno := rawsys.Write(fd, st.rest)
		switch errno {
		case 0:
			st.n += n
			st.rest = st.rest[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			st.err = errno
			return true
		}
	}
	return true
}
