package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// Health prober defaults.
const (
	DefaultHealthInterval      = time.Second
	DefaultHealthTimeout       = time.Second
	DefaultFailuresToUnhealthy = 3
)

// maxStatusBody bounds how much of a /status answer is read; TiDB's is a
// small JSON object.
const maxStatusBody = 64 << 10

var (
	// ErrUnknownTarget is returned by ProbeNow for an address the prober does
	// not probe.
	ErrUnknownTarget = errors.New("health: not a probe target")
	// ErrProberClosed is returned by ProbeNow after Close.
	ErrProberClosed = errors.New("health: prober closed")
)

// ErrNotProbed is the reason of a backend that has not been probed yet.
var ErrNotProbed = errors.New("not probed yet")

// Target is one backend to probe.
type Target struct {
	// Addr is the SQL host:port; it identifies the target.
	Addr string
	// StatusPort is TiDB's HTTP status port on the same host; 0 skips the
	// HTTP check (plain MySQL servers have none).
	StatusPort uint
}

// HealthConfig tunes a Prober. Zero values mean the defaults.
type HealthConfig struct {
	Interval            time.Duration // between rounds, default 1s
	Timeout             time.Duration // per probe (SQL and status together), default 1s
	FailuresToUnhealthy int           // consecutive failures, default 3
	// SQLUser, when set, makes each probe log in as this user (no password)
	// and quit, instead of hanging up after the greeting (CheckSQLLogin).
	SQLUser string
	// StatusTLS, when non-nil, makes the status check use https.
	StatusTLS *tls.Config
}

func (c HealthConfig) withDefaults() HealthConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultHealthTimeout
	}
	if c.FailuresToUnhealthy <= 0 {
		c.FailuresToUnhealthy = DefaultFailuresToUnhealthy
	}
	return c
}

// Prober probes the backends of one cluster. Each cluster runtime owns its
// own Prober, so a cluster whose backends hang only slows its own verdicts.
type Prober struct {
	lg     *zap.Logger
	cfg    HealthConfig
	dialer *net.Dialer
	client *http.Client
	scheme string

	// newTicker is a test seam; it returns the round ticks and a stop func.
	newTicker func(time.Duration) (<-chan time.Time, func())

	results atomic.Pointer[map[string]observer.Health]
	updates chan struct{}
	// kick asks the loop to probe targets that were never probed.
	kick chan struct{}

	// life ends with Close; it also bounds ProbeNow.
	life     context.Context
	lifeStop context.CancelFunc

	mu      sync.Mutex
	targets map[string]*targetState
	started bool
	cancel  context.CancelFunc
	done    chan struct{}

	closeOnce sync.Once
	probes    sync.WaitGroup // probe goroutines; Added only by the loop
}

// targetState is the state machine of one target. It is replaced, not
// reused, when a target is removed and added again, so that a late result of
// the old probe can be recognised and dropped.
type targetState struct {
	t        Target
	h        observer.Health
	launched bool               // a probe has been started since it was added
	cancel   context.CancelFunc // of the probe in flight, or nil
}

// NewProber builds a prober for one cluster without doing any I/O.
func NewProber(lg *zap.Logger, cluster string, cfg HealthConfig) *Prober {
	cfg = cfg.withDefaults()
	// No TCP keep-alive: probe connections live for one handshake.
	dialer := &net.Dialer{KeepAlive: -1}
	tr := &http.Transport{
		// Never through an environment proxy: the status port is on the backend.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		// Every probe tests a fresh connection; a pooled one would hide a
		// backend that stopped accepting and keep stale DNS answers (TiProxy #1177).
		DisableKeepAlives:      true,
		TLSClientConfig:        cfg.StatusTLS.Clone(),
		TLSHandshakeTimeout:    cfg.Timeout,
		MaxResponseHeaderBytes: maxStatusBody,
	}
	scheme := "http"
	if cfg.StatusTLS != nil {
		scheme = "https"
	}
	life, stop := context.WithCancel(context.Background())
	p := &Prober{
		lg:     lg.Named("health").With(zap.String("cluster", cluster)),
		cfg:    cfg,
		dialer: dialer,
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer other than 200, not somewhere to go.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		scheme:    scheme,
		newTicker: realTicker,
		updates:   make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		life:      life,
		lifeStop:  stop,
		targets:   map[string]*targetState{},
		done:      make(chan struct{}),
	}
	p.results.Store(&map[string]observer.Health{})
	return p
}

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Start launches the probe loop: a first round at once, then one every
// Interval. Calls after the first, or after Close, do nothing.
func (p *Prober) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.life.Err() != nil {
		return
	}
	p.started = true
	ctx, p.cancel = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		p.run(ctx)
	}()
}

// Close stops probing, cancels the probes in flight and waits for every
// goroutine. It is idempotent and safe without Start.
func (p *Prober) Close() {
	p.closeOnce.Do(func() {
		p.lifeStop()
		p.mu.Lock()
		started, cancel := p.started, p.cancel
		p.mu.Unlock()
		if started {
			cancel()
			<-p.done
		}
		p.client.CloseIdleConnections()
	})
}

// SetTargets replaces the set of targets. New ones are probed at once and are
// healthy until probed; removed ones are forgotten and their probes in flight
// cancelled. A target already known keeps its state (a new StatusPort is used
// from its next probe). Safe from any goroutine.
func (p *Prober) SetTargets(ts []Target) {
	want := make(map[string]Target, len(ts))
	for _, t := range ts {
		want[t.Addr] = t
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	changed, added := false, false
	for addr, st := range p.targets {
		if _, ok := want[addr]; !ok {
			if st.cancel != nil {
				st.cancel()
			}
			delete(p.targets, addr)
			changed = true
		}
	}
	for addr, t := range want {
		if st, ok := p.targets[addr]; ok {
			st.t = t
			continue
		}
		p.targets[addr] = &targetState{t: t, h: observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}}
		changed, added = true, true
	}
	if !changed {
		return
	}
	p.publishLocked()
	notify(p.updates)
	if added {
		notify(p.kick)
	}
}

// Results returns the latest verdicts keyed by Addr. The map is shared and
// must not be modified; a new one replaces it after every probe.
func (p *Prober) Results() map[string]observer.Health { return *p.results.Load() }

// Updates signals that some target's Healthy or Reason changed, or that the
// target set changed. It holds at most one pending signal; read Results after
// each receive. Probes that only advance LastProbe or Failures do not signal.
func (p *Prober) Updates() <-chan struct{} { return p.updates }

// ProbeNow probes addr once, now, without touching its state machine: the
// verdict is that one probe's (Failures 0 or 1). It is for callers that need
// a fresh opinion, such as a fleet vote. The error is ErrUnknownTarget or
// ErrProberClosed; a failed probe is reported in the Health.
func (p *Prober) ProbeNow(ctx context.Context, addr string) (observer.Health, error) {
	p.mu.Lock()
	st, ok := p.targets[addr]
	var t Target
	if ok {
		t = st.t
	}
	p.mu.Unlock()
	if p.life.Err() != nil {
		return observer.Health{}, ErrProberClosed
	}
	if !ok {
		return observer.Health{}, fmt.Errorf("%w: %s", ErrUnknownTarget, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(p.life, cancel)
	defer stop()
	server, err := p.probe(ctx, t)
	if err != nil && p.life.Err() != nil {
		return observer.Health{}, ErrProberClosed
	}
	h := observer.Health{Healthy: err == nil, LastProbe: time.Now(), Server: server}
	if err != nil {
		h.Reason, h.Failures = reasonOf(err), 1
	}
	return h, nil
}

// run launches rounds until ctx ends, then waits for the probes in flight,
// which ctx has cancelled.
func (p *Prober) run(ctx context.Context) {
	defer p.probes.Wait()
	ticks, stop := p.newTicker(p.cfg.Interval)
	defer stop()
	p.launch(ctx, false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			p.launch(ctx, false)
		case <-p.kick:
			p.launch(ctx, true)
		}
	}
}

// launch starts one probe goroutine per target that has none in flight, so a
// target slower than Interval is probed back to back, never concurrently
// with itself, while the others keep their pace. onlyNew limits it to
// targets never probed (after SetTargets).
func (p *Prober) launch(ctx context.Context, onlyNew bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.targets {
		if st.cancel != nil || (onlyNew && st.launched) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		st.cancel, st.launched = cancel, true
		p.probes.Add(1)
		go func(st *targetState, t Target) {
			defer p.probes.Done()
			defer cancel()
			server, err := p.probe(pctx, t)
			p.record(ctx, st, server, err)
		}(st, st.t)
	}
}

// record feeds one probe result into the target's state machine, unless the
// probe was cut short by Close or the target was removed meanwhile: neither
// says anything about the backend.
func (p *Prober) record(ctx context.Context, st *targetState, server *observer.ServerInfo, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil || p.targets[st.t.Addr] != st {
		return
	}
	st.cancel = nil
	old := st.h
	st.h = nextHealth(old, err, time.Now(), p.cfg.FailuresToUnhealthy)
	if server != nil {
		st.h.Server = server
	}
	p.publishLocked()
	serverChanged := !sameServer(old.Server, st.h.Server)
	if serverChanged {
		// The greeting the proxy offers clients follows the backends'.
		p.lg.Info("backend greeting", zap.String("addr", st.t.Addr), zap.String("version", server.Version),
			zap.Uint32("capabilities", server.Capability), zap.Uint32("mariadb_capabilities", server.ExtCapability))
		notify(p.updates)
	}
	if st.h.Healthy == old.Healthy && st.h.Reason == old.Reason {
		if err != nil {
			p.lg.Debug("probe failed", zap.String("addr", st.t.Addr),
				zap.Int("failures", st.h.Failures), zap.Error(err))
		}
		return
	}
	switch {
	case !st.h.Healthy && old.Healthy:
		p.lg.Warn("backend unhealthy", zap.String("addr", st.t.Addr),
			zap.Int("failures", st.h.Failures), zap.String("reason", st.h.Reason))
	case st.h.Healthy && !old.Healthy:
		p.lg.Info("backend healthy again", zap.String("addr", st.t.Addr))
	case !st.h.Healthy:
		p.lg.Info("backend still unhealthy, new reason", zap.String("addr", st.t.Addr),
			zap.String("reason", st.h.Reason))
	}
	notify(p.updates)
}

// nextHealth is the state machine: unhealthy after n consecutive failures,
// healthy again after one success.
func nextHealth(old observer.Health, err error, now time.Time, n int) observer.Health {
	if err == nil {
		return observer.Health{Healthy: true, LastProbe: now, Server: old.Server}
	}
	h := observer.Health{LastProbe: now, Failures: old.Failures + 1, Server: old.Server}
	h.Healthy = h.Failures < n
	if !h.Healthy {
		h.Reason = reasonOf(err)
	}
	return h
}

func (p *Prober) publishLocked() {
	m := make(map[string]observer.Health, len(p.targets))
	for addr, st := range p.targets {
		m[addr] = st.h
	}
	p.results.Store(&m)
}

// probe checks the SQL port, then the status port, within ctx. It returns
// what the greeting announced whenever one was read, even if the probe then
// failed.
func (p *Prober) probe(ctx context.Context, t Target) (*observer.ServerInfo, error) {
	check := mysql.ReadGreeting
	if user := p.cfg.SQLUser; user != "" {
		check = func(ctx context.Context, d *net.Dialer, addr string) (*mysql.InitialHandshake, error) {
			return mysql.ReadGreetingLogin(ctx, d, addr, user, "")
		}
	}
	hs, err := check(ctx, p.dialer, t.Addr)
	if err != nil {
		return nil, fmt.Errorf("sql port: %w", err)
	}
	server := &observer.ServerInfo{Version: hs.ServerVersion, Capability: hs.Capability,
		ExtCapability: hs.ExtCapability, Charset: hs.Charset}
	if t.StatusPort == 0 {
		return server, nil
	}
	return server, p.checkStatus(ctx, t)
}

// sameServer compares two greetings' records (nil for none).
func sameServer(a, b *observer.ServerInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// checkStatus asks TiDB's status port for /status. TiDB answers 500 there
// while it shuts down gracefully, when its SQL port still accepts.
func (p *Prober) checkStatus(ctx context.Context, t Target) error {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return fmt.Errorf("status port: %w", err)
	}
	url := p.scheme + "://" + net.JoinHostPort(host, strconv.FormatUint(uint64(t.StatusPort), 10)) + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("status port: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("status port: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxStatusBody))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status port answered %d", resp.StatusCode)
	}
	return nil
}

// reasonOf renders err without the local address that socket errors carry
// ("read tcp 127.0.0.1:53122->10.0.0.1:4000: ..."): its ephemeral port
// would make every failed probe a new Reason, and so an update.
func reasonOf(err error) string {
	msg := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Source != nil {
		stable := *op
		stable.Source = nil
		msg = strings.Replace(msg, op.Error(), stable.Error(), 1)
	}
	return msg
}

// notify sends a latest-value signal without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
