package backend

import (
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/shadow"
)

// Live shadowing (pkg/shadow): a sampled fraction of a cluster's read-only
// autocommit statements is handed, with a checksum of the rows the client
// received, to a mirror that runs them on another cluster and compares. The
// session's part is this file: choose, checksum while forwarding, submit.
// It never changes what the client sees and never waits.

// shadowed is the sampled statement in flight; only the session goroutine
// touches it.
type shadowed struct {
	sink    shadow.Sink
	start   time.Time
	res     shadow.Result
	textBuf []byte
	// hashing: the rows of the COM_QUERY in flight are checksummed into
	// res, because it is sampled or because a traffic capture runs (the
	// capture records the checksum, Command.Checksum).
	hashing bool
	// hashRow is bound once per session so hashed rows do not allocate.
	hashRow func([]byte)
}

// shadowBegin samples a COM_QUERY about to be forwarded: a statement that
// reads (it starts with SELECT), outside a transaction, with autocommit
// on. pkg/shadow refuses what this cheap test lets through and should not
// run twice (locking reads, INTO, functions whose result differs per run).
func (s *Session) shadowBegin(pk mysql.Packet) {
	sh := &s.inflight.shadow
	sh.sink = nil
	sh.hashing = s.inflight.observed.active && s.cfg.CapturePackets != nil && s.cfg.CapturePackets.Load()
	if sh.hashing {
		s.bindHashRow()
		sh.res = shadow.Result{}
	}
	if s.cfg.Shadow == nil || !pk.Complete || s.state.inTxn || s.state.noAutocommit || s.lease == nil ||
		!startsWithSelect(pk.Data[1:]) {
		return
	}
	sink := s.cfg.Shadow.Sample(s.lease.Cluster())
	if sink == nil {
		return
	}
	s.bindHashRow()
	sh.sink, sh.hashing, sh.start = sink, true, time.Now()
	sh.textBuf = append(sh.textBuf[:0], pk.Data[1:]...)
	sh.res = shadow.Result{Text: sh.textBuf, DB: s.state.db, Charset: s.charset}
}

func (s *Session) bindHashRow() {
	if sh := &s.inflight.shadow; sh.hashRow == nil {
		sh.hashRow = func(row []byte) {
			sh.res.Rows++
			sh.res.Checksum += mysql.RowChecksum(row)
		}
	}
}

// shadowRows returns the function that checksums the rows forwarded now:
// nil unless the rows of the command in flight are hashed.
func (s *Session) shadowRows() func([]byte) {
	if !s.inflight.shadow.hashing {
		return nil
	}
	return s.inflight.shadow.hashRow
}

// shadowRow checksums one row forwarded on the slow path.
func (s *Session) shadowRow(pk mysql.Packet) {
	if !s.inflight.shadow.hashing {
		return
	}
	if !pk.Complete {
		s.inflight.shadow.res.Uncomparable = true
		return
	}
	s.inflight.shadow.hashRow(pk.Data)
}

// shadowEnd gives the observer the checksum of the rows (for a capture)
// and submits a sampled statement once its response is forwarded (err nil)
// and it left the session outside a transaction.
func (s *Session) shadowEnd(status uint16, err error) {
	sh := &s.inflight.shadow
	if !sh.hashing {
		return
	}
	sh.hashing = false
	if s.inflight.observed.active && err == nil && !sh.res.Uncomparable {
		s.inflight.observed.cmd.Checksum, s.inflight.observed.cmd.Checksummed = sh.res.Checksum, true
	}
	if sh.sink == nil {
		return
	}
	sink := sh.sink
	sh.sink = nil
	if err != nil || status&mysql.ServerMoreResultsExists != 0 || s.state.inTxn {
		return
	}
	sh.res.Latency = time.Since(sh.start)
	sink.Submit(&sh.res)
	sh.res.Text = nil
	if cap(sh.textBuf) > 4<<10 {
		sh.textBuf = nil
	}
}

// startsWithSelect reports whether q's first word, after blanks and
// comments, is SELECT.
func startsWithSelect(q []byte) bool {
	for i := 0; i < len(q); {
		switch c := q[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+2 < len(q) && q[i+1] == '*' && q[i+2] != '!':
			end := -1
			for j := i + 2; j+1 < len(q); j++ {
				if q[j] == '*' && q[j+1] == '/' {
					end = j + 2
					break
				}
			}
			if end < 0 {
				return false
			}
			i = end
		default:
			const w = "SELECT"
			if len(q)-i < len(w)+1 {
				return false
			}
			for k := 0; k < len(w); k++ {
				if q[i+k]&^0x20 != w[k] {
					return false
				}
			}
			return !isIdent(q[i+len(w)])
		}
	}
	return false
}
