package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// lockName marks a directory as the playground's: only such a directory (or
// an empty or missing one) is ever wiped.
const lockName = "playground.lock"

// The layout of the demo. Every cluster gets its own etcd and these backends.
var layout = []struct {
	cluster string
	zones   []string // one backend per zone
}{
	{"east", []string{"east-a", "east-b"}},
	{"west", []string{"west-a", "west-b"}},
}

const defaultCluster = "east"

// cluster is one backend cluster: its etcd and its servers.
type cluster struct {
	name     string
	dir      string
	etcd     *etcdServer
	backends []*backend
}

// playground owns everything one run starts. start records a stop step for
// each thing it starts; stop runs them in reverse.
type playground struct {
	o     *options
	out   io.Writer
	hurry <-chan struct{}

	dir      string // absolute
	lock     *os.File
	logFile  *os.File
	lg       *zap.Logger // the registrars' log, <dir>/register.log
	clusters []*cluster
	proxy    *proxyProcess
	steps    []stopStep
}

type stopStep struct {
	what string
	fn   func() error
}

func newPlayground(o *options, out io.Writer, hurry <-chan struct{}) *playground {
	return &playground{o: o, out: out, hurry: hurry}
}

func (p *playground) onStop(what string, fn func() error) {
	p.steps = append(p.steps, stopStep{what: what, fn: fn})
}

// start brings everything up in dependency order: etcd, MariaDB, the
// registrations, the proxy. It returns early, with what was started still
// recorded for stop, on the first failure or when ctx ends.
func (p *playground) start(ctx context.Context) error {
	if err := p.prepareDir(); err != nil {
		return err
	}
	mainAddr, westAddr := p.addr(p.o.port), p.addr(p.o.port+1)
	for _, a := range []string{mainAddr, westAddr} {
		if err := checkFree(a); err != nil {
			return fmt.Errorf("%w (is another playground running? choose other ports with --port)", err)
		}
	}
	if err := p.openLog(); err != nil {
		return err
	}
	bin, err := proxyBinary(ctx, p.o, p.out)
	if err != nil {
		return err
	}
	for _, l := range layout {
		c := &cluster{name: l.cluster, dir: filepath.Join(p.dir, l.cluster)}
		for i, zone := range l.zones {
			name := fmt.Sprintf("%s-%d", l.cluster, i+1)
			c.backends = append(c.backends, &backend{name: name, zone: zone, dir: filepath.Join(c.dir, name)})
		}
		p.clusters = append(p.clusters, c)
	}

	fmt.Fprintln(p.out, "starting etcd for east and west")
	for _, c := range p.clusters {
		if c.etcd, err = startEtcd(c.name, c.dir); err != nil {
			return err
		}
		e := c.etcd
		p.onStop("etcd of "+c.name, func() error { e.Close(); return nil })
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Fprintln(p.out, "starting 4 MariaDB servers (install, start, create app/app-pw and app.backend)")
	all := p.backends()
	if err := launchBackends(ctx, all); err != nil {
		return err
	}
	p.onStop("MariaDB servers", func() error { return closeBackends(all, p.hurry) })
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Fprintln(p.out, "registering every server in its cluster's etcd")
	for _, c := range p.clusters {
		addrs := make([]string, 0, len(c.backends))
		for _, b := range c.backends {
			if b.reg, err = startRegistration(p.lg, c.etcd.Endpoint, b); err != nil {
				return err
			}
			reg := b.reg
			p.onStop("registration of "+b.name, func() error { reg.stop(); return reg.err })
			addrs = append(addrs, b.db.Addr())
		}
		infos, err := waitRegistered(ctx, p.lg, c.etcd.Endpoint, addrs)
		if err != nil {
			return err
		}
		for _, b := range c.backends {
			b.regInfo = infos[b.db.Addr()]
		}
	}

	apiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	tokens, err := newAPITokens()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(p.dir, "proxy.toml")
	err = writeProxyConfig(cfgPath, proxyConfig{
		addr: mainAddr, westPort: p.o.port + 1, apiAddr: apiAddr, tokens: tokens,
		clusters: p.clusters, defaultCl: defaultCluster,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.out, "starting the proxy %s --config %s\n", bin, cfgPath)
	if p.proxy, err = startProxy(bin, cfgPath, filepath.Join(p.dir, "proxy.log")); err != nil {
		return err
	}
	p.onStop("proxy", func() error { return p.proxy.stop(p.hurry) })
	// The route port is checked below, by logging in through it.
	if err := p.proxy.waitAccepting(ctx, mainAddr); err != nil {
		return err
	}
	checks := []routeCheck{
		{what: "east, the default cluster", addr: mainAddr, user: appUser, cluster: "east"},
		{what: "west, by its route port", addr: westAddr, user: appUser, cluster: "west"},
		{what: "west, by the user prefix", addr: mainAddr, user: "west." + appUser, cluster: "west"},
	}
	landed, err := verifyRoutes(ctx, checks)
	if err != nil {
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, p.proxy.logPath, logTail(p.proxy.logPath, 20))
	}
	r := report{mainAddr: mainAddr, westAddr: westAddr, cfgPath: cfgPath, landed: landed, tokens: tokens}
	// Shown only when this build of the proxy serves them.
	if accepts(apiAddr) {
		r.apiAddr = apiAddr
		r.apiBackends = answers200(ctx, "http://"+apiAddr+apiBackendsPath, tokens.read)
	}
	p.printReady(r)
	return nil
}

// wait blocks until ctx ends (a signal) or the proxy exits on its own, which
// is an error.
func (p *playground) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-p.proxy.done:
		return p.proxy.exitErr()
	}
}

// stop runs the stop steps in reverse order of start: the proxy, the
// registrations (which delete their keys), MariaDB, etcd.
func (p *playground) stop() {
	for i := len(p.steps) - 1; i >= 0; i-- {
		s := p.steps[i]
		began := time.Now()
		if err := s.fn(); err != nil {
			fmt.Fprintf(p.out, "stopped %s: %v\n", s.what, err)
		} else {
			fmt.Fprintf(p.out, "stopped %s (%s)\n", s.what, time.Since(began).Round(time.Millisecond))
		}
	}
	p.steps = nil
	if p.lg != nil {
		_ = p.lg.Sync()
	}
	if p.logFile != nil {
		_ = p.logFile.Close()
	}
	if p.lock != nil {
		_ = p.lock.Close()
	}
}

func (p *playground) backends() []*backend {
	var all []*backend
	for _, c := range p.clusters {
		all = append(all, c.backends...)
	}
	return all
}

func (p *playground) addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// prepareDir locks the directory and empties it. A directory that is neither
// empty nor a playground's is refused: --dir pointed at the wrong place must
// not delete anything.
func (p *playground) prepareDir() error {
	dir, err := filepath.Abs(p.o.dir)
	if err != nil {
		return err
	}
	p.dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	ours := false
	for _, e := range entries {
		ours = ours || e.Name() == lockName
	}
	if len(entries) > 0 && !ours {
		return fmt.Errorf("refusing to wipe %s: it is not empty and was not made by the playground (no %s)", dir, lockName)
	}
	if p.lock, err = os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		return err
	}
	if err := lockFile(p.lock); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("wipe %s: %w", dir, err)
		}
	}
	return nil
}

// openLog sends the registrars' logs to <dir>/register.log, keeping the
// terminal for what a person needs to read.
func (p *playground) openLog() error {
	f, err := os.OpenFile(filepath.Join(p.dir, "register.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	p.logFile = f
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	p.lg = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(f), zap.InfoLevel))
	return nil
}

// checkFree fails when addr is already listened on.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is not free: %w", addr, err)
	}
	return l.Close()
}

// answers200 reports whether a GET of url with token answers 200 OK.
func answers200(ctx context.Context, url, token string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func accepts(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	return conn.Close() == nil
}
