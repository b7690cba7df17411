package health

import (
	"container/heap"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// How a keptStatusServer answers /status.
const (
	answerOK    int32 = iota // 200, keep-alive
	answer500                // 500, keep-alive
	answerClose              // 200 with Connection: close
	answerBig                // 200 with a body over maxStatusBody
	answerHang               // nothing until the test ends
)

// keptStatusServer is a status port that counts the connections made to it
// and the requests on them.
type keptStatusServer struct {
	srv  *httptest.Server
	cc   *testenv.ConnCounts
	mode atomic.Int32
	reqs atomic.Int32
	hang chan struct{}
}

func newKeptStatusServer(t *testing.T, useTLS bool) *keptStatusServer {
	t.Helper()
	s := &keptStatusServer{hang: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		switch s.mode.Load() {
		case answer500:
			w.WriteHeader(http.StatusInternalServerError)
		case answerClose:
			w.Header().Set("Connection", "close")
		case answerBig:
			_, _ = io.WriteString(w, strings.Repeat("x", maxStatusBody+1024))
			return
		case answerHang:
			<-s.hang
			return
		}
		_, _ = io.WriteString(w, `{"connections":0,"version":"8.0.11-TiDB-v7.5.0"}`)
	}))
	s.cc = testenv.CountConns(s.srv)
	if useTLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(func() {
		close(s.hang)
		s.srv.Close()
	})
	return s
}

func (s *keptStatusServer) port() uint {
	return uint(s.srv.Listener.Addr().(*net.TCPAddr).Port)
}

// statusRounds drives a prober of one target round by round.
type statusRounds struct {
	t     *testing.T
	p     *Prober
	ticks chan<- time.Time
	addr  string
}

func newStatusRounds(t *testing.T, cfg HealthConfig, target Target) *statusRounds {
	p := newTestProber(t, "c1", cfg)
	r := &statusRounds{t: t, p: p, ticks: manualTicks(p), addr: target.Addr}
	p.SetTargets([]Target{target})
	p.Start(context.Background()) // the first round
	waitHealth(t, p, target.Addr, probed)
	return r
}

// round runs one more round and returns its verdict.
func (r *statusRounds) round() observer.Health {
	r.t.Helper()
	before := r.p.Results()[r.addr].LastProbe
	r.ticks <- time.Now()
	return waitHealth(r.t, r.p, r.addr, func(h observer.Health) bool { return h.LastProbe.After(before) })
}

// bothModes runs test with the default probe (a greeting on a new
// connection, then the status check, in a worker) and with a probe user
// (the loop's round: a COM_PING on the kept SQL connection and the status
// check together, roundLocked).
func bothModes(t *testing.T, test func(t *testing.T, user string)) {
	for _, user := range []string{"", "probe"} {
		name := "greeting"
		if user != "" {
			name = "probe user"
		}
		t.Run(name, func(t *testing.T) { test(t, user) })
	}
}

// The scheduled status checks ask on one kept connection, over plain HTTP
// and over TLS, with and without a probe user; removing the target closes it.
func TestStatusConnectionKept(t *testing.T) {
	for _, tc := range []struct {
		name   string
		useTLS bool
		user   string
	}{{"http", false, ""}, {"https", true, ""}, {"http with a probe user", false, "probe"}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newKeptStatusServer(t, tc.useTLS)
			cfg := HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1, SQLUser: tc.user}
			if tc.useTLS {
				pool := s.srv.Client().Transport.(*http.Transport).TLSClientConfig
				cfg.StatusTLS = pool.Clone()
			}
			sql := newFakeSQL(t, greetOK)
			r := newStatusRounds(t, cfg, sql.withStatus(s.port()))
			for range 4 {
				h := r.round()
				require.True(t, h.Healthy, h.Reason)
			}
			require.EqualValues(t, 5, s.reqs.Load(), "one request a round")
			require.EqualValues(t, 1, s.cc.New.Load(), "on one connection")
			require.EqualValues(t, 1, r.p.StatusDials())

			r.p.SetTargets(nil)
			require.Eventually(t, func() bool { return s.cc.Closed.Load() == 1 }, waitFor, tick,
				"a removed target's status connection is closed")
		})
	}
}

// A kept status connection that the server closed (an idle timeout, a
// restart) is not a failure: a new connection decides, in the same probe.
func TestStatusConnectionClosedByServer(t *testing.T) {
	bothModes(t, testStatusConnectionClosedByServer)
}

func testStatusConnectionClosedByServer(t *testing.T, user string) {
	s := newKeptStatusServer(t, false)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1, SQLUser: user},
		newFakeSQL(t, greetOK).withStatus(s.port()))
	for i := 2; i <= 4; i++ {
		s.srv.CloseClientConnections()
		require.Eventually(t, func() bool { return s.cc.Closed.Load() == int32(i-1) }, waitFor, tick)
		h := r.round()
		require.True(t, h.Healthy, h.Reason)
		require.Zero(t, h.Failures)
		require.EqualValues(t, i, s.cc.New.Load(), "a new connection after the server closed the kept one")
		require.EqualValues(t, i, r.p.StatusDials())
	}
}

// An answer that is not a 200 is a failed check, and the connection that
// carried it, still good, is kept.
func TestStatusConnectionKeptThrough500(t *testing.T) {
	bothModes(t, testStatusConnectionKeptThrough500)
}

func testStatusConnectionKeptThrough500(t *testing.T, user string) {
	s := newKeptStatusServer(t, false)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 2, SQLUser: user},
		newFakeSQL(t, greetOK).withStatus(s.port()))
	s.mode.Store(answer500)
	h := r.round()
	require.True(t, h.Healthy)
	require.Equal(t, 1, h.Failures)
	h = r.round()
	require.False(t, h.Healthy)
	require.Equal(t, "status port answered 500", h.Reason)
	s.mode.Store(answerOK)
	h = r.round()
	require.True(t, h.Healthy, h.Reason)
	require.EqualValues(t, 4, s.reqs.Load())
	require.EqualValues(t, 1, s.cc.New.Load())
}

// A status port that stops answering on the kept connection fails the check
// within the timeout; that connection is dropped, and the next check
// connects anew.
func TestStatusConnectionHung(t *testing.T) { bothModes(t, testStatusConnectionHung) }

func testStatusConnectionHung(t *testing.T, user string) {
	s := newKeptStatusServer(t, false)
	// Long enough for a loaded machine to greet and answer within it.
	timeout := time.Second
	r := newStatusRounds(t, HealthConfig{Timeout: timeout, FailuresToUnhealthy: 1, SQLUser: user},
		newFakeSQL(t, greetOK).withStatus(s.port()))
	s.mode.Store(answerHang)
	start := time.Now()
	h := r.round()
	require.GreaterOrEqual(t, time.Since(start), timeout)
	require.False(t, h.Healthy)
	require.Contains(t, h.Reason, `status port: Get "http://`)
	require.Contains(t, h.Reason, `/status": context deadline exceeded`)
	require.EqualValues(t, 1, s.cc.New.Load(), "no second connection within the same probe")

	s.mode.Store(answerOK)
	h = r.round()
	require.True(t, h.Healthy, h.Reason)
	require.EqualValues(t, 2, s.cc.New.Load(), "the hung connection was dropped")
	require.EqualValues(t, 2, r.p.StatusDials())
}

// A connection is not kept when the server says it closes, or when the
// answer was too long to read whole: the next check connects anew each time.
// (lib/httpkeep's tests cover the connection's age.)
func TestStatusConnectionNotKept(t *testing.T) { bothModes(t, testStatusConnectionNotKept) }

func testStatusConnectionNotKept(t *testing.T, user string) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"Connection: close", answerClose}, {"answer too long", answerBig}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newKeptStatusServer(t, false)
			s.mode.Store(tc.mode)
			r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1, SQLUser: user},
				newFakeSQL(t, greetOK).withStatus(s.port()))
			for i := 2; i <= 3; i++ {
				h := r.round()
				require.True(t, h.Healthy, h.Reason)
				require.EqualValues(t, i, s.cc.New.Load())
				require.EqualValues(t, i, r.p.StatusDials())
				r.p.mu.Lock()
				kept := r.p.targets[r.addr].kept.status
				r.p.mu.Unlock()
				require.Nil(t, kept, "not kept for the next check")
			}
			require.Eventually(t, func() bool { return s.cc.Closed.Load() >= 2 }, waitFor, tick,
				"the connections not kept are closed")
		})
	}
}

// A target whose status port goes away closes the kept connection; one
// whose status port moves connects to the new one.
func TestStatusConnectionFollowsTarget(t *testing.T) { bothModes(t, testStatusConnectionFollowsTarget) }

func testStatusConnectionFollowsTarget(t *testing.T, user string) {
	s1, s2 := newKeptStatusServer(t, false), newKeptStatusServer(t, false)
	sql := newFakeSQL(t, greetOK)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1, SQLUser: user},
		sql.withStatus(s1.port()))

	r.p.SetTargets([]Target{sql.withStatus(s2.port())})
	require.True(t, r.round().Healthy)
	require.Eventually(t, func() bool { return s1.cc.Closed.Load() == 1 }, waitFor, tick, "the old port's connection is closed")
	require.EqualValues(t, 1, s2.cc.New.Load())
	require.EqualValues(t, 1, s2.reqs.Load())

	r.p.SetTargets([]Target{sql.target()})
	require.True(t, r.round().Healthy)
	require.Eventually(t, func() bool { return s2.cc.Closed.Load() == 1 }, waitFor, tick,
		"a target without a status port keeps no status connection")
	require.EqualValues(t, 1, s2.reqs.Load())
}

// With a probe user, the loop checks the status ports in its rounds,
// together with the pings (roundLocked), and its verdicts are a worker's:
// a 200 keeps both connections; a 500 fails and keeps them; a status port
// or a SQL port that does not answer in time fails, and only the late
// connection is dropped; a status connection the server closed while idle
// is no failure: the target goes to a worker, which connects anew.
func TestRoundWithStatusPorts(t *testing.T) {
	const timeout = time.Second // long enough for the fakes to answer on a loaded machine
	p := newTestProber(t, "c1", HealthConfig{
		Interval: time.Hour, Timeout: timeout, FailuresToUnhealthy: 1, SQLUser: "probe",
	})
	const (
		ok = iota
		status500
		statusHung
		statusClosed
		sqlHung
		n
	)
	sqls := make([]*fakeSQL, n)
	stats := make([]*keptStatusServer, n)
	var ts []Target
	for i := range n {
		sqls[i], stats[i] = newFakeSQL(t, greetOK), newKeptStatusServer(t, false)
		ts = append(ts, sqls[i].withStatus(stats[i].port()))
	}
	p.SetTargets(ts)
	// Connect as the targets' first probes would, without the prober's
	// loop, so that the test makes the round.
	ctx := context.Background()
	var batch []*targetState
	for i, tg := range ts {
		c, err := mysql.DialProbe(ctx, p.dialer, tg.Addr, "probe", "")
		require.NoError(t, err)
		code, sc, err := p.statusKept.Get(ctx, p.statusTarget(tg), nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		require.NotNil(t, sc)
		p.mu.Lock()
		st := p.targets[tg.Addr]
		heap.Remove(&p.sched, st.idx)
		st.kept = keptConns{sql: c, status: sc}
		require.True(t, p.inRound(st), "%d: a target with fresh kept connections is probed in the round", i)
		p.mu.Unlock()
		batch = append(batch, st)
	}
	stats[status500].mode.Store(answer500)
	stats[statusHung].mode.Store(answerHang)
	stats[statusClosed].srv.CloseClientConnections()
	require.Eventually(t, func() bool { return stats[statusClosed].cc.Closed.Load() == 1 }, waitFor, tick)
	sqls[sqlHung].setMode(greetSilent)

	start := time.Now()
	p.mu.Lock()
	p.roundLocked(p.life, batch)
	p.mu.Unlock()
	require.GreaterOrEqual(t, time.Since(start), timeout, "the hung backends were waited for")

	kept := func(i int) keptConns {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.targets[ts[i].Addr].kept
	}
	res := p.Results()
	for i, want := range map[int]string{
		ok:         "",
		status500:  "status port answered 500",
		statusHung: `status port: Get "http://127.0.0.1:` + strconv.Itoa(int(stats[statusHung].port())) + `/status": context deadline exceeded`,
		sqlHung:    "sql port: ping: context deadline exceeded",
	} {
		h := res[ts[i].Addr]
		require.True(t, h.LastProbe.After(start), i)
		require.Equal(t, want == "", h.Healthy, "%d: %s", i, h.Reason)
		if want != "" {
			require.Equal(t, want, h.Reason)
		}
		require.EqualValues(t, 1, stats[i].cc.New.Load(), "%d: no new status connection within the round", i)
	}
	for _, i := range []int{ok, status500} {
		k := kept(i)
		require.NotNil(t, k.sql, i)
		require.NotNil(t, k.status, i)
		require.EqualValues(t, 2, stats[i].reqs.Load(), "%d: asked on the kept connection", i)
		require.EqualValues(t, 1, sqls[i].pings.Load(), i)
	}
	require.Nil(t, kept(statusHung).status, "the late status connection is dropped")
	require.NotNil(t, kept(statusHung).sql, "the SQL connection that answered is kept")
	require.Nil(t, kept(sqlHung).sql, "the late SQL connection is dropped")
	require.NotNil(t, kept(sqlHung).status, "the status connection that answered is kept")

	// The closed status connection: a worker probes the target again, on
	// a new status connection, and finds it healthy.
	h := waitHealth(t, p, ts[statusClosed].Addr, probed)
	require.True(t, h.Healthy, h.Reason)
	require.Zero(t, h.Failures)
	require.EqualValues(t, 2, stats[statusClosed].cc.New.Load(), "a new status connection")
	require.EqualValues(t, n+1, p.StatusDials(), "the test's dials, and one by the worker")
	require.NotNil(t, kept(statusClosed).status)
}

// The round takes only targets whose probe needs nothing but their kept
// connections; the others go to workers, which connect.
func TestInRound(t *testing.T) {
	s := newKeptStatusServer(t, false)
	sql := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{Timeout: 5 * time.Second, SQLUser: "probe"})
	ctx := context.Background()
	c, err := mysql.DialProbe(ctx, p.dialer, sql.Addr(), "probe", "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, sc, err := p.statusKept.Get(ctx, p.statusTarget(sql.withStatus(s.port())), nil, nil)
	require.NoError(t, err)
	t.Cleanup(sc.Close)

	for _, tc := range []struct {
		name string
		t    Target
		kept keptConns
		want bool
	}{
		{"a kept SQL connection, no status port", sql.target(), keptConns{sql: c}, true},
		{"both connections kept", sql.withStatus(s.port()), keptConns{sql: c, status: sc}, true},
		{"no SQL connection yet", sql.withStatus(s.port()), keptConns{status: sc}, false},
		{"no status connection yet", sql.withStatus(s.port()), keptConns{sql: c}, false},
		{"the status port moved", sql.withStatus(s.port() + 1), keptConns{sql: c, status: sc}, false},
		{"the status port went", sql.target(), keptConns{sql: c, status: sc}, false},
	} {
		require.Equal(t, tc.want, p.inRound(&targetState{t: tc.t, status: p.statusTarget(tc.t), kept: tc.kept}), tc.name)
	}

	// Without SQLUser, the SQL port's probe is a greeting on a new
	// connection, which the round makes for an address that is an IP.
	greeting := newTestProber(t, "c2", HealthConfig{Timeout: 5 * time.Second})
	_, port, err := net.SplitHostPort(sql.Addr())
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		t    Target
		kept keptConns
		want bool
	}{
		{"greeting, no status port", sql.target(), keptConns{}, true},
		{"greeting, kept status connection", sql.withStatus(s.port()), keptConns{status: sc}, true},
		{"greeting, no status connection yet", sql.withStatus(s.port()), keptConns{}, false},
		{"greeting at a name to resolve", Target{Addr: net.JoinHostPort("localhost", port)}, keptConns{}, false},
	} {
		st := &targetState{t: tc.t, status: greeting.statusTarget(tc.t), kept: tc.kept}
		st.greetAt = mysql.GreetingAddr(tc.t.Addr)
		require.False(t, greeting.inRound(st), "%s: a new target's first probe is a worker's", tc.name)
		st.h = observer.Health{Healthy: true, LastProbe: time.Now()}
		require.Equal(t, tc.want, greeting.inRound(st), tc.name)
		st.h.Failures = 1
		require.False(t, greeting.inRound(st), "%s: a failed probe is made again by a worker", tc.name)
	}
}

// Without a probe user, the loop reads the greetings of the targets whose
// last probe passed in its rounds (mysql.GreetingProbe), and its verdicts
// are a worker's: a greeting passes and is recorded, as does a full
// server's refusal; an ERR greeting, a refused connect and a server that
// does not speak in time fail, saying why. The round lasts as long as the
// silent server is waited for, no longer; nothing goes to a worker.
func TestGreetingRound(t *testing.T) {
	const timeout = time.Second // long enough for the fakes to answer on a loaded machine
	p := newTestProber(t, "c1", HealthConfig{Interval: time.Hour, Timeout: timeout, FailuresToUnhealthy: 1})
	status := newKeptStatusServer(t, false)
	silent := newFakeSQL(t, greetSilent)
	targets := map[string]Target{
		"greeting":    newFakeSQL(t, greetOK).target(),
		"full":        newFakeSQL(t, greetFull).target(),
		"blocked":     newFakeSQL(t, greetErr).target(),
		"silent":      silent.target(),
		"refused":     {Addr: closedAddr(t)},
		"with status": newFakeSQL(t, greetOK).withStatus(status.port()),
	}
	want := map[string]string{
		"greeting":    "",
		"full":        "",
		"blocked":     "sql port: server refused: ERROR 1129 (HY000): Host '127.0.0.1' is blocked because of many connection errors",
		"silent":      "sql port: read greeting: context deadline exceeded",
		"refused":     "sql port: connect: dial tcp " + targets["refused"].Addr + ": connect: connection refused",
		"with status": "",
	}
	var ts []Target
	for _, tg := range targets {
		ts = append(ts, tg)
	}
	p.SetTargets(ts)
	// As after a first probe that passed, without the prober's loop, so
	// that the test makes the round.
	ctx := context.Background()
	var batch []*targetState
	before := time.Now()
	for name, tg := range targets {
		var kept keptConns
		if tg.StatusPort != 0 {
			code, sc, err := p.statusKept.Get(ctx, p.statusTarget(tg), nil, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			kept.status = sc
		}
		p.mu.Lock()
		st := p.targets[tg.Addr]
		heap.Remove(&p.sched, st.idx)
		st.kept = kept
		st.h = observer.Health{Healthy: true, LastProbe: before}
		require.True(t, p.inRound(st), name)
		p.mu.Unlock()
		batch = append(batch, st)
	}

	start := time.Now()
	p.mu.Lock()
	p.roundLocked(p.life, batch)
	workers, queued := p.workers, len(p.ready)
	p.mu.Unlock()
	took := time.Since(start)
	require.GreaterOrEqual(t, took, timeout, "the silent server was waited for")
	require.Less(t, took, timeout+time.Second, "and only that long")
	require.Zero(t, workers)
	require.Zero(t, queued)

	res := p.Results()
	for name, reason := range want {
		h := res[targets[name].Addr]
		require.True(t, h.LastProbe.After(before), name)
		require.Equal(t, reason, h.Reason, name)
		require.Equal(t, reason == "", h.Healthy, name)
	}
	require.Equal(t, "8.0.11-TiDB-v7.5.0", res[targets["greeting"].Addr].Server.Version, "the greeting is recorded")
	require.EqualValues(t, 1, status.cc.New.Load(), "the status check used the kept connection")
	require.EqualValues(t, 2, status.reqs.Load())
	require.Eventually(t, func() bool { return silent.peerClosed.Load() == 1 }, waitFor, tick,
		"the silent server's connection is closed")
}
