package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// etcdCluster is a 3-member cluster of Debian's etcd binary on loopback.
type etcdCluster struct {
	members []*testenv.Etcd
	Client  *clientv3.Client // over every member
}

func startEtcdCluster(t *testing.T, n int) *etcdCluster {
	t.Helper()
	c := &etcdCluster{}
	var initial []string
	for i := range n {
		m := testenv.NewEtcd(t, testenv.EtcdOptions{Name: fmt.Sprintf("m%d", i+1)})
		initial = append(initial, m.Name+"=http://"+m.PeerAddr)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.InitialCluster = strings.Join(initial, ",")
		if err := m.Launch(); err != nil {
			t.Fatal(err)
		}
		testenv.OnFailureShowLog(t, "etcd "+m.Name, m.LogPath, 0)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	c.Client = cli
	for _, m := range c.members {
		m.Client = cli
	}
	require.Eventually(t, func() bool { return c.healthy() }, 60*time.Second, 100*time.Millisecond, "the etcd cluster never became healthy")
	return c
}

// Endpoints are the members' client addresses.
func (c *etcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.ClientAddr)
	}
	return out
}

// leader is the member that leads the raft group now (nil: none known).
func (c *etcdCluster) leader() *testenv.Etcd {
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Client.Status(ctx, m.ClientAddr)
		cancel()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return nil
}

// healthy reports whether every member answers and agrees on one leader.
func (c *etcdCluster) healthy() bool {
	var lead uint64
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.Client.Status(ctx, m.ClientAddr)
		cancel()
		if err != nil || st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return false
		}
		lead = st.Leader
	}
	return true
}

// #6 (ha.md section 7): the fleet's etcd is a 3-member cluster of the
// Debian etcd binary, and its raft leader is SIGKILLed, 20 times (each time
// restarted and healthy again before the next). With an election TTL of
// 5 s the proxies' leases survive the etcd leader election (their client
// retries on another member): no proxy leadership changes in at least 95 %
// of the runs, and SQL through a proxy sees no error.
// SWITCHYARD_ETCD_LEADER_RUNS sets another number of runs.
func TestFleetEtcdLeaderLoss(t *testing.T) {
	t.Parallel() // with the tests that runBesideLeaderLoss marks
	runs := 20
	if v := os.Getenv("SWITCHYARD_ETCD_LEADER_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "SWITCHYARD_ETCD_LEADER_RUNS")
		runs = n
	}
	const ttl = 5 * time.Second
	db := testenv.SharedMariaDB(t)
	ec := startEtcdCluster(t, 3)
	view := &testenv.Etcd{ClientAddr: ec.members[0].ClientAddr, Client: ec.Client}
	env := startFleetWith(t, view, "etcdlead", 3, staticCluster("main", db.Addr()),
		fleetOpts{ttl: ttl, etcdEndpoints: ec.Endpoints()})
	env.agreedLeader(roleFleet, 30*time.Second)
	env.agreedLeader(coordination.ProberRole("main"), 30*time.Second)
	sqlLoop := startSQLLoop(t, env.nodes[0].SQLAddr)

	termEvents := func(events []logEvent, from, to time.Time) []logEvent {
		var out []logEvent
		for _, e := range events {
			if (e.Msg == "leadership term began" || e.Msg == "leadership term ended") && !e.At.Before(from) && e.At.Before(to) {
				out = append(out, e)
			}
		}
		return out
	}
	changed := 0
	var elections []time.Duration
	closest := time.Duration(-1) // the least a leader's renew guard had left
	for run := 1; run <= runs; run++ {
		require.Eventually(t, ec.healthy, 60*time.Second, 100*time.Millisecond, "run %d: the etcd cluster is not healthy", run)
		lead := ec.leader()
		require.NotNil(t, lead, "run %d: no etcd leader", run)
		killAt := env.mark("-", fmt.Sprintf("run %d: SIGKILL etcd leader %s", run, lead.Name))
		lead.Kill()
		// A new raft leader among the two others.
		var newLead *testenv.Etcd
		require.Eventually(t, func() bool {
			newLead = ec.leader()
			return newLead != nil && newLead != lead
		}, 20*time.Second, 50*time.Millisecond, "run %d: no new etcd leader", run)
		elections = append(elections, time.Since(killAt))
		// Longer than the TTL: a lease that was not kept alive would be gone.
		time.Sleep(ttl + 2*time.Second)
		events := env.logEvents()
		for _, e := range events {
			if e.Msg == "leadership renewal came late" && !e.At.Before(killAt) && (closest < 0 || e.GuardLeft < closest) {
				closest = e.GuardLeft
			}
		}
		evs := termEvents(events, killAt, time.Now())
		if len(evs) > 0 {
			changed++
			for _, e := range evs {
				t.Logf("run %d: %s %s role=%s term=%d reason=%s", run, e.Node, e.Msg, e.Role, e.Term, e.Reason)
			}
		}
		env.mark("-", fmt.Sprintf("run %d: restart %s", run, lead.Name))
		require.NoError(t, lead.Launch(), "run %d: restart %s", run, lead.Name)
	}
	ok, errs := sqlLoop.Stop()
	t.Logf("measured: %d runs; proxy leadership changed in %d; etcd leader elections took %v; "+
		"least renew-guard time left at a late renewal: %v (-1: no late renewal); SQL: %d ok, %d errors",
		runs, changed, elections, closest, ok, len(errs))
	if t.Failed() || changed > 0 {
		t.Logf("event log:\n%s", env.timeline(nil))
	}
	require.Empty(t, errs, "SQL through a proxy failed while etcd lost its leader")
	require.LessOrEqual(t, float64(changed), float64(runs)*0.05,
		"proxy leadership changed in %d of %d runs; the target is no change in at least 95 %%", changed, runs)
	env.checkTerms(roleFleet, nil)
}
