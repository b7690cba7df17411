package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestFleetFaults runs more of ha.md section 7's fault scenarios against
// real proxy processes, a real etcd process and real MariaDB, with the same
// event log and invariants as TestFleet (the numbers are ha.md's):
//
//	#2  graceful leader shutdown (SIGTERM)
//	#11 hung backend (SIGSTOP on mariadbd)
//	#14 leader discovery polled during a leader SIGKILL
func TestFleetFaults(t *testing.T) {
	etcd, db := startFleetDeps(t)

	t.Run("GracefulLeaderShutdown", func(t *testing.T) { testFleetGracefulShutdown(t, etcd, db) })
	t.Run("HungBackend", func(t *testing.T) { testFleetHungBackend(t, etcd, db) })
	t.Run("LeaderQueryDuringFailover", func(t *testing.T) { testFleetLeaderQueryDuringFailover(t, etcd, db) })
}

// #2: the leader is SIGTERMed. Its term ends (reason shutdown) before the
// successor's begins, the successor begins less than 1 s after the signal
// (asserted with the machine's slack), and its election key is deleted by
// the leader itself (resign or lease revoke), not by the lease expiring:
// the TTL here is 8 s, so an expiry could not come before 8 s.
func testFleetGracefulShutdown(t *testing.T, etcd *testenv.Etcd, db *testenv.MariaDB) {
	const ttl = 8 * time.Second
	env := startFleetWith(t, etcd, "sigterm", 3, staticCluster("main", db.Addr()), fleetOpts{ttl: ttl})
	leader, term := env.agreedLeader(roleFleet, 30*time.Second)
	env.agreedLeader(coordination.ProberRole("main"), 30*time.Second)
	// An idle client of the leader: draining closes it at once, so it must
	// not delay the handoff.
	idle := testenv.OpenDB(t, testenv.MySQLConfig(leader.SQLAddr, testenv.NativeUser, testenv.NativePassword))
	require.Equal(t, "1", queryString(t, idle, "SELECT 1"))
	p := env.pollLeaders(roleFleet, 50*time.Millisecond)

	termAt := env.mark(leader.ID, "SIGTERM")
	require.NoError(t, leader.Proxy.Signal(syscall.SIGTERM))
	next, ok := env.waitTerm(roleFleet, termAt.Add(ttl+fleetSlack), func(r termRec) bool {
		return r.Node != leader.ID && r.Term > term
	})
	require.True(t, ok, "no node began a term of %s after the leader %s was SIGTERMed", roleFleet, leader.ID)
	select {
	case <-leader.Proxy.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30 s of SIGTERM", leader.ID)
	}
	require.NoError(t, leader.Proxy.Wait(), "a SIGTERMed proxy exits 0")
	env.mu.Lock()
	env.killed[leader.ID] = time.Now() // gone: not asked any more
	env.mu.Unlock()
	successor, sterm := env.agreedLeader(roleFleet, 10*time.Second)
	obs := p.Stop()
	old, _ := env.waitTerm(roleFleet, time.Now(), func(r termRec) bool { return r.Node == leader.ID && r.Term == term })
	require.Eventually(t, func() bool { return env.hist.caughtUp(etcd.Client, env.electionPrefix(roleFleet)) },
		30*time.Second, 50*time.Millisecond)
	var oldKey *keyLife
	for _, k := range env.hist.electionKeys(env.electionPrefix(roleFleet)) {
		if k.Create == term {
			oldKey = k
		}
	}
	handoff := next.Began.Sub(termAt)
	t.Logf("measured: %s (term %d) SIGTERMed; its term ended %v later (%s); %s began term %d %v after the signal (TTL %v)",
		leader.ID, term, old.Ended.Sub(termAt).Round(time.Millisecond), old.Reason, next.Node, next.Term,
		handoff.Round(time.Millisecond), ttl)
	t.Logf("event log:\n%s", env.timeline(obs))

	require.Equal(t, next.Node, successor.ID)
	require.Equal(t, next.Term, sterm)
	require.False(t, old.Ended.IsZero(), "the leader logged no end of its term before it exited")
	require.Equal(t, coordination.EndShutdown, old.Reason)
	require.NotNil(t, oldKey, "the old leader's election key is not in etcd's history")
	require.NotZero(t, oldKey.Delete, "the old leader's election key was never deleted")
	require.Less(t, oldKey.Deleted.Sub(termAt), ttl/2,
		"the key went %v after SIGTERM: that is a lease expiry (TTL %v), not a resign", oldKey.Deleted.Sub(termAt), ttl)
	require.Less(t, handoff, time.Second+fleetSlack/3,
		"handoff took %v; the target is < 1 s (with %v slack for this machine)", handoff, fleetSlack/3)
	env.checkTerms(roleFleet, nil) // no overlap, and no excuse: the old term ended first
	env.checkTerms(coordination.ProberRole("main"), nil)
	env.checkLeaderObs(roleFleet, obs)
	env.checkVerdictFences()
}

// pinnedConn is a client connection through a proxy that landed on a given
// backend.
type pinnedConn struct {
	db   *sql.DB
	conn *sql.Conn
}

// pinConn opens sessions through addr until one lands on backend (by
// @@port), and keeps it.
func pinConn(t *testing.T, addr string, backend *testenv.MariaDB) pinnedConn {
	t.Helper()
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	cfg.Logger = fleetDiscard{}
	connector, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	var keep []*sql.Conn
	defer func() {
		for _, c := range keep {
			_ = c.Close()
		}
	}()
	for range 40 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		var port string
		err = c.QueryRowContext(ctx, "SELECT @@port").Scan(&port)
		cancel()
		require.NoError(t, err)
		if port == portOf(backend) {
			t.Cleanup(func() { _ = c.Close() }) // before db.Close, which does not close it
			return pinnedConn{db: db, conn: c}
		}
		keep = append(keep, c) // held open so the next session is new
	}
	t.Fatalf("no session through %s landed on %s in 40 tries", addr, backend.Addr())
	return pinnedConn{}
}

// #11: a backend hangs (SIGSTOP on mariadbd: its kernel still accepts TCP
// connections, but nothing answers). The probes' read deadline catches it
// and the fleet reaches the same verdict as for a dead backend (one fenced
// down verdict, a majority voting down, new sessions elsewhere); statements
// on sessions already on it end with an error at proxy.backend-read-timeout
// instead of hanging.
func testFleetHungBackend(t *testing.T, etcd *testenv.Etcd, db *testenv.MariaDB) {
	const readTimeout = 3 * time.Second
	b := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	env := startFleetWith(t, etcd, "hung", 3, staticCluster("main", db.Addr(), b.Addr()),
		fleetOpts{ttl: fleetTTL, proxyExtra: fmt.Sprintf("backend-read-timeout = %q", readTimeout)})
	role := coordination.ProberRole("main")
	pl, _ := env.agreedLeader(role, 30*time.Second)
	id := "main/" + b.Addr()
	pinned := pinConn(t, env.nodes[0].SQLAddr, b)

	stopAt := env.mark("-", "SIGSTOP backend "+b.Addr())
	t.Cleanup(func() { _ = syscall.Kill(b.Pid(), syscall.SIGCONT) })
	require.NoError(t, testenv.Freeze(b.Pid()))

	// A statement on the existing session: an error at the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var one string
	qerr := pinned.conn.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	cancel()
	took := time.Since(stopAt)
	env.mark(env.nodes[0].ID, fmt.Sprintf("statement on the hung backend ended after %v: %v", took.Round(time.Millisecond), qerr))

	down, ok := env.waitVerdict("main", b.Addr(), coordination.VerdictDown, stopAt.Add(20*time.Second))
	require.True(t, ok, "no down verdict on the hung %s within 20 s", id)
	for _, n := range env.nodes {
		_, ok := env.waitLog(down.At.Add(5*time.Second), func(e logEvent) bool {
			return e.Node == n.ID && strings.HasPrefix(e.Msg, "backend voted down by the fleet") && e.Backend == id
		})
		require.True(t, ok, "%s did not apply the down verdict on %s", n.ID, id)
	}
	for _, n := range env.nodes {
		for range 3 {
			port, err := sessionPort(n.SQLAddr)
			require.NoError(t, err, "new session through %s", n.ID)
			require.Equal(t, portOf(db), port, "a new session through %s landed on the hung backend", n.ID)
		}
	}
	time.Sleep(vote.DefaultProposeBackoff + time.Second)
	var downPuts []verdictPut
	for _, vp := range env.verdictPuts() {
		if vp.Backend == b.Addr() && vp.State == coordination.VerdictDown {
			downPuts = append(downPuts, vp)
		}
	}
	downVotes := 0
	for _, v := range down.Votes {
		if v.Vote == coordination.VoteDown {
			downVotes++
		}
	}
	decision := down.At.Sub(stopAt)
	t.Logf("measured: %s SIGSTOPped; the statement on it failed after %v; down verdict %v later (prober leader %s, term %d), votes %v",
		id, took.Round(time.Millisecond), decision.Round(time.Millisecond), pl.ID, down.Term, down.Votes)
	t.Logf("event log:\n%s", env.timeline(nil))

	require.Error(t, qerr, "a statement on the hung backend must fail")
	require.Contains(t, qerr.Error(), "backend-read-timeout", "the error names the timeout")
	require.GreaterOrEqual(t, took, readTimeout-100*time.Millisecond, "ended before the configured timeout")
	require.Less(t, took, readTimeout+fleetSlack, "ended long after the configured timeout")
	// ha.md: detection 3-4 s (probe interval 200 ms, timeout 1 s, 2 failures
	// here), decision <= 5 s; with the machine's slack.
	require.Less(t, decision, 5*time.Second+fleetSlack, "down verdict after %v", decision)
	require.Len(t, downPuts, 1, "down verdicts written for %s", id)
	require.GreaterOrEqual(t, downVotes, 2, "a majority of the 3 voters must have voted down: %v", down.Votes)
	env.checkVerdictFences()
	env.checkTerms(role, nil)

	// SIGCONT: it answers again and is voted up, as a restarted one is.
	contAt := env.mark("-", "SIGCONT backend "+b.Addr())
	require.NoError(t, syscall.Kill(b.Pid(), syscall.SIGCONT))
	_, ok = env.waitVerdict("main", b.Addr(), coordination.VerdictUp, contAt.Add(20*time.Second))
	require.True(t, ok, "no up verdict on %s within 20 s of SIGCONT", id)
}

// leaderClientObs is one answer a discovery client got.
type leaderClientObs struct {
	Client int
	leaderObs
}

// #14: 4 clients per node ask GET /api/v1/ha/leader at 50 requests per
// second each while the leader is SIGKILLed. Every answer is a 200 with a
// term that never goes back for that client, or a 503; one term never has
// two leaders; a 200 always carries endpoints. Live nodes always answer;
// the killed node's requests in flight at the kill, and later ones, fail.
func testFleetLeaderQueryDuringFailover(t *testing.T, etcd *testenv.Etcd, db *testenv.MariaDB) {
	const perNode, every = 4, 20 * time.Millisecond
	env := startFleet(t, etcd, "query", 3, staticCluster("main", db.Addr()))
	leader, term := env.agreedLeader(roleFleet, 30*time.Second)

	pollStart := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []leaderClientObs
	for ni, n := range env.nodes {
		for c := range perNode {
			client := ni*perNode + c
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(every)
				defer tick.Stop()
				for i := 0; i < 5000; i++ { // bounded
					o := env.queryLeader(n, roleFleet)
					mu.Lock()
					all = append(all, leaderClientObs{Client: client, leaderObs: o})
					mu.Unlock()
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()
		}
	}
	stopPolling := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopPolling)

	time.Sleep(time.Second)
	killAt := env.kill(leader)
	next, ok := env.waitTerm(roleFleet, killAt.Add(fleetTTL+20*time.Second), func(r termRec) bool {
		return r.Node != leader.ID && r.Term > term
	})
	require.True(t, ok, "no node began a term after the leader %s was killed", leader.ID)
	env.agreedLeader(roleFleet, 10*time.Second)
	time.Sleep(time.Second)
	stopPolling()
	pollEnd := time.Now()

	slices.SortFunc(all, func(a, b leaderClientObs) int { return a.Start.Compare(b.Start) })
	perClient := map[int]int{}
	lastTerm := map[int]int64{}
	byTerm := map[int64]string{}
	count := map[int]int{}
	var first503, last503 time.Time
	require.Eventually(t, func() bool { return env.hist.caughtUp(etcd.Client, env.electionPrefix(roleFleet)) },
		30*time.Second, 50*time.Millisecond)
	keys := env.hist.electionKeys(env.electionPrefix(roleFleet))
	for _, o := range all {
		count[o.Status]++
		perClient[o.Client]++
		switch o.Status {
		case http.StatusOK:
			if o.Endpoints.SQL == "" || o.Endpoints.API == "" || o.LeaderID == "" {
				t.Errorf("client %d: a 200 without a leader or endpoints: %+v", o.Client, o.leaderObs)
			}
			if o.Term < lastTerm[o.Client] {
				t.Errorf("client %d (asking %s): term went back from %d to %d", o.Client, o.Node, lastTerm[o.Client], o.Term)
			}
			lastTerm[o.Client] = o.Term
			if id, seen := byTerm[o.Term]; seen && id != o.LeaderID {
				t.Errorf("two leaders for term %d: %s and %s", o.Term, id, o.LeaderID)
			}
			byTerm[o.Term] = o.LeaderID
			found := false
			for _, k := range keys {
				found = found || (k.Create == o.Term && k.Node == o.LeaderID)
			}
			if !found {
				t.Errorf("client %d: %s answered leader %s term %d, which is no election key of that node in etcd", o.Client, o.Node, o.LeaderID, o.Term)
			}
		case http.StatusServiceUnavailable:
			if first503.IsZero() {
				first503 = o.Start
			}
			last503 = o.End
		case 0:
			// The killed node's requests in flight at the kill (or after)
			// have no answer; nothing else may go unanswered.
			if o.Node != leader.ID || o.End.Before(killAt) {
				t.Errorf("client %d: %s did not answer at %s: %s", o.Client, o.Node, o.Start.Format("15:04:05.000"), o.Err)
			}
		default:
			t.Errorf("client %d: %s answered %d %s", o.Client, o.Node, o.Status, o.Code)
		}
	}
	secs := pollEnd.Sub(pollStart).Seconds()
	rates := make([]string, 0, len(perClient))
	for c := range len(env.nodes) * perNode {
		rates = append(rates, fmt.Sprintf("%.0f", float64(perClient[c])/secs))
	}
	window := time.Duration(0)
	if !first503.IsZero() {
		window = last503.Sub(first503)
	}
	t.Logf("measured: %d answers (200: %d, 503: %d, none: %d); per-client rates %v /s; 503 window %v; %s began term %d %v after the kill",
		len(all), count[http.StatusOK], count[http.StatusServiceUnavailable], count[0], rates,
		window.Round(time.Millisecond), next.Node, next.Term, next.Began.Sub(killAt).Round(time.Millisecond))
	require.Positive(t, count[http.StatusOK])
	env.checkTerms(roleFleet, env.excuseKilled)
}
