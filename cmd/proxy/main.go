// Command proxy is the Switchyard server: a MySQL-protocol proxy in front of
// one or more database clusters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/lib/memtrim"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/server"
	"go.uber.org/zap"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `usage:
  proxy --config FILE        run the proxy
  proxy --check-config FILE  validate a configuration file and exit (1 when invalid)
  proxy --version            print the version and exit
  proxy register [flags]     register a backend in a cluster's etcd the way TiDB does
                             (a sidecar; see proxy register --help)

flags:
`

// versionLine is what --version prints.
func versionLine() string {
	return fmt.Sprintf("switchyard proxy %s (git %s, %s)", server.Version, server.GitHash, runtime.Version())
}

func run(args []string) int { return runWith(args, os.Stdout, os.Stderr) }

// runWith runs the command with its output on stdout and stderr: --help and
// --version print to stdout and exit 0; usage errors exit 2.
func runWith(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "register" {
		return runRegister(args[1:])
	}
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the TOML configuration file")
	checkPath := fs.String("check-config", "", "validate a configuration file and exit (1 when invalid)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for benchmarking)")
	version := fs.Bool("version", false, "print the version and exit")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	// Printed here, not by Parse, so that asked-for help goes to stdout.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return 0
		}
		printUsage(stderr)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "proxy: unexpected argument %q\n\n", fs.Arg(0))
		printUsage(stderr)
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	if *checkPath != "" {
		if _, err := config.Load(*checkPath); err != nil {
			printConfigErrors(err)
			return 1
		}
		fmt.Printf("%s: configuration is valid\n", *checkPath)
		return 0
	}
	if *cfgPath == "" {
		printUsage(stderr)
		return 2
	}
	raw, err := os.ReadFile(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read config:", err)
		return 1
	}
	cfg, err := config.ParseNamed(*cfgPath, raw)
	if err != nil {
		printConfigErrors(err)
		return 1
	}
	lg, err := server.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = lg.Sync() }()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			lg.Error("cannot create the CPU profile", zap.Error(err))
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			lg.Error("cannot start the CPU profile", zap.Error(err))
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}

	cm := cfgmgr.New(lg, *cfgPath)
	cm.Init(cfg, raw)
	srv, err := server.New(lg, cm)
	if err != nil {
		lg.Error("cannot build the proxy", zap.Error(err))
		return 1
	}
	// Signals are caught before listening: a SIGTERM that arrives as soon as
	// the port is open must drain, not kill.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := srv.Start(context.Background()); err != nil {
		lg.Error("cannot start the proxy", zap.Error(err))
		return 1
	}
	// Memory a quiet proxy no longer uses goes back to the OS (lib/memtrim);
	// one goroutine for the process, ended before the shutdown.
	trimCtx, stopTrim := context.WithCancel(context.Background())
	go memtrim.Run(trimCtx, memtrim.DefaultInterval, func(before, after uint64) {
		lg.Debug("returned memory to the OS", zap.Uint64("held-bytes-before", before), zap.Uint64("held-bytes-after", after))
	})
	var sig os.Signal
	for sig == nil {
		select {
		case sig = <-sigs:
		case <-hup:
			// The outcome is logged and kept for GET /api/v1/config/status.
			_ = srv.Reload(cfgmgr.SourceSIGHUP)
		}
	}
	signal.Stop(hup)
	stopTrim()
	lg.Info("signal received, shutting down gracefully (send it again to stop at once)", zap.Stringer("signal", sig))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
	}()
	srv.Shutdown(ctx)
	cancel()
	lg.Info("proxy stopped")
	return 0
}

// printConfigErrors prints one problem per line.
func printConfigErrors(err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintln(os.Stderr, e)
		}
		return
	}
	fmt.Fprintln(os.Stderr, err)
}
