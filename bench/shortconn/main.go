// Command shortconn measures short connections: it opens connections on a fixed
// schedule (-rate per second, open loop) shared by -threads client threads; each
// connection logs in, runs one query (SELECT 1), reads its result and quits
// (COM_QUIT, then close). bench/run.sh runs it against MariaDB directly, HAProxy
// and Switchyard, and divides each proxy's CPU by the connections completed.
//
// It prints one line on stdout, read by bench/run.sh:
//
//	conns=1998 failed=2 secs=10.00 rate=199.8 late=0 p50_ms=1.234 p95_ms=... p99_ms=... login_p50_ms=... login_p95_ms=... login_p99_ms=...
//
// p50/p95/p99 are nearest-rank percentiles, over the completed connections, of the
// time from the start of the TCP dial to the query's result fully read; login_* of
// the time from the dial to the end of authentication (go-sql-driver's
// Connector.Connect: dial, handshake, auth; no other statement). late counts the
// connections that started more than one interval after their slot because every
// thread was busy (then the achieved rate falls short of -rate). The first errors go
// to stderr; the exit status is 1 when a connection failed.
//
//	go run ./bench/shortconn -addr 127.0.0.1:3306 -rate 200 -threads 8 -duration 10s
package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchconn"
	"github.com/switchyard-db/switchyard/bench/internal/benchstat"
)

// maxErrors is how many errors are printed; the rest are only counted.
const maxErrors = 5

func main() {
	target := benchconn.Flags(flag.CommandLine)
	rate := flag.Float64("rate", 200, "new connections per second")
	threads := flag.Int("threads", 8, "client threads sharing the schedule")
	duration := flag.Duration("duration", 10*time.Second, "how long to open connections")
	query := flag.String("query", "SELECT 1", "the query each connection runs once")
	timeout := flag.Duration("timeout", 5*time.Second, "limit for one connection: dial, login, query")
	flag.Parse()
	n := int(*rate * duration.Seconds())
	if *rate <= 0 || *threads < 1 || n < 1 {
		fmt.Fprintln(os.Stderr, "shortconn: need -rate > 0, -threads >= 1 and at least one connection in -duration")
		os.Exit(2)
	}

	connector, err := target.Connector(*timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shortconn:", err)
		os.Exit(2)
	}

	interval := time.Duration(float64(time.Second) / *rate)
	results := make([]sample, n)
	var (
		next, late atomic.Int64
		wg         sync.WaitGroup
	)
	start := time.Now()
	for range *threads {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				slot := start.Add(time.Duration(i) * interval)
				if wait := time.Until(slot); wait > 0 {
					time.Sleep(wait)
				} else if -wait > interval {
					late.Add(1)
				}
				results[i] = once(connector, *query, *timeout)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	printed := 0
	for i, r := range results {
		if r.err != nil && printed < maxErrors {
			fmt.Fprintf(os.Stderr, "shortconn: connection %d: %v\n", i, r.err)
			printed++
		}
	}
	s := summarize(results, elapsed)
	s.late = int(late.Load())
	fmt.Println(s)
	if s.failed > 0 {
		os.Exit(1)
	}
}

// sample is one connection: its login and connect-to-first-result times, or why
// it failed.
type sample struct {
	login, first time.Duration
	err          error
}

// once opens one connection, runs query, reads its result and quits.
func once(c driver.Connector, query string, timeout time.Duration) sample {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	conn, err := c.Connect(ctx)
	if err != nil {
		return sample{err: fmt.Errorf("login: %w", err)}
	}
	login := time.Since(t0)
	err = queryOnce(ctx, conn, query)
	first := time.Since(t0)
	// Close sends COM_QUIT, then closes the socket.
	if cerr := conn.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("quit: %w", cerr)
	}
	if err != nil {
		return sample{err: err}
	}
	return sample{login: login, first: first}
}

// queryOnce runs query on conn and reads its whole result.
func queryOnce(ctx context.Context, conn driver.Conn, query string) error {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return errors.New("query: the driver's connection cannot run a query directly")
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err = rows.Next(dest); err != nil {
			break
		}
	}
	cerr := rows.Close()
	if err != io.EOF {
		return fmt.Errorf("query: reading the result: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("query: %w", cerr)
	}
	return nil
}

// summary is what one run prints.
type summary struct {
	conns, failed, late int
	elapsed             time.Duration
	first, login        [3]time.Duration // p50, p95, p99
}

var percentiles = [3]float64{50, 95, 99}

// summarize computes the percentiles over the connections that completed.
func summarize(results []sample, elapsed time.Duration) summary {
	s := summary{elapsed: elapsed}
	var first, login []time.Duration
	for _, r := range results {
		if r.err != nil {
			s.failed++
			continue
		}
		first = append(first, r.first)
		login = append(login, r.login)
	}
	s.conns = len(first)
	slices.Sort(first)
	slices.Sort(login)
	for i, p := range percentiles {
		s.first[i] = benchstat.Percentile(first, p)
		s.login[i] = benchstat.Percentile(login, p)
	}
	return s
}

// String is the one line bench/run.sh parses: space-separated key=value pairs.
func (s summary) String() string {
	rate := 0.0
	if s.elapsed > 0 {
		rate = float64(s.conns) / s.elapsed.Seconds()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "conns=%d failed=%d secs=%.2f rate=%.1f late=%d", s.conns, s.failed, s.elapsed.Seconds(), rate, s.late)
	for i, p := range percentiles {
		fmt.Fprintf(&b, " p%.0f_ms=%.3f", p, ms(s.first[i]))
	}
	for i, p := range percentiles {
		fmt.Fprintf(&b, " login_p%.0f_ms=%.3f", p, ms(s.login[i]))
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
