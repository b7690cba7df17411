package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	s := newKeptStatusServer(t, false)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1},
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
	s := newKeptStatusServer(t, false)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 2},
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
func TestStatusConnectionHung(t *testing.T) {
	s := newKeptStatusServer(t, false)
	// Long enough for a loaded machine to greet and answer within it.
	timeout := time.Second
	r := newStatusRounds(t, HealthConfig{Timeout: timeout, FailuresToUnhealthy: 1},
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
func TestStatusConnectionNotKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"Connection: close", answerClose}, {"answer too long", answerBig}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newKeptStatusServer(t, false)
			s.mode.Store(tc.mode)
			r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1},
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
func TestStatusConnectionFollowsTarget(t *testing.T) {
	s1, s2 := newKeptStatusServer(t, false), newKeptStatusServer(t, false)
	sql := newFakeSQL(t, greetOK)
	r := newStatusRounds(t, HealthConfig{Timeout: 5 * time.Second, FailuresToUnhealthy: 1}, sql.withStatus(s1.port()))

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
