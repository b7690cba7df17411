package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

const routeReadyTimeout = 60 * time.Second

// routeCheck is one way of reaching a cluster through the proxy.
type routeCheck struct {
	what    string // "east, the default cluster"
	addr    string
	user    string
	cluster string // the backend names it must land on start with cluster + "-"
}

// verifyRoutes logs in through every route until each lands on its cluster:
// the proxy listens before its clusters' etcd has answered, and "ready" should
// mean that the printed commands work. It returns the backend each reached.
func verifyRoutes(ctx context.Context, checks []routeCheck) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, routeReadyTimeout)
	defer cancel()
	landed := make([]string, len(checks))
	for i, c := range checks {
		var lastErr error
		for {
			name, err := queryBackend(ctx, c.addr, c.user)
			if err == nil && strings.HasPrefix(name, c.cluster+"-") {
				landed[i] = name
				break
			}
			if err == nil {
				err = fmt.Errorf("landed on %s, not in cluster %s", name, c.cluster)
			}
			lastErr = err
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%s (%s as %s) does not work: %v", c.what, c.addr, c.user, lastErr)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return landed, nil
}

// queryBackend runs SELECT name FROM backend in a fresh session.
func queryBackend(ctx context.Context, addr, user string) (string, error) {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.User = user
	cfg.Passwd = appPassword
	cfg.DBName = appDatabase
	cfg.Timeout = 5 * time.Second
	cfg.Logger = quietLogger{} // a proxy still connecting to etcd makes the driver log noise
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var name string
	err = db.QueryRowContext(qctx, "SELECT name FROM backend").Scan(&name)
	return name, err
}

type quietLogger struct{}

func (quietLogger) Print(...any) {}
