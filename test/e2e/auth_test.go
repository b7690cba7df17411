package e2e

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	pmysql "github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/test/mysqldouble"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestAuthPassThrough logs in through the proxy with each plugin MariaDB
// offers: the proxy never knows a password, so success proves the backend
// challenged the client directly.
func TestAuthPassThrough(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	cases := []struct {
		name, user, password string
	}{
		{"mysql_native_password", testenv.NativeUser, testenv.NativePassword},
		{"client_ed25519", testenv.EdUser, testenv.EdPassword},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.user == testenv.EdUser {
				m.RequireEd25519(t)
			}
			db := testenv.OpenDB(t, testenv.MySQLConfig(p.Addr, tc.user, tc.password))
			require.Equal(t, tc.user+"@%", queryString(t, db, "SELECT CURRENT_USER()"))
			require.Equal(t, testenv.TestDatabase, queryString(t, db, "SELECT DATABASE()"))
		})
	}
	t.Run("wrong password gets the backend's 1045", func(t *testing.T) {
		db := testenv.OpenDB(t, testenv.MySQLConfig(p.Addr, testenv.NativeUser, "wrong"))
		err := db.PingContext(ctxT(t, 10*time.Second))
		require.Error(t, err)
		require.Equal(t, uint16(1045), mysqlErrCode(err), "%v", err)
		require.Contains(t, err.Error(), "Access denied for user 'native'")
	})
	t.Run("unknown user", func(t *testing.T) {
		db := testenv.OpenDB(t, testenv.MySQLConfig(p.Addr, "nobody", "x"))
		err := db.PingContext(ctxT(t, 10*time.Second))
		require.Equal(t, uint16(1045), mysqlErrCode(err), "%v", err)
	})
}

// TestTLSBothSides uses TLS from the client to the proxy and from the proxy
// to MariaDB, and checks MariaDB saw an encrypted session.
func TestTLSBothSides(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	require.NotNil(t, m.Certs, "shared MariaDB runs with TLS")
	c := m.Certs
	for _, requireTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("require-backend-tls=%v", requireTLS), func(t *testing.T) {
			p := startProxy(t, proxyConfig{
				backends: []string{m.Addr()},
				security: fmt.Sprintf("server-tls = { cert = %q, key = %q }\nbackend-tls = { ca = %q }\nrequire-backend-tls = %v\n",
					c.ServerCert, c.ServerKey, c.CAFile, requireTLS),
			})
			cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
			cfg.TLSConfig = c.RegisterMySQLTLS(t)
			db := testenv.OpenDB(t, cfg)
			conn, err := db.Conn(ctxT(t, 10*time.Second))
			require.NoError(t, err)
			defer conn.Close()
			// The backend session is encrypted...
			require.NotEmpty(t, queryString(t, conn, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"))
			require.Equal(t, "1", queryString(t, conn, "SELECT 1"))
		})
	}
	t.Run("server-tls ca requires a client certificate", func(t *testing.T) {
		p := startProxy(t, proxyConfig{
			backends: []string{m.Addr()},
			security: fmt.Sprintf("server-tls = { cert = %q, key = %q, ca = %q }\n", c.ServerCert, c.ServerKey, c.CAFile),
		})
		cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
		cfg.TLSConfig = c.RegisterMySQLTLS(t) // presents the client certificate
		require.Equal(t, "1", queryString(t, testenv.OpenDB(t, cfg), "SELECT 1"))

		noCert := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
		noCert.TLS = &tls.Config{RootCAs: c.CertPool(), ServerName: "127.0.0.1"}
		err := testenv.OpenDB(t, noCert).PingContext(ctxT(t, 10*time.Second))
		require.Error(t, err, "a client without a certificate is not let in")
	})
	t.Run("client without TLS is refused when the proxy requires it of nobody", func(t *testing.T) {
		// Without server-tls the proxy does not offer TLS; a client that
		// insists gets a clear error instead of a plaintext session.
		p := proxyFor(t, m)
		cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
		cfg.TLSConfig = c.RegisterMySQLTLS(t)
		err := testenv.OpenDB(t, cfg).PingContext(ctxT(t, 10*time.Second))
		require.Error(t, err)
		require.Contains(t, strings.ToLower(err.Error()), "tls")
	})
}

// TestCachingSha2 runs caching_sha2_password through the real binary. Debian's
// MariaDB has no such plugin, so the backend is test/mysqldouble, a
// protocol-level double of MySQL 8's server side.
func TestCachingSha2(t *testing.T) {
	certs := testenv.NewCerts(t, t.TempDir())
	for _, backendTLS := range []bool{false, true} {
		for _, clientTLS := range []bool{false, true} {
			t.Run(fmt.Sprintf("client-tls=%v/backend-tls=%v", clientTLS, backendTLS), func(t *testing.T) {
				dcfg := mysqldouble.Config{Users: map[string]string{"sha2": "sha2-pw"}}
				sec := ""
				if backendTLS {
					dcfg.TLS = certs.ServerTLSConfig()
					sec += fmt.Sprintf("backend-tls = { ca = %q }\n", certs.CAFile)
				}
				if clientTLS {
					sec += fmt.Sprintf("server-tls = { cert = %q, key = %q }\n", certs.ServerCert, certs.ServerKey)
				}
				d := mysqldouble.Start(t, dcfg)
				p := startProxy(t, proxyConfig{backends: []string{d.Addr()}, security: sec})
				cfg := testenv.MySQLConfig(p.Addr, "sha2", "sha2-pw")
				cfg.DBName = ""
				if clientTLS {
					cfg.TLSConfig = certs.RegisterMySQLTLS(t)
				}
				// First login: full authentication; second: fast path.
				for i := 0; i < 2; i++ {
					db := testenv.OpenDB(t, cfg)
					require.Equal(t, "1", queryString(t, db, "SELECT 1"))
					require.NoError(t, db.Close())
				}
				st := d.Stats()
				require.Equal(t, int64(1), st.FastAuthOK, "second login used the fast path")
				require.Equal(t, int64(1), st.FullAuthTLS+st.FullAuthRSA, "first login did full auth")
				if backendTLS {
					require.Equal(t, int64(1), st.FullAuthTLS)
				} else {
					require.Equal(t, int64(1), st.FullAuthRSA)
				}

				bad := testenv.MySQLConfig(p.Addr, "sha2", "wrong")
				bad.DBName, bad.TLSConfig = "", cfg.TLSConfig
				err := testenv.OpenDB(t, bad).PingContext(ctxT(t, 10*time.Second))
				require.Equal(t, uint16(1045), mysqlErrCode(err), "%v", err)
			})
		}
	}
}

// TestCompression negotiates zlib with the client; the proxy compresses
// towards MariaDB separately.
func TestCompression(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	cfg := testenv.MySQLConfig(p.Addr, testenv.NativeUser, testenv.NativePassword)
	require.NoError(t, cfg.Apply(mysql.EnableCompression(true)))
	db := testenv.OpenDB(t, cfg)
	conn, err := db.Conn(ctxT(t, 10*time.Second))
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "ON", queryString(t, conn, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Compression'"))
	big := queryString(t, conn, "SELECT REPEAT('abc', 200000)")
	require.Len(t, big, 600000)
}

// TestZstdClient negotiates zstd with the proxy. MariaDB has no zstd, so the
// proxy compresses towards it with zlib: each side gets what it supports.
func TestZstdClient(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	p := proxyFor(t, m)
	c, err := dialRawCompressed(t, p.Addr, testenv.NativeUser, testenv.NativePassword, testenv.TestDatabase, pmysql.CompressZstd)
	require.NoError(t, err)
	require.Equal(t, [][]string{{"ON"}}, c.query("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Compression'"))
	rows := c.query("SELECT REPEAT('z', 300000), seq FROM seq_1_to_3")
	require.Len(t, rows, 3)
	require.Len(t, rows[2][0], 300000)
	require.Equal(t, "3", rows[2][1])
}
