package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Session is one client connection and the backend connection it was
// routed to.
type Session struct {
	id     uint64
	cfg    *Config
	router router.Router
	// lg is the proxy's logger, shared; log adds the session's fields.
	lg *zap.Logger
	// logUser and logBackend are the login's user and the backend's id,
	// for log (set where they change).
	logUser, logBackend string

	client  *mysql.PacketIO
	backend *mysql.PacketIO
	lease   router.Lease

	since time.Time

	// Negotiated capabilities on each side, and MariaDB's extended ones
	// (capabilities.go).
	clientCap, backendCap uint32
	clientExt, backendExt uint32
	// backendConnID is the backend's id for this session's connection (its
	// greeting's), which KILL and CONNECTION_ID() use there.
	backendConnID uint32
	// charset is the client's handshake collation, reused when a
	// COM_CHANGE_USER omits it.
	charset byte
	// zstdLevel is the client's zstd level, reused for new backends.
	zstdLevel byte
	// clientMaxPacket is the client's handshake max packet size.
	clientMaxPacket uint32
	// backendDead is set when the backend connection is known broken while
	// the session was idle or after a failed statement; the next command
	// first re-establishes the session elsewhere (failover) or fails.
	backendDead bool
	// serving is set once the login is done and commands flow.
	serving bool
	// (Every idle session holds a Session: it fits the 640-byte allocation
	// class, and what only some sessions need hangs off pointers.)
	// backendSalt is the scramble of the current authentication exchange
	// with the backend (greeting, then each auth switch).
	backendSalt []byte

	state state
	// inflight is what the session keeps about the command in flight; nil
	// while parked (observe.go).
	inflight *inflight
	// ci is how the session was routed; failover routes it again. Its
	// ClientAddr (the real client, after a PROXY header) and LocalAddr (the
	// proxy's address the client reached) are set from the start.
	ci router.ClientInfo
	// clientAttrs are the client's connection attributes, which a new
	// backend connection repeats with clientMaxPacket, charset and
	// zstdLevel.
	clientAttrs []byte

	// cmdMu is held by the session goroutine except while it waits for the
	// client's next command: whoever else touches the backend of an idle
	// session (a migration of an idle session) takes it first.
	cmdMu sync.Mutex
	// watch notices a backend that ends an idle session.
	watch *idleWatch
	// mig is the migration machinery (migration.go).
	mig migration
	// tidb is set when the backend is TiDB, which moves sessions itself
	// (tidb_migrate.go).
	tidb tidbState
	// moves waits for goroutines that migrate idle sessions.
	moves sync.WaitGroup
	// dialed is the last backend connection dialBackend opened.
	dialed dialedIdent
	// kill is what other sessions' KILL needs (kill.go).
	kill killState
	// lp is the session's event loop; nil when it runs on goroutines
	// (onloop.go).
	lp *onLoop

	// mu guards the idle/draining handshake between the session goroutine
	// and RequestClose, and the parking (park).
	mu       sync.Mutex
	idle     bool
	draining bool
	// redirect is the pending Redirect (nil when none).
	redirect *redirectReq
	// obs records commands; nil without metrics.
	obs CommandObserver
	// closeErr, when set, ends the session at its next chance even inside a
	// transaction, telling the client why (CloseWithError).
	closeErr *mysql.MySQLError
	closed   atomic.Bool
	// park is the session's idle parking (park.go), guarded by mu.
	park parking
	// ended is Run's callback; over is set when the session has ended.
	ended func()
	over  atomic.Bool
	// info is a copy of what the API shows, refreshed at command
	// boundaries so that readers never race with the session goroutine.
	info atomic.Pointer[Info]
}

// Info is a snapshot of a session for status reporting.
type Info struct {
	ID            uint64
	ClientAddr    string
	User          string
	DB            string
	Cluster       string
	Backend       string
	InTransaction bool
	// PreparedStatements and OpenCursors count what the client holds on
	// the backend; a session with either cannot simply be moved.
	PreparedStatements int
	OpenCursors        int
	Since              time.Time
	// Migratable says whether the session could move to another backend
	// of its cluster now; NotMigratableReason says why not.
	Migratable          bool
	NotMigratableReason string
}

// NewSession prepares a session for an accepted connection. clientAddr is
// the real client address (from a PROXY header when one was accepted).
func NewSession(id uint64, conn net.Conn, clientAddr netip.AddrPort, cfg *Config, r router.Router, lg *zap.Logger) *Session {
	s := &Session{
		id:     id,
		cfg:    cfg,
		router: r,
		lg:     lg,
		ci:     router.ClientInfo{ClientAddr: clientAddr},
		since:  time.Now(),
	}
	s.client = mysql.NewPacketIO(s.wrapConn(conn))
	if la, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		s.ci.LocalAddr = la.AddrPort()
	}
	s.publishInfo()
	return s
}

// handshakeDeadline bounds the login on both connections (zero: none):
// handshake-timeout from the session's start, which Run begins with.
func (s *Session) handshakeDeadline() time.Time {
	if s.cfg.HandshakeTimeout <= 0 {
		return time.Time{}
	}
	return s.since.Add(s.cfg.HandshakeTimeout)
}

// ID returns the session id (also the connection id sent to the client).
func (s *Session) ID() uint64 { return s.id }

// Info returns the latest published snapshot of the session.
func (s *Session) Info() Info { return *s.info.Load() }

// Placement is the session's cluster and backend address from its latest
// snapshot ("" before it is routed), without copying the whole Info.
func (s *Session) Placement() (cluster, backend string) {
	in := s.info.Load()
	return in.Cluster, in.Backend
}

func (s *Session) publishInfo() {
	cur := s.info.Load()
	cursors := s.state.openCursors
	why := s.notMigratable()
	if cur != nil && cur.User == s.state.user && cur.DB == s.state.db &&
		cur.InTransaction == s.state.inTxn && cur.PreparedStatements == len(s.state.prepared) &&
		cur.OpenCursors == cursors && cur.NotMigratableReason == why &&
		(s.lease == nil || (cur.Backend == s.lease.Addr())) {
		return // unchanged: no allocation on the query path
	}
	in := &Info{
		ID:                  s.id,
		ClientAddr:          s.ci.ClientAddr.String(),
		User:                s.state.user,
		DB:                  s.state.db,
		InTransaction:       s.state.inTxn,
		PreparedStatements:  len(s.state.prepared),
		OpenCursors:         cursors,
		Since:               s.since,
		Migratable:          why == "",
		NotMigratableReason: why,
	}
	if s.lease != nil {
		in.Cluster, in.Backend = s.lease.Cluster(), s.lease.Addr()
	}
	s.info.Store(in)
}

// lingerTime bounds how long a refused client is drained before the close.
const lingerTime = 500 * time.Millisecond

// Run serves the session: the login, then commands until the client quits,
// an error ends it, or it is closed. ended runs once the session is over,
// after both connections are closed and its lease released. Run returns
// then, or sooner: a session that idles parks without a goroutine (park.go)
// and goes on later on a goroutine of its own. A panic in the session ends
// it alone (contain).
func (s *Session) Run(ctx context.Context, ended func()) {
	s.ended = ended
	defer s.contain()
	// The login (TLS, auth, the backend dial) runs on a goroutine of its
	// own: its deep calls grow a goroutine's stack, which then stays grown
	// for as long as the goroutine lives. The session goroutine, which
	// mostly waits idle, keeps the small stack its command loop needs
	// (the idle bench: 22.2 -> 17.9 KiB per idle session).
	if err := s.handshakeAside(ctx); err != nil {
		s.logEnd("handshake failed", err)
		s.client.Linger(lingerTime)
		s.end()
		return
	}
	_, parking := s.parkDelay()
	s.park.able = idleWatchSupported && s.client.Plain() && parking
	s.chooseLoop()
	s.publishInfo()
	s.serveUntilParked(false)
}

// serveUntilParked serves commands until the session ends or parks, on its
// event loop when it has one, else on the calling goroutine; resumed: it
// parked, and goes on in waitClient.
func (s *Session) serveUntilParked(resumed bool) {
	if s.lp != nil {
		if s.serveOnLoop(resumed) {
			return
		}
		s.lp = nil // the loop stopped: goroutines from now on
	}
	err := s.serve(resumed)
	if err == errParked {
		return
	}
	s.finishServing(err)
}

// finishServing ends a session whose command loop returned err.
func (s *Session) finishServing(err error) {
	s.logEnd("session ended", err)
	s.end()
}

// end cleans up and reports the end, once.
func (s *Session) end() {
	if s.over.Swap(true) {
		return
	}
	s.cleanup()
	if s.ended != nil {
		s.ended()
	}
}

// contain, deferred on every goroutine that runs the session, keeps a
// session's panic (a bug) from taking the proxy down: the session alone
// ends.
func (s *Session) contain() {
	if r := recover(); r != nil {
		s.log(zap.ErrorLevel, "session panicked", zap.Any("panic", r), zap.Stack("stack"))
		s.Close()
		s.end()
	}
}

// handshakeAside runs the handshake on a goroutine of its own and waits for
// it. A panic there is raised again here, with the stack where it happened,
// so that whoever contains a session's panics (proxy.Server) still does.
func (s *Session) handshakeAside(ctx context.Context) error {
	type result struct {
		err   error
		panic any
		stack []byte
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{panic: r, stack: debug.Stack()}
			}
		}()
		done <- result{err: s.handshake(ctx)}
	}()
	r := <-done
	if r.panic != nil {
		panic(fmt.Sprintf("%v (during the handshake; its stack:\n%s)", r.panic, r.stack))
	}
	return r.err
}

// log writes a message with the session's fields first: its connection id,
// client, user and backend. They are added when a message is written, not
// kept in a logger of the session's own, because such a logger costs about
// 360 bytes per session and most sessions never log.
func (s *Session) log(lvl zapcore.Level, msg string, fields ...zap.Field) {
	ce := s.lg.Check(lvl, msg)
	if ce == nil {
		return
	}
	all := make([]zap.Field, 0, 4+len(fields))
	all = append(all, zap.Uint64("conn", s.id), zap.Stringer("client", s.ci.ClientAddr))
	if s.logUser != "" {
		all = append(all, zap.String("user", s.logUser))
	}
	if s.logBackend != "" {
		all = append(all, zap.String("backend", s.logBackend))
	}
	ce.Write(append(all, fields...)...)
}

func (s *Session) logEnd(msg string, err error) {
	if errors.Is(err, errBackendLost) && !s.closed.Load() {
		s.log(zap.WarnLevel, "lost connection to backend", zap.Error(err))
		return
	}
	if err == nil || errors.Is(err, io.EOF) || s.closed.Load() {
		s.log(zap.DebugLevel, msg, zap.Error(err))
		return
	}
	s.log(zap.InfoLevel, msg, zap.Error(err))
}

func (s *Session) cleanup() {
	s.closed.Store(true)
	_ = s.client.Close()
	s.moves.Wait()
	if s.watch != nil {
		s.watch.stop()
	}
	s.mig.forget()
	if s.backend != nil {
		_ = s.backend.Close()
	}
	if s.lease != nil {
		s.lease.Release()
	}
	if s.obs != nil {
		s.obs.SessionEnded()
	}
	s.client.Release()
	if s.backend != nil {
		s.backend.Release()
	}
}

// RequestClose asks the session to end at its next transaction boundary:
// immediately if it is idle outside a transaction, otherwise after the
// response that leaves it idle outside a transaction.
func (s *Session) RequestClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	if s.idle && !s.info.Load().InTransaction {
		// Wake the wait; a command that already arrived is still served.
		s.wakeLocked()
	}
}

// CloseWithError ends the session as soon as it is idle, inside a
// transaction or not, sending e to the client first. A session busy with a
// command ends when that command's response is done; callers that cannot
// wait follow up with Close.
func (s *Session) CloseWithError(e *mysql.MySQLError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	s.closeErr = e
	if s.idle {
		s.wakeLocked()
	}
}

// sendCloseError writes closeErr, if any, as an unsolicited ERR packet: the
// client reads it as the answer to whatever it sends next, as with a server
// that closes an idle connection. It runs on the session goroutine.
func (s *Session) sendCloseError() {
	s.mu.Lock()
	e := s.closeErr
	s.mu.Unlock()
	if e == nil {
		return
	}
	_ = s.client.SetDeadline(time.Now().Add(time.Second))
	s.client.ResetSequence()
	_ = s.client.WriteError(e)
}

// Ended reports whether the session has finished (or was closed).
func (s *Session) Ended() bool { return s.closed.Load() }

// Close ends the session now.
func (s *Session) Close() {
	s.closeClient()
	if b := s.backendConn(); b != nil {
		_ = b.Close()
	}
}

func (s *Session) backendConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backend == nil {
		return nil
	}
	return s.backend.RawConn()
}

// enterIdle marks the session idle before it waits for the next command. It
// returns false when the session should end instead (draining outside a
// transaction).
func (s *Session) enterIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endsWhenIdleLocked(s.state.inTxn) {
		return false
	}
	s.idle = true
	if s.redirect != nil && !s.state.inTxn {
		// Asked to move after this session's safe-point check: the move
		// runs as for any idle session, once waitClient releases cmdMu.
		s.moves.Add(1)
		go s.moveIdle()
	}
	return true
}

// endsWhenIdleLocked reports whether a session that goes idle (inTxn: inside
// a transaction) should end instead: it is draining, and either outside a
// transaction or closed with an error. The caller holds s.mu.
func (s *Session) endsWhenIdleLocked(inTxn bool) bool {
	return s.draining && (!inTxn || s.closeErr != nil)
}

// leaveIdle marks the session busy; it returns whether a drain was
// requested meanwhile.
func (s *Session) leaveIdle() (draining bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idle = false
	return s.draining
}
