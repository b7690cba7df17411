// Command playground starts a complete local Switchyard demo with one
// command: two clusters ("east" and "west"), each with its own embedded etcd
// and two MariaDB servers registered in it the way TiDB registers itself, and
// the real proxy binary in front of both. It prints how to connect to each
// cluster, then runs until SIGINT or SIGTERM, when it stops everything it
// started in reverse order.
//
// It is a binary of its own so that the proxy never links the etcd server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/switchyard-db/switchyard/test/testenv"
)

const usage = `usage: playground [--dir DIR] [--port N] [--proxy-bin FILE | --no-build]

Starts two clusters (east, west) of two MariaDB servers each, every cluster
with its own embedded etcd in which its servers are registered like TiDB, and
the Switchyard proxy in front of them on 127.0.0.1:PORT (east, the default
cluster) and 127.0.0.1:PORT+1 (west). Ctrl-C stops everything.

`

// options are the command-line flags.
type options struct {
	dir      string
	port     int
	proxyBin string
	noBuild  bool
}

func parseFlags(args []string, out io.Writer) (*options, error) {
	fs := flag.NewFlagSet("playground", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	o := &options{}
	fs.StringVar(&o.dir, "dir", ".playground", "directory for every file of the run; wiped and recreated each time")
	fs.IntVar(&o.port, "port", 6000, "the proxy's main port (cluster east); west also gets PORT+1")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "proxy binary to run (default: go build ./cmd/proxy into bin/proxy)")
	fs.BoolVar(&o.noBuild, "no-build", false, "run bin/proxy as it is instead of building it first")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.port < 1 || o.port > 65534 {
		return nil, fmt.Errorf("--port %d: must be 1-65534 (PORT+1 is used too)", o.port)
	}
	if o.proxyBin != "" && o.noBuild {
		return nil, errors.New("--proxy-bin and --no-build are mutually exclusive (--proxy-bin is never built)")
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "playground:", err)
		return 2
	}
	if _, err := testenv.LookupMariaDB(); err != nil {
		fmt.Fprintf(os.Stderr, "playground: %v\n"+
			"playground: run `make playground` as root (it installs MariaDB first), or install it with\n"+
			"playground:   apt-get install -y mariadb-server mariadb-client\n", err)
		return 1
	}

	// Signals are caught before anything starts: Ctrl-C during start-up
	// stops what has been started so far. The first signal stops in order,
	// a second one kills what is left.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// With output piped (make playground | tee log), Ctrl-C also ends the
	// reader; a write to the broken pipe must fail, not kill the playground
	// before it has stopped its children.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hurry := make(chan struct{})
	stopSignals := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stopSignals)
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case sig := <-sigs:
				if n == 0 {
					fmt.Printf("\n%s received: stopping (again to kill at once)\n", sig)
					cancel()
				} else {
					close(hurry)
					return
				}
			case <-stopSignals:
				return
			}
		}
	})

	p := newPlayground(o, os.Stdout, hurry)
	startErr := p.start(ctx)
	// A failure is reported before the stop steps print their lines; one
	// caused by a signal during start-up is no failure.
	failed := false
	if startErr != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "playground:", startErr)
		failed = true
	}
	if startErr == nil {
		if err := p.wait(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "playground:", err)
			failed = true
		}
	}
	p.stop()
	if failed {
		return 1
	}
	fmt.Println("playground stopped")
	return 0
}
