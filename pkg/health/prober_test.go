package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/testenv"
)

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
)

// sqlMode is how a fakeSQL server greets.
type sqlMode int32

const (
	greetOK     sqlMode = iota // a MySQL v10 initial handshake
	greetErr                   // ERR 1129: this host is blocked
	greetSilent                // accept and say nothing until the client leaves
	greetFull                  // ERR 1040 Too many connections, as MariaDB sends it
)

// fakeSQL is a loopback TCP server that answers like a MySQL server would,
// in the mode set last.
type fakeSQL struct {
	ln       net.Listener
	mode     atomic.Int32
	accepted atomic.Int32
	// peerClosed counts silent connections the client closed.
	peerClosed atomic.Int32
	// logins, pings and quits count what greeted connections sent;
	// unanswered, the pings greetSilent left unanswered.
	logins, pings, quits, unanswered atomic.Int32

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFakeSQL(t *testing.T, mode sqlMode) *fakeSQL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeSQL{ln: ln, conns: map[net.Conn]struct{}{}}
	f.mode.Store(int32(mode))
	f.wg.Add(1)
	go f.acceptLoop()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeSQL) Addr() string      { return f.ln.Addr().String() }
func (f *fakeSQL) setMode(m sqlMode) { f.mode.Store(int32(m)) }
func (f *fakeSQL) target() Target    { return Target{Addr: f.Addr()} }
func (f *fakeSQL) withStatus(port uint) Target {
	return Target{Addr: f.Addr(), StatusPort: port}
}

func (f *fakeSQL) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *fakeSQL) serve(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		_ = c.Close()
	}()
	pio := mysql.NewPacketIO(c)
	defer pio.Release()
	switch sqlMode(f.mode.Load()) {
	case greetOK:
		_ = pio.WritePacket(mysql.AppendInitialHandshake(nil, &mysql.InitialHandshake{
			ServerVersion: "8.0.11-TiDB-v7.5.0",
			ConnID:        1,
			Salt:          mysql.NewSalt(20),
			Capability:    mysql.ClientProtocol41 | mysql.ClientSecureConnection | mysql.ClientPluginAuth,
			Charset:       46,
			Status:        2,
			AuthPlugin:    "mysql_native_password",
		}))
		_ = pio.Flush()
		f.serveCommands(pio)
	case greetErr:
		_ = pio.WriteError(mysql.NewError(1129, "Host '127.0.0.1' is blocked because of many connection errors"))
	case greetFull:
		_ = pio.WriteError(&mysql.MySQLError{Code: mysql.ErCONCount, Message: "Too many connections", NoState: true})
	case greetSilent:
		if _, err := io.Copy(io.Discard, c); err == nil {
			f.peerClosed.Add(1) // EOF: the prober hung up
		}
	}
}

// serveCommands answers a login with OK (any user and password), then
// COM_PING with OK until the mode becomes greetSilent, when it stops
// answering (a hung server), and returns at COM_QUIT or when the client
// hangs up.
func (f *fakeSQL) serveCommands(pio *mysql.PacketIO) {
	if _, err := pio.ReadPacket(0); err != nil {
		return // the prober only read the greeting
	}
	f.logins.Add(1)
	ok := func() bool {
		return pio.WritePacket(mysql.AppendOK(nil, mysql.OKHeader, mysql.OKInfo{}, false)) == nil && pio.Flush() == nil
	}
	if !ok() {
		return
	}
	for {
		pkt, err := pio.ReadPacket(0)
		if err != nil || len(pkt) == 0 {
			return
		}
		switch pkt[0] {
		case mysql.ComQuit:
			f.quits.Add(1)
			return
		case mysql.ComPing:
			if sqlMode(f.mode.Load()) == greetSilent {
				f.unanswered.Add(1)
				continue // read on: the prober hangs up after its timeout
			}
			f.pings.Add(1)
			if !ok() {
				return
			}
		default:
			return
		}
	}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// statusServer answers /status with the code set last.
type statusServer struct {
	srv  *httptest.Server
	code atomic.Int32
	hits atomic.Int32
}

func newStatusServer(t *testing.T, code int, useTLS bool) *statusServer {
	t.Helper()
	s := &statusServer{}
	s.code.Store(int32(code))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		c := int(s.code.Load())
		if c >= 300 && c < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(c)
		_, _ = io.WriteString(w, `{"connections":0,"version":"8.0.11-TiDB-v7.5.0"}`)
	})
	if useTLS {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *statusServer) port() uint {
	return uint(s.srv.Listener.Addr().(*net.TCPAddr).Port)
}

func (s *statusServer) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func newTestProber(t *testing.T, cluster string, cfg HealthConfig) *Prober {
	t.Helper()
	p := NewProber(zaptest.NewLogger(t), cluster, cfg)
	t.Cleanup(p.Close)
	return p
}

// manualTicks replaces the prober's schedule; every send is one round.
func manualTicks(p *Prober) chan<- time.Time {
	ch := make(chan time.Time)
	p.rounds = ch
	return ch
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func requireNoSignal(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		require.Fail(t, "unexpected update signal")
	default:
	}
}

func requireSignal(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		require.Fail(t, "no update signal")
	}
}

func waitHealth(t *testing.T, p *Prober, addr string, cond func(observer.Health) bool) observer.Health {
	t.Helper()
	var h observer.Health
	require.Eventually(t, func() bool {
		var ok bool
		h, ok = p.Results()[addr]
		return ok && cond(h)
	}, waitFor, tick, "waiting for %s", addr)
	return h
}

func probed(h observer.Health) bool { return !h.LastProbe.IsZero() }

func TestNextHealth(t *testing.T) {
	fail := errors.New("boom")
	type step struct {
		err      error
		healthy  bool
		failures int
		reason   string
	}
	tests := []struct {
		name  string
		n     int
		steps []step
	}{
		{"success", 3, []step{{nil, true, 0, ""}, {nil, true, 0, ""}}},
		{"unhealthy at the nth failure, not before", 3, []step{
			{fail, true, 1, ""}, {fail, true, 2, ""}, {fail, false, 3, "boom"}, {fail, false, 4, "boom"},
		}},
		{"one success recovers", 2, []step{
			{fail, true, 1, ""}, {fail, false, 2, "boom"}, {nil, true, 0, ""}, {fail, true, 1, ""},
		}},
		{"a success resets the count", 3, []step{
			{fail, true, 1, ""}, {fail, true, 2, ""}, {nil, true, 0, ""}, {fail, true, 1, ""}, {fail, true, 2, ""},
		}},
		{"n=1", 1, []step{{fail, false, 1, "boom"}, {nil, true, 0, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}
			for i, s := range tt.steps {
				now := time.Unix(int64(i+1), 0)
				h = nextHealth(h, s.err, now, tt.n)
				require.Equal(t, observer.Health{Healthy: s.healthy, Reason: s.reason, LastProbe: now, Failures: s.failures}, h, "step %d", i)
			}
		})
	}
}

func TestReasonOfDropsLocalAddress(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53122}
	remote := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4000}
	err := fmt.Errorf("sql port: read greeting: %w", &net.OpError{
		Op: "read", Net: "tcp", Source: local, Addr: remote, Err: errors.New("connection reset by peer"),
	})
	require.Equal(t, "sql port: read greeting: read tcp 10.0.0.1:4000: connection reset by peer", reasonOf(err))
	require.Equal(t, "plain", reasonOf(errors.New("plain")))
}

// TestProbeVerdicts runs one probe (FailuresToUnhealthy 1) against each kind
// of backend.
func TestProbeVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		target  func(t *testing.T) (Target, *tls.Config)
		healthy bool
		reason  string // substring
	}{
		{"greeting", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetOK).target(), nil
		}, true, ""},
		{"ERR greeting", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetErr).target(), nil
		}, false, "sql port: server refused: ERROR 1129 (HY000): Host '127.0.0.1' is blocked"},
		{"full: up, and refusing for now", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetFull).target(), nil
		}, true, ""},
		{"silent", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetSilent).target(), nil
		}, false, "sql port: read greeting: context deadline exceeded"},
		{"closed port", func(t *testing.T) (Target, *tls.Config) {
			return Target{Addr: closedAddr(t)}, nil
		}, false, "connection refused"},
		{"status 200", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetOK).withStatus(newStatusServer(t, 200, false).port()), nil
		}, true, ""},
		{"status 500 while the SQL port works", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetOK).withStatus(newStatusServer(t, 500, false).port()), nil
		}, false, "status port answered 500"},
		{"status redirect is not followed", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetOK).withStatus(newStatusServer(t, 302, false).port()), nil
		}, false, "status port answered 302"},
		{"status port closed", func(t *testing.T) (Target, *tls.Config) {
			_, port, err := net.SplitHostPort(closedAddr(t))
			require.NoError(t, err)
			p, err := strconv.Atoi(port)
			require.NoError(t, err)
			return newFakeSQL(t, greetOK).withStatus(uint(p)), nil
		}, false, "status port: Get"},
		{"status port silent: bounded by the timeout", func(t *testing.T) (Target, *tls.Config) {
			silent := newFakeSQL(t, greetSilent) // accepts, reads, never answers
			_, port, err := net.SplitHostPort(silent.Addr())
			require.NoError(t, err)
			p, err := strconv.Atoi(port)
			require.NoError(t, err)
			return newFakeSQL(t, greetOK).withStatus(uint(p)), nil
		}, false, `/status": context deadline exceeded`},
		{"SQL failure wins over a good status port", func(t *testing.T) (Target, *tls.Config) {
			return newFakeSQL(t, greetErr).withStatus(newStatusServer(t, 200, false).port()), nil
		}, false, "is blocked"},
		{"status over https", func(t *testing.T) (Target, *tls.Config) {
			s := newStatusServer(t, 200, true)
			return newFakeSQL(t, greetOK).withStatus(s.port()), s.clientTLS()
		}, true, ""},
		{"https status 500", func(t *testing.T) (Target, *tls.Config) {
			s := newStatusServer(t, 500, true)
			return newFakeSQL(t, greetOK).withStatus(s.port()), s.clientTLS()
		}, false, "status port answered 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, tlsCfg := tt.target(t)
			p := newTestProber(t, "c1", HealthConfig{
				Interval: time.Hour, Timeout: 300 * time.Millisecond, FailuresToUnhealthy: 1, StatusTLS: tlsCfg,
			})
			p.SetTargets([]Target{target})
			p.Start(context.Background())
			h := waitHealth(t, p, target.Addr, probed)
			require.Equal(t, tt.healthy, h.Healthy, h.Reason)
			if tt.healthy {
				require.Empty(t, h.Reason)
				require.Zero(t, h.Failures)
			} else {
				require.Contains(t, h.Reason, tt.reason)
				require.Equal(t, 1, h.Failures)
			}
		})
	}
}

func TestUnhealthyAfterNFailuresAndBack(t *testing.T) {
	srv := newFakeSQL(t, greetErr)
	status := newStatusServer(t, 200, false)
	p := newTestProber(t, "c1", HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 3})
	ticks := manualTicks(p)
	addr := srv.Addr()
	p.SetTargets([]Target{srv.withStatus(status.port())})
	requireSignal(t, p.Updates())
	p.Start(context.Background()) // the first round

	for i := 1; i <= 2; i++ {
		h := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures == i })
		require.True(t, h.Healthy, "failure %d of 3 must not flip the verdict", i)
		require.Empty(t, h.Reason)
		if i == 2 {
			// The first probe replaced "not probed yet"; the second said nothing new.
			drain(p.Updates())
		}
		ticks <- time.Now()
	}
	h := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures == 3 })
	require.False(t, h.Healthy)
	require.Contains(t, h.Reason, "is blocked")
	requireSignal(t, p.Updates())

	// One good probe is enough to come back.
	srv.setMode(greetOK)
	ticks <- time.Now()
	h = waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures == 0 })
	require.True(t, h.Healthy)
	require.Empty(t, h.Reason)
	requireSignal(t, p.Updates())

	// TiDB shutting down gracefully: SQL still greets, /status says 500.
	status.code.Store(500)
	for i := 1; i <= 3; i++ {
		ticks <- time.Now()
		waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures == i })
	}
	h = p.Results()[addr]
	require.False(t, h.Healthy)
	require.Equal(t, "status port answered 500", h.Reason)
}

// TestRetryAfterFailure: a failed probe of a backend that still counts as
// healthy is made again after RetryInterval, not a whole Interval, so the
// verdict comes within a fraction of an interval, either way; an unhealthy
// backend is probed every Interval.
func TestRetryAfterFailure(t *testing.T) {
	const interval, retry = 1500 * time.Millisecond, 20 * time.Millisecond
	srv := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{Interval: interval, RetryInterval: retry, FailuresToUnhealthy: 3})
	addr := srv.Addr()
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	waitHealth(t, p, addr, func(h observer.Health) bool { return probed(h) && h.Healthy && h.Failures == 0 })

	// Confirmed: three failures well within one interval (without retries,
	// two intervals).
	srv.setMode(greetErr)
	first := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures >= 1 })
	require.Equal(t, 1, first.Failures)
	down := waitHealth(t, p, addr, func(h observer.Health) bool { return !h.Healthy })
	require.Equal(t, 3, down.Failures)
	took := down.LastProbe.Sub(first.LastProbe)
	require.GreaterOrEqual(t, took, 2*retry)
	require.Less(t, took, interval, "the failure was confirmed by retries, not by the next intervals")

	// Unhealthy: probed every interval, in the prober's phase, not retried.
	fourth := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures >= 4 })
	fifth := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures >= 5 })
	require.Equal(t, 5, fifth.Failures)
	require.Greater(t, fifth.LastProbe.Sub(fourth.LastProbe), interval/2)

	// Cleared: one failure of a healthy backend is looked at again soon.
	srv.setMode(greetOK)
	waitHealth(t, p, addr, func(h observer.Health) bool { return h.Healthy && h.Failures == 0 })
	srv.setMode(greetErr)
	first = waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures >= 1 })
	srv.setMode(greetOK)
	up := waitHealth(t, p, addr, func(h observer.Health) bool { return h.Failures == 0 })
	require.True(t, up.Healthy)
	require.Less(t, up.LastProbe.Sub(first.LastProbe), interval, "cleared by a retry")
}

func TestNewTargetsProbedAtOnceRemovedForgotten(t *testing.T) {
	a, b := newFakeSQL(t, greetOK), newFakeSQL(t, greetErr)
	// No round is due for an hour: every probe here comes from SetTargets.
	p := newTestProber(t, "c1", HealthConfig{Interval: time.Hour, FailuresToUnhealthy: 1})
	require.Empty(t, p.Results())

	p.SetTargets([]Target{a.target()})
	require.Equal(t, map[string]observer.Health{a.Addr(): {Healthy: true, Reason: ErrNotProbed.Error()}}, p.Results())
	requireSignal(t, p.Updates())
	p.Start(context.Background())
	ha := waitHealth(t, p, a.Addr(), probed)
	require.True(t, ha.Healthy)

	p.SetTargets([]Target{a.target(), b.target()})
	requireSignal(t, p.Updates())
	hb := waitHealth(t, p, b.Addr(), probed)
	require.False(t, hb.Healthy)
	require.Equal(t, ha, p.Results()[a.Addr()], "adding b must not start a round for a")
	require.EqualValues(t, 1, a.accepted.Load())

	// The same set again changes nothing.
	drain(p.Updates())
	p.SetTargets([]Target{b.target(), a.target()})
	requireNoSignal(t, p.Updates())

	p.SetTargets([]Target{b.target()})
	requireSignal(t, p.Updates())
	res := p.Results()
	require.NotContains(t, res, a.Addr())
	require.Len(t, res, 1)

	// Added again, a starts from scratch and is probed at once. The probe
	// may already have finished when Results is read, so what must hold is
	// that nothing from a's earlier life is carried over.
	readded := time.Now()
	p.SetTargets([]Target{a.target(), b.target()})
	if h := p.Results()[a.Addr()]; h.LastProbe.IsZero() {
		require.Equal(t, observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, h)
	} else {
		require.False(t, h.LastProbe.Before(readded), "a re-added target kept its old result")
	}
	waitHealth(t, p, a.Addr(), probed)
	require.EqualValues(t, 2, a.accepted.Load())
}

func TestRemovingTargetCancelsItsProbe(t *testing.T) {
	silent := newFakeSQL(t, greetSilent)
	p := newTestProber(t, "c1", HealthConfig{Timeout: time.Minute, FailuresToUnhealthy: 1})
	p.SetTargets([]Target{silent.target()})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return silent.accepted.Load() == 1 }, waitFor, tick)

	p.SetTargets(nil)
	require.Empty(t, p.Results())
	require.Eventually(t, func() bool { return silent.peerClosed.Load() == 1 }, waitFor, tick,
		"the probe of a removed target must be cancelled, not left to its timeout")
}

func TestLateResultOfRemovedTargetIsDropped(t *testing.T) {
	p := newTestProber(t, "c1", HealthConfig{})
	p.SetTargets([]Target{{Addr: "127.0.0.1:1"}})
	p.mu.Lock()
	old := p.targets["127.0.0.1:1"]
	p.mu.Unlock()
	p.SetTargets(nil)
	p.SetTargets([]Target{{Addr: "127.0.0.1:1"}}) // same address, new state
	drain(p.Updates())

	p.record(context.Background(), old, nil, errors.New("late"))
	require.Equal(t, observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, p.Results()["127.0.0.1:1"])
	requireNoSignal(t, p.Updates())
}

// TestUpdatesOnlyOnVerdictChange: probes that confirm the verdict publish
// nothing, however the backend fails.
func TestUpdatesOnlyOnVerdictChange(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T) string
	}{
		{"healthy", func(t *testing.T) string { return newFakeSQL(t, greetOK).Addr() }},
		{"ERR greeting", func(t *testing.T) string { return newFakeSQL(t, greetErr).Addr() }},
		{"silent", func(t *testing.T) string { return newFakeSQL(t, greetSilent).Addr() }},
		{"closed port", closedAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.target(t)
			p := newTestProber(t, "c1", HealthConfig{
				Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond, FailuresToUnhealthy: 1,
			})
			p.SetTargets([]Target{{Addr: addr}})
			p.Start(context.Background())
			// Once the second probe is recorded, the first one's signal
			// (the verdict replacing "not probed yet") has been sent.
			first := waitHealth(t, p, addr, probed)
			waitHealth(t, p, addr, func(h observer.Health) bool { return h.LastProbe.After(first.LastProbe) })
			drain(p.Updates())

			prev := p.Results()[addr]
			for range 3 {
				h := waitHealth(t, p, addr, func(h observer.Health) bool { return h.LastProbe.After(prev.LastProbe) })
				require.Equal(t, first.Healthy, h.Healthy)
				require.Equal(t, first.Reason, h.Reason)
				prev = h
			}
			requireNoSignal(t, p.Updates())
		})
	}
}

func TestUpdatesOnVerdictChange(t *testing.T) {
	srv := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{Interval: 10 * time.Millisecond, FailuresToUnhealthy: 2})
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	first := waitHealth(t, p, srv.Addr(), probed)
	waitHealth(t, p, srv.Addr(), func(h observer.Health) bool { return h.LastProbe.After(first.LastProbe) })
	drain(p.Updates())

	srv.setMode(greetErr)
	requireSignal(t, p.Updates())
	h := p.Results()[srv.Addr()]
	require.False(t, h.Healthy)
	require.GreaterOrEqual(t, h.Failures, 2)

	srv.setMode(greetOK)
	requireSignal(t, p.Updates())
	require.True(t, p.Results()[srv.Addr()].Healthy)
}

func TestProbeNow(t *testing.T) {
	good, bad := newFakeSQL(t, greetOK), newFakeSQL(t, greetErr)
	status := newStatusServer(t, 500, false)
	p := newTestProber(t, "c1", HealthConfig{FailuresToUnhealthy: 3})
	good2 := newFakeSQL(t, greetOK)
	p.SetTargets([]Target{good.target(), bad.target(), good2.withStatus(status.port())})
	before := p.Results()

	tests := []struct {
		name    string
		addr    string
		healthy bool
		reason  string
	}{
		{"healthy", good.Addr(), true, ""},
		{"one failure is enough", bad.Addr(), false, "is blocked"},
		{"status port", good2.Addr(), false, "status port answered 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := p.ProbeNow(context.Background(), tt.addr)
			require.NoError(t, err)
			require.Equal(t, tt.healthy, h.Healthy)
			require.False(t, h.LastProbe.IsZero())
			if tt.healthy {
				require.Zero(t, h.Failures)
				require.Empty(t, h.Reason)
			} else {
				require.Equal(t, 1, h.Failures)
				require.Contains(t, h.Reason, tt.reason)
			}
		})
	}
	require.Equal(t, before, p.Results(), "ProbeNow must not feed the state machine")

	_, err := p.ProbeNow(context.Background(), "127.0.0.1:9")
	require.ErrorIs(t, err, ErrUnknownTarget)

	p.Close()
	_, err = p.ProbeNow(context.Background(), good.Addr())
	require.ErrorIs(t, err, ErrProberClosed)
}

func TestCloseCancelsProbeNow(t *testing.T) {
	silent := newFakeSQL(t, greetSilent)
	p := newTestProber(t, "c1", HealthConfig{Timeout: time.Minute})
	p.SetTargets([]Target{silent.target()})
	errc := make(chan error, 1)
	go func() {
		_, err := p.ProbeNow(context.Background(), silent.Addr())
		errc <- err
	}()
	require.Eventually(t, func() bool { return silent.accepted.Load() == 1 }, waitFor, tick)
	p.Close()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, ErrProberClosed)
	case <-time.After(waitFor):
		require.Fail(t, "ProbeNow outlived Close")
	}
}

// TestSlowTargetNeverOverlapsItself: ticks that come while a target's probe
// is still running skip it, while the other targets keep their pace.
func TestSlowTargetNeverOverlapsItself(t *testing.T) {
	silent, bad := newFakeSQL(t, greetSilent), newFakeSQL(t, greetErr)
	p := newTestProber(t, "c1", HealthConfig{Timeout: time.Minute, FailuresToUnhealthy: 1})
	ticks := manualTicks(p)
	p.SetTargets([]Target{silent.target(), bad.target()})
	p.Start(context.Background())
	waitHealth(t, p, bad.Addr(), func(h observer.Health) bool { return h.Failures == 1 })
	for i := 2; i <= 4; i++ {
		ticks <- time.Now()
		waitHealth(t, p, bad.Addr(), func(h observer.Health) bool { return h.Failures == i })
	}
	require.EqualValues(t, 4, bad.accepted.Load())
	require.EqualValues(t, 1, silent.accepted.Load())
	require.Equal(t, observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, p.Results()[silent.Addr()])
}

// TestProbersAreIndependent: a cluster whose backends all hang does not
// delay another cluster's verdict.
func TestProbersAreIndependent(t *testing.T) {
	var hung []Target
	var servers []*fakeSQL
	for range 4 {
		s := newFakeSQL(t, greetSilent)
		servers = append(servers, s)
		hung = append(hung, s.target())
	}
	slow := newTestProber(t, "slow", HealthConfig{Interval: 10 * time.Millisecond, Timeout: time.Minute})
	slow.SetTargets(hung)
	slow.Start(context.Background())
	for _, s := range servers {
		require.Eventually(t, func() bool { return s.accepted.Load() == 1 }, waitFor, tick)
	}

	bad := newFakeSQL(t, greetErr)
	fast := newTestProber(t, "fast", HealthConfig{Interval: 10 * time.Millisecond, Timeout: time.Minute, FailuresToUnhealthy: 2})
	fast.SetTargets([]Target{bad.target()})
	fast.Start(context.Background())
	h := waitHealth(t, fast, bad.Addr(), func(h observer.Health) bool { return !h.Healthy })
	require.Contains(t, h.Reason, "is blocked")

	// The slow cluster's probes were still in flight all along.
	for _, h := range slow.Results() {
		require.Equal(t, observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, h)
	}
}

func TestCloseCancelsInFlightProbes(t *testing.T) {
	// Registered first, so it runs after the servers' cleanups.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	silent, good := newFakeSQL(t, greetSilent), newFakeSQL(t, greetOK)
	status := newStatusServer(t, 200, false)
	p := NewProber(zaptest.NewLogger(t), "c1", HealthConfig{Interval: 10 * time.Millisecond, Timeout: time.Minute})
	p.SetTargets([]Target{silent.target(), good.withStatus(status.port())})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return silent.accepted.Load() == 1 && status.hits.Load() >= 2 }, waitFor, tick)

	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitFor):
		require.Fail(t, "Close waited for a probe's timeout")
	}
	require.Eventually(t, func() bool { return silent.peerClosed.Load() == 1 }, waitFor, tick)
	p.Close() // idempotent
	p.Start(context.Background())
	p.SetTargets([]Target{good.target()}) // still safe after Close, probes nothing
}

func TestCloseWithoutStart(t *testing.T) {
	p := NewProber(zaptest.NewLogger(t), "c1", HealthConfig{})
	p.SetTargets([]Target{{Addr: "127.0.0.1:1"}})
	p.Close()
	p.Close()
	p.Start(context.Background()) // after Close: does nothing
	require.Equal(t, observer.Health{Healthy: true, Reason: ErrNotProbed.Error()}, p.Results()["127.0.0.1:1"])
}

func TestStartContextEndsLoop(t *testing.T) {
	good := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{Interval: 10 * time.Millisecond})
	p.SetTargets([]Target{good.target()})
	ctx, cancel := context.WithCancel(context.Background())
	p.Start(ctx)
	p.Start(ctx) // second Start does nothing
	waitHealth(t, p, good.Addr(), probed)
	cancel()
	require.Eventually(t, func() bool {
		select {
		case <-p.loop.Done():
			return true
		default:
			return false
		}
	}, waitFor, tick)
}

func TestDefaults(t *testing.T) {
	p := NewProber(zaptest.NewLogger(t), "c1", HealthConfig{})
	defer p.Close()
	require.Equal(t, DefaultHealthInterval, p.cfg.Interval)
	require.Equal(t, DefaultHealthRetryInterval, p.cfg.RetryInterval)
	require.Equal(t, DefaultHealthTimeout, p.cfg.Timeout)
	require.Equal(t, DefaultFailuresToUnhealthy, p.cfg.FailuresToUnhealthy)
	tidb := Target{Addr: "10.0.0.1:4000", StatusPort: 10080}
	require.Equal(t, "http://10.0.0.1:10080/status", p.statusTarget(tidb).URL())
	ps := NewProber(zaptest.NewLogger(t), "c1", HealthConfig{StatusTLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	defer ps.Close()
	require.Equal(t, "https://10.0.0.1:10080/status", ps.statusTarget(tidb).URL())
}

// TestProbeRecordsGreeting: the prober records what a backend announces
// (the proxy greets clients with it), keeps it while probes fail, and
// signals when it changes.
func TestProbeRecordsGreeting(t *testing.T) {
	srv := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{Interval: 10 * time.Millisecond, FailuresToUnhealthy: 5})
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	h := waitHealth(t, p, srv.Addr(), probed)
	require.Equal(t, &observer.ServerInfo{
		Version:    "8.0.11-TiDB-v7.5.0",
		Capability: mysql.ClientProtocol41 | mysql.ClientSecureConnection | mysql.ClientPluginAuth,
		Charset:    46,
	}, h.Server)

	srv.setMode(greetErr)
	h = waitHealth(t, p, srv.Addr(), func(h observer.Health) bool { return h.Failures > 0 })
	require.NotNil(t, h.Server, "a failed probe keeps the last greeting")
	require.Equal(t, "8.0.11-TiDB-v7.5.0", h.Server.Version)
}

// The status check closes with a reset once it has read the answer, so
// neither side keeps a TIME_WAIT socket: the server, which sent its FIN
// first as net/http's does after Connection: close, reads a reset, not an
// orderly close.
