//go:build soak

package soak

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// ---------------------------------------------------------------------------
// The counting client: each transaction inserts (client, seq) into
// soak_ledger and adds one to the client's row of soak_counter, then
// commits. What COMMIT answered is remembered by sequence number; at the end
// the backends must hold every acknowledged one, none that failed earlier,
// and a counter equal to the rows.

const (
	counterWorkers = 2
	counterPause   = 20 * time.Millisecond
	// stmtTimeout is the client's read/write timeout: a statement that hangs
	// this long is an error of kind "timeout" (a hang), not a wait forever.
	stmtTimeout = 30 * time.Second
)

var schema = []string{
	"CREATE TABLE IF NOT EXISTS soak_ledger (client INT NOT NULL, seq INT NOT NULL, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (client, seq)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS soak_counter (client INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB",
}

type counterClient struct {
	id                  int
	name, cluster, prox string
	db                  *sql.DB

	seq      atomic.Int64
	ops      atomic.Int64
	lastOK   atomic.Int64 // unix ns
	maxStall atomic.Int64 // ns

	mu       sync.Mutex
	outcomes map[int]Outcome
	errs     []ClientError
}

func newCounter(id int, cluster, proxyName, addr string) (*counterClient, error) {
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	cfg.InterpolateParams = true
	cfg.ReadTimeout, cfg.WriteTimeout = stmtTimeout, stmtTimeout
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(counterWorkers)
	db.SetMaxIdleConns(counterWorkers)
	return &counterClient{id: id, name: fmt.Sprintf("counter/%s/%s", cluster, proxyName), cluster: cluster, prox: proxyName, db: db, outcomes: map[int]Outcome{}}, nil
}

// run loops until stop is closed; a transaction in progress then finishes.
func (c *counterClient) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	c.lastOK.Store(time.Now().UnixNano())
	for range counterWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				seq := int(c.seq.Add(1))
				o, err := c.txn(seq)
				c.mu.Lock()
				c.outcomes[seq] = o
				if err != nil {
					c.errs = append(c.errs, classify(err))
				}
				c.mu.Unlock()
				if err == nil {
					c.ops.Add(1)
					now := time.Now().UnixNano()
					if gap := now - c.lastOK.Swap(now); gap > c.maxStall.Load() {
						c.maxStall.Store(gap)
					}
				}
				time.Sleep(counterPause)
			}
		}()
	}
}

func (c *counterClient) txn(seq int) (Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*stmtTimeout)
	defer cancel()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return Failed, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO soak_ledger (client, seq) VALUES (?, ?)", c.id, seq); err != nil {
		_ = tx.Rollback()
		return Failed, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO soak_counter (client, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1", c.id); err != nil {
		_ = tx.Rollback()
		return Failed, err
	}
	if err := tx.Commit(); err != nil {
		return Unknown, err
	}
	return Acked, nil
}

func (c *counterClient) stream() Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stream{Name: c.name, Tool: "counter", Cluster: c.cluster, Proxy: c.prox, Ops: c.ops.Load(),
		Errors: append([]ClientError(nil), c.errs...), MaxStall: time.Duration(c.maxStall.Load()), ErrorTotal: -1}
}

// reset forgets the warm-up's errors and stalls; its transactions stay in
// the ledger check.
func (c *counterClient) reset() {
	c.mu.Lock()
	c.errs = nil
	c.mu.Unlock()
	c.ops.Store(0)
	c.maxStall.Store(0)
}

// classify turns a Go client's error into a ClientError.
func classify(err error) ClientError {
	e := ClientError{At: time.Now(), Msg: err.Error()}
	var me *mysql.MySQLError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		e.Code, e.Msg = int(me.Number), me.Message
		e.Kind = ErrServer
		if !ServerRange(e.Code) {
			e.Kind = ErrClientCode
		}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		e.Kind = ErrTimeout
	default:
		e.Kind = ErrDisconnect
	}
	return e
}

// ---------------------------------------------------------------------------
// Idle pooled connections: logged in, then left alone until the end, when
// each is pinged once.

type idlePool struct {
	name, cluster, prox, addr string
	n                         int
	db                        *sql.DB
	conns                     []*sql.Conn
	// refused counts failed attempts to open a connection (retried).
	refused atomic.Int64
}

func openIdle(cluster, proxyName, addr string, n int) (*idlePool, error) {
	p := &idlePool{name: fmt.Sprintf("idle/%s/%s", cluster, proxyName), cluster: cluster, prox: proxyName, addr: addr, n: n}
	return p, p.open()
}

func (p *idlePool) open() error {
	cfg := testenv.MySQLConfig(p.addr, testenv.NativeUser, testenv.NativePassword)
	cfg.ReadTimeout, cfg.WriteTimeout = stmtTimeout, stmtTimeout
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	p.db = sql.OpenDB(connector)
	p.db.SetMaxOpenConns(p.n)
	p.db.SetMaxIdleConns(p.n)
	conns := make([]*sql.Conn, p.n)
	errs := make(chan error, p.n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range p.n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
			defer cancel()
			// Like a pool, retry a refused login for a while: a proxy
			// that just started answers ERR 1429 until the topology of an
			// etcd-discovered cluster is loaded.
			for {
				c, err := p.db.Conn(ctx)
				if err == nil {
					if err = c.PingContext(ctx); err != nil {
						_ = c.Close()
					}
				}
				if err == nil {
					conns[i] = c
					return
				}
				p.refused.Add(1)
				if ctx.Err() != nil {
					errs <- err
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for _, c := range conns {
		if c != nil {
			p.conns = append(p.conns, c)
		}
	}
	if err := <-errs; err != nil {
		return fmt.Errorf("%s: %d of %d idle connections failed to open, first: %w", p.name, p.n-len(p.conns), p.n, err)
	}
	return nil
}

// reopen drops every connection (the proxy they went through restarted)
// and opens them again, as a pool does when its connections broke.
func (p *idlePool) reopen() error {
	p.close()
	p.conns = nil
	return p.open()
}

func (p *idlePool) check() IdleResult {
	r := IdleResult{Name: p.name, Opened: len(p.conns), RetriedOpens: p.refused.Load()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, c := range p.conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), stmtTimeout)
			defer cancel()
			err := c.PingContext(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				r.Alive++
			} else if r.First == "" {
				r.First = err.Error()
			}
		}()
	}
	wg.Wait()
	return r
}

func (p *idlePool) close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
	if p.db != nil {
		_ = p.db.Close()
	}
}

// ---------------------------------------------------------------------------
// sysbench

type sysbenchProc struct {
	name, cluster, prox string
	logPath             string
	started             time.Time
	cmd                 *exec.Cmd
	done                chan error
}

const (
	sbTables    = 2
	sbTableSize = 10000
	sbThreads   = 4
)

func sysbenchArgs(script, addr string, extra ...string) []string {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{script, "--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=" + testenv.NativeUser, "--mysql-password=" + testenv.NativePassword, "--mysql-db=" + testenv.TestDatabase,
		"--tables=" + strconv.Itoa(sbTables), "--table-size=" + strconv.Itoa(sbTableSize)}
	return append(args, extra...)
}

// sysbenchPrepare creates the oltp tables on one backend directly.
func sysbenchPrepare(dir string, backend *testenv.MariaDB) error {
	cmd := exec.Command("sysbench", sysbenchArgs("oltp_read_write", backend.Addr(), "prepare")...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysbench prepare on %s: %w\n%s", backend.Addr(), err, out)
	}
	return nil
}

func startSysbench(dir, script, cluster, proxyName, addr string, d time.Duration, rate int) (*sysbenchProc, error) {
	s := &sysbenchProc{name: fmt.Sprintf("sysbench/%s/%s", cluster, proxyName), cluster: cluster, prox: proxyName,
		logPath: filepath.Join(dir, fmt.Sprintf("sysbench-%s-%s-%d.log", cluster, proxyName, time.Now().UnixNano())), done: make(chan error, 1)}
	f, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command("sysbench", sysbenchArgs(script, addr,
		"--threads="+strconv.Itoa(sbThreads), "--rate="+strconv.Itoa(rate), "--time="+strconv.Itoa(int(d.Seconds())),
		"--report-interval=1", "--mysql-ignore-errors=all", "run")...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	go func() {
		err := s.cmd.Wait()
		_ = f.Close()
		s.done <- err
	}()
	return s, nil
}

// wait waits for sysbench to end by itself, or kills it (by its pid) after
// limit.
func (s *sysbenchProc) wait(limit time.Duration) error {
	select {
	case err := <-s.done:
		return err
	case <-time.After(limit):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s did not end %v after it was due; killed", s.name, limit)
	}
}

func (s *sysbenchProc) stream() (Stream, SysbenchRun, error) {
	f, err := os.Open(s.logPath)
	if err != nil {
		return Stream{}, SysbenchRun{}, err
	}
	defer f.Close()
	run, err := ParseSysbench(f, s.started)
	st := Stream{Name: s.name, Tool: "sysbench", Cluster: s.cluster, Proxy: s.prox, Ops: run.Transactions,
		Errors: run.Errors, MaxStall: run.MaxStall(), ErrorTotal: run.Ignored}
	return st, run, err
}
