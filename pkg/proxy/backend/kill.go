package backend

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"go.uber.org/zap"
)

// KILL through the proxy.
//
// A client learns its connection id from the greeting (mysql_thread_id()),
// which the proxy sends before it picks a backend: that id is the proxy's
// own session id. The backend knows the session by its backend connection
// id (what CONNECTION_ID() returns). So `KILL [HARD|SOFT] [CONNECTION|QUERY]
// <id>` and COM_PROCESS_KILL are translated here:
//
//   - an id no live session of this proxy has: ERR 1094 "Unknown thread id",
//     as the server answers, without asking any backend (ids the proxy
//     gives out start at 2^31, far from backend ids, so a CONNECTION_ID()
//     value is not mistaken for another session's);
//   - a session on the same backend as the issuing one: the KILL is rewritten
//     with that session's backend connection id and run on the issuing
//     session's own backend connection, as the issuing user, so the
//     backend's privilege rules decide (own connections, or CONNECTION ADMIN
//     / SUPER / PROCESS as the server requires);
//   - a session on another backend: the proxy cannot log in there as the
//     issuing user (it never holds passwords). KILL CONNECTION of a session
//     of the same backend user in the same cluster is carried out by closing
//     that session's connections, which is what the server allows any user
//     to do to their own connections; anything else gets an ERR saying why.
//     It is never run under another identity.
//
// A statement that starts with KILL but is not of that form (comments
// inside, an expression) is refused rather than forwarded, since its id
// would name an unrelated backend connection. KILL USER and KILL QUERY ID
// name no connection id and are forwarded as they are.

// SessionLookup finds a live session by the connection id the proxy gave
// out (proxy.Server).
type SessionLookup interface {
	SessionByID(id uint64) *Session
}

// backendIdent is where a session's backend connection is and who it is
// logged in as; published for other sessions' KILL.
type backendIdent struct {
	cluster, backendID string
	connID             uint32
	user               string
}

// killState is the Session's part of KILL handling.
type killState struct {
	ident atomic.Pointer[backendIdent]
}

// publishBackendIdent records the session's backend connection for other
// sessions' KILL. It is called after login and after COM_CHANGE_USER.
func (s *Session) publishBackendIdent() {
	if s.lease == nil {
		return
	}
	s.kill.ident.Store(&backendIdent{cluster: s.lease.Cluster(), backendID: s.lease.ID(), connID: s.backendConnID, user: s.state.user})
}

// killTarget is what a KILL asks for, once parsed.
type killTarget struct {
	stmt mysql.KillStatement
	// prefix is the COM_QUERY payload before the statement text (the
	// command byte and any query attributes), kept in the rewritten query.
	prefix []byte
	// processKill is set for COM_PROCESS_KILL.
	processKill bool
}

// interceptQuery handles a COM_QUERY that is a KILL. It reports false for
// every other query, which is then forwarded as usual.
func (s *Session) interceptQuery(pk mysql.Packet) (bool, error) {
	if !pk.Complete {
		return false, nil
	}
	text := pk.Data[1:]
	if s.clientCap&mysql.ClientQueryAttributes != 0 {
		n, err := mysql.QueryAttributesLen(text)
		if err != nil {
			return false, nil // the backend answers a malformed packet itself
		}
		text = text[n:]
	}
	if !mysql.StartsWithKill(text) {
		return false, nil
	}
	stmt, ok := mysql.ParseKill(text)
	if !ok {
		if isUntranslatedKill(text) {
			return false, nil
		}
		if err := s.client.DiscardCurrent(); err != nil {
			return true, err
		}
		return true, s.replyError(mysql.NewError(mysql.ErUnknown,
			"Switchyard: this KILL cannot be translated; use KILL [HARD|SOFT] [CONNECTION|QUERY] <id> with the id from mysql_thread_id() (the proxy's greeting), without comments"))
	}
	prefix := append([]byte(nil), pk.Data[:len(pk.Data)-len(text)]...)
	s.offLoop() // it acts on other sessions and connections
	return true, s.runKill(killTarget{stmt: stmt, prefix: prefix})
}

// isUntranslatedKill reports KILL forms that name no connection id.
func isUntranslatedKill(text []byte) bool {
	w := killFormWords(text)
	return len(w) >= 2 && (w[0] == "USER" || w[0] == "QUERY" && w[1] == "ID")
}

// killFormWords returns the upper-cased words after KILL [HARD|SOFT].
func killFormWords(text []byte) []string {
	var words []string
	var cur []byte
	// text aliases the client's read buffer: it is only read, never
	// appended to.
	for i := 0; i <= len(text); i++ {
		var c byte = ' '
		if i < len(text) {
			c = text[i]
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if len(cur) > 0 {
				words = append(words, string(cur))
				cur = cur[:0]
			}
			if len(words) == 4 {
				i = len(text) // the form is in the first words
			}
		case c >= 'a' && c <= 'z':
			cur = append(cur, c-('a'-'A'))
		default:
			cur = append(cur, c)
		}
	}
	if len(words) > 0 && words[0] == "KILL" {
		words = words[1:]
	}
	if len(words) > 0 && (words[0] == "HARD" || words[0] == "SOFT") {
		words = words[1:]
	}
	return words
}

// processKill handles COM_PROCESS_KILL (mysql_kill()): KILL CONNECTION.
func (s *Session) processKill(pk mysql.Packet) error {
	if !pk.Complete || len(pk.Data) < 5 {
		if err := s.client.DiscardCurrent(); err != nil {
			return err
		}
		return s.replyError(mysql.NewError(mysql.ErMalformedPacket, "Malformed communication packet"))
	}
	id := binary.LittleEndian.Uint32(pk.Data[1:])
	return s.runKill(killTarget{stmt: mysql.KillStatement{ID: uint64(id)}, processKill: true})
}

// runKill carries out a parsed KILL; the client's packet is still current.
func (s *Session) runKill(k killTarget) error {
	if err := s.client.DiscardCurrent(); err != nil {
		return err
	}
	var target *Session
	if s.cfg.Sessions != nil {
		target = s.cfg.Sessions.SessionByID(k.stmt.ID)
	}
	var tid *backendIdent
	if target != nil {
		tid = target.kill.ident.Load()
	}
	if tid == nil || target.Ended() {
		return s.replyError(mysql.NewError(mysql.ErNoSuchThread, "Unknown thread id: %d", k.stmt.ID))
	}
	own := s.kill.ident.Load()
	if own != nil && own.backendID == tid.backendID {
		ok, err := s.killOnOwnBackend(k, tid)
		switch {
		case err != nil || k.stmt.Query:
		case target == s:
			// The server closes a connection that killed itself, after
			// its answer: so does the proxy, and the client sees what it
			// would directly.
			return errClientQuit
		case ok:
			// The server closed the target's backend connection; if that
			// session is idle its client learns it now, as it would
			// directly, rather than at its next command.
			target.closeIfIdle()
		}
		return err
	}
	if !k.stmt.Query && own != nil && own.cluster == tid.cluster && own.user == tid.user {
		s.log(zap.InfoLevel, "KILL CONNECTION of a session of the same user on another backend: closing it",
			zap.Uint64("target", k.stmt.ID), zap.String("target_backend", tid.backendID))
		target.Close()
		var buf [16]byte
		status := mysql.ServerStatusAutocommit
		if s.state.inTxn {
			status |= mysql.ServerStatusInTrans
		}
		if err := s.client.WritePacket(mysql.AppendOK(buf[:0], mysql.OKHeader, mysql.OKInfo{Status: status}, false)); err != nil {
			return err
		}
		return s.client.Flush()
	}
	what := "KILL QUERY"
	if !k.stmt.Query {
		what = "KILL CONNECTION of another user's session"
	}
	ownBackend := "none"
	if own != nil {
		ownBackend = own.backendID
	}
	return s.replyError(mysql.NewError(mysql.ErUnknown,
		"Switchyard: cannot run %s %d: that session is on backend %s and this one on %s; the proxy runs KILL only over your own backend connection, as you, since it does not hold your password (run it from a session on the same backend)",
		what, k.stmt.ID, tid.backendID, ownBackend))
}

// killOnOwnBackend sends the KILL, with the target's backend connection id,
// over this session's backend connection and forwards the answer.
func (s *Session) killOnOwnBackend(k killTarget, tid *backendIdent) (ok bool, err error) {
	var req []byte
	if k.processKill {
		req = binary.LittleEndian.AppendUint32([]byte{mysql.ComProcessKill}, tid.connID)
	} else {
		stmt := k.stmt
		stmt.ID = uint64(tid.connID)
		req = mysql.AppendKill(append([]byte(nil), k.prefix...), stmt)
	}
	s.backend.ResetSequence()
	if err := s.backend.WritePacket(req); err != nil {
		s.reportBackendLost(err)
		return false, fmt.Errorf("%w: writing: %w", errBackendLost, err)
	}
	if err := s.backend.Flush(); err != nil {
		s.reportBackendLost(err)
		return false, fmt.Errorf("%w: writing: %w", errBackendLost, err)
	}
	// The answer to a KILL is one OK or ERR packet.
	pk, err := s.nextReply()
	if err != nil {
		return false, err
	}
	switch pk.First() {
	case mysql.OKHeader:
		_, err := s.forwardOK(pk)
		return err == nil, err
	case mysql.ErrHeader:
		return false, s.finish()
	}
	return false, s.protocolError(fmt.Sprintf("unexpected answer 0x%02x to KILL", pk.First()))
}

// closeIfIdle closes the session if it is waiting for a command (its
// backend connection was killed).
func (s *Session) closeIfIdle() {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	if idle {
		s.Close()
	}
}

// interceptPrepare refuses to prepare a KILL (its id could not be
// translated at execution); other statements are prepared as usual.
func (s *Session) interceptPrepare(pk mysql.Packet) (bool, error) {
	if !pk.Complete || !mysql.StartsWithKill(pk.Data[1:]) || isUntranslatedKill(pk.Data[1:]) {
		return false, nil
	}
	if err := s.client.DiscardCurrent(); err != nil {
		return true, err
	}
	return true, s.replyError(mysql.NewError(mysql.ErUnknown,
		"Switchyard: KILL cannot be prepared through the proxy (its id must be translated); send it as a query"))
}
