package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// The account and database every backend has, the same on all of them so a
// client cannot tell where it landed except by reading app.backend.
const (
	appUser     = "app"
	appPassword = "app-pw"
	appDatabase = "app"
)

const seedTimeout = 30 * time.Second

// backend is one MariaDB server of a cluster.
type backend struct {
	name    string // east-1: also the row of app.backend
	zone    string // its labels.zone in the registration
	dir     string
	db      *testenv.MariaDB
	reg     *registration
	regInfo string // the info value read back from etcd
}

// launchBackends starts every backend at once (two cores make four
// installs in parallel about twice as fast as in a row) and seeds each. On
// error the ones that started are closed again.
func launchBackends(ctx context.Context, bs []*backend) error {
	var wg sync.WaitGroup
	errs := make([]error, len(bs))
	for i, b := range bs {
		wg.Go(func() {
			m, err := testenv.LaunchMariaDB(b.dir, testenv.MariaDBOptions{
				MaxConnections: 200,
				// Out of the terminal's process group: Ctrl-C reaches only the
				// playground, which then stops the servers after the proxy.
				OwnProcessGroup: true,
			})
			if err != nil {
				errs[i] = fmt.Errorf("MariaDB %s: %w", b.name, err)
				return
			}
			b.db = m
			if err := seed(ctx, m, b.name); err != nil {
				errs[i] = fmt.Errorf("MariaDB %s: %w (log: %s)", b.name, err, m.LogPath)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = closeBackends(bs, nil)
		return err
	}
	return nil
}

// seed creates the app account, the app database and app.backend holding the
// server's name, as root over the unix socket.
func seed(ctx context.Context, m *testenv.MariaDB, name string) error {
	connector, err := mysql.NewConnector(m.RootSocketConfig())
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	stmts := []string{
		"CREATE DATABASE " + appDatabase,
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", appUser, appPassword),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", appDatabase, appUser),
		"CREATE TABLE " + appDatabase + ".backend (name VARCHAR(64) NOT NULL PRIMARY KEY)",
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+appDatabase+".backend VALUES (?)", name); err != nil {
		return fmt.Errorf("insert into app.backend: %w", err)
	}
	return nil
}

// closeBackends stops every started server at once (each may take a few
// seconds to flush); a close of hurry kills those still running. It returns
// what went wrong, one error per server.
func closeBackends(bs []*backend, hurry <-chan struct{}) error {
	var wg sync.WaitGroup
	errs := make([]error, len(bs))
	for i, b := range bs {
		if b.db == nil {
			continue
		}
		wg.Go(func() {
			done := make(chan error, 1)
			go func() { done <- b.db.Close() }()
			var err error
			select {
			case err = <-done:
			case <-hurry:
				b.db.Kill()
				err = <-done
			}
			if err != nil {
				errs[i] = fmt.Errorf("MariaDB %s (pid %d): %w", b.name, b.db.Pid(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
