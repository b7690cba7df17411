package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// healthyLoop runs text and prepared queries through its own go-sql-driver
// pool until stopped, counting every error: the session that must not
// notice what the bad clients do.
type healthyLoop struct {
	stop   chan struct{}
	done   chan struct{}
	ok     atomic.Int64
	mu     sync.Mutex
	errors []string
}

func startHealthyLoop(t *testing.T, addr string) *healthyLoop {
	t.Helper()
	db := testenv.OpenDB(t, testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword))
	db.SetMaxOpenConns(2)
	h := &healthyLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				return
			default:
			}
			if err := h.once(db, i); err != nil {
				h.mu.Lock()
				h.errors = append(h.errors, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				h.mu.Unlock()
			} else {
				h.ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { h.Stop() })
	return h
}

func (h *healthyLoop) once(db *sql.DB, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got int
	q := "SELECT ? + 1"
	if i%2 == 1 {
		q = fmt.Sprintf("SELECT %d + 1", i) // text protocol
		if err := db.QueryRowContext(ctx, q).Scan(&got); err != nil {
			return err
		}
	} else if err := db.QueryRowContext(ctx, q, i).Scan(&got); err != nil {
		return err
	}
	if got != i+1 {
		return fmt.Errorf("%s with %d returned %d", q, i, got)
	}
	return nil
}

// Stop ends the loop and returns how many rounds succeeded and the errors.
func (h *healthyLoop) Stop() (int64, []string) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok.Load(), append([]string(nil), h.errors...)
}

// badOutcome is how the proxy answered a bad client.
type badOutcome struct {
	errs   []*mysql.MySQLError // ERR packets, in order
	closed bool                // the connection was closed (EOF or reset)
	other  [][]byte            // any other packet
	hung   bool                // nothing came before the deadline
}

func (o badOutcome) String() string {
	var b strings.Builder
	for _, e := range o.errs {
		fmt.Fprintf(&b, "ERR %d %s; ", e.Code, e.Message)
	}
	for _, p := range o.other {
		fmt.Fprintf(&b, "packet % x; ", p[:min(len(p), 16)])
	}
	if o.closed {
		b.WriteString("closed")
	}
	if o.hung {
		b.WriteString("no answer (hang)")
	}
	return b.String()
}

// readOutcome reads what the proxy sends until it closes, stays quiet for
// quiet after an answer, or d passes with nothing at all.
func readOutcome(t *testing.T, c *rawClient, d, quiet time.Duration) badOutcome {
	t.Helper()
	var o badOutcome
	deadline := time.Now().Add(d)
	// Later reads of the test get a normal deadline back.
	defer func() { _ = c.io.SetReadDeadline(time.Now().Add(30 * time.Second)) }()
	for {
		until := deadline
		if len(o.errs)+len(o.other) > 0 {
			until = time.Now().Add(quiet)
		}
		_ = c.io.SetReadDeadline(until)
		data, err := c.io.ReadPacket(0)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				o.hung = len(o.errs)+len(o.other) == 0
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
				strings.Contains(err.Error(), "connection reset"):
				o.closed = true
			default:
				t.Logf("read: %v (taken as a close)", err)
				o.closed = true
			}
			return o
		}
		if len(data) > 0 && data[0] == mysql.ErrHeader {
			o.errs = append(o.errs, mysql.ParseErr(data))
			continue
		}
		o.other = append(o.other, data)
	}
}

// requireErrOrClose asserts the proxy answered with ERR packets (server-range
// codes and a message) and/or a clean close, and nothing else.
func requireErrOrClose(t *testing.T, what string, o badOutcome) {
	t.Helper()
	t.Logf("%s: %v", what, o)
	require.False(t, o.hung, "%s: the proxy neither answered nor closed", what)
	require.Empty(t, o.other, "%s: expected ERR or close, got %v", what, o)
	require.True(t, len(o.errs) > 0 || o.closed, "%s: %v", what, o)
	for _, e := range o.errs {
		require.NotEmpty(t, e.Message, "%s: ERR without a message", what)
		require.True(t, e.Code < 2000 || e.Code >= 3000, "%s: client-range error code %d", what, e.Code)
	}
}

func comStmt(cmd byte, id uint32, rest ...byte) []byte {
	p := binary.LittleEndian.AppendUint32([]byte{cmd}, id)
	return append(p, rest...)
}

func header(n int, seq byte) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), seq} }

// TestBadInputRaw sends what no well-behaved client sends, over raw
// connections through the proxy to MariaDB: truncated and lying packets,
// sequence-id errors, 16 MiB+ packets, statements executed with the wrong
// number of parameters, fetches and resets of unknown statement ids, empty
// and unknown commands. Each bad session gets ERR packets or a clean close
// (never a hang, never another reply), and a healthy go-sql-driver session
// running alongside the whole time sees zero errors.
func TestBadInputRaw(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	p := proxyFor(t, db)
	healthy := startHealthyLoop(t, p.Addr)
	login := func(t *testing.T) *rawClient {
		c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, testenv.TestDatabase)
		require.NoError(t, err)
		return c
	}
	const answer, quiet = 20 * time.Second, 500 * time.Millisecond

	t.Run("TruncatedPacketThenHalfClose", func(t *testing.T) {
		c := login(t)
		require.NoError(t, c.io.WriteRaw(append(header(100, 0), mysql.ComQuery, 'S', 'E', 'L')))
		require.NoError(t, c.io.Flush())
		require.NoError(t, c.io.RawConn().(*net.TCPConn).CloseWrite())
		requireErrOrClose(t, "truncated packet", readOutcome(t, c, answer, quiet))
	})
	t.Run("TruncatedHeader", func(t *testing.T) {
		c := login(t)
		require.NoError(t, c.io.WriteRaw([]byte{5, 0}))
		require.NoError(t, c.io.Flush())
		require.NoError(t, c.io.RawConn().(*net.TCPConn).CloseWrite())
		requireErrOrClose(t, "truncated header", readOutcome(t, c, answer, quiet))
	})
	t.Run("LengthShorterThanPayload", func(t *testing.T) {
		// The header claims 5 bytes of "SELECT 1": the backend gets "SELE"
		// and the rest reads as a header of a 5 MiB packet that never comes.
		c := login(t)
		wire := append(header(5, 0), mysql.ComQuery)
		wire = append(wire, "SELECT 1"...)
		require.NoError(t, c.io.WriteRaw(wire))
		require.NoError(t, c.io.Flush())
		o := readOutcome(t, c, answer, quiet)
		requireErrOrClose(t, "lying length", o)
		require.NotEmpty(t, o.errs, "the bad statement gets the backend's syntax error")
	})
	t.Run("EmptyAndUnknownCommands", func(t *testing.T) {
		c := login(t)
		for _, payload := range [][]byte{{}, {0xff}, {0x1d}, {0x12, 0, 0, 0, 0}} {
			c.send(payload)
			o := readOutcome(t, c, answer, quiet)
			requireErrOrClose(t, fmt.Sprintf("command % x", payload), o)
			require.False(t, o.closed, "an unknown command is refused, the session goes on")
		}
		require.Equal(t, [][]string{{"1"}}, c.query("SELECT 1"), "the session still works")
	})
	t.Run("SequenceIDErrors", func(t *testing.T) {
		c := login(t)
		// A command that does not start at sequence 0.
		require.NoError(t, c.io.WriteRaw(append(header(9, 7), append([]byte{mysql.ComQuery}, "SELECT 1"...)...)))
		require.NoError(t, c.io.Flush())
		o := readOutcome(t, c, answer, quiet)
		if len(o.other) > 0 {
			// Accepted (the proxy renumbers what it forwards): the
			// result set is the statement's, and the session goes on.
			t.Logf("out-of-order command accepted: %v", o)
		} else {
			requireErrOrClose(t, "command at sequence 7", o)
		}

		// A 16 MiB+ command whose second physical packet has a wrong
		// sequence id.
		c2 := login(t)
		big := bytes.Repeat([]byte{'a'}, mysql.MaxPayloadLen-1)
		first := append(header(mysql.MaxPayloadLen, 0), append([]byte{mysql.ComQuery}, big...)...)
		second := append(header(10, 9), " -- tail\n"...)
		second = append(second, ' ')
		require.NoError(t, c2.io.WriteRaw(first))
		require.NoError(t, c2.io.WriteRaw(second))
		require.NoError(t, c2.io.Flush())
		requireErrOrClose(t, "second physical packet out of order", readOutcome(t, c2, answer, 2*time.Second))
	})
	t.Run("Over16MiB", func(t *testing.T) {
		c := login(t)
		n := mysql.MaxPayloadLen + 1<<20
		q := "SELECT LENGTH('" + strings.Repeat("x", n) + "')"
		require.Equal(t, [][]string{{fmt.Sprint(n)}}, c.query(q), "a 17 MiB statement is forwarded whole")
		// One that is cut short in its second physical packet.
		c2 := login(t)
		require.NoError(t, c2.io.WriteRaw(header(mysql.MaxPayloadLen, 0)))
		require.NoError(t, c2.io.WriteRaw(append([]byte{mysql.ComQuery}, bytes.Repeat([]byte{'b'}, mysql.MaxPayloadLen-1)...)))
		require.NoError(t, c2.io.WriteRaw(append(header(1000, 1), "SELECT"...)))
		require.NoError(t, c2.io.Flush())
		require.NoError(t, c2.io.RawConn().(*net.TCPConn).CloseWrite())
		requireErrOrClose(t, "16 MiB+ packet cut short", readOutcome(t, c2, answer, 2*time.Second))
	})
	t.Run("WrongParameterCounts", func(t *testing.T) {
		c := login(t)
		c.send(append([]byte{mysql.ComStmtPrepare}, "SELECT ?, ?"...))
		ok := c.read()
		require.Equal(t, mysql.OKHeader, ok[0], "prepare: %v", mysql.ParseErr(ok))
		id := binary.LittleEndian.Uint32(ok[1:])
		require.Equal(t, uint16(2), binary.LittleEndian.Uint16(ok[7:]))
		require.Equal(t, uint16(2), binary.LittleEndian.Uint16(ok[5:]))
		for range 2 { // parameter definitions, then column definitions
			for range 2 {
				c.read()
			}
			c.eofStatus()
		}
		cases := map[string][]byte{
			"no parameter block":      comStmt(mysql.ComStmtExecute, id, 0, 1, 0, 0, 0),
			"only the null bitmap":    comStmt(mysql.ComStmtExecute, id, 0, 1, 0, 0, 0, 0),
			"one type for two":        comStmt(mysql.ComStmtExecute, id, 0, 1, 0, 0, 0, 0, 1, 8, 0),
			"types without values":    comStmt(mysql.ComStmtExecute, id, 0, 1, 0, 0, 0, 0, 1, 8, 0, 8, 0),
			"no iteration count":      comStmt(mysql.ComStmtExecute, id, 0),
			"only the statement id":   comStmt(mysql.ComStmtExecute, id),
			"a short statement id":    {mysql.ComStmtExecute, 1, 0},
			"value length lies":       comStmt(mysql.ComStmtExecute, id, 0, 1, 0, 0, 0, 0, 1, 0xfe, 0, 0xfe, 0, 0xfc, 0xff, 0xff),
			"unknown id with params":  comStmt(mysql.ComStmtExecute, 0xfffffff0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0),
			"cursor on unknown id":    comStmt(mysql.ComStmtExecute, 0xfffffff1, 1, 1, 0, 0, 0),
			"long data on unknown id": comStmt(mysql.ComStmtSendLongData, 0xfffffff2, 0, 0, 'x'),
			"execute after long data": comStmt(mysql.ComStmtExecute, 0xfffffff2, 0, 1, 0, 0, 0),
		}
		for what, payload := range cases {
			if mysql.ComStmtSendLongData == payload[0] {
				c.send(payload) // no response by protocol
				continue
			}
			c.send(payload)
			o := readOutcome(t, c, answer, quiet)
			requireErrOrClose(t, what, o)
			if o.closed {
				c = login(t) // the backend may drop a malformed command's session
				break
			}
		}
		c.send(append([]byte{mysql.ComStmtPrepare}, "SELECT 1"...))
		require.Equal(t, mysql.OKHeader, c.read()[0], "a session that got errors still works")
	})
	t.Run("UnknownStatementIDs", func(t *testing.T) {
		c := login(t)
		for what, payload := range map[string][]byte{
			"fetch":            comStmt(mysql.ComStmtFetch, 424242, 10, 0, 0, 0),
			"fetch, short":     {mysql.ComStmtFetch, 1},
			"reset":            comStmt(mysql.ComStmtReset, 424243),
			"reset, short":     {mysql.ComStmtReset},
			"fetch, closed id": comStmt(mysql.ComStmtFetch, 0, 1, 0, 0, 0),
		} {
			c.send(payload)
			o := readOutcome(t, c, answer, quiet)
			requireErrOrClose(t, what, o)
			require.NotEmpty(t, o.errs, "%s: the backend's error reaches the client", what)
			require.False(t, o.closed, "%s: an unknown statement is no reason to close", what)
		}
		// A close of an unknown id has no response; the session goes on.
		c.send(comStmt(mysql.ComStmtClose, 999999))
		c.send(append([]byte{mysql.ComStmtClose}, 1))
		require.Equal(t, [][]string{{"2"}}, c.query("SELECT 2"))
	})
	t.Run("BadHandshakeResponses", func(t *testing.T) {
		for what, resp := range map[string][]byte{
			"empty":                   {},
			"truncated":               {0x85, 0xa6},
			"user not terminated":     append(binary.LittleEndian.AppendUint32(nil, mysql.ClientProtocol41), append(make([]byte, 28), "root"...)...),
			"auth length past end":    append(binary.LittleEndian.AppendUint32(nil, mysql.ClientProtocol41|mysql.ClientSecureConnection), append(make([]byte, 28), 'u', 0, 200, 1)...),
			"attrs length past end":   append(binary.LittleEndian.AppendUint32(nil, mysql.ClientProtocol41|mysql.ClientConnectAttrs), append(make([]byte, 28), 'u', 0, 0, 0xfc, 0xff, 0xff)...),
			"pre-4.1 (no protocol41)": {0, 0, 0, 0, 0, 'u', 0},
		} {
			conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
			require.NoError(t, err)
			c := &rawClient{t: t, io: mysql.NewPacketIO(conn)}
			t.Cleanup(func() { _ = c.io.Close() })
			_ = c.io.SetReadDeadline(time.Now().Add(answer))
			_, err = c.io.ReadPacket(0)
			require.NoError(t, err, "greeting")
			c.io.SetSequence(1)
			require.NoError(t, c.io.WritePacket(resp))
			require.NoError(t, c.io.Flush())
			requireErrOrClose(t, "handshake "+what, readOutcome(t, c, answer, quiet))
		}
	})

	ok, errs := healthy.Stop()
	t.Logf("healthy session: %d good rounds, %d errors", ok, len(errs))
	require.Empty(t, errs, "the healthy session saw errors")
	require.Positive(t, ok)
}
