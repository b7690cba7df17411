// Command proxy is the Switchyard server: a MySQL-protocol proxy in front of
// one or more database clusters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/switchyard-db/switchyard/lib/config"
	cfgmgr "github.com/switchyard-db/switchyard/pkg/manager/config"
	"github.com/switchyard-db/switchyard/pkg/server"
	"go.uber.org/zap"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "register" {
		return runRegister(args[1:])
	}
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "path to the TOML configuration file")
	checkPath := fs.String("check-config", "", "validate a configuration file and exit (1 when invalid)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for benchmarking)")
	if err := fs.Parse(args); err != nil {
		return 2
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
		fmt.Fprintln(os.Stderr, "usage: proxy --config FILE | --check-config FILE")
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
	if err := srv.Start(); err != nil {
		lg.Error("cannot start the proxy", zap.Error(err))
		return 1
	}
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
