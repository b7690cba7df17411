package e2e

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

func nativeDB(t *testing.T, addr string, opts ...mysql.Option) *sql.DB {
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	require.NoError(t, cfg.Apply(opts...))
	return testenv.OpenDB(t, cfg)
}

func TestTransactions(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr)
	ctx := ctxT(t, time.Minute)
	emptyTable(t, db, "txn_t", "id INT PRIMARY KEY, v VARCHAR(20)")

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO txn_t VALUES (1, 'rolled back')")
	require.NoError(t, err)
	require.NoError(t, tx.Rollback())

	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO txn_t VALUES (2, 'committed')")
	require.NoError(t, err)
	// Not visible to the backend directly before commit.
	direct := testenv.OpenDB(t, m.Config(testenv.NativeUser, testenv.NativePassword))
	require.Equal(t, "0", queryString(t, direct, "SELECT COUNT(*) FROM txn_t"))
	require.NoError(t, tx.Commit())
	require.Equal(t, "committed", queryString(t, direct, "SELECT GROUP_CONCAT(v) FROM txn_t"))
}

func TestLargeResultAndPacket(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.MaxAllowedPacket = 64 << 20; return nil })
	ctx := ctxT(t, 2*time.Minute)

	t.Run("100k rows", func(t *testing.T) {
		rows, err := db.QueryContext(ctx, "SELECT seq, CONCAT('row-', seq) FROM seq_1_to_100000")
		require.NoError(t, err)
		defer rows.Close()
		n := 0
		for rows.Next() {
			var id int
			var s string
			require.NoError(t, rows.Scan(&id, &s))
			n++
			require.Equal(t, n, id)
			require.Equal(t, fmt.Sprintf("row-%d", n), s)
		}
		require.NoError(t, rows.Err())
		require.Equal(t, 100000, n)
	})
	t.Run("32 MiB packet both ways", func(t *testing.T) {
		emptyTable(t, db, "big_t", "id INT PRIMARY KEY, b LONGBLOB")
		payload := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
		payload[12345] = 'X'
		_, err := db.ExecContext(ctx, "INSERT INTO big_t VALUES (1, ?)", payload)
		require.NoError(t, err)
		var got []byte
		require.NoError(t, db.QueryRowContext(ctx, "SELECT b FROM big_t WHERE id = 1").Scan(&got))
		require.Equal(t, len(payload), len(got))
		require.True(t, bytes.Equal(payload, got), "32 MiB value came back intact")
		// The same through the text protocol (a 32 MiB COM_QUERY).
		q := "SELECT LENGTH('" + strings.Repeat("z", 32<<20) + "')"
		require.Equal(t, fmt.Sprint(32<<20), queryString(t, db, q))
	})
}

func TestMultiStatements(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.MultiStatements = true; return nil })
	ctx := ctxT(t, time.Minute)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, "SELECT 1; SELECT 'two', 2; DO 0; SELECT seq FROM seq_1_to_3")
	require.NoError(t, err)
	var sets [][]string
	for {
		var set []string
		cols, err := rows.Columns()
		require.NoError(t, err)
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = string(v)
			}
			set = append(set, strings.Join(parts, ","))
		}
		sets = append(sets, set)
		if !rows.NextResultSet() {
			break
		}
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, [][]string{{"1"}, {"two,2"}, {"1", "2", "3"}}, sets)
	// The connection is still usable after the multi-result exchange.
	require.Equal(t, "ok", queryString(t, conn, "SELECT 'ok'"))
}

func TestPreparedStatements(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr)
	ctx := ctxT(t, time.Minute)
	stmt, err := db.PrepareContext(ctx, "SELECT ? + seq, CONCAT(?, seq) FROM seq_1_to_5 WHERE seq > ?")
	require.NoError(t, err)
	defer stmt.Close()
	for round := 0; round < 3; round++ {
		rows, err := stmt.QueryContext(ctx, 100, "s", 2)
		require.NoError(t, err)
		var got []string
		for rows.Next() {
			var a int
			var b string
			require.NoError(t, rows.Scan(&a, &b))
			got = append(got, fmt.Sprintf("%d/%s", a, b))
		}
		require.NoError(t, rows.Err())
		require.Equal(t, []string{"103/s3", "104/s4", "105/s5"}, got)
	}
	// Long data (a parameter sent with COM_STMT_SEND_LONG_DATA).
	long := strings.Repeat("L", 1<<20)
	require.Equal(t, fmt.Sprint(len(long)), queryString(t, db, "SELECT LENGTH(?)", []byte(long)))
}

// TestCursor opens a server-side cursor and fetches from it in batches, the
// path COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY and COM_STMT_FETCH take.
func TestCursor(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, testenv.TestDatabase)
	require.NoError(t, err)
	id, cols := c.prepare("SELECT seq, seq * 2 FROM seq_1_to_25")
	require.Equal(t, 2, cols)
	st := c.executeCursor(id, cols)
	require.NotZero(t, st&0x0040, "SERVER_STATUS_CURSOR_EXISTS set after execute")
	total := 0
	for i := 0; i < 10; i++ {
		n, st := c.fetch(id, 10)
		total += n
		if st&0x0080 != 0 { // SERVER_STATUS_LAST_ROW_SENT
			break
		}
	}
	require.Equal(t, 25, total)
	// The session keeps working after the cursor is exhausted.
	require.Equal(t, [][]string{{"7"}}, c.query("SELECT 7"))
}

func TestChangeUser(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	c, err := dialRaw(t, p.Addr, testenv.NativeUser, testenv.NativePassword, testenv.TestDatabase)
	require.NoError(t, err)
	require.Equal(t, [][]string{{"native@%"}}, c.query("SELECT CURRENT_USER()"))
	require.NoError(t, c.changeUser(testenv.AdminUser, testenv.AdminPassword, "mysql"))
	require.Equal(t, [][]string{{"root2@%", "mysql"}}, c.query("SELECT CURRENT_USER(), DATABASE()"))
	err = c.changeUser(testenv.NativeUser, "wrong", "")
	require.Error(t, err)
	require.Contains(t, err.Error(), "1045")
}

func TestLoadDataLocal(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	path := filepath.Join(t.TempDir(), "data.csv")
	var b strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&b, "%d,name-%d\n", i, i)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	mysql.RegisterLocalFile(path)
	t.Cleanup(func() { mysql.DeregisterLocalFile(path) })
	db := nativeDB(t, p.Addr, func(c *mysql.Config) error { c.AllowAllFiles = false; return nil })
	ctx := ctxT(t, time.Minute)
	emptyTable(t, db, "load_t", "id INT PRIMARY KEY, name VARCHAR(30)")
	res, err := db.ExecContext(ctx, fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE load_t FIELDS TERMINATED BY ','", path))
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.Equal(t, int64(5000), n)
	require.Equal(t, "name-4321", queryString(t, db, "SELECT name FROM load_t WHERE id = 4321"))
}

// A backend connection killed while the client sends a LOAD DATA LOCAL
// file: the proxy reads the rest of the file and the client gets one clean
// MySQL error once it has sent all, not a broken connection. (Without a
// migration account the session cannot go on elsewhere, so that error is
// its last word; the unit tests cover the session that goes on.)
func TestLoadDataLocalBackendKilled(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	db := nativeDB(t, p.Addr)
	root := testenv.OpenDB(t, m.Config(testenv.AdminUser, testenv.AdminPassword))
	ctx := ctxT(t, time.Minute)
	emptyTable(t, db, "load_killed", "id INT PRIMARY KEY, name VARCHAR(30)")

	rows := func(from, to int) []byte {
		var b bytes.Buffer
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "%d,name-%d\n", i, i)
		}
		return b.Bytes()
	}
	// About 1 MiB, then, once the backend connection is killed, 8 MiB more.
	waiting, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	mysql.RegisterReaderHandler("killed", func() io.Reader {
		if calls.Add(1) > 1 { // database/sql ran the statement again
			return bytes.NewReader(rows(0, 540_000))
		}
		return io.MultiReader(bytes.NewReader(rows(0, 60_000)), &lazyReader{waiting: waiting, ch: release, open: func() io.Reader {
			return bytes.NewReader(rows(60_000, 540_000))
		}})
	})
	t.Cleanup(func() { mysql.DeregisterReaderHandler("killed") })

	go func() {
		defer close(release)
		select { // the server asked for the file, and has its first part
		case <-waiting:
		case <-ctx.Done():
			return
		}
		var id int64
		for ctx.Err() == nil {
			err := root.QueryRowContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'LOAD DATA LOCAL INFILE%load_killed%'").Scan(&id)
			if err == nil {
				_, err = root.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id))
				assert.NoError(t, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := db.ExecContext(ctx, "LOAD DATA LOCAL INFILE 'Reader::killed' INTO TABLE load_killed FIELDS TERMINATED BY ','")
	var me *mysql.MySQLError
	require.Equal(t, int32(1), calls.Load(), "the statement ran once: the driver did not retry it on another connection")
	require.ErrorAs(t, err, &me, "a MySQL error, not a broken connection")
	require.Contains(t, me.Message, "lost connection to backend "+m.Addr())
	require.Equal(t, "0", queryString(t, db, "SELECT COUNT(*) FROM load_killed"), "nothing was loaded")
}

// lazyReader closes waiting at its first read, then reads from the reader
// that open returns once ch is closed.
type lazyReader struct {
	waiting chan<- struct{}
	ch      <-chan struct{}
	open    func() io.Reader
	r       io.Reader
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.r == nil {
		close(l.waiting)
		<-l.ch
		l.r = l.open()
	}
	return l.r.Read(p)
}

// TestMySQLCLI drives the proxy with MariaDB's command-line client, plain
// and compressed.
func TestMySQLCLI(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	host, port, _ := strings.Cut(p.Addr, ":")
	for _, extra := range [][]string{nil, {"--compress"}} {
		args := append([]string{"--no-defaults", "-h", host, "-P", port, "-u", testenv.NativeUser,
			"-p" + testenv.NativePassword, "--batch", "--skip-column-names", "-e",
			"SELECT CURRENT_USER(); USE mysql; SELECT DATABASE(); SELECT COUNT(*) FROM seq_1_to_1000;"}, extra...)
		out, err := exec.Command("mariadb", append(args, testenv.TestDatabase)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, "native@%\nmysql\n1000\n", string(out), "args %v", extra)
	}
	out, err := exec.Command("mariadb", "--no-defaults", "-h", host, "-P", port, "-u", testenv.NativeUser,
		"-pbad", "-e", "SELECT 1").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "ERROR 1045 (28000)")
}
