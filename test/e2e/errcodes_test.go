package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// mariadbCLI runs the mariadb client (libmariadb) against the proxy.
func mariadbCLI(addr string, query string) *exec.Cmd {
	host, port, _ := strings.Cut(addr, ":")
	return exec.Command("mariadb", "--no-defaults", "-h", host, "-P", port, "-u", testenv.NativeUser,
		"-p"+testenv.NativePassword, "--connect-timeout=20", "--batch", "-e", query)
}

// The proxy's own errors carry server-range codes, so that libmariadb shows
// the proxy's message instead of "ERROR 2027 Malformed packet" (which is
// what it says for an ERR packet with a client-range code, such as 2003 or
// 2013), and drivers read the code and message.
func TestProxyErrorsUseServerCodes(t *testing.T) {
	t.Run("DeadBackend", func(t *testing.T) {
		p := startProxy(t, proxyConfig{backends: []string{testenv.FreeAddr(t)}})
		out, err := mariadbCLI(p.Addr, "SELECT 1").CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), "ERROR 1429 (08S01)", "%s", out)
		require.Contains(t, string(out), "cannot connect to a backend", "%s", out)

		err = nativeDB(t, p.Addr).PingContext(ctxT(t, 30*time.Second))
		var me *mysql.MySQLError
		require.ErrorAs(t, err, &me)
		require.Equal(t, pmysql.ErConnectToForeignDataSource, me.Number)
		require.Equal(t, "08S01", string(me.SQLState[:]))
		require.Contains(t, me.Message, "cannot connect to a backend")
	})

	t.Run("BackendKilledDuringSleep", func(t *testing.T) {
		m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
		p := proxyFor(t, m)
		direct := testenv.OpenDB(t, m.Config(testenv.NativeUser, testenv.NativePassword))
		sleeping := func() bool {
			var n int
			err := direct.QueryRowContext(ctxT(t, 5*time.Second),
				"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(20)'").Scan(&n)
			return err == nil && n > 0
		}

		// The mariadb CLI.
		cmd := mariadbCLI(p.Addr, "SELECT SLEEP(20)")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		require.Eventually(t, sleeping, 20*time.Second, 50*time.Millisecond, "the query never reached the backend")
		m.Kill()
		select {
		case err := <-done:
			require.Error(t, err)
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("mariadb still waiting 30 s after the backend died: %s", out.String())
		}
		require.Contains(t, out.String(), "ERROR 1158 (08S01)", "%s", out.String())
		require.Contains(t, out.String(), "lost connection to backend", "%s", out.String())
		require.NotContains(t, out.String(), "2027")

		// go-sql-driver.
		require.NoError(t, m.Restart())
		direct = testenv.OpenDB(t, m.Config(testenv.NativeUser, testenv.NativePassword))
		db := nativeDB(t, p.Addr)
		require.Eventually(t, func() bool { return db.PingContext(ctxT(t, 5*time.Second)) == nil },
			30*time.Second, 200*time.Millisecond)
		errc := make(chan error, 1)
		go func() {
			var s sql.NullString
			errc <- db.QueryRowContext(context.Background(), "SELECT SLEEP(20)").Scan(&s)
		}()
		require.Eventually(t, sleeping, 20*time.Second, 50*time.Millisecond, "the query never reached the backend")
		m.Kill()
		var err error
		select {
		case err = <-errc:
		case <-time.After(30 * time.Second):
			t.Fatal("client still waiting 30 s after the backend died")
		}
		var me *mysql.MySQLError
		require.ErrorAs(t, err, &me)
		require.Equal(t, pmysql.ErNetReadError, me.Number)
		require.Equal(t, "08S01", string(me.SQLState[:]))
		require.Contains(t, me.Message, "lost connection to backend")
	})
}
