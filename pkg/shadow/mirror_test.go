package shadow

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// fixedTarget resolves every cluster to one address.
type fixedTarget string

func (f fixedTarget) Backend(string) (string, error) { return string(f), nil }

const utf8mb4 = 45 // utf8mb4_general_ci

func options(name string) Options {
	return Options{Name: name, Source: "main", Target: "canary", Sample: 1, User: testenv.NativeUser,
		Password: []byte(testenv.NativePassword), Queue: 100, Connections: 2, Timeout: 5 * time.Second, MaxDigests: 10}
}

// prepareTable creates a table of its own in the shared server.
func prepareTable(t *testing.T, m *testenv.MariaDB, table string) {
	db, err := sql.Open("mysql", m.NativeDSN())
	require.NoError(t, err)
	defer db.Close()
	for _, s := range []string{
		"DROP TABLE IF EXISTS test." + table,
		"CREATE TABLE test." + table + " (id INT PRIMARY KEY, v VARCHAR(20), f DOUBLE, n INT NULL)",
		"INSERT INTO test." + table + " VALUES (1,'one',1.5,NULL),(2,'two',2.25,7),(3,'',0,0)",
	} {
		_, err := db.Exec(s)
		require.NoError(t, err, s)
	}
}

// clientSaw runs q on its own connection the way the mirror does, standing
// in for what a session forwarded to its client.
func clientSaw(t *testing.T, addr, db, q string) *Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, addr, testenv.NativeUser, []byte(testenv.NativePassword), db, utf8mb4)
	require.NoError(t, err)
	defer c.close()
	r, err := c.query(ctx, []byte(q))
	require.NoError(t, err)
	return &Result{Text: []byte(q), DB: db, Charset: utf8mb4, Rows: r.rows, Checksum: r.checksum, ErrCode: r.errCode, Latency: time.Millisecond}
}

func onlyStatus(t *testing.T, m *Manager) Status {
	all := m.Status()
	require.Len(t, all, 1)
	return all[0]
}

// TestMirrorComparesWithMariaDB: identical results compare equal; a wrong
// checksum, row count or error code is a mismatch of that digest only.
func TestMirrorComparesWithMariaDB(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	prepareTable(t, db, "shadow_cmp")
	m := NewManager(zaptest.NewLogger(t), fixedTarget(db.Addr()))
	defer m.Close()
	m.Apply([]Options{options("cmp")})
	sink := m.Sample("main")
	require.NotNil(t, sink, "sample 1 takes every statement")
	require.Nil(t, m.Sample("other"), "only the source cluster is mirrored")

	good := "SELECT id, v, f, n FROM shadow_cmp ORDER BY id"
	r := clientSaw(t, db.Addr(), "test", good)
	require.EqualValues(t, 3, r.Rows)
	for range 5 {
		sink.Submit(r)
	}
	missing := clientSaw(t, db.Addr(), "test", "SELECT * FROM no_such_table")
	require.EqualValues(t, 1146, missing.ErrCode)
	sink.Submit(missing)
	require.Eventually(t, func() bool { return onlyStatus(t, m).Compared == 6 }, 20*time.Second, 20*time.Millisecond)
	require.Zero(t, onlyStatus(t, m).Mismatches, "%+v", onlyStatus(t, m))

	bad := "SELECT v FROM shadow_cmp WHERE id = 2"
	wrong := clientSaw(t, db.Addr(), "test", bad)
	wrong.Checksum++ // what a changed row would give
	sink.Submit(wrong)
	noErr := clientSaw(t, db.Addr(), "test", "SELECT * FROM no_such_table WHERE 1 = 1")
	noErr.ErrCode = 0 // the source answered; the target did not
	sink.Submit(noErr)
	require.Eventually(t, func() bool { return onlyStatus(t, m).Compared == 8 }, 20*time.Second, 20*time.Millisecond)
	st := onlyStatus(t, m)
	require.EqualValues(t, 2, st.Mismatches)
	mismatched := map[string]DigestStatus{}
	for _, d := range st.Digests {
		if d.Mismatches > 0 {
			mismatched[d.Example] = d
		}
	}
	require.Len(t, mismatched, 2, "%+v", st.Digests)
	require.EqualValues(t, 1, mismatched[bad].RowMismatches)
	require.EqualValues(t, 1, mismatched["SELECT * FROM no_such_table WHERE 1 = 1"].ErrorMismatches)
	require.Equal(t, st.Digests[0].Mismatches, uint64(1), "mismatching digests sort first")
	require.NotContains(t, fmt.Sprintf("%+v", st), testenv.NativePassword)
}

// TestMirrorSkipsAndSchema: refused statements are skipped, not run; a
// statement runs in its session's schema.
func TestMirrorSkipsAndSchema(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	prepareTable(t, db, "shadow_schema")
	m := NewManager(zaptest.NewLogger(t), fixedTarget(db.Addr()))
	defer m.Close()
	m.Apply([]Options{options("skip")})
	sink := m.Sample("main")
	sink.Submit(&Result{Text: []byte("SELECT * FROM shadow_schema FOR UPDATE"), DB: "test", Charset: utf8mb4})
	sink.Submit(&Result{Text: []byte("SELECT NOW()"), Charset: utf8mb4})
	// The same statement from a session without a schema fails there too.
	noDB := clientSaw(t, db.Addr(), "", "SELECT id FROM shadow_schema")
	require.NotZero(t, noDB.ErrCode)
	sink.Submit(noDB)
	sink.Submit(clientSaw(t, db.Addr(), "test", "SELECT id FROM shadow_schema"))
	require.Eventually(t, func() bool { st := onlyStatus(t, m); return st.Skipped == 2 && st.Compared == 2 }, 20*time.Second, 20*time.Millisecond)
	require.Zero(t, onlyStatus(t, m).Mismatches)
}

// stalledTarget accepts connections and never answers.
func stalledTarget(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestMirrorFullQueueDrops: with the target stalled, Submit never waits;
// what does not fit the queue is dropped and counted, and Close returns.
func TestMirrorFullQueueDrops(t *testing.T) {
	m := NewManager(zaptest.NewLogger(t), fixedTarget(stalledTarget(t)))
	o := options("full")
	o.Queue, o.Connections, o.Timeout = 4, 1, time.Minute
	m.Apply([]Options{o})
	sink := m.Sample("main")
	r := &Result{Text: []byte("SELECT 1"), Charset: utf8mb4}
	start := time.Now()
	for range 1000 {
		sink.Submit(r)
	}
	require.Less(t, time.Since(start), 5*time.Second, "1000 submits must not wait for the target")
	st := onlyStatus(t, m)
	require.EqualValues(t, 1000, st.Sampled)
	require.GreaterOrEqual(t, st.Dropped, uint64(1000-o.Queue-o.Connections))
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a stalled target")
	}
}

// TestMirrorUnreachableTarget: a target that refuses connections counts
// errors and reports why, without a retry storm.
func TestMirrorUnreachableTarget(t *testing.T) {
	addr := testenv.FreeAddr(t)
	m := NewManager(zaptest.NewLogger(t), fixedTarget(addr))
	defer m.Close()
	m.Apply([]Options{options("down")})
	sink := m.Sample("main")
	for range 20 {
		sink.Submit(&Result{Text: []byte("SELECT 1"), Charset: utf8mb4})
	}
	require.Eventually(t, func() bool { return onlyStatus(t, m).Errors == 20 }, 20*time.Second, 20*time.Millisecond)
	st := onlyStatus(t, m)
	require.Contains(t, st.LastError, "connection refused")
	require.Zero(t, st.Compared)
}

// TestMirrorWrongPassword: a refused login is an error with MariaDB's
// message, which never carries the password.
func TestMirrorWrongPassword(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	m := NewManager(zaptest.NewLogger(t), fixedTarget(db.Addr()))
	defer m.Close()
	o := options("badpw")
	o.Password = []byte("not-the-password-xyz")
	m.Apply([]Options{o})
	m.Sample("main").Submit(&Result{Text: []byte("SELECT 1"), Charset: utf8mb4})
	require.Eventually(t, func() bool { return onlyStatus(t, m).Errors == 1 }, 20*time.Second, 20*time.Millisecond)
	st := onlyStatus(t, m)
	require.Contains(t, st.LastError, "Access denied")
	require.NotContains(t, st.LastError, "not-the-password-xyz")
}

// TestApplyReloads: an unchanged mirror keeps running; a changed one is
// replaced keeping its counters; a removed one stops sampling and its
// password is zeroed.
func TestApplyReloads(t *testing.T) {
	db := testenv.SharedMariaDB(t)
	m := NewManager(zaptest.NewLogger(t), fixedTarget(db.Addr()))
	defer m.Close()
	o := options("reload")
	m.Apply([]Options{o})
	first := m.byName["reload"]
	m.Sample("main").Submit(&Result{Text: []byte("SELECT 1"), Charset: utf8mb4, Rows: 1, Checksum: mysql.RowChecksum([]byte{1, '1'})})
	require.Eventually(t, func() bool { return onlyStatus(t, m).Compared == 1 }, 20*time.Second, 20*time.Millisecond)
	require.Zero(t, onlyStatus(t, m).Mismatches, "SELECT 1's row is the text-protocol payload 0x01 '1'")

	m.Apply([]Options{o})
	require.Same(t, first, m.byName["reload"], "an unchanged section keeps its mirror")

	o.Sample = 0.5
	m.Apply([]Options{o})
	second := m.byName["reload"]
	require.NotSame(t, first, second)
	require.True(t, first.closed.Load())
	require.Equal(t, make([]byte, len(testenv.NativePassword)), first.opt.Password, "a replaced mirror's password is zeroed")
	require.EqualValues(t, 1, onlyStatus(t, m).Compared, "counters survive a change of sample")
	require.EqualValues(t, 0.5, onlyStatus(t, m).Sample)

	m.Apply(nil)
	require.Nil(t, m.Sample("main"))
	require.Empty(t, m.Status())
	require.True(t, second.closed.Load())
	// A session that sampled before the reload still holds the old mirror:
	// its Submit is dropped, never a panic.
	second.Submit(&Result{Text: []byte("SELECT 1")})
}

// TestSampleFraction: sample 0.1 takes about a tenth.
func TestSampleFraction(t *testing.T) {
	m := NewManager(zaptest.NewLogger(t), fixedTarget("127.0.0.1:1"))
	defer m.Close()
	o := options("fraction")
	o.Sample = 0.1
	m.Apply([]Options{o})
	n := 0
	for range 100_000 {
		if m.Sample("main") != nil {
			n++
		}
	}
	require.InDelta(t, 10_000, n, 600)
}
