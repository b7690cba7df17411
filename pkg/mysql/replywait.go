package mysql

import "time"

// FlushRequest sends what is buffered, a request that the peer answers
// only after reading it, and then waits until the answer is readable.
//
// It exists to spare the read that cannot succeed. Read on a Go connection
// tries the system call first and waits on the poller only when it returns
// EAGAIN; right after a request, that first try always fails, since the
// answer cannot have arrived. FlushRequest writes the request from inside
// syscall.RawConn.Read, after the poller's readiness was reset, so the
// answer's arrival is always noticed and waiting first loses nothing. The
// next read then finds the answer there.
//
// The reasoning holds only when the peer sends nothing before it has read
// the whole request (the MySQL protocol's command phase; a peer that closes
// makes our write fail or draws a reset, which the poller reports). So
// FlushRequest waits only when the whole request goes out in one write from
// the buffer, nothing is buffered for reading, and the transport is plain
// TCP; otherwise it is Flush. It returns the write's error only: when the
// wait ends early (a deadline, a close), the next read reports why.
func (p *PacketIO) FlushRequest() error {
	if p.wr.spilled || len(p.wr.buf) == 0 || !p.Plain() || p.rd.buffered() > 0 {
		return p.Flush()
	}
	w := p.replyWaiter()
	if w == nil {
		return p.Flush()
	}
	w.stage = stageWrite
	_ = w.rc.Read(w.step)
	if w.stage == stageWrite {
		// Not written, or not all of it (EAGAIN, an error, the
		// connection closed under us): Flush writes the rest or says why.
		return p.Flush()
	}
	return nil
}

const (
	stageWrite    = iota // the request is still to be written
	stageWritten         // written; the next read tries first
	stageWait            // written; waiting for readability
	stageReadable        // the poller reported the answer
)

// preemptedWrite is how long a write of a request takes when the writer
// lost its CPU during it, to the peer it woke on a busy machine; the
// answer has then often arrived already.
var preemptedWrite = 40 * time.Microsecond
