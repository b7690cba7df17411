package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Accounts every StartMariaDB server has. All have ALL PRIVILEGES on *.*; only root2 may grant.
const (
	TestDatabase = "test"

	NativeUser     = "native" // mysql_native_password
	NativePassword = "native-pw"
	EdUser         = "ed" // ed25519 (client_ed25519); see MariaDB.Ed25519Err
	EdPassword     = "ed-pw"
	AdminUser      = "root2" // for admin work over TCP (KILL, SET GLOBAL, ...)
	AdminPassword  = "root-pw"
)

// createUsers runs as root over the socket. The ed25519 account is best effort: its failure
// lands in Ed25519Err instead of failing the start, so tests that do not need it still run.
func (m *MariaDB) createUsers(deadline time.Time) error {
	connector, err := mysql.NewConnector(rootSocketConfig(m.Socket))
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	// Anonymous accounts would shadow 'native'@'%' for some client hosts.
	var anon []string
	rows, err := db.QueryContext(ctx, "SELECT host FROM mysql.user WHERE user = ''")
	if err != nil {
		return err
	}
	for rows.Next() {
		var host string
		if err := rows.Scan(&host); err != nil {
			rows.Close()
			return err
		}
		anon = append(anon, host)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	stmts := make([]string, 0, len(anon)+6)
	for _, host := range anon {
		stmts = append(stmts, fmt.Sprintf("DROP USER ''@'%s'", host))
	}
	stmts = append(stmts,
		"CREATE DATABASE IF NOT EXISTS "+TestDatabase,
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED VIA mysql_native_password USING PASSWORD('%s')", NativeUser, NativePassword),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'", NativeUser),
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", AdminUser, AdminPassword),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION", AdminUser),
	)
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	m.Ed25519Err = createEdUser(ctx, db)
	return nil
}

func createEdUser(ctx context.Context, db *sql.DB) error {
	var loaded int
	err := db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.plugins WHERE plugin_name = 'ed25519' AND plugin_status = 'ACTIVE'").Scan(&loaded)
	if err != nil {
		return fmt.Errorf("check ed25519 plugin: %w", err)
	}
	if loaded == 0 {
		if _, err := db.ExecContext(ctx, "INSTALL SONAME 'auth_ed25519'"); err != nil {
			return fmt.Errorf("INSTALL SONAME 'auth_ed25519': %w", err)
		}
	}
	for _, s := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED VIA ed25519 USING PASSWORD('%s')", EdUser, EdPassword),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'", EdUser),
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// RequireEd25519 fails the test, quoting the reason, when the ed account could not be created.
func (m *MariaDB) RequireEd25519(t testing.TB) {
	t.Helper()
	if m.Ed25519Err != nil {
		t.Fatalf("testenv: MariaDB has no ed25519 account: %v", m.Ed25519Err)
	}
}
