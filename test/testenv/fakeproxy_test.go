package testenv

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/BurntSushi/toml"
)

// fakeProxyEnv makes the test binary act as a minimal proxy, so StartProxy can be tested before
// (and independently of) cmd/proxy: it listens on [proxy] addr, reports SIGHUP reloads on
// stdout and exits 0 on SIGTERM.
const fakeProxyEnv = "SWITCHYARD_TESTENV_FAKE_PROXY"

type fakeProxyConfig struct {
	Proxy struct {
		Addr string `toml:"addr"`
	} `toml:"proxy"`
	Log struct {
		Level string `toml:"level"`
	} `toml:"log"`
}

func fakeProxyMain() int {
	fs := flag.NewFlagSet("fakeproxy", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	var cfg fakeProxyConfig
	if _, err := toml.DecodeFile(*path, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fakeproxy:", err)
		return 1
	}
	// Handlers go in before the listener: StartProxy returns once the port accepts, and a SIGHUP
	// sent before signal.Notify would kill the process (the real proxy must do the same).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	ln, err := net.Listen("tcp", cfg.Proxy.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeproxy:", err)
		return 1
	}
	fmt.Println("fakeproxy: listening on", cfg.Proxy.Addr, "level", cfg.Log.Level)
	// The process exits right after this loop ends, which is what ends the accept goroutine.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	for sig := range sigs {
		if sig == syscall.SIGTERM {
			fmt.Println("fakeproxy: shutting down")
			_ = ln.Close()
			return 0
		}
		var next fakeProxyConfig
		if _, err := toml.DecodeFile(*path, &next); err != nil {
			fmt.Println("fakeproxy: reload failed:", err)
			continue
		}
		fmt.Println("fakeproxy: reloaded, level", next.Log.Level)
	}
	return 0
}
