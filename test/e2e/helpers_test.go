package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// proxyConfig renders a config for one cluster of backends.
type proxyConfig struct {
	addr      string
	backends  []string
	extra     string // appended to [proxy]
	security  string // body of [security]
	maxConns  int
	closeWait string
	waitFirst string // graceful-wait-before-shutdown
	apiAddr   string // [api] addr; "" disables the API
}

func (c proxyConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[proxy]\naddr = %q\n", c.addr)
	if c.maxConns > 0 {
		fmt.Fprintf(&b, "max-connections = %d\n", c.maxConns)
	}
	if c.waitFirst != "" {
		fmt.Fprintf(&b, "graceful-wait-before-shutdown = %q\n", c.waitFirst)
	}
	if c.closeWait != "" {
		fmt.Fprintf(&b, "graceful-close-conn-timeout = %q\n", c.closeWait)
	}
	b.WriteString(c.extra)
	b.WriteString("\n[log]\nlevel = \"debug\"\n")
	// Tests that want the API set it; the default, 127.0.0.1:3080, would
	// collide between tests.
	b.WriteString(apiTOML(c.apiAddr))
	if c.security != "" {
		b.WriteString("[security]\n" + c.security + "\n")
	}
	quoted := make([]string, len(c.backends))
	for i, a := range c.backends {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	fmt.Fprintf(&b, "[[cluster]]\nname = \"main\"\ninstances = [%s]\n", strings.Join(quoted, ", "))
	return b.String()
}

// startProxy starts the proxy binary with cfg; addr is filled in.
func startProxy(t *testing.T, cfg proxyConfig) *testenv.Proxy {
	t.Helper()
	if cfg.addr == "" {
		cfg.addr = testenv.FreeAddr(t)
	}
	return testenv.StartProxy(t, testenv.BuildProxy(t), cfg.String())
}

// proxyFor starts a proxy in front of one MariaDB.
func proxyFor(t *testing.T, m *testenv.MariaDB) *testenv.Proxy {
	return startProxy(t, proxyConfig{backends: []string{m.Addr()}})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func queryString(t *testing.T, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, q string, args ...any) string {
	t.Helper()
	var s sql.NullString
	require.NoError(t, db.QueryRowContext(ctxT(t, 30*time.Second), q, args...).Scan(&s), q)
	return s.String
}

func mysqlErrCode(err error) uint16 {
	if me, ok := err.(*mysql.MySQLError); ok {
		return me.Number
	}
	return 0
}

// emptyTable creates table name (with the given column list) if needed and
// empties it, so that the shared MariaDB can serve repeated runs.
func emptyTable(t *testing.T, db *sql.DB, name, columns string) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	_, err := db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s) ENGINE=InnoDB", name, columns))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "DELETE FROM "+name)
	require.NoError(t, err)
}
