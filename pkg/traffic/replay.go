package traffic

import (
	"cmp"
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/switchyard-db/switchyard/pkg/sqlstats"
)

// ReplayOptions say where and how to replay a capture.
type ReplayOptions struct {
	// Addr is the MySQL address to replay against (a proxy or a server).
	Addr string
	// User and Password log every replayed session in; they are never
	// logged or written to the report.
	User, Password string
	// Speed divides the captured gaps between commands (2: twice as fast;
	// 0: as fast as possible).
	Speed float64
	// ReadOnly skips statements that may write.
	ReadOnly bool
}

// DigestReport compares one digest's replayed executions with the capture.
type DigestReport struct {
	Digest     string `json:"digest"`
	DigestText string `json:"digest_text"`
	Captured   int    `json:"captured"`
	Replayed   int    `json:"replayed"`
	Skipped    int    `json:"skipped"`
	// ErrorMismatches counts executions whose error code (0: success)
	// differs from the captured one; RowMismatches those where both
	// succeeded with different row counts, or, in a full replay of text
	// statements captured with a checksum, different rows.
	ErrorMismatches int `json:"error_mismatches"`
	RowMismatches   int `json:"row_mismatches"`
	// CapturedMs and ReplayedMs are the average latencies.
	CapturedMs float64 `json:"captured_avg_ms"`
	ReplayedMs float64 `json:"replayed_avg_ms"`
	// Checksum sums a hash of every replayed row (order does not matter):
	// equal checksums of two replays mean equal results.
	Checksum uint64 `json:"checksum"`
	// Example is one mismatching execution, for a first look.
	Example string `json:"example,omitempty"`

	capturedNs, replayedNs int64
}

// Report is a replay's outcome.
type Report struct {
	File     string         `json:"file"`
	Target   string         `json:"target"`
	Cluster  string         `json:"cluster"`
	Speed    float64        `json:"speed"`
	ReadOnly bool           `json:"read_only"`
	Sessions int            `json:"sessions"`
	Commands int            `json:"commands"`
	Replayed int            `json:"replayed"`
	Skipped  int            `json:"skipped"`
	Failed   int            `json:"failed_sessions"`
	Errors   []string       `json:"session_errors,omitempty"`
	Elapsed  string         `json:"elapsed"`
	Digests  []DigestReport `json:"digests"`
}

// Mismatches sums the mismatches of every digest.
func (r *Report) Mismatches() int {
	n := 0
	for _, d := range r.Digests {
		n += d.ErrorMismatches + d.RowMismatches
	}
	return n
}

// outcome is one replayed (or skipped) command.
type outcome struct {
	rec      *Record
	st       *sqlstats.Statement
	skipped  bool
	errCode  uint16
	errText  string
	rows     uint64
	checksum uint64
	latency  time.Duration
	// wire is the checksum of the rows as the text protocol sends them
	// (what a capture records); wireOK is false when a value's wire form
	// cannot be rebuilt from what the driver returned (floats, times).
	wire   uint64
	wireOK bool
}

// Replay replays the capture at path against o.Addr: each captured session
// on its own connection, its commands in captured order, paced by o.Speed.
func Replay(ctx context.Context, path string, o ReplayOptions) (*Report, error) {
	h, recs, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	sessions := map[uint64][]*Record{}
	var order []uint64
	for i := range recs {
		r := &recs[i]
		if _, ok := sessions[r.ConnID]; !ok {
			order = append(order, r.ConnID)
		}
		sessions[r.ConnID] = append(sessions[r.ConnID], r)
	}
	rep := &Report{File: path, Target: o.Addr, Cluster: h.Cluster, Speed: o.Speed, ReadOnly: o.ReadOnly,
		Sessions: len(order), Commands: len(recs)}
	start := time.Now()
	var mu sync.Mutex
	var all []outcome
	var wg sync.WaitGroup
	for _, id := range order {
		wg.Add(1)
		go func(rs []*Record) {
			defer wg.Done()
			outs, err := replaySession(ctx, rs, start, o)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, outs...)
			if err != nil {
				rep.Failed++
				rep.Errors = append(rep.Errors, err.Error())
			}
		}(sessions[id])
	}
	wg.Wait()
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	rep.Digests = summarise(all, rep)
	return rep, nil
}

// replaySession replays one session's records on one connection.
func replaySession(ctx context.Context, rs []*Record, start time.Time, o ReplayOptions) ([]outcome, error) {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", o.Addr, o.User, o.Password
	cfg.AllowNativePasswords = true
	cfg.MultiStatements = true // as captured clients may have sent them
	if len(rs) > 0 && rs[0].Schema != "" {
		cfg.DBName = rs[0].Schema
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := connector.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("session %d: connecting to %s: %w", rs[0].ConnID, o.Addr, err)
	}
	defer dc.Close()
	s := &session{conn: dc, stmts: map[uint32]*prepared{}}
	defer s.closeAll()
	outs := make([]outcome, 0, len(rs))
	for _, r := range rs {
		if o.Speed > 0 {
			at := start.Add(time.Duration(float64(r.OffsetUs) * float64(time.Microsecond) / o.Speed))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return outs, ctx.Err()
				}
			}
		}
		out, err := s.replay(ctx, r, o.ReadOnly)
		if out != nil {
			outs = append(outs, *out)
		}
		if err != nil {
			return outs, fmt.Errorf("session %d: %w", r.ConnID, err)
		}
	}
	return outs, nil
}

type prepared struct {
	stmt  driver.Stmt
	types []uint16
}

type session struct {
	conn  driver.Conn
	stmts map[uint32]*prepared
}

func (s *session) closeAll() {
	for _, p := range s.stmts {
		_ = p.stmt.Close()
	}
}

// replay runs one record. It returns the outcome for statements (nil for
// commands without one) and an error only when the connection is unusable.
func (s *session) replay(ctx context.Context, r *Record, readOnly bool) (*outcome, error) {
	switch r.Command {
	case "query":
		out := &outcome{rec: r, st: sqlstats.Normalize(r.Text)}
		if r.Redacted || (readOnly && !isRead(out.st.Normalized)) {
			out.skipped = true
			return out, nil
		}
		t0 := time.Now()
		out.wireOK = true
		rows, err := s.conn.(driver.QueryerContext).QueryContext(ctx, r.Text, nil)
		return out, out.finish(rows, err, t0)
	case "stmt_prepare":
		if r.Redacted || (readOnly && !isRead(sqlstats.Normalize(r.Text).Normalized)) {
			return nil, nil
		}
		return nil, s.prepare(ctx, r.StmtID, r.Text)
	case "stmt_execute":
		out := &outcome{rec: r, st: sqlstats.Normalize(r.Text)}
		p := s.stmts[r.StmtID]
		if p == nil && r.Text != "" && !r.Redacted && !(readOnly && !isRead(out.st.Normalized)) {
			// Prepared before the capture began: prepare it now.
			if err := s.prepare(ctx, r.StmtID, r.Text); err != nil {
				return out, err
			}
			p = s.stmts[r.StmtID]
		}
		if p == nil {
			out.skipped = true
			return out, nil
		}
		args, types, err := decodeParams(r.Payload, p.stmt.NumInput(), p.types)
		if err != nil {
			out.skipped, out.errText = true, err.Error()
			return out, nil
		}
		p.types = types
		named := make([]driver.NamedValue, len(args))
		for i, a := range args {
			named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
		}
		t0 := time.Now()
		rows, err := p.stmt.(driver.StmtQueryContext).QueryContext(ctx, named)
		return out, out.finish(rows, err, t0)
	case "stmt_close":
		if p := s.stmts[r.StmtID]; p != nil {
			delete(s.stmts, r.StmtID)
			return nil, p.stmt.Close()
		}
	case "init_db":
		if _, err := s.conn.(driver.ExecerContext).ExecContext(ctx, "USE `"+strings.ReplaceAll(r.Text, "`", "``")+"`", nil); err != nil && !isServerError(err) {
			return nil, err
		}
	case "ping":
		if err := s.conn.(driver.Pinger).Ping(ctx); err != nil && !isServerError(err) {
			return nil, err
		}
	}
	// Other commands (statistics, fetches, resets, long data) are not
	// replayed: their effect is part of the statements around them.
	return nil, nil
}

func (s *session) prepare(ctx context.Context, id uint32, text string) error {
	st, err := s.conn.(driver.ConnPrepareContext).PrepareContext(ctx, text)
	if err != nil {
		if isServerError(err) {
			return nil // the executes will be reported as skipped
		}
		return err
	}
	if old := s.stmts[id]; old != nil {
		_ = old.stmt.Close()
	}
	s.stmts[id] = &prepared{stmt: st}
	return nil
}

// finish reads the rows of a replayed statement, counting them and hashing
// their values. A server error is an outcome, not a failure.
func (out *outcome) finish(rows driver.Rows, err error, t0 time.Time) error {
	if err == nil {
		err = out.read(rows)
	}
	out.latency = time.Since(t0)
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			out.errCode, out.errText = me.Number, me.Message
			return nil
		}
		return err
	}
	return nil
}

func (out *outcome) read(rows driver.Rows) error {
	defer rows.Close()
	for {
		dest := make([]driver.Value, len(rows.Columns()))
		for {
			if err := rows.Next(dest); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			out.rows++
			out.checksum += rowHash(dest)
			if out.wireOK {
				out.wire, out.wireOK = addWireRow(out.wire, dest)
			}
		}
		next, ok := rows.(driver.RowsNextResultSet)
		if !ok || !next.HasNextResultSet() {
			return nil
		}
		if err := next.NextResultSet(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func rowHash(vals []driver.Value) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			h.Write([]byte{0})
		case []byte:
			binary.LittleEndian.PutUint64(b[:], uint64(len(x)))
			h.Write(b[:])
			h.Write(x)
		case int64:
			binary.LittleEndian.PutUint64(b[:], uint64(x))
			h.Write(b[:])
		case float64:
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(x))
			h.Write(b[:])
		case time.Time:
			binary.LittleEndian.PutUint64(b[:], uint64(x.UnixNano()))
			h.Write(b[:])
		default:
			fmt.Fprintf(h, "%v", x)
		}
		h.Write([]byte{0xff})
	}
	return h.Sum64()
}

func isServerError(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me)
}

// readPrefixes start the normalised texts that only read (or set session
// state): everything else is skipped by a read-only replay.
var readPrefixes = []string{"select ", "show ", "explain ", "desc ", "describe ", "set ", "use ",
	"begin", "start transaction", "commit", "rollback", "with "}

func isRead(norm string) bool {
	if strings.Contains(norm, " for update") || strings.Contains(norm, " into ") {
		return false
	}
	for _, p := range readPrefixes {
		if strings.HasPrefix(norm, p) {
			return true
		}
	}
	return false
}

func summarise(all []outcome, rep *Report) []DigestReport {
	by := map[string]*DigestReport{}
	for i := range all {
		o := &all[i]
		d := by[o.st.DigestHex]
		if d == nil {
			d = &DigestReport{Digest: o.st.DigestHex, DigestText: o.st.Normalized}
			by[o.st.DigestHex] = d
		}
		d.Captured++
		d.capturedNs += o.rec.LatencyUs * 1000
		if o.skipped {
			d.Skipped++
			rep.Skipped++
			continue
		}
		d.Replayed++
		rep.Replayed++
		d.replayedNs += int64(o.latency)
		d.Checksum += o.checksum
		switch {
		case o.errCode != o.rec.ErrorCode:
			d.ErrorMismatches++
			if d.Example == "" {
				d.Example = fmt.Sprintf("error %d replayed, %d captured: %s", o.errCode, o.rec.ErrorCode, o.errText)
			}
		case o.errCode == 0 && o.rows != o.rec.Rows:
			d.RowMismatches++
			if d.Example == "" {
				d.Example = fmt.Sprintf("%d rows replayed, %d captured", o.rows, o.rec.Rows)
			}
		case !rep.ReadOnly && o.errCode == 0 && o.wireOK && o.rec.Checksum != "" && o.rec.Checksum != strconv.FormatUint(o.wire, 16):
			// Only a full replay: a read-only one skips the writes the
			// captured reads may have seen, so only counts compare.
			d.RowMismatches++
			if d.Example == "" {
				d.Example = fmt.Sprintf("same row count (%d), different rows: %s", o.rows, o.rec.Text)
			}
		}
	}
	out := make([]DigestReport, 0, len(by))
	for _, d := range by {
		if d.Captured > 0 {
			d.CapturedMs = float64(d.capturedNs) / float64(d.Captured) / 1e6
		}
		if d.Replayed > 0 {
			d.ReplayedMs = float64(d.replayedNs) / float64(d.Replayed) / 1e6
		}
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DigestReport) int {
		return cmp.Or(cmp.Compare(b.ErrorMismatches+b.RowMismatches, a.ErrorMismatches+a.RowMismatches),
			cmp.Compare(b.Captured, a.Captured), cmp.Compare(a.Digest, b.Digest))
	})
	return out
}
