package backend

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/mysql"
)

func TestScanStatement(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want scan
	}{
		{q: "SET @x = 1, @`Y z` = 2, @@session.sql_mode = ''", want: scan{userVars: []string{"x", "y z"}}},
		{q: "SELECT a INTO @out FROM t", want: scan{userVars: []string{"out"}}},
		{q: "SELECT '@notavar' /* @nor */ -- @this\n, @'q'", want: scan{userVars: []string{"notavar", "q"}}},
		{q: "PREPARE s FROM 'SET @p = ?'", want: scan{userVars: []string{"p"}}},
		{q: "lock tables t read", want: scan{lockTables: true}},
		{q: "UNLOCK TABLES", want: scan{unlockTables: true}},
		{q: "START TRANSACTION", want: scan{unlockTables: true}},
		{q: "SELECT GET_LOCK('a''b', 10), get_lock(@n, 1)", want: scan{locks: []string{"a'b"}, lockUnknown: true, userVars: []string{"n"}}},
		{q: "DO RELEASE_ALL_LOCKS()", want: scan{releaseAllLocks: true}},
		{q: "CREATE TEMPORARY TABLE IF NOT EXISTS `Db`.T1 (a INT)", want: scan{tempTables: []string{"db.t1"}}},
		{q: "CREATE OR REPLACE TEMPORARY TABLE t2 AS SELECT 1", want: scan{tempTables: []string{"t2"}}},
		{q: "DROP TEMPORARY TABLE IF EXISTS t1, db.t2", want: scan{dropTables: []string{"t1", "db.t2"}}},
		{q: "/*!40101 SET @old = @@sql_mode */", want: scan{userVars: []string{"old"}}},
		{q: "SELECT 'unterminated", want: scan{}},
	} {
		t.Run(tc.q, func(t *testing.T) {
			require.Equal(t, tc.want, scanStatement([]byte(tc.q)))
		})
	}
}

func TestTrackedSticky(t *testing.T) {
	var tr tracked
	tr.observe([]byte("CREATE TEMPORARY TABLE tmp (a INT)"))
	require.Contains(t, tr.sticky(), "temporary tables (tmp)")
	tr.observe([]byte("DROP TABLE tmp"))
	require.Empty(t, tr.sticky())
	tr.observe([]byte("LOCK TABLES t WRITE"))
	require.Equal(t, "holds LOCK TABLES", tr.sticky())
	tr.observe([]byte("UNLOCK TABLES"))
	require.Empty(t, tr.sticky())
	tr.setSysvar("session_track_system_variables", "autocommit")
	require.Contains(t, tr.sticky(), "session_track_system_variables")
	tr.setSysvar("session_track_system_variables", "*")
	require.Empty(t, tr.sticky())
	for i := range maxTrackedNames + 1 {
		tr.observe([]byte("SET @v" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + " = 1"))
	}
	require.Contains(t, tr.sticky(), "more than")
}

// FuzzScanStatement: the scanner never panics, and every name it reports
// is non-empty text that came from the statement.
func FuzzScanStatement(f *testing.F) {
	for _, q := range []string{
		"SET @x = 1", "SELECT GET_LOCK('a', 1)", "LOCK TABLES t READ", "/*!1 SET @a=1*/",
		"CREATE TEMPORARY TABLE `a``b`.c (x INT)", "DROP TABLE IF EXISTS a, b", "SELECT '\\'@x'", "@", "@`", "/*",
	} {
		f.Add([]byte(q))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		sc := scanStatement(q)
		// The byte pre-filter never skips a statement that matters, from
		// a state holding locks and temporary tables.
		full, fast := tracked{lockTables: true, temp: map[string]struct{}{"t": {}, "db.t": {}}}, tracked{}
		full.apply(sc)
		fast = tracked{lockTables: true, temp: map[string]struct{}{"t": {}, "db.t": {}}}
		fast.observe(q)
		require.Equal(t, full, fast, "pre-filter skipped %q", q)
		var tr tracked
		tr.observe(q)
		_ = tr.sticky()
		for _, v := range sc.tempTables {
			if v == "" {
				t.Fatalf("empty table name from %q", q)
			}
		}
	})
}

func TestNativeCredentialRecovery(t *testing.T) {
	salt := []byte("01234567890123456789")
	stage1 := sha1Sum([]byte("secret"))
	stored := "*" + hexUpper(sha1Sum(stage1))
	var c nativeCredential
	c.capture(append(salt, 0), mysql.NativeScramble(stage1, salt))
	require.True(t, c.captured())
	require.False(t, c.recoverFrom([][]byte{[]byte("*" + hexUpper(sha1Sum([]byte("other")))), nil, []byte("garbage")}))
	require.True(t, c.recoverFrom([][]byte{[]byte("*" + hexUpper(sha1Sum(sha1Sum([]byte("other"))))), []byte(stored)}))
	require.Equal(t, stage1, c.stage1)
	require.Nil(t, c.scramble, "the exchange is dropped once the secret is known")
	salt2 := []byte("abcdefghijabcdefghij")
	require.Equal(t, mysql.NativeScramble(stage1, salt2), c.answer(salt2))
	kept := c.stage1
	c.zero()
	require.Equal(t, make([]byte, 20), kept, "zeroed in place")
}

func sha1Sum(b []byte) []byte { h := sha1.Sum(b); return h[:] }

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func TestNoteParamTypes(t *testing.T) {
	st := &stmtState{params: 2}
	head := []byte{0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0x00} // id 1, no cursor, 1 iteration, null bitmap
	withTypes := append(append(append([]byte{}, head...), 1, 8, 0, 253, 0), []byte("values")...)
	require.Nil(t, st.noteParamTypes(withTypes), "types present: forwarded as is")
	without := append(append([]byte{}, head...), 0, 'v')
	require.Nil(t, st.noteParamTypes(without), "the server has the types")
	st.typesSent = false // moved
	require.Equal(t, append(append(append([]byte{}, head...), 1, 8, 0, 253, 0), 'v'), st.noteParamTypes(without))
	require.Nil(t, st.noteParamTypes(without), "once is enough")
	require.Nil(t, (&stmtState{}).noteParamTypes(without), "no parameters")
	require.Nil(t, st.noteParamTypes(head[:5]), "truncated")
}
