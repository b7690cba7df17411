package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/pkg/observer"
	"github.com/switchyard-db/switchyard/pkg/router"
)

const waitFor = 10 * time.Second

// rounds records the vote rounds the fleet runs; each call's context is the
// term's, so the recorder also tells whether it ended.
type rounds struct {
	mu    sync.Mutex
	calls map[string]int
	ctxs  map[string]context.Context
	local map[string]map[string]bool
}

func (r *rounds) Reconcile(ctx context.Context, cluster string, local map[string]bool, _ map[string]coordination.Verdict) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[cluster]++
	r.ctxs[cluster] = ctx
	r.local[cluster] = local
}

func (r *rounds) count(cluster string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[cluster]
}

func (r *rounds) ctx(cluster string) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctxs[cluster]
}

// sessions records which backends' idle sessions the fleet ended.
type sessions struct {
	mu    sync.Mutex
	ended []string
}

func (s *sessions) EndIdle(cluster, addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = append(s.ended, observer.BackendID(cluster, addr))
	return 0
}

func (s *sessions) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ended...)
}

// env is a fleet over the real single-node store, a real aggregator and a
// real router.
type env struct {
	f      *Fleet
	store  *coordination.Memory
	topo   *observer.Aggregator
	router *router.Balanced
	rounds *rounds
	sess   *sessions
	voter  *vote.Voter
}

func newEnv(t *testing.T, clusters ...string) *env {
	lg := zaptest.NewLogger(t)
	self := coordination.NodeInfo{ID: "n1", Host: "127.0.0.1", SQLPort: 6000, APIPort: 3080, State: coordination.NodeUp, Clusters: clusters}
	e := &env{
		store: coordination.NewMemory(self),
		topo:  observer.NewAggregator(),
		rounds: &rounds{calls: map[string]int{}, ctxs: map[string]context.Context{},
			local: map[string]map[string]bool{}},
		sess: &sessions{},
	}
	e.store.SetStopPolicy(5*time.Second, func() { t.Error("a vote worker did not stop with its term") })
	cfg := config.NewDefault()
	for _, c := range clusters {
		cfg.Clusters = append(cfg.Clusters, config.Cluster{Name: c, Instances: []string{"10.0.0.1:4000"}})
	}
	cfg.Balance.Policy = config.PolicyConnection
	e.router = router.NewBalanced(e.topo, cfg)
	e.voter = vote.NewVoter(lg, self.ID, nil)
	e.f = New(lg, self, Deps{Store: e.store, Terms: e.store, Rounds: e.rounds, Voter: e.voter,
		Routing: e.router, Topology: e.topo, Sessions: e.sess})
	e.f.every = 20 * time.Millisecond
	t.Cleanup(e.f.Close)
	return e
}

func (e *env) publish(cluster string, gen uint64, state observer.ClusterState, addrs map[string]bool) {
	v := &observer.ClusterView{Name: cluster, Generation: gen, State: state, Source: observer.SourceStatic}
	for addr, healthy := range addrs {
		v.Backends = append(v.Backends, &observer.Backend{ID: observer.BackendID(cluster, addr), Cluster: cluster,
			Addr: addr, Health: observer.Health{Healthy: healthy}})
	}
	e.topo.Publish(v)
}

// The fleet's down verdicts reach the router (no new sessions there) and
// end the idle sessions of a newly voted-down backend once, not at every
// later change.
func TestVerdictsReachTheRouter(t *testing.T) {
	e := newEnv(t, "east")
	e.publish("east", 1, observer.StateReady, map[string]bool{"10.0.0.1:4000": true, "10.0.0.2:4000": true})
	require.NoError(t, e.f.Start(context.Background()))

	term, _, ok := e.store.Term(coordination.ProberRole("east"))
	require.True(t, ok, "the single-node store leads every role it campaigns for")
	require.NoError(t, e.store.WriteVerdict(context.Background(), term,
		coordination.Verdict{Cluster: "east", Backend: "10.0.0.1:4000", State: coordination.VerdictDown}))
	require.Eventually(t, func() bool { return len(e.sess.list()) == 1 }, waitFor, 5*time.Millisecond)
	require.Equal(t, []string{"east/10.0.0.1:4000"}, e.sess.list())
	for range 4 {
		l, err := e.router.Route(router.ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		require.Equal(t, "east/10.0.0.2:4000", l.ID(), "a voted-down backend takes no new sessions")
		l.Release()
	}

	// A later change (here, the topology) does not end them again.
	e.publish("east", 2, observer.StateReady, map[string]bool{"10.0.0.1:4000": true, "10.0.0.2:4000": true, "10.0.0.3:4000": true})
	require.NoError(t, e.store.WriteVerdict(context.Background(), term,
		coordination.Verdict{Cluster: "east", Backend: "10.0.0.3:4000", State: coordination.VerdictUp}))
	require.Eventually(t, func() bool { return e.rounds.count("east") > 2 }, waitFor, 5*time.Millisecond)
	require.Equal(t, []string{"east/10.0.0.1:4000"}, e.sess.list())

	// The verdict lifted: routable again.
	require.NoError(t, e.store.WriteVerdict(context.Background(), term,
		coordination.Verdict{Cluster: "east", Backend: "10.0.0.1:4000", State: coordination.VerdictUp}))
	require.Eventually(t, func() bool {
		got := map[string]bool{}
		for range 4 {
			l, err := e.router.Route(router.ClientInfo{User: "app"}, nil)
			require.NoError(t, err)
			got[l.ID()] = true
			l.Release()
		}
		return got["east/10.0.0.1:4000"]
	}, waitFor, 10*time.Millisecond)
}

// Each prober role this node leads gets one vote worker per term, fed with
// this node's own view of the cluster; when the role goes (the cluster left
// the config) the term ends and so does its worker, and a new term gets a
// new worker.
func TestVoteWorkerPerTerm(t *testing.T) {
	e := newEnv(t, "east", "west")
	e.publish("east", 1, observer.StateReady, map[string]bool{"10.0.0.1:4000": true, "10.0.0.2:4000": false})
	e.publish("west", 1, observer.StateReady, map[string]bool{"10.0.1.1:4000": true})
	require.NoError(t, e.f.Start(context.Background()))

	require.Eventually(t, func() bool { return e.rounds.count("east") > 0 && e.rounds.count("west") > 0 }, waitFor, 5*time.Millisecond)
	e.rounds.mu.Lock()
	require.Equal(t, map[string]bool{"10.0.0.1:4000": true, "10.0.0.2:4000": false}, e.rounds.local["east"])
	e.rounds.mu.Unlock()
	westTerm := e.rounds.ctx("west")
	require.NoError(t, westTerm.Err(), "the worker runs under its live term")

	e.f.Apply([]string{"east"})
	require.Eventually(t, func() bool { return westTerm.Err() != nil }, waitFor, 5*time.Millisecond,
		"the role removed, its term and its worker end")
	n := e.rounds.count("west")
	time.Sleep(5 * e.f.every)
	require.Equal(t, n, e.rounds.count("west"), "no round runs for a role this node gave up")
	require.Equal(t, []string{"east"}, e.f.Self().Clusters)

	e.f.Apply([]string{"east", "west"})
	require.Eventually(t, func() bool {
		ctx := e.rounds.ctx("west")
		return ctx != westTerm && ctx.Err() == nil
	}, waitFor, 5*time.Millisecond, "a new term gets a new worker")
}

// A cluster that is draining (removed, its sessions ending) or unknown has
// no view to vote on: its worker runs no round.
func TestNoRoundsForDrainingCluster(t *testing.T) {
	e := newEnv(t, "east", "gone")
	e.publish("east", 1, observer.StateReady, map[string]bool{"10.0.0.1:4000": true})
	e.publish("gone", 1, observer.StateDraining, nil)
	require.NoError(t, e.f.Start(context.Background()))
	require.Eventually(t, func() bool { return e.rounds.count("east") > 3 }, waitFor, 5*time.Millisecond)
	require.Zero(t, e.rounds.count("gone"))
}

// Draining publishes the node's state; Close stops the loop and the store
// (every term ends with its worker: goleak checks nothing is left), is
// idempotent, and a Start after Close does nothing.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, "east")
	e.publish("east", 1, observer.StateReady, map[string]bool{"10.0.0.1:4000": true})
	require.NoError(t, e.f.Start(context.Background()))
	e.f.Draining()
	members, err := e.store.Members(context.Background())
	require.NoError(t, err)
	require.Equal(t, coordination.NodeDraining, members[0].Info.State)
	require.Eventually(t, func() bool { return e.rounds.count("east") > 0 }, waitFor, 5*time.Millisecond)
	term := e.rounds.ctx("east")
	e.f.Close()
	require.Error(t, term.Err(), "Close ends the terms, and their workers")
	e.f.Close()
	require.NoError(t, e.f.Start(context.Background()))

	// Closed without a Start: the store closes too.
	e2 := newEnv(t, "east")
	e2.f.Close()
	require.Error(t, e2.store.Start(context.Background()), "the store is closed")
}

// The loop ends with the context it was started with; Close still waits
// for it and closes the store.
func TestLoopEndsWithContext(t *testing.T) {
	e := newEnv(t, "east")
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, e.f.Start(ctx))
	cancel()
	e.f.Close()
}

// HealthyCount counts the healthy backends other than except that the
// fleet has not voted down.
func TestHealthyCount(t *testing.T) {
	e := newEnv(t, "east")
	e.publish("east", 1, observer.StateReady, map[string]bool{"a:1": true, "b:1": true, "c:1": false, "d:1": true})
	require.NoError(t, e.f.Start(context.Background()))
	term, _, ok := e.store.Term(coordination.ProberRole("east"))
	require.True(t, ok)
	require.NoError(t, e.store.WriteVerdict(context.Background(), term,
		coordination.Verdict{Cluster: "east", Backend: "d:1", State: coordination.VerdictDown}))
	count := HealthyCount(e.topo, e.store)
	require.Equal(t, 2, count("east", ""), "a and b: c is unhealthy, d voted down")
	require.Equal(t, 1, count("east", "a:1"))
	require.Equal(t, 0, count("west", ""))
}

func TestRoles(t *testing.T) {
	require.Equal(t, []string{coordination.RoleFleet, "prober/a", "prober/b"}, Roles([]string{"b", "a"}))
}
