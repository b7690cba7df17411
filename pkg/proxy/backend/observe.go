package backend

import (
	"encoding/binary"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// Command describes one finished client command to the session's
// CommandObserver. Its slices alias session memory: they are valid only
// during Observe.
type Command struct {
	// Cmd is the command byte (mysql.ComQuery, …).
	Cmd byte
	// Start is when the command arrived; Duration runs to the end of its
	// response.
	Start    time.Time
	Duration time.Duration
	// Text is the statement of a COM_QUERY, or for a COM_STMT_EXECUTE the
	// text the statement was prepared from; nil for other commands. A
	// statement longer than maxObservedText is cut there, and one that did
	// not fit the read buffer (about 32 KiB) is its first 64 bytes.
	Text []byte
	// Packet is the raw command after its first byte, for commands other
	// than COM_QUERY and COM_STMT_PREPARE, while Config.CapturePackets is
	// on (a traffic capture runs); nil otherwise.
	Packet []byte
	// StmtID is the statement id the backend gave a successful
	// COM_STMT_PREPARE.
	StmtID uint32
	// RowsSent counts result-set rows forwarded to the client; RowsAffected
	// sums the affected rows of its OK packets.
	RowsSent, RowsAffected uint64
	// Checksum sums mysql.RowChecksum over the rows of a COM_QUERY's results, set
	// (Checksummed) while a traffic capture runs (Config.CapturePackets),
	// unless a row was too large to hash in passing.
	Checksum    uint64
	Checksummed bool
	// ErrCode is the code of the ERR packet that answered it, 0 if none.
	ErrCode uint16
	// ConnID, User, DB and Backend describe the session when the command
	// ended.
	ConnID            uint64
	User, DB, Backend string
}

// maxObservedText bounds the statement text a session copies for its
// observer; digests of longer statements are computed on this prefix.
const maxObservedText = 64 << 10

// inflight is the state of the command in flight that a session needs only
// while it serves: its observation (here) and its shadowing (shadow.go).
// serve allocates it and a parked session drops it, with the statement
// buffers its commands reuse, so that an idle session is smaller.
type inflight struct {
	observed observed
	// shadow is the statement in flight sampled for shadowing.
	shadow shadowed
}

// observed is what the session gathers about the command in flight. Only
// the session goroutine touches it.
type observed struct {
	cmd       Command
	active    bool
	textBuf   []byte // reused between commands
	packetBuf []byte
}

// beginCommand starts observing the command in pk. It must run before
// dispatch, since forwarding reuses the packet's buffer.
func (s *Session) beginCommand(pk mysql.Packet) {
	o := &s.inflight.observed
	o.active = s.obs != nil && pk.Len > 0
	if !o.active {
		return
	}
	o.cmd = Command{Cmd: pk.First(), Start: time.Now(), ConnID: s.id}
	switch o.cmd.Cmd {
	case mysql.ComQuery, mysql.ComStmtPrepare:
		text := pk.Data[1:]
		if len(text) > maxObservedText {
			text = text[:maxObservedText]
		}
		o.textBuf = append(o.textBuf[:0], text...)
		o.cmd.Text = o.textBuf
	case mysql.ComStmtExecute:
		if st := s.state.lookupStmt(pk.Data); st != nil {
			o.cmd.Text = st.text
		}
	}
	if c := s.cfg.CapturePackets; c != nil && c.Load() && pk.Complete &&
		o.cmd.Cmd != mysql.ComQuery && o.cmd.Cmd != mysql.ComStmtPrepare {
		o.packetBuf = append(o.packetBuf[:0], pk.Data[1:]...)
		o.cmd.Packet = o.packetBuf
	}
}

// endCommand reports the command to the observer.
func (s *Session) endCommand() {
	o := &s.inflight.observed
	if !o.active {
		return
	}
	o.active = false
	o.cmd.Duration = time.Since(o.cmd.Start)
	o.cmd.User, o.cmd.DB = s.state.user, s.state.db
	if s.lease != nil {
		o.cmd.Backend = s.lease.Addr()
	}
	s.obs.Observe(&o.cmd)
	o.cmd.Text, o.cmd.Packet = nil, nil
	if cap(o.textBuf) > 4<<10 {
		o.textBuf = nil // do not keep a large statement's buffer while idle
	}
	if cap(o.packetBuf) > 4<<10 {
		o.packetBuf = nil
	}
}

// noteRows counts result-set rows forwarded for the command in flight.
func (s *Session) noteRows(n int) { s.inflight.observed.cmd.RowsSent += uint64(n) }

// noteAffected adds an OK packet's affected rows.
func (s *Session) noteAffected(n uint64) { s.inflight.observed.cmd.RowsAffected += n }

// noteError records the code of an ERR packet answering the command.
func (s *Session) noteError(pk mysql.Packet) {
	if len(pk.Data) >= 3 {
		s.inflight.observed.cmd.ErrCode = binary.LittleEndian.Uint16(pk.Data[1:])
		s.inflight.shadow.res.ErrCode = s.inflight.observed.cmd.ErrCode
	}
}

// notePrepared records the id of the statement the COM_STMT_PREPARE in
// flight created and returns its text, kept with the statement so that its
// executions are counted under it.
func (s *Session) notePrepared(id uint32) []byte {
	if !s.inflight.observed.active || len(s.inflight.observed.cmd.Text) == 0 {
		return nil
	}
	s.inflight.observed.cmd.StmtID = id
	return append([]byte(nil), s.inflight.observed.cmd.Text...)
}
