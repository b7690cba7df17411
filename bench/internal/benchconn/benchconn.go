// Package benchconn is the MySQL login that the bench's Go clients share: flags naming
// the server and the account (by default the sysbench account that bench/run.sh
// creates) and a go-sql-driver connector for them.
package benchconn

import (
	"database/sql/driver"
	"flag"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Target is where and as whom a bench client logs in.
type Target struct {
	Addr, User, Password, DB string
}

// Flags registers -addr, -user, -password and -db on fs; the Target holds their
// values once fs is parsed.
func Flags(fs *flag.FlagSet) *Target {
	t := &Target{}
	fs.StringVar(&t.Addr, "addr", "127.0.0.1:3306", "MySQL server or proxy address")
	fs.StringVar(&t.User, "user", "sb", "user")
	fs.StringVar(&t.Password, "password", "sb-pw", "password")
	fs.StringVar(&t.DB, "db", "sbtest", "database")
	return t
}

// Connector logs in to t over TCP; timeout bounds the dial. Its Connect is a plain
// login (dial, handshake, authentication) with no statement after it.
func (t *Target) Connector(timeout time.Duration) (driver.Connector, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = t.User, t.Password, "tcp", t.Addr, t.DB
	cfg.Timeout = timeout
	return mysql.NewConnector(cfg)
}
