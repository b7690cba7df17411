// Command idleconns opens N authenticated MySQL sessions and keeps them idle, so that
// bench/run.sh can measure the resident memory a proxy spends per idle session.
//
// It prints "OPENED <k> <seconds>" on stdout once it has opened as many sessions as it
// could (k < n means some failed; the first error goes to stderr), then holds them until
// stdin reaches EOF (unless -until-eof=false) or it receives SIGINT/SIGTERM, and
// closes them all (with -ping, after pinging each one and printing "PINGED <ok> <failed>").
package main

import (
	"context"
	"database/sql/driver"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchconn"
)

func main() {
	target := benchconn.Flags(flag.CommandLine)
	n := flag.Int("n", 5000, "number of idle sessions to open")
	parallel := flag.Int("parallel", 32, "concurrent connection attempts")
	timeout := flag.Duration("timeout", 10*time.Second, "per-connection dial+auth timeout")
	ping := flag.Bool("ping", false, "ping every session before closing it and print \"PINGED <ok> <failed>\"")
	untilEOF := flag.Bool("until-eof", true, "also stop holding when stdin reaches EOF (false: only on SIGINT/SIGTERM)")
	flag.Parse()

	connector, err := target.Connector(*timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(2)
	}

	start := time.Now()
	conns := make([]driver.Conn, *n)
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr sync.Once
		wg       sync.WaitGroup
	)
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || failed.Load() > 0 {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				c, err := connector.Connect(ctx)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { fmt.Fprintf(os.Stderr, "idleconns: session %d: %v\n", i, err) })
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()

	opened := 0
	for _, c := range conns {
		if c != nil {
			opened++
		}
	}
	fmt.Printf("OPENED %d %.2f\n", opened, time.Since(start).Seconds())
	os.Stdout.Sync()

	done := make(chan struct{})
	if *untilEOF {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	// With -ping, each session answers a COM_PING before it is closed: a session the proxy
	// moved while it was idle must still work.
	if *ping {
		ok, bad := 0, 0
		for _, c := range conns {
			if c == nil {
				continue
			}
			p, isPinger := c.(driver.Pinger)
			if !isPinger {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			err := p.Ping(ctx)
			cancel()
			if err != nil {
				if bad == 0 {
					fmt.Fprintln(os.Stderr, "idleconns: ping:", err)
				}
				bad++
			} else {
				ok++
			}
		}
		fmt.Printf("PINGED %d %d\n", ok, bad)
	}
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	if opened < *n {
		os.Exit(1)
	}
}
