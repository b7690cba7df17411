package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard/lib/config"
)

// defaultHealthInterval makes a killed backend leave rotation within seconds.
const defaultHealthInterval = time.Second

// proxyConfig is what the generated proxy.toml says.
type proxyConfig struct {
	addr      string // 127.0.0.1:PORT, cluster east by default
	westPort  int    // the route port of west
	apiAddr   string
	tokens    apiTokens
	clusters  []*cluster
	defaultCl string
}

// render writes the TOML. Every listener is on loopback.
func (c proxyConfig) render() string {
	var b strings.Builder
	b.WriteString("# Written by the playground (cmd/playground) on every run; edits are lost.\n\n")
	fmt.Fprintf(&b, "[proxy]\naddr = %q\n", c.addr)
	fmt.Fprintf(&b, "# Clients that no [[route]] below matches.\ndefault-cluster = %q\n", c.defaultCl)
	b.WriteString("# A login \"west.app\" goes to cluster west as user \"app\".\nuser-prefix-routing = true\n")
	b.WriteString("# Ctrl-C should not wait long for idle demo sessions.\ngraceful-close-conn-timeout = \"3s\"\n\n")
	b.WriteString("# Fresh tokens on every run. Reads (status page, proxyctl clusters ...) need\n" +
		"# read-token; changes (proxyctl drain, config set) need token.\n")
	fmt.Fprintf(&b, "[api]\naddr = %q\ntoken = %q\nread-token = %q\n\n", c.apiAddr, c.tokens.admin, c.tokens.read)
	fmt.Fprintf(&b, "[health-check]\ninterval = %q\ntimeout = \"1s\"\nfailures-to-unhealthy = 3\n\n", defaultHealthInterval)
	b.WriteString("[log]\nlevel = \"info\"\n")
	for _, cl := range c.clusters {
		fmt.Fprintf(&b, "\n[[cluster]]\nname = %q\netcd-endpoints = [%q]\n", cl.name, cl.etcd.Endpoint)
	}
	fmt.Fprintf(&b, "\n# Connections on port %d go to west whoever logs in.\n[[route]]\ncluster = \"west\"\nports = [%d]\n",
		c.westPort, c.westPort)
	return b.String()
}

// apiTokens are the API's admin and read tokens.
type apiTokens struct{ admin, read string }

// newAPITokens makes a random token pair for one run.
func newAPITokens() (apiTokens, error) {
	gen := func() (string, error) {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("generating an API token: %w", err)
		}
		return hex.EncodeToString(b), nil
	}
	admin, err := gen()
	if err != nil {
		return apiTokens{}, err
	}
	read, err := gen()
	return apiTokens{admin: "admin-" + admin, read: "read-" + read}, err
}

// writeProxyConfig writes the file and loads it back with the proxy's own
// parser, so that a mistake here is reported as such rather than as a proxy
// that will not start. The file holds the API tokens: only its owner may
// read it.
func writeProxyConfig(path string, c proxyConfig) error {
	if err := os.WriteFile(path, []byte(c.render()), 0o600); err != nil {
		return err
	}
	if _, err := config.Load(path); err != nil {
		return fmt.Errorf("the generated proxy config is invalid (a playground bug): %w", err)
	}
	return nil
}
