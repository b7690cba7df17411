package etcdstore

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/etcdclient"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/etcdtest"
)

const testFleet = "test"

// Test timings: a 2 s election TTL (etcd's minimum) keeps failovers short;
// no assertion depends on it closer than a loaded 2-core machine can hold.
var (
	testTTL     = 2 * time.Second
	testNodeTTL = 3 * time.Second
	// waitFor bounds every Eventually: failover is about TTL + 0.5 s, and
	// a loop that backed off during an outage retries within ~6 s.
	waitFor = 20 * time.Second
	tick    = 20 * time.Millisecond
)

func testInfo(id string) coordination.NodeInfo {
	return coordination.NodeInfo{ID: id, Host: "127.0.0.1", SQLPort: 6000, APIPort: 7000, Version: "test",
		StartTime: time.Unix(1700000000, 0).UTC(), State: coordination.NodeUp, Clusters: []string{"east"}}
}

// termEvent is one term begin or end as the hook saw it, with a monotonic
// timestamp.
type termEvent struct {
	node  string
	term  coordination.Term
	began bool
	at    time.Time
}

// recorder collects term events from several nodes.
type recorder struct {
	mu     sync.Mutex
	events []termEvent
}

func (r *recorder) hook(node string) func(coordination.Term, bool) {
	return func(t coordination.Term, began bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, termEvent{node: node, term: t, began: began, at: time.Now()})
	}
}

func (r *recorder) snapshot() []termEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]termEvent(nil), r.events...)
}

// requireNoOverlap checks that, per role, no two terms were held at the same
// instant and that terms strictly increase in the order they began.
func (r *recorder) requireNoOverlap(t *testing.T) {
	t.Helper()
	holder := map[string]*termEvent{}
	last := map[string]int64{}
	for _, ev := range r.snapshot() {
		role := ev.term.Role
		if ev.began {
			if h := holder[role]; h != nil {
				require.Failf(t, "overlapping terms", "%s began term %d at %v while %s held term %d",
					ev.node, ev.term.Rev, ev.at, h.node, h.term.Rev)
			}
			require.Greater(t, ev.term.Rev, last[role], "terms of %s must strictly increase", role)
			last[role] = ev.term.Rev
			holder[role] = &ev
			continue
		}
		h := holder[role]
		require.NotNil(t, h, "%s ended term %d that was not held", ev.node, ev.term.Rev)
		require.Equal(t, h.term, ev.term)
		require.Equal(t, h.node, ev.node)
		holder[role] = nil
	}
}

type node struct {
	*Store
	id  string
	cli *clientv3.Client
	px  proxy.Server // nil when direct
}

type nodeOpts struct {
	viaProxy bool
	opts     Options
	rec      *recorder
	roles    []string
}

// newNode starts a node against etcd, through a pausable proxy if asked.
// It is closed (proxy healed first) when the test ends.
func newNode(t *testing.T, etcd *etcdtest.Etcd, id string, no nodeOpts) *node {
	t.Helper()
	n := &node{id: id}
	endpoint := etcd.Endpoint
	if no.viaProxy {
		// A unix socket: the proxy listens on every interface for TCP.
		dir, err := os.MkdirTemp("", "sy")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		sock := filepath.Join(dir, "etcd.sock")
		n.px = proxy.NewServer(proxy.ServerConfig{
			Logger: zap.NewNop(),
			From:   url.URL{Scheme: "unix", Host: sock},
			To:     url.URL{Scheme: "tcp", Host: etcd.Addr()},
		})
		select {
		case <-n.px.Ready():
		case err := <-n.px.Error():
			require.NoError(t, err)
		}
		t.Cleanup(func() { _ = n.px.Close() })
		endpoint = "unix://" + sock
	}
	cli, err := etcdclient.New(zap.NewNop(), []string{endpoint}, nil)
	require.NoError(t, err)
	n.cli = cli
	t.Cleanup(func() { _ = cli.Close() })

	if no.opts.ElectionTTL == 0 {
		no.opts.ElectionTTL = testTTL
	}
	if no.opts.NodeTTL == 0 {
		no.opts.NodeTTL = testNodeTTL
	}
	if no.opts.OnStuck == nil {
		no.opts.OnStuck = func() { t.Errorf("node %s: leader-only work stuck", id) }
	}
	n.Store = New(testLogger(t, id), cli, testFleet, testInfo(id), no.opts)
	if no.rec != nil {
		n.hooks.term = no.rec.hook(id)
	}
	if no.roles != nil {
		n.SetRoles(no.roles)
	}
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(func() {
		n.heal()
		n.Close()
	})
	return n
}

func (n *node) partition() {
	n.px.PauseTx()
	n.px.PauseRx()
}

func (n *node) heal() {
	if n.px != nil {
		n.px.UnpauseTx()
		n.px.UnpauseRx()
	}
}

func (n *node) leads(role string) bool {
	_, _, ok := n.Term(role)
	return ok
}

func (n *node) term(t *testing.T, role string) coordination.Term {
	t.Helper()
	tm, _, ok := n.Term(role)
	require.True(t, ok, "%s should lead %s", n.id, role)
	return tm
}

// waitLeader waits until exactly one of nodes leads role and returns it.
func waitLeader(t *testing.T, role string, nodes ...*node) *node {
	t.Helper()
	var leader *node
	require.Eventually(t, func() bool {
		leader = nil
		for _, n := range nodes {
			if n.leads(role) {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	}, waitFor, tick, "no single leader of %s", role)
	return leader
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// firstKey reads the leader key of role as etcd has it.
func firstKey(t *testing.T, cli *clientv3.Client, role string) (key string, crev int64, value string, ok bool) {
	t.Helper()
	resp, err := cli.Get(testCtx(t), "/switchyard/"+testFleet+"/election/"+role+"/", clientv3.WithFirstCreate()...)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return "", 0, "", false
	}
	kv := resp.Kvs[0]
	return string(kv.Key), kv.CreateRevision, string(kv.Value), true
}

func testLogger(t *testing.T, id string) *zap.Logger {
	return zaptest.NewLogger(t).Named(id)
}
