package mysqldouble

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

var testUsers = map[string]string{"alice": "s3cret", "bob": "hunter2", "nopw": ""}

func startDefault(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{Users: testUsers, RSAKey: sharedKey()}
	if mutate != nil {
		mutate(&cfg)
	}
	return Start(t, cfg)
}

func TestRSAFullAuthThenFastAuth(t *testing.T) {
	s := startDefault(t, nil)
	cfg := driverConfig(t, s, "alice", "s3cret")

	// No TLS and no configured key: the driver asks for the public key (0x02).
	require.NoError(t, login(t, cfg))
	require.Equal(t, Stats{Connections: 1, FullAuthRSA: 1, PublicKeyRequests: 1}, s.Stats())

	require.NoError(t, login(t, cfg))
	require.Equal(t, Stats{Connections: 2, FullAuthRSA: 1, PublicKeyRequests: 1, FastAuthOK: 1}, s.Stats())
}

func TestRSAFullAuthWithConfiguredPublicKey(t *testing.T) {
	s := startDefault(t, nil)
	block, _ := pem.Decode(s.PublicKeyPEM())
	require.NotNil(t, block)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	require.NoError(t, err)
	const keyName = "mysqldouble-test-key"
	mysql.RegisterServerPubKey(keyName, pub.(*rsa.PublicKey))
	t.Cleanup(func() { mysql.DeregisterServerPubKey(keyName) })

	cfg := driverConfig(t, s, "bob", "hunter2")
	cfg.ServerPubKey = keyName
	require.NoError(t, login(t, cfg))
	require.Equal(t, Stats{Connections: 1, FullAuthRSA: 1}, s.Stats(), "a known key needs no public-key request")
}

func TestTLSFullAuthAfterFlush(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	s := startDefault(t, func(c *Config) { c.TLS = serverTLS })

	plain := driverConfig(t, s, "alice", "s3cret")
	require.NoError(t, login(t, plain))
	require.NoError(t, login(t, plain))
	require.Equal(t, int64(1), s.Stats().FastAuthOK)

	s.FlushAuthCache()
	secure := driverConfig(t, s, "alice", "s3cret")
	secure.TLS = clientTLS
	require.NoError(t, login(t, secure))
	require.Equal(t, Stats{Connections: 3, FullAuthRSA: 1, PublicKeyRequests: 1, FastAuthOK: 1, FullAuthTLS: 1}, s.Stats())

	// The cache filled by the TLS login serves the next login, over either transport.
	require.NoError(t, login(t, secure))
	require.NoError(t, login(t, plain))
	require.Equal(t, Stats{Connections: 5, FullAuthRSA: 1, PublicKeyRequests: 1, FastAuthOK: 3, FullAuthTLS: 1}, s.Stats())
}

func TestAccessDenied(t *testing.T) {
	s := startDefault(t, nil)
	require.NoError(t, login(t, driverConfig(t, s, "alice", "s3cret"))) // warm alice's cache entry

	for _, tc := range []struct {
		name, user, password, using string
	}{
		{name: "wrong password, cold cache", user: "bob", password: "nope", using: "YES"},
		{name: "wrong password, warm cache", user: "alice", password: "nope", using: "YES"},
		{name: "unknown user", user: "mallory", password: "s3cret", using: "YES"},
		{name: "empty password for account with password", user: "alice", password: "", using: "NO"},
		{name: "password for account without password", user: "nopw", password: "x", using: "YES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().Failures
			err := login(t, driverConfig(t, s, tc.user, tc.password))
			me := requireMySQLError(t, err, codeAccessDenied, sqlStateAccessDenied)
			require.Equal(t, fmt.Sprintf("Access denied for user '%s'@'127.0.0.1' (using password: %s)", tc.user, tc.using), me.Message)
			require.Equal(t, before+1, s.Stats().Failures)
		})
	}
	// The failed attempts did not evict or poison alice's entry.
	require.NoError(t, login(t, driverConfig(t, s, "alice", "s3cret")))
	require.Equal(t, int64(1), s.Stats().FastAuthOK)
}

func TestEmptyPasswordAccount(t *testing.T) {
	s := startDefault(t, nil)
	require.NoError(t, login(t, driverConfig(t, s, "nopw", "")))
	require.Equal(t, Stats{Connections: 1}, s.Stats(), "an empty password needs no exchange")
}

func TestNativeDefaultPluginSwitchesToCachingSHA2(t *testing.T) {
	s := startDefault(t, func(c *Config) { c.DefaultAuthPlugin = "mysql_native_password" })
	cfg := driverConfig(t, s, "alice", "s3cret")

	require.NoError(t, login(t, cfg))
	require.Equal(t, Stats{Connections: 1, AuthSwitches: 1, FullAuthRSA: 1, PublicKeyRequests: 1}, s.Stats())

	// The switch carries a fresh nonce; fast auth must verify against that one.
	require.NoError(t, login(t, cfg))
	require.Equal(t, Stats{Connections: 2, AuthSwitches: 2, FullAuthRSA: 1, PublicKeyRequests: 1, FastAuthOK: 1}, s.Stats())

	err := login(t, driverConfig(t, s, "alice", "wrong"))
	requireMySQLError(t, err, codeAccessDenied, sqlStateAccessDenied)
	require.Equal(t, int64(1), s.Stats().Failures)
}

func TestQueries(t *testing.T) {
	s := startDefault(t, nil)
	ctx := context.Background()

	db := openDB(t, driverConfig(t, s, "alice", "s3cret"))
	require.NoError(t, db.PingContext(ctx))

	var one int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)

	var echoed string
	require.NoError(t, db.QueryRowContext(ctx, "select 'hello world';").Scan(&echoed))
	require.Equal(t, "hello world", echoed)

	var user string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user))
	require.Equal(t, "alice@%", user)

	var dbName sql.NullString
	require.NoError(t, db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName))
	require.False(t, dbName.Valid, "no database selected yet")

	res, err := db.ExecContext(ctx, "SET autocommit = 1")
	require.NoError(t, err)
	affected, err := res.RowsAffected()
	require.NoError(t, err)
	require.Zero(t, affected)

	// USE sticks to one connection, so pin one.
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	_, err = conn.ExecContext(ctx, "USE `shop`")
	require.NoError(t, err)
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName))
	require.Equal(t, sql.NullString{String: "shop", Valid: true}, dbName)

	withDB := driverConfig(t, s, "bob", "hunter2")
	withDB.DBName = "inventory"
	db2 := openDB(t, withDB)
	require.NoError(t, db2.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName))
	require.Equal(t, sql.NullString{String: "inventory", Valid: true}, dbName)

	// A driver that asks the server for max_allowed_packet gets a number.
	ask := driverConfig(t, s, "bob", "hunter2")
	ask.MaxAllowedPacket = 0
	require.NoError(t, login(t, ask))
}

func TestConcurrentLogins(t *testing.T) {
	s := startDefault(t, nil)
	const workers, rounds = 6, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		user, password := "alice", "s3cret"
		if w%2 == 1 {
			user, password = "bob", "hunter2"
		}
		cfg := driverConfig(t, s, user, password)
		wg.Go(func() {
			for range rounds {
				errs <- login(t, cfg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := s.Stats()
	require.Equal(t, int64(workers*rounds), st.Connections)
	require.Equal(t, int64(workers*rounds), st.FastAuthOK+st.FullAuthRSA)
	require.Equal(t, st.FullAuthRSA, st.PublicKeyRequests)
	require.GreaterOrEqual(t, st.FullAuthRSA, int64(2), "each user needs one full auth at least")
	require.Zero(t, st.Failures)
}

func TestGeneratedKeyAndDefaults(t *testing.T) {
	s := Start(t, Config{Users: map[string]string{"carol": "pw"}})
	require.NoError(t, login(t, driverConfig(t, s, "carol", "pw")))
	require.Equal(t, int64(1), s.Stats().FullAuthRSA)

	rc := dialRaw(t, s)
	require.Equal(t, DefaultServerVersion, rc.version)
	require.Equal(t, pluginCachingSHA2, rc.plugin)
	require.Zero(t, rc.caps&capSSL, "no TLS configured, no CLIENT_SSL")
}

func TestNewRejectsUnknownPlugin(t *testing.T) {
	_, err := New(Config{DefaultAuthPlugin: "sha256_password", RSAKey: sharedKey()})
	require.Error(t, err)
}
