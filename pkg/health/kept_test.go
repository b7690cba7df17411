package health

import (
	"container/heap"
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	zapobs "go.uber.org/zap/zaptest/observer"

	"github.com/switchyard-db/switchyard/lib/cadence"
	"github.com/switchyard-db/switchyard/pkg/mysql"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// With a probe user, the prober logs in once and pings the kept
// connection at every probe; removing the target closes it with COM_QUIT.
func TestKeptConnectionPings(t *testing.T) {
	srv := newFakeSQL(t, greetOK)
	p := newTestProber(t, "c1", HealthConfig{
		Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, FailuresToUnhealthy: 1,
		SQLUser: "probe", SQLPassword: "probe-pw",
	})
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return srv.pings.Load() >= 5 }, waitFor, tick)
	h := p.Results()[srv.Addr()]
	require.True(t, h.Healthy, h.Reason)
	require.Zero(t, h.Failures)
	require.NotNil(t, h.Server, "the greeting of the kept connection is recorded")
	require.Equal(t, "8.0.11-TiDB-v7.5.0", h.Server.Version)
	require.EqualValues(t, 1, srv.accepted.Load(), "one connection for every probe")
	require.EqualValues(t, 1, srv.logins.Load())
	require.EqualValues(t, 1, p.Dials())

	p.SetTargets(nil)
	require.Eventually(t, func() bool { return srv.quits.Load() == 1 }, waitFor, tick,
		"the kept connection of a removed target is closed")
}

// Close closes the kept connections.
func TestKeptConnectionClosedByClose(t *testing.T) {
	srv := newFakeSQL(t, greetOK)
	p := NewProber(zap.NewNop(), "c1", HealthConfig{Interval: 10 * time.Millisecond, SQLUser: "probe"})
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return srv.pings.Load() >= 1 }, waitFor, tick)
	p.Close()
	require.Eventually(t, func() bool { return srv.quits.Load() == 1 }, waitFor, tick)
}

// A kept connection whose server stops answering (a hung or SIGSTOPped
// backend) fails within the probe timeout, and the prober connects again
// once the server answers.
func TestKeptConnectionHungBackend(t *testing.T) {
	srv := newFakeSQL(t, greetOK)
	const interval, timeout = 20 * time.Millisecond, time.Second
	core, logs := zapobs.New(zap.InfoLevel)
	p := NewProber(zap.New(core), "c1", HealthConfig{
		Interval: interval, Timeout: timeout, FailuresToUnhealthy: 1, SQLUser: "probe",
	})
	t.Cleanup(p.Close)
	p.SetTargets([]Target{srv.target()})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return srv.pings.Load() >= 2 }, waitFor, tick)

	srv.setMode(greetSilent)
	start := time.Now()
	waitHealth(t, p, srv.Addr(), func(h observer.Health) bool { return !h.Healthy })
	// Generous for a loaded machine: what matters is that the hang is
	// bounded by the probe timeout, not by the connection.
	require.Less(t, time.Since(start), interval+timeout+5*time.Second)
	// The first verdict after the hang (later probes dial again and fail
	// on the greeting) is the ping's: a ping that ran out of time is the
	// verdict, with no redial in the same probe.
	var reasons []string
	for _, e := range logs.FilterMessage("backend unhealthy").All() {
		if !e.Time.Before(start) {
			reasons = append(reasons, e.ContextMap()["reason"].(string))
		}
	}
	require.NotEmpty(t, reasons)
	require.Equal(t, "sql port: ping: context deadline exceeded", reasons[0])

	srv.setMode(greetOK)
	h := waitHealth(t, p, srv.Addr(), func(h observer.Health) bool { return h.Healthy })
	require.Empty(t, h.Reason)
	require.GreaterOrEqual(t, p.Dials(), uint64(2))
	require.Eventually(t, func() bool { return srv.logins.Load() >= 2 }, waitFor, tick)
}

// TestSchedulingSpreadsProbes: after their first probe, a prober's
// targets are due together in its phase. Probers draw their phases from the
// cadence grid: probers that drew the same instant are due at the same
// instants (so the process wakes once for them), and the draws still spread
// the probers over the interval's instants.
func TestSchedulingSpreadsProbes(t *testing.T) {
	const interval = time.Hour
	// One failure is the verdict, so the refused probes are not retried
	// (TestRetryAfterFailure) but scheduled in the phase.
	p := newTestProber(t, "c1", HealthConfig{Interval: interval, Timeout: 5 * time.Second, FailuresToUnhealthy: 1})
	// Distinct addresses that all refuse fast: the verdict does not matter,
	// the schedule does.
	var ts []Target
	for i := range 50 {
		ts = append(ts, Target{Addr: fmt.Sprintf("127.0.0.1:%d", refusedPort(t, i))})
	}
	start := time.Now()
	p.SetTargets(ts)
	p.Start(context.Background())
	require.Eventually(t, func() bool {
		for _, h := range p.Results() {
			if h.LastProbe.IsZero() {
				return false
			}
		}
		return true
	}, waitFor, tick)
	p.mu.Lock()
	var dues []time.Time
	for _, st := range p.sched {
		dues = append(dues, st.due)
	}
	p.mu.Unlock()
	require.Len(t, dues, len(p.Results()))
	for _, d := range dues {
		require.Equal(t, dues[0], d, "one cluster's probes are due together")
	}
	require.True(t, dues[0].After(start))
	require.False(t, dues[0].After(time.Now().Add(interval)))
	require.Zero(t, dues[0].Sub(p.phase)%interval, "in the prober's phase")

	// 200 probers of a 1 s interval: their phases are instants of the grid,
	// every instant is drawn, and probers with the same phase are due at
	// the same instant, to the nanosecond.
	const second = time.Second
	now := time.Now()
	offsets := map[time.Duration]time.Time{} // phase's offset in the interval -> next due
	ref := cadence.Next(p.phase, second, now)
	for range 200 {
		q := NewProber(zap.NewNop(), "c", HealthConfig{Interval: second})
		off := q.phase.Sub(ref) % second
		if off < 0 {
			off += second
		}
		require.Zero(t, off%cadence.Step, "on the grid")
		due := q.nextSlot(now)
		if prev, ok := offsets[off]; ok {
			require.Equal(t, prev, due, "the same phase, the same instant")
		}
		offsets[off] = due
		q.Close()
	}
	require.Len(t, offsets, int(second/cadence.Step), "the probers spread over every instant")
}

// refusedPort is a loopback port nobody listens on (i only varies the
// call site's loop; each call asks the kernel for a fresh port).
func refusedPort(t *testing.T, _ int) int {
	t.Helper()
	addr := closedAddr(t)
	var port int
	_, err := fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port)
	require.NoError(t, err)
	return port
}

// proberGoroutines counts the goroutines running the prober's code (its
// loop and its workers), from a dump of every goroutine's stack.
func proberGoroutines() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/health.(*Prober).run") || strings.Contains(g, "pkg/health.(*Prober).worker") {
			n++
		}
	}
	return n
}

// TestGoroutinesBoundedPerProber: 1,000 targets (a few answering, a few
// hanging, most refusing) never take more than the loop and MaxInFlight
// workers, and every target still gets its verdict.
func TestGoroutinesBoundedPerProber(t *testing.T) {
	good := []*fakeSQL{newFakeSQL(t, greetOK), newFakeSQL(t, greetOK)}
	hung := []*fakeSQL{newFakeSQL(t, greetSilent), newFakeSQL(t, greetSilent)}
	var ts []Target
	for _, s := range append(good, hung...) {
		ts = append(ts, s.target())
	}
	for i := len(ts); i < 1000; i++ {
		ts = append(ts, Target{Addr: fmt.Sprintf("127.0.0.1:%d", refusedPort(t, i))})
	}
	// No test logger: a thousand failures a round would be its load. The
	// timeout leaves a loaded machine time to greet.
	p := NewProber(zap.NewNop(), "c1", HealthConfig{
		Interval: time.Second, Timeout: time.Second, FailuresToUnhealthy: 1,
	})
	t.Cleanup(p.Close)
	base := runtime.NumGoroutine()
	p.SetTargets(ts)
	p.Start(context.Background())
	maxSeen, maxAll := 0, 0
	// A round of 1,000 probes by 8 workers takes seconds under the race
	// detector on a loaded machine.
	deadline := time.Now().Add(time.Minute)
	for {
		maxSeen = max(maxSeen, proberGoroutines())
		maxAll = max(maxAll, runtime.NumGoroutine()-base)
		done := true
		for _, h := range p.Results() {
			if h.LastProbe.IsZero() {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // a stack dump stops the world
	}
	require.LessOrEqual(t, maxSeen, 1+DefaultMaxInFlight, "the loop and at most MaxInFlight workers")
	// The fake servers' goroutines (one per connection) come and go too.
	require.Less(t, maxAll, 1+DefaultMaxInFlight+20, "goroutines stay O(1) per prober, not O(targets)")
	res := p.Results()
	for _, s := range good {
		require.True(t, res[s.Addr()].Healthy)
	}
	for _, s := range hung {
		require.Equal(t, "sql port: read greeting: context deadline exceeded", res[s.Addr()].Reason)
	}
	unhealthy := 0
	for _, h := range res {
		require.False(t, h.LastProbe.IsZero())
		if !h.Healthy {
			unhealthy++
		}
	}
	require.Equal(t, len(res)-len(good), unhealthy)
}

// mariaProbeUser creates a password-protected probe account on the shared
// MariaDB (no privileges) and returns an admin pool.
func mariaProbeUser(t *testing.T, m *testenv.MariaDB, user, pw string) *sql.DB {
	t.Helper()
	admin := testenv.OpenDB(t, m.Config(testenv.AdminUser, testenv.AdminPassword))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := admin.ExecContext(ctx, fmt.Sprintf("CREATE OR REPLACE USER '%s'@'%%' IDENTIFIED BY '%s'", user, pw))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", user)) })
	return admin
}

// probeSessions lists the server's connections of user.
func probeSessions(t *testing.T, admin *sql.DB, user string) []int64 {
	t.Helper()
	rows, err := admin.Query("SELECT id FROM information_schema.PROCESSLIST WHERE user = ? ORDER BY id", user)
	require.NoError(t, err)
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}

// Against a real MariaDB: the probe user logs in once and many probes use
// that one connection; a KILL of it from another session is followed by a
// new login (a counted dial) without a failed verdict; a wrong password is
// an unhealthy backend whose reason says why, and the password appears in
// no reason and no log line.
func TestKeptConnectionMariaDB(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	const user, pw = "swyprobe", "Pr0be-secret-pw"
	admin := mariaProbeUser(t, m, user, pw)

	core, logs := zapobs.New(zap.DebugLevel)
	p := NewProber(zap.New(core), "maria", HealthConfig{
		Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, FailuresToUnhealthy: 1,
		SQLUser: user, SQLPassword: pw,
	})
	t.Cleanup(p.Close)
	p.SetTargets([]Target{{Addr: m.Addr()}})
	p.Start(context.Background())
	first := waitHealth(t, p, m.Addr(), probed)
	require.True(t, first.Healthy, first.Reason)
	require.Contains(t, first.Server.Version, "MariaDB")
	// Ten more probes.
	prev := first
	for range 10 {
		prev = waitHealth(t, p, m.Addr(), func(h observer.Health) bool { return h.LastProbe.After(prev.LastProbe) })
		require.True(t, prev.Healthy, prev.Reason)
	}
	require.EqualValues(t, 1, p.Dials())
	ids := probeSessions(t, admin, user)
	require.Len(t, ids, 1, "one kept connection")

	// KILL it from another session: the next probe connects again, and
	// the verdict never changes (FailuresToUnhealthy 1 would show it).
	drain(p.Updates())
	_, err := admin.Exec(fmt.Sprintf("KILL CONNECTION %d", ids[0]))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Dials() == 2 }, waitFor, tick)
	var now []int64
	require.Eventually(t, func() bool {
		now = probeSessions(t, admin, user)
		return len(now) == 1 && now[0] != ids[0]
	}, waitFor, tick)
	prev = p.Results()[m.Addr()]
	for range 3 {
		prev = waitHealth(t, p, m.Addr(), func(h observer.Health) bool { return h.LastProbe.After(prev.LastProbe) })
		require.True(t, prev.Healthy, prev.Reason)
		require.Zero(t, prev.Failures)
	}
	requireNoSignal(t, p.Updates())
	require.EqualValues(t, 2, p.Dials())
	p.Close()
	require.Eventually(t, func() bool { return len(probeSessions(t, admin, user)) == 0 }, waitFor, tick,
		"Close logs the kept connection out")

	// A wrong password.
	const wrong = "Wr0ng-secret-pw"
	bad := NewProber(zap.New(core), "maria", HealthConfig{
		Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, FailuresToUnhealthy: 2,
		SQLUser: user, SQLPassword: wrong,
	})
	t.Cleanup(bad.Close)
	bad.SetTargets([]Target{{Addr: m.Addr()}})
	bad.Start(context.Background())
	h := waitHealth(t, bad, m.Addr(), func(h observer.Health) bool { return !h.Healthy })
	require.Contains(t, h.Reason, `sql port: login as "swyprobe" refused: ERROR 1045`)
	require.Contains(t, h.Reason, "Access denied")
	require.NotContains(t, h.Reason, wrong)
	bad.Close()

	require.NotZero(t, logs.Len())
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		require.NotContains(t, line, pw)
		require.NotContains(t, line, wrong)
	}
	require.NotZero(t, logs.FilterMessage("backend unhealthy").Len(), "the wrong password is logged as a failure")
}

// A HealthConfig printed by mistake does not show the password.
func TestHealthConfigHidesPassword(t *testing.T) {
	c := HealthConfig{SQLUser: "probe", SQLPassword: "s3cret-pw"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, c)
		require.NotContains(t, out, "s3cret-pw", f)
		require.Contains(t, out, "probe", f)
	}
	require.NotContains(t, fmt.Sprintf("%v", &c), "s3cret-pw")
}

// Due pings on kept connections run together (roundLocked), and a backend
// that does not answer costs the others nothing: the ones read after it, once
// its wait used up the time, still count the answers that came, and keep
// their connections with no deadline left on them. A second hung backend,
// read after the time is up, fails at once instead of holding the batch.
func TestPingsTogetherOneHung(t *testing.T) {
	const timeout = time.Second // long enough for the fakes to answer on a loaded machine
	p := newTestProber(t, "c1", HealthConfig{
		Interval: time.Hour, Timeout: timeout, FailuresToUnhealthy: 1, SQLUser: "probe",
	})
	srvs := make([]*fakeSQL, 5)
	var ts []Target
	for i := range srvs {
		srvs[i] = newFakeSQL(t, greetOK)
		ts = append(ts, srvs[i].target())
	}
	p.SetTargets(ts)
	// Log in as the targets' first probes would, without the prober's loop,
	// so that the test orders the batch: the second and the fourth hang.
	ctx := context.Background()
	var batch []*targetState
	for _, s := range srvs {
		c, err := mysql.DialProbe(ctx, p.dialer, s.Addr(), "probe", "")
		require.NoError(t, err)
		p.mu.Lock()
		st := p.targets[s.Addr()]
		heap.Remove(&p.sched, st.idx)
		st.kept.sql = c
		p.mu.Unlock()
		batch = append(batch, st)
	}
	hung := map[*fakeSQL]bool{srvs[1]: true, srvs[3]: true}
	for s := range hung {
		s.setMode(greetSilent)
	}

	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.mu.Lock()
		p.roundLocked(ctx, batch)
		p.mu.Unlock()
	}()
	select {
	case <-done:
	case <-time.After(timeout + 5*time.Second):
		require.FailNow(t, "the pings are not bounded by the timeout")
	}
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, timeout, "the hung backend was waited for")
	require.Less(t, elapsed, timeout+5*time.Second, "bounded by the timeout (generous for a loaded machine)")

	res := p.Results()
	for _, s := range srvs {
		h := res[s.Addr()]
		require.True(t, h.LastProbe.After(start), s.Addr())
		p.mu.Lock()
		conn := p.targets[s.Addr()].kept.sql
		p.mu.Unlock()
		if hung[s] {
			require.False(t, h.Healthy)
			require.Equal(t, "sql port: ping: context deadline exceeded", h.Reason)
			require.Nil(t, conn, "a connection that timed out is not kept")
			continue
		}
		require.True(t, h.Healthy, "%s: %s", s.Addr(), h.Reason)
		require.Zero(t, h.Failures)
		require.EqualValues(t, 1, s.pings.Load())
		require.NotNil(t, conn, "kept")
		// No deadline is left: well after the grace, an exchange without
		// one of its own works.
		time.Sleep(20 * pingGrace)
		require.NoError(t, conn.SendPing())
		require.NoError(t, conn.ReadPong())
	}
}

// The loop runs the pings itself, so a target added while they wait on a
// hung backend is dispatched once they are over: within the probe timeout,
// not blocked by the hang.
func TestTargetAddedDuringHungPings(t *testing.T) {
	ok, hung, added := newFakeSQL(t, greetOK), newFakeSQL(t, greetOK), newFakeSQL(t, greetOK)
	const timeout = 2 * time.Second
	p := newTestProber(t, "c1", HealthConfig{
		Interval: 20 * time.Millisecond, Timeout: timeout, FailuresToUnhealthy: 1, SQLUser: "probe",
	})
	p.SetTargets([]Target{ok.target(), hung.target()})
	p.Start(context.Background())
	require.Eventually(t, func() bool { return hung.pings.Load() >= 2 && ok.pings.Load() >= 2 }, waitFor, tick)

	hung.setMode(greetSilent)
	require.Eventually(t, func() bool { return hung.unanswered.Load() > 0 }, waitFor, time.Millisecond,
		"a ping the hung backend does not answer")
	start := time.Now()
	p.SetTargets([]Target{ok.target(), hung.target(), added.target()})
	h := waitHealth(t, p, added.Addr(), func(h observer.Health) bool { return !h.LastProbe.IsZero() })
	require.True(t, h.Healthy, h.Reason)
	require.Less(t, time.Since(start), timeout+5*time.Second, "generous for a loaded machine")
	h = waitHealth(t, p, hung.Addr(), func(h observer.Health) bool { return !h.Healthy })
	require.Equal(t, "sql port: ping: context deadline exceeded", h.Reason)
	require.True(t, p.Results()[ok.Addr()].Healthy)
}

// A server at max_connections refuses every new connection with ERR 1040:
// it is up, so the scheduled probes, with or without a probe user, keep it
// healthy; with one, the prober logs in and keeps the connection once the
// server has room again.
func TestFullServerStaysHealthy(t *testing.T) {
	for _, user := range []string{"", "probe"} {
		t.Run("user="+user, func(t *testing.T) {
			srv := newFakeSQL(t, greetFull)
			p := newTestProber(t, "c1", HealthConfig{
				Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, FailuresToUnhealthy: 1,
				SQLUser: user, SQLPassword: "probe-pw",
			})
			p.SetTargets([]Target{srv.target()})
			p.Start(context.Background())
			require.Eventually(t, func() bool { return srv.accepted.Load() >= 3 }, waitFor, tick)
			h := p.Results()[srv.Addr()]
			require.True(t, h.Healthy, h.Reason)
			require.Zero(t, h.Failures)
			if user == "" {
				return
			}
			srv.setMode(greetOK)
			require.Eventually(t, func() bool { return srv.pings.Load() >= 2 }, waitFor, tick,
				"logged in once there was room, and pings the kept connection")
			require.EqualValues(t, 1, srv.logins.Load())
		})
	}
}
