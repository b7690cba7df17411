package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// TestFleetLinkFaults runs ha.md section 7's scenarios that need faults on
// network links, with kernel packet loss (nftables in network namespaces of
// the test's own, see netns_linux_test.go). Needs root, ip and nft; skips
// with the reason otherwise (and make test fails on a skip).
func TestFleetLinkFaults(t *testing.T) {
	requireNetns(t)
	etcd := startEtcdProc(t)
	db := testenv.SharedMariaDB(t)
	testenv.BuildProxy(t)

	t.Run("FlakyLeaderEtcdLink", func(t *testing.T) { testFleetFlakyLeaderLink(t, etcd, db) })
}

// #7: the link between the leader and etcd loses 30 % of its packets and
// delays every chunk by 50 ms. Leader changes stay bounded (at most one per
// 3 x TTL), acting intervals never overlap, and the flap rate is reported.
//
// The fault lasts 18 s, not ha.md's 60 s: the proxies' etcd client re-syncs
// its endpoints from etcd's member list 30 s after it starts
// (lib/etcdclient) and would then reach etcd's advertised address around
// the link. The test checks that the leader's traffic still went through
// the faulty link at the end of the fault.
func testFleetFlakyLeaderLink(t *testing.T, etcd *etcdProc, db *testenv.MariaDB) {
	const (
		window = 18 * time.Second
		loss   = 30
		delay  = 50 * time.Millisecond
	)
	links := make([]*nsLink, 3)
	for i := range links {
		links[i] = newNSLink(t, etcd.clientAddr)
	}
	env := startFleetWith(t, etcd, "flaky", 3, staticCluster("main", db.Addr()),
		fleetOpts{ttl: fleetTTL, etcdVia: func(i int) string { return links[i].Addr() }})
	leader, term := env.agreedLeader(roleFleet, 30*time.Second)
	li := slices.Index(env.nodes, leader)
	p := env.pollLeaders(roleFleet, 100*time.Millisecond)

	faultAt := env.mark(leader.ID, fmt.Sprintf("link to etcd: %d %% loss, %v delay", loss, delay))
	links[li].SetFault(loss, delay)
	time.Sleep(window - 3*time.Second)
	before := links[li].Bytes()
	time.Sleep(3 * time.Second)
	carried := links[li].Bytes() - before
	healAt := env.mark(leader.ID, "link healed")
	links[li].SetFault(0, 0)
	require.Less(t, healAt.Sub(env.start), 30*time.Second, "the fault ran past the etcd client's endpoint re-sync")
	env.agreedLeader(roleFleet, 20*time.Second)
	obs := p.Stop()
	t.Logf("event log:\n%s", env.timeline(obs))

	terms := env.checkTerms(roleFleet, nil)
	env.checkTerms(coordination.ProberRole("main"), nil)
	env.checkLeaderObs(roleFleet, obs)
	env.checkVerdictFences()
	var begins []time.Time
	for _, r := range terms {
		if r.Term > term && r.Began.After(faultAt) && r.Began.Before(healAt.Add(fleetTTL)) {
			begins = append(begins, r.Began)
		}
	}
	perMin := float64(len(begins)) / window.Minutes()
	t.Logf("measured: %d leader changes during %v of %d %% loss + %v delay on %s's etcd link (flap rate %.1f/min; bound 1 per 3 x TTL = %v); the link carried %d bytes in the fault's last 3 s",
		len(begins), window, loss, delay, leader.ID, perMin, 3*fleetTTL, carried)
	require.Positive(t, carried, "the leader's etcd traffic no longer went through the faulty link")
	for i := 1; i < len(begins); i++ {
		require.GreaterOrEqual(t, begins[i].Sub(begins[i-1]), 3*fleetTTL,
			"two leader changes %v apart; the bound is one per 3 x TTL", begins[i].Sub(begins[i-1]))
	}
	require.LessOrEqual(t, len(begins), int(window/(3*fleetTTL))+1)
}
