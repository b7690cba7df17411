package backend

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
	"go.uber.org/zap"
)

// MigrationObserver learns the outcome of every Redirect that ends and of
// every failover. It is called on the session's goroutine (or the goroutine
// moving an idle session) and must not block.
type MigrationObserver interface {
	MigrationDone(r MigrationResult)
}

// MigrationResult describes one finished migration attempt.
type MigrationResult struct {
	SessionID uint64
	Cluster   string
	// From and To are backend addresses.
	From, To string
	// Result is "ok", "failed" (tried and rolled back: the session stays
	// where it was, the client unaware) or "refused" (not tried: the
	// session cannot move now; Err says why).
	Result string
	// Reason is "" for a Redirect and "failover" for a session that moved
	// because its backend died.
	Reason string
	// Err explains a failure or refusal; it never holds secrets.
	Err      error
	Duration time.Duration
}

// Migration results.
const (
	MigrationOK      = "ok"
	MigrationFailed  = "failed"
	MigrationRefused = "refused"
)

// claimer hands out a lease on one named backend of one cluster, refusing
// any other cluster (implemented by router.Balanced).
type claimer interface {
	Claim(cluster, addr string) (router.Lease, error)
}

// migration is the session's migration state. Fields are owned by whoever
// holds cmdMu (the session goroutine, or the goroutine moving it while idle).
type migration struct {
	// on is set at login when the cluster had a migration account: the
	// session then tracks what a move must replay (sysvars, user variable
	// names, statement texts, locks and temporary tables). rec is then set.
	on bool
	// rec is what a move needs from the login and tracking. A login makes
	// it; it is dropped, its secrets zeroed, as soon as the session cannot
	// move, so that a session of a cluster without a migration account
	// (the default) keeps none.
	rec *migRecord
	ids stmtIDs
}

// migRecord is a movable session's login credential and tracked state.
type migRecord struct {
	// plugin is the authentication plugin the backend switched the client
	// to at login; credentials are recoverable only for native passwords.
	plugin string
	cred   nativeCredential
	// credErr is why the credential could not be recovered (sticky).
	credErr string
	track   tracked
}

// checkPlugin sets credErr for the login's plugin: only a native
// password's exchange lets a move recover the credential.
func (r *migRecord) checkPlugin(user string) {
	r.credErr = ""
	if r.plugin != mysql.AuthNativePassword {
		r.credErr = fmt.Sprintf("user %s authenticates with %q; only mysql_native_password credentials can be re-used", user, r.plugin)
	}
}

// record returns the record, made on first use.
func (m *migration) record() *migRecord {
	if m.rec == nil {
		m.rec = &migRecord{}
	}
	return m.rec
}

// drop turns tracking off and forgets the record, its secrets zeroed.
func (m *migration) drop() {
	m.on = false
	m.forget()
	m.rec = nil
}

// forget zeroes the secrets; called once the session ends.
func (m *migration) forget() {
	if m.rec != nil {
		m.rec.cred.zero()
	}
}

// Redirect asks the session to move to targetAddr, a backend of its own
// cluster, at its next safe point. It does not block. It returns false when
// the session cannot take the request now (not routed yet, ended, already
// moving elsewhere).
func (s *Session) Redirect(targetAddr string) bool {
	return s.redirectTo(targetAddr, "")
}

// redirectReq is a pending Redirect: where to, why ("" when asked through
// Redirect) and since when.
type redirectReq struct {
	target, reason string
	at             time.Time
}

func (s *Session) redirectTo(target, reason string) bool {
	if s.closed.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == nil || (s.redirect != nil && s.redirect.target != target) {
		return false
	}
	s.redirect = &redirectReq{target: target, reason: reason, at: time.Now()}
	if s.idle && !s.info.Load().InTransaction {
		// Nobody will reach a safe point on the session goroutine until
		// the client speaks: move it from here, under cmdMu. (Inside a
		// transaction the session's own check after COMMIT moves it.)
		s.moves.Add(1)
		go s.moveIdle()
	}
	return true
}

// Migratable reports whether the session could move now, and why not.
func (s *Session) Migratable() (bool, string) {
	in := s.info.Load()
	if why := s.accountMissing(in.Cluster); why != "" && in.Cluster != "" && !s.tidb.on.Load() {
		return false, why
	}
	if in.NotMigratableReason != "" {
		return false, in.NotMigratableReason
	}
	return true, ""
}

// accountMissing says why the cluster has no migration account now (it is
// looked up at each use, so reloads apply).
func (s *Session) accountMissing(cluster string) string {
	if s.cfg.MigrationAccount == nil {
		return "migration is not configured"
	}
	if _, _, ok := s.cfg.MigrationAccount(cluster); !ok {
		return fmt.Sprintf("cluster %s has no migration-user configured", cluster)
	}
	return ""
}

// reasonNoAccountAtLogin: the session did not record what a move needs,
// because its cluster had no migration account when it logged in.
const reasonNoAccountAtLogin = "its cluster had no migration-user when it logged in"

// notMigratable is why the session cannot move at this moment ("" when it
// can). It reads state owned by the cmdMu holder.
// It runs after every command, so it must not allocate.
func (s *Session) notMigratable() string {
	switch {
	case s.lease == nil:
		return "not routed yet"
	case s.tidb.on.Load():
		return s.tidbNotMigratable()
	case !s.mig.on:
		return reasonNoAccountAtLogin
	case s.mig.rec.credErr != "":
		return s.mig.rec.credErr
	case s.state.inTxn:
		return "in a transaction"
	case s.state.openCursors > 0:
		return "has an open cursor"
	case s.hasLongData():
		return "has pending COM_STMT_SEND_LONG_DATA"
	}
	return s.mig.rec.track.sticky()
}

func (s *Session) hasLongData() bool {
	for _, st := range s.state.prepared {
		if st.longData {
			return true
		}
	}
	return false
}

// canFailover is why the session cannot be re-established on another
// backend after its backend died ("" when it can). User variables cannot
// be read back from a dead server, so a session that set some cannot.
func (s *Session) canFailover() string {
	if s.tidb.on.Load() {
		return "a TiDB session moves only with a session token from its backend, which is gone"
	}
	if why := s.notMigratable(); why != "" {
		return why
	}
	if why := s.accountMissing(s.lease.Cluster()); why != "" {
		return why
	}
	if len(s.mig.rec.track.userVars) > 0 {
		return "user variables are set and cannot be read back from a dead backend"
	}
	return ""
}

// moveIfAsked runs a pending Redirect at the session's safe point (between
// commands, cmdMu held).
func (s *Session) moveIfAsked() {
	s.mu.Lock()
	req := s.redirect
	s.mu.Unlock()
	if req == nil {
		return
	}
	target, reason, at := req.target, req.reason, req.at
	from := s.lease.Addr()
	if s.mig.on {
		s.refreshLocks()
	}
	why := s.notMigratable()
	if why == "" && !s.tidb.on.Load() {
		// The account may have been removed by a reload since login (TiDB
		// needs none: it moves sessions with its own token).
		why = s.accountMissing(s.lease.Cluster())
	}
	if why == "in a transaction" || why == "has an open cursor" || why == "has pending COM_STMT_SEND_LONG_DATA" {
		return // not a safe point yet: try again after the next command
	}
	s.mu.Lock()
	s.redirect = nil
	s.mu.Unlock()
	if why != "" {
		s.publishInfo()
		s.report(from, target, reason, MigrationRefused, errors.New(why), at)
		return
	}
	err := s.move(target)
	result := MigrationOK
	if err != nil {
		result = MigrationFailed
		if errors.Is(err, errRefused) {
			result = MigrationRefused
		}
		s.log(zap.InfoLevel, "session migration did not happen; it stays on its backend", zap.String("target", target), zap.Error(err))
	}
	// Publish the new placement before reporting: the rebalancer forgets
	// the pending move on the report, and a round that then still read the
	// old backend in Info would ask the session to move again (refused,
	// "already on") and count it on the wrong backend.
	s.publishInfo()
	s.report(from, target, reason, result, err, at)
}

// moveIdle moves an idle session from a goroutine of its own.
func (s *Session) moveIdle() {
	defer s.moves.Done()
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	if s.closed.Load() {
		return
	}
	// The session goroutine is blocked reading its client (or about to
	// take cmdMu back after a command, in which case it finds the request
	// itself). Stop the idle watch: the backend is this goroutine's now.
	if s.watch != nil {
		s.watch.disarm()
	}
	if !s.backendDead {
		s.moveIfAsked()
		// The move wrote and read on the new backend with pooled buffers;
		// an idle session gives them back, as the loop does before a wait.
		s.backend.Release()
	}
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	// A dead backend is not watched again: the session moves at its next
	// command.
	if idle && s.watch != nil && !s.closed.Load() && !s.backendDead {
		s.watch.arm()
	}
}

var errRefused = errors.New("refused")

// move takes the session to target: claim it, read what must move from the
// old backend, log in there, replay, then swap. Any failure before the swap
// leaves the session where it was.
func (s *Session) move(target string) error {
	old := s.lease
	if target == old.Addr() {
		return fmt.Errorf("%w: already on %s", errRefused, target)
	}
	cl, ok := s.router.(claimer)
	if !ok {
		return fmt.Errorf("%w: the router cannot claim a named backend", errRefused)
	}
	lease, err := cl.Claim(old.Cluster(), target)
	if err != nil {
		return fmt.Errorf("%w: %v", errRefused, err)
	}
	if lease.Cluster() != old.Cluster() {
		lease.Release()
		return fmt.Errorf("%w: %s is not in cluster %s", errRefused, target, old.Cluster())
	}
	tr := s.transfer()
	st, err := tr.export(s)
	if err != nil {
		lease.Release()
		return err
	}
	if err := s.takeOver(tr, lease, st); err != nil {
		return err
	}
	return nil
}

// takeOver logs in to lease's backend, replays st there and makes it the
// session's backend. It consumes lease.
func (s *Session) takeOver(tr stateTransfer, lease router.Lease, st *exportedState) error {
	be, caps, err := tr.open(s, lease)
	if err != nil {
		lease.Release()
		return fmt.Errorf("logging in to %s: %w", lease.Addr(), err)
	}
	ids, err := tr.restore(s, be, caps, st)
	if err != nil {
		_ = be.Close()
		lease.Release()
		return fmt.Errorf("replaying the session on %s: %w", lease.Addr(), err)
	}
	s.swapBackend(be, caps, lease, ids)
	return nil
}

// swapBackend makes be the session's backend and ends the old connection.
func (s *Session) swapBackend(be *mysql.PacketIO, caps uint32, lease router.Lease, ids stmtIDs) {
	oldBE, oldLease := s.backend, s.lease
	if s.watch != nil {
		s.watch.stop()
	}
	s.mu.Lock()
	s.backend, s.lease = be, lease
	s.mu.Unlock()
	s.backendCap = caps
	if s.dialed.be == be {
		s.backendConnID = s.dialed.connID
	}
	s.dialed = dialedIdent{}
	s.publishBackendIdent()
	s.backendDead = false
	s.mig.ids = ids
	for _, st := range s.state.prepared {
		st.typesSent = false // the new server has not seen them
	}
	s.watch = s.watchBackend(be.RawConn())
	s.logBackend = lease.ID()
	// A clean quit, so the old server does not log an aborted connection.
	oldBE.ResetSequence()
	_ = oldBE.SetDeadline(time.Now().Add(time.Second))
	if oldBE.WritePacket([]byte{mysql.ComQuit}) == nil {
		_ = oldBE.Flush()
	}
	_ = oldBE.Close()
	oldBE.Release()
	oldLease.Release()
}

func (s *Session) report(from, to, reason, result string, err error, at time.Time) {
	if s.cfg.Migrations == nil {
		return
	}
	s.cfg.Migrations.MigrationDone(MigrationResult{SessionID: s.id, Cluster: s.lease.Cluster(), From: from, To: to,
		Result: result, Reason: reason, Err: err, Duration: time.Since(at)})
}

// startMigrationTracking runs once the client is logged in: when the
// cluster has a migration account, the backend is asked to report every
// session variable change, so that a move can replay them. Otherwise the
// recorded login exchange is dropped at once.
func (s *Session) startMigrationTracking() error {
	if s.accountMissing(s.lease.Cluster()) != "" || s.backendCap&mysql.ClientSessionTrack == 0 {
		s.mig.drop()
		return nil
	}
	s.mig.record().checkPlugin(s.state.user)
	s.mig.on = true
	_ = s.backend.SetDeadline(s.handshakeDeadline())
	defer func() { _ = s.backend.SetDeadline(time.Time{}) }()
	if err := execSQL(s.backend, s.backendCap, "SET SESSION session_track_system_variables = '*'"); err != nil {
		var myErr *mysql.MySQLError
		if errors.As(err, &myErr) {
			// A server without it (or refusing it): the session just
			// cannot move.
			s.mig.drop()
			s.log(zap.InfoLevel, "backend refused session_track_system_variables; the session cannot migrate", zap.Error(err))
			return nil
		}
		s.reportBackendLost(err)
		return fmt.Errorf("%w: enabling session tracking: %w", errBackendLost, err)
	}
	return nil
}

// afterReset is called after COM_CHANGE_USER or COM_RESET_CONNECTION
// succeeded: the server forgot the session's state, tracking included.
func (s *Session) afterReset() error {
	s.mig.ids = stmtIDs{}
	if !s.mig.on {
		return nil
	}
	rec := s.mig.rec
	rec.track.reset()
	// COM_CHANGE_USER may have brought another user and plugin.
	rec.checkPlugin(s.state.user)
	if err := execSQL(s.backend, s.backendCap, "SET SESSION session_track_system_variables = '*'"); err != nil {
		s.mig.drop()
		var myErr *mysql.MySQLError
		if errors.As(err, &myErr) {
			return nil
		}
		return fmt.Errorf("%w: enabling session tracking: %w", errBackendLost, err)
	}
	return nil
}

// observeStatement inspects a COM_QUERY or COM_STMT_PREPARE text for what a
// move must know (stmtscan.go). Statements too large to have been buffered
// whole are not seen, and make the session unmovable.
func (s *Session) observeStatement(pk mysql.Packet) {
	if !s.mig.on {
		return
	}
	if !pk.Complete {
		s.mig.rec.track.unseen = "ran a statement too large to inspect for migration"
		return
	}
	s.mig.rec.track.observe(pk.Data[1:])
}
