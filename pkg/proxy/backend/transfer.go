package backend

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/router"
)

// stateTransfer is how one kind of backend moves a session: export what
// must move from the old connection (nothing in flight, nothing changed
// there), log in to the new backend, restore the state there. The session
// swaps connections only after restore succeeded (migration.go). MySQL and
// MariaDB replay state (replayTransfer); TiDB's SHOW SESSION_STATES /
// tidb_session_token / SET SESSION_STATES path plugs in as another
// implementation chosen by Session.transfer.
type stateTransfer interface {
	// export reads what must move from the session's current backend. It
	// may refuse (wrap errRefused) when the session holds state that
	// cannot move.
	export(s *Session) (*exportedState, error)
	// open logs in to lease's backend as the session's user, compressed
	// like the client, and returns the connection and its capabilities.
	open(s *Session, lease router.Lease) (*mysql.PacketIO, uint32, error)
	// restore replays the session on be. st is nil on failover (the old
	// backend is gone). It returns the statement id translation.
	restore(s *Session, be *mysql.PacketIO, caps uint32, st *exportedState) (stmtIDs, error)
}

// exportedState is what export read.
type exportedState struct {
	// userVars are "@`name` = literal" assignments.
	userVars []string
	// opaque is for implementations that carry their own state (TiDB's
	// session states and token).
	opaque any
}

// transfer picks the implementation for the session's backend kind.
func (s *Session) transfer() stateTransfer {
	if s.tidb.on.Load() {
		return tidbTransfer{}
	}
	return replayTransfer{}
}

// replayTransfer moves a MySQL/MariaDB session by replaying it.
type replayTransfer struct{}

var _ stateTransfer = replayTransfer{}

// export reads the session's user variables with their types from the old
// server.
func (replayTransfer) export(s *Session) (*exportedState, error) {
	be := s.backend
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer func() { _ = be.SetDeadline(time.Time{}) }()
	t := &s.mig.rec.track
	st := &exportedState{}
	if len(t.userVars) == 0 {
		return st, nil
	}
	names := sortedKeys(t.userVars)
	exprs := make([]string, len(names))
	for i, n := range names {
		exprs[i] = "@" + quoteIdent(n)
	}
	cols, rows, err := queryText(be, s.backendCap, "SELECT "+strings.Join(exprs, ", "))
	if err != nil {
		return nil, fmt.Errorf("reading user variables: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != len(names) {
		return nil, errors.New("reading user variables: unexpected result")
	}
	for i, n := range names {
		v := rows[0][i]
		if v == nil {
			continue // unset, or set to NULL: the same on a new connection
		}
		st.userVars = append(st.userVars, "@"+quoteIdent(n)+" = "+valueLiteral(cols[i], v))
	}
	return st, nil
}

func (replayTransfer) open(s *Session, lease router.Lease) (*mysql.PacketIO, uint32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	if err := s.ensureCredential(ctx, lease.Addr()); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errRefused, err)
	}
	be, caps, err := s.loginNative(ctx, lease.Addr(), s.state.user, s.state.db, &s.mig.rec.cred, true)
	if err != nil {
		return nil, 0, err
	}
	return be, caps, nil
}

func (replayTransfer) restore(s *Session, be *mysql.PacketIO, caps uint32, st *exportedState) (stmtIDs, error) {
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer func() { _ = be.SetDeadline(time.Time{}) }()
	ids := stmtIDs{toBackend: map[uint32]uint32{}, toClient: map[uint32]uint32{}, next: 1}
	sets := []string{"session_track_system_variables = '*'"}
	for _, name := range sortedVars(s.mig.rec.track.sysvars) {
		if skipOnReplay[name] {
			continue
		}
		sets = append(sets, "SESSION "+quoteIdent(name)+" = "+sysvarLiteral(name, s.mig.rec.track.sysvars[name]))
	}
	if err := execSQL(be, caps, "SET "+strings.Join(sets, ", ")); err != nil {
		return ids, fmt.Errorf("restoring session variables: %w", err)
	}
	if st != nil && len(st.userVars) > 0 {
		if err := execSQL(be, caps, "SET "+strings.Join(st.userVars, ", ")); err != nil {
			return ids, fmt.Errorf("restoring user variables: %w", err)
		}
	}
	clientIDs := make([]uint32, 0, len(s.state.prepared))
	for id := range s.state.prepared {
		clientIDs = append(clientIDs, id)
	}
	sort.Slice(clientIDs, func(i, j int) bool { return clientIDs[i] < clientIDs[j] })
	for _, c := range clientIDs {
		b, err := prepareOn(be, caps, s.state.prepared[c].text)
		if err != nil {
			return ids, fmt.Errorf("preparing statement %d again: %w", c, err)
		}
		ids.add(c, b)
	}
	// Later statements get ids above every id the client has seen.
	if old := s.mig.ids.next; old > ids.next {
		ids.next = old
	}
	for _, c := range clientIDs {
		if c >= ids.next {
			ids.next = c + 1
		}
	}
	return ids, nil
}

// prepareOn prepares q with COM_STMT_PREPARE and returns the statement id,
// reading (and dropping) the parameter and column definitions.
func prepareOn(be *mysql.PacketIO, caps uint32, q []byte) (uint32, error) {
	be.ResetSequence()
	if err := be.WritePacket(append([]byte{mysql.ComStmtPrepare}, q...)); err != nil {
		return 0, err
	}
	if err := be.Flush(); err != nil {
		return 0, err
	}
	data, err := be.ReadPacket(0)
	if err != nil {
		return 0, err
	}
	if len(data) > 0 && data[0] == mysql.ErrHeader {
		return 0, mysql.ParseErr(data)
	}
	if len(data) < 12 || data[0] != mysql.OKHeader {
		return 0, errors.New("bad PREPARE response")
	}
	id := binary.LittleEndian.Uint32(data[1:])
	cols := int(binary.LittleEndian.Uint16(data[5:]))
	params := int(binary.LittleEndian.Uint16(data[7:]))
	for _, n := range []int{params, cols} {
		if n == 0 {
			continue
		}
		if caps&mysql.ClientDeprecateEOF == 0 {
			n++
		}
		for i := 0; i < n; i++ {
			if _, err := be.ReadPacket(0); err != nil {
				return 0, err
			}
		}
	}
	return id, nil
}

// skipOnReplay lists reported variables a new connection must not be given:
// read-only ones and those the proxy itself sets.
var skipOnReplay = map[string]bool{
	"session_track_system_variables": true,
	"last_gtid":                      true,
	"in_transaction":                 true,
	"warning_count":                  true,
	"error_count":                    true,
	"identity":                       true,
	"last_insert_id":                 true,
	"insert_id":                      true,
	"rand_seed1":                     true,
	"rand_seed2":                     true,
	"pseudo_thread_id":               true,
	"gtid_seq_no":                    true,
	"server_id":                      true,
	"transaction_isolation":          false,
}

// nullableSysvars may be set to NULL, which the server reports as empty.
var nullableSysvars = map[string]bool{"character_set_results": true}

func sortedVars(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// sysvarLiteral renders a reported value: numbers bare (numeric variables
// refuse strings), anything else as a string.
func sysvarLiteral(name, v string) string {
	if isNumber(v) {
		return v
	}
	if v == "" && nullableSysvars[name] {
		return "NULL"
	}
	return quoteString(v)
}

func isNumber(v string) bool {
	if v == "" {
		return false
	}
	digits, dot := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '-' && i == 0:
		case c == '.' && !dot && digits > 0:
			dot = true
		case c >= '0' && c <= '9':
			digits++
		default:
			return false
		}
	}
	return digits > 0 && v[len(v)-1] != '.'
}

// valueLiteral renders a user variable's value with its type: numbers bare
// (integers, decimals, floats), strings as hex in their character set.
func valueLiteral(c column, v []byte) string {
	switch c.typ {
	case 0x01, 0x02, 0x03, 0x08, 0x09, 0x00, 0xf6, 0x04, 0x05: // ints, decimal, float, double
		if isNumber(string(v)) || isFloat(string(v)) {
			return string(v)
		}
	}
	h := "X'" + strings.ToUpper(hex.EncodeToString(v)) + "'"
	if cs := charsetName(c.charset); cs != "" {
		return "CONVERT(" + h + " USING " + cs + ")"
	}
	return h
}

func isFloat(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9') && c != '.' && c != 'e' && c != 'E' && c != '-' && c != '+' {
			return false
		}
	}
	return true
}

// charsetName maps common collation ids to their character set; binary
// (63) and unknown ones keep the value as a binary string.
func charsetName(id uint16) string {
	switch {
	case id == 33 || id == 83 || (id >= 192 && id <= 215):
		return "utf8mb3"
	case id == 45 || id == 46 || (id >= 224 && id <= 247) || (id >= 255 && id <= 309):
		return "utf8mb4"
	case id == 8 || id == 5 || id == 15 || id == 31 || id == 47 || id == 48 || id == 49 || id == 94:
		return "latin1"
	}
	return ""
}

// refreshLocks asks the server whether the session still holds the
// advisory locks it took by name; when it holds none, they are forgotten
// and no longer keep the session where it is.
func (s *Session) refreshLocks() {
	t := &s.mig.rec.track
	if len(t.locks) == 0 || s.backendDead {
		return
	}
	be := s.backend
	_ = be.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	defer func() { _ = be.SetDeadline(time.Time{}) }()
	names := sortedKeys(t.locks)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "IS_USED_LOCK(" + quoteString(n) + ") <=> CONNECTION_ID()"
	}
	_, rows, err := queryText(be, s.backendCap, "SELECT "+strings.Join(parts, " OR "))
	if err != nil {
		var myErr *mysql.MySQLError
		if !errors.As(err, &myErr) {
			s.backendDead = true
		}
		return
	}
	if len(rows) == 1 && len(rows[0]) == 1 && string(rows[0][0]) == "0" {
		t.locks = nil
	}
}
