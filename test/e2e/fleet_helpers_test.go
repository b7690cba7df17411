package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-sql-driver/mysql"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// Timings of the fleet tests. The TTL is the smallest etcd accepts, to keep
// the tests short; fleetSlack is what the shared 2-core machine (and the
// race-built proxies) may add to a target figure.
const (
	fleetTTL   = 2 * time.Second
	fleetSlack = 3 * time.Second
	fleetToken = "fleet-e2e-token"
)

const roleFleet = coordination.RoleFleet

// lossReasons are the ways a term ends when its node lost it (not shutdown
// or a config change).
var lossReasons = []string{coordination.EndGuard, coordination.EndLeaseLost, coordination.EndSession, coordination.EndKeyDeleted}

// ---------------------------------------------------------------------------
// etcd as a separate process

// startEtcdProc starts the fleet tests' etcd: a single-member etcd run from
// the etcd binary (they stop, freeze and kill it, so a missing binary fails
// them).
func startEtcdProc(t *testing.T) *testenv.Etcd {
	t.Helper()
	return testenv.StartEtcd(t, testenv.EtcdOptions{Name: "fleet"})
}

// startFleetDeps starts what the fleet tests' subtests share: one etcd
// process, the package's MariaDB and the proxy binary.
func startFleetDeps(t *testing.T) (*testenv.Etcd, *testenv.MariaDB) {
	t.Helper()
	etcd := startEtcdProc(t)
	db := testenv.SharedMariaDB(t)
	testenv.BuildProxy(t)
	return etcd, db
}

// etcdServingSince is when etcd last said it serves clients, from its log:
// the instant it is back after a restart.
func etcdServingSince(e *testenv.Etcd) time.Time {
	var at time.Time
	for _, line := range strings.Split(e.LogContents(), "\n") {
		var m struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || !strings.HasPrefix(m.Msg, "serving client traffic") {
			continue
		}
		if t, err := time.Parse(zapTime, m.TS); err == nil && t.After(at) {
			at = t
		}
	}
	return at
}

// ---------------------------------------------------------------------------
// A userspace TCP forwarder that can pause (hold bytes and connections, like
// a partition where TCP keeps retransmitting) and refuse chosen connections.

type tcpFwd struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	open   chan struct{} // closed while forwarding; a fresh one while paused
	paused bool
	reject func(net.Conn) bool
	conns  map[net.Conn]struct{}

	accepted atomic.Int64
	done     chan struct{}
	wg       sync.WaitGroup
}

func newTCPFwd(t *testing.T, target string) *tcpFwd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpFwd{ln: ln, target: target, open: make(chan struct{}), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	close(f.open)
	f.wg.Add(1)
	go f.acceptLoop()
	t.Cleanup(f.Close)
	return f
}

func (f *tcpFwd) Addr() string { return f.ln.Addr().String() }

// Accepted counts the connections accepted so far (refused ones included).
func (f *tcpFwd) Accepted() int64 { return f.accepted.Load() }

// Pause stops forwarding: bytes already read are held, nothing more is
// written either way, new connections are accepted and held undialed.
func (f *tcpFwd) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.paused {
		f.paused = true
		f.open = make(chan struct{})
	}
}

// Resume forwards again, held bytes first.
func (f *tcpFwd) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused {
		f.paused = false
		close(f.open)
	}
}

// SetReject makes the forwarder close, right after accepting, every new
// connection for which fn is true (nil: none).
func (f *tcpFwd) SetReject(fn func(net.Conn) bool) {
	f.mu.Lock()
	f.reject = fn
	f.mu.Unlock()
}

func (f *tcpFwd) Close() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// gate waits while paused; false when the forwarder closed.
func (f *tcpFwd) gate() bool {
	f.mu.Lock()
	ch := f.open
	f.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-f.done:
		return false
	}
}

func (f *tcpFwd) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done:
		_ = c.Close()
		return false
	default:
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *tcpFwd) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

func (f *tcpFwd) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go f.handle(c)
	}
}

func (f *tcpFwd) handle(c net.Conn) {
	defer f.wg.Done()
	f.mu.Lock()
	reject := f.reject
	f.mu.Unlock()
	if reject != nil && reject(c) {
		f.untrack(c)
		return
	}
	if !f.gate() {
		f.untrack(c)
		return
	}
	u, err := net.DialTimeout("tcp", f.target, 2*time.Second)
	if err != nil {
		f.untrack(c)
		return
	}
	if !f.track(u) {
		f.untrack(c)
		return
	}
	f.wg.Add(2)
	go f.pipe(u, c)
	go f.pipe(c, u)
}

func (f *tcpFwd) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !f.gate() {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			// Not even a close crosses a paused link.
			f.gate()
			break
		}
	}
	f.untrack(dst)
	f.untrack(src)
}

// connFromPid reports whether the client end of c, a loopback connection
// accepted by this process, is a socket of process pid: the client socket is
// found by its ports in /proc/net/tcp{,6}, then looked for among pid's file
// descriptors.
func connFromPid(c net.Conn, pid int) bool {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return false
	}
	inode := ""
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if inode = socketInode(table, remote.Port, local.Port); inode != "" {
			break
		}
	}
	if inode == "" {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && l == want {
			return true
		}
	}
	return false
}

// socketInode finds the socket whose local port is localPort and remote port
// remotePort in a /proc/net/tcp table.
func socketInode(table string, localPort, remotePort int) string {
	f, err := os.Open(table)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[0] == "sl" {
			continue
		}
		if hexPort(fields[1]) == localPort && hexPort(fields[2]) == remotePort {
			return fields[9]
		}
	}
	return ""
}

func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(p, 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

// ---------------------------------------------------------------------------
// The etcd history of a fleet's keys, recorded by the test's own watch.

type kvEvent struct {
	At     time.Time // when the test saw it
	Delete bool
	Key    string
	Value  string
	Create int64 // create revision (of the deleted key for a delete)
	Mod    int64 // revision of this event
}

type etcdHistory struct {
	mu     sync.Mutex
	events []kvEvent
	cancel context.CancelFunc
	done   chan struct{}
}

// recordHistory watches prefix from the current revision until the test
// ends, resuming after disruptions (etcd frozen or restarted) from the next
// revision, so that no event is missed.
func recordHistory(t *testing.T, cli *clientv3.Client, prefix string) *etcdHistory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	h := &etcdHistory{done: make(chan struct{})}
	wctx, wcancel := context.WithCancel(context.Background())
	h.cancel = wcancel
	next := resp.Header.Revision + 1
	go func() {
		defer close(h.done)
		for wctx.Err() == nil {
			wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithPrevKV())
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				now := time.Now()
				h.mu.Lock()
				for _, ev := range wr.Events {
					e := kvEvent{At: now, Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Create: ev.Kv.CreateRevision, Mod: ev.Kv.ModRevision}
					if ev.Type == mvccpb.DELETE {
						e.Delete = true
						if ev.PrevKv != nil {
							e.Create, e.Value = ev.PrevKv.CreateRevision, string(ev.PrevKv.Value)
						}
					}
					h.events = append(h.events, e)
					next = ev.Kv.ModRevision + 1
				}
				h.mu.Unlock()
			}
			select {
			case <-wctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		wcancel()
		<-h.done
	})
	return h
}

// caughtUp reports whether every key now under prefix in etcd (by key and
// create revision) has been recorded: the watch lags after etcd restarts,
// while the test's client reconnects.
func (h *etcdHistory) caughtUp(cli *clientv3.Client, prefix string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return false
	}
	seen := map[string]int64{}
	for _, e := range h.all() {
		if !e.Delete {
			seen[e.Key] = e.Create
		}
	}
	for _, kv := range resp.Kvs {
		if seen[string(kv.Key)] != kv.CreateRevision {
			return false
		}
	}
	return true
}

func (h *etcdHistory) all() []kvEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// keyLife is one election key from creation to deletion.
type keyLife struct {
	Key, Node          string
	Create, Delete     int64 // Delete 0: still there
	CreatedAt, Deleted time.Time
}

// electionKeys are the keys seen under an election prefix, by key.
func (h *etcdHistory) electionKeys(prefix string) map[string]*keyLife {
	out := map[string]*keyLife{}
	for _, e := range h.all() {
		if !strings.HasPrefix(e.Key, prefix) {
			continue
		}
		k := out[e.Key]
		if k == nil || (!e.Delete && e.Create != k.Create) {
			k = &keyLife{Key: e.Key, Create: e.Create, CreatedAt: e.At}
			var v struct {
				NodeID string `json:"node_id"`
			}
			if json.Unmarshal([]byte(e.Value), &v) == nil {
				k.Node = v.NodeID
			}
			out[e.Key] = k
		}
		if e.Delete {
			k.Delete, k.Deleted = e.Mod, e.At
		}
	}
	return out
}

// firstAt reports whether key k was the first-created live key at revision
// rev (every key created before it was gone by then).
func firstAt(keys map[string]*keyLife, k *keyLife, rev int64) bool {
	if rev < k.Create || (k.Delete != 0 && rev >= k.Delete) {
		return false
	}
	for _, o := range keys {
		if o.Create < k.Create && (o.Delete == 0 || o.Delete > rev) {
			return false
		}
	}
	return true
}

// everFirst reports whether k was ever the first-created live key.
func everFirst(keys map[string]*keyLife, k *keyLife) bool {
	rev := k.Create
	for _, o := range keys {
		if o.Create < k.Create {
			if o.Delete == 0 {
				return false
			}
			rev = max(rev, o.Delete)
		}
	}
	return k.Delete == 0 || rev < k.Delete
}

// verdictPut is one verdict written to etcd.
type verdictPut struct {
	At  time.Time
	Rev int64
	coordination.Verdict
}

func (env *fleetEnv) verdictPuts() []verdictPut {
	var out []verdictPut
	clusters := env.prefix() + "clusters/"
	for _, e := range env.hist.all() {
		if e.Delete || !strings.HasPrefix(e.Key, clusters) || !strings.HasSuffix(e.Key, "/state") {
			continue
		}
		vp := verdictPut{At: e.At, Rev: e.Mod}
		if err := json.Unmarshal([]byte(e.Value), &vp.Verdict); err != nil {
			env.t.Errorf("verdict %s does not parse: %v", e.Key, err)
			continue
		}
		// The key is authoritative, as the proxies read it.
		parts := strings.Split(strings.TrimPrefix(e.Key, clusters), "/")
		if len(parts) == 4 {
			vp.Cluster, vp.Backend = parts[0], parts[2]
		}
		out = append(out, vp)
	}
	return out
}

// checkVerdictFences checks every verdict written: its term is the create
// revision of an election key of the cluster's prober role, and that key was
// the leader (first-created live key) at the revision of the write. This is
// what the fence promises, checked on etcd's own history.
func (env *fleetEnv) checkVerdictFences() []verdictPut {
	env.t.Helper()
	puts := env.verdictPuts()
	for _, vp := range puts {
		keys := env.hist.electionKeys(env.electionPrefix(coordination.ProberRole(vp.Cluster)))
		var k *keyLife
		for _, kl := range keys {
			if kl.Create == vp.Term {
				k = kl
			}
		}
		switch {
		case k == nil:
			env.t.Errorf("verdict %s/%s %s at rev %d carries term %d, which is no election key of %s",
				vp.Cluster, vp.Backend, vp.State, vp.Rev, vp.Term, coordination.ProberRole(vp.Cluster))
		case !firstAt(keys, k, vp.Rev):
			env.t.Errorf("verdict %s/%s %s at rev %d by term %d (%s): that key was not the leader at that revision (created %d, deleted %d)",
				vp.Cluster, vp.Backend, vp.State, vp.Rev, vp.Term, k.Node, k.Create, k.Delete)
		}
	}
	return puts
}

// ---------------------------------------------------------------------------
// Proxies in a fleet

type fleetNode struct {
	ID      string
	SQLAddr string
	APIAddr string
	Fwd     *tcpFwd // this node's path to the fleet etcd
	Proxy   *testenv.Proxy
}

// mark is something the test did or saw, for the event log.
type mark struct {
	At   time.Time
	Node string
	What string
}

type fleetEnv struct {
	t     *testing.T
	etcd  *testenv.Etcd
	name  string
	nodes []*fleetNode
	hist  *etcdHistory
	start time.Time

	mu      sync.Mutex
	marks   []mark
	killed  map[string]time.Time // node → SIGKILL
	stopped map[string][2]time.Time
}

func (env *fleetEnv) prefix() string { return "/switchyard/" + env.name + "/" }
func (env *fleetEnv) electionPrefix(role string) string {
	return env.prefix() + "election/" + role + "/"
}

func fleetConfig(n *fleetNode, fleet, etcdAddr, clusters string, o fleetOpts, i int) string {
	advertise := "127.0.0.1"
	if o.advertise != nil {
		advertise = o.advertise(i)
	}
	endpoints := strconv.Quote(etcdAddr)
	if len(o.etcdEndpoints) > 0 {
		q := make([]string, len(o.etcdEndpoints))
		for j, e := range o.etcdEndpoints {
			q[j] = strconv.Quote(e)
		}
		endpoints = strings.Join(q, ", ")
	}
	return fmt.Sprintf(`[proxy]
addr = %q
advertise-addr = %q
graceful-close-conn-timeout = "1s"
%s

[api]
addr = %q
token = %q
read-token = %q

[log]
level = "info"
format = "json"

[health-check]
interval = "200ms"
timeout = "1s"
failures-to-unhealthy = 2

[coordination]
etcd-endpoints = [%s]
fleet = %q
node-id = %q
election-ttl = %q
node-ttl = "5s"

%s
`, n.SQLAddr, advertise, o.proxyExtra, n.APIAddr, fleetToken, e2eReadToken, endpoints, fleet, n.ID, o.ttl.String(), clusters)
}

// staticCluster is a [[cluster]] with static instances.
func staticCluster(name string, addrs ...string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = strconv.Quote(a)
	}
	return fmt.Sprintf("[[cluster]]\nname = %q\ninstances = [%s]\n", name, strings.Join(q, ", "))
}

// startFleet starts n proxies in fleet name, each reaching etcd through its
// own forwarder, and waits until all are registered and the fleet role has
// a leader every node agrees on.
//
// The proxies' etcd client re-syncs its endpoints from etcd's member list
// every 30 s (AutoSyncInterval in lib/etcdclient), after which it would talk
// to etcd's advertised URL, around the forwarder: a scenario that partitions
// a node must do so well within 30 s of starting the fleet (they do, and
// they check that the cut node really lost etcd).
func startFleet(t *testing.T, etcd *testenv.Etcd, name string, n int, clusters string) *fleetEnv {
	t.Helper()
	return startFleetWith(t, etcd, name, n, clusters, fleetOpts{ttl: fleetTTL})
}

// fleetOpts vary the fleet's config for scenarios that need it.
type fleetOpts struct {
	ttl        time.Duration // election-ttl
	proxyExtra string        // appended to [proxy]
	// etcdVia, when set, is where node i's forwarder to etcd connects
	// instead of etcd itself (a lossy link of the test, say).
	etcdVia func(i int) string
	// advertise, when set, is node i's advertise-addr (default 127.0.0.1):
	// its peers reach its API there, on its API port.
	advertise func(i int) string
	// etcdEndpoints, when set, are the nodes' etcd endpoints (every member
	// of an etcd cluster, say) instead of their forwarder.
	etcdEndpoints []string
}

// startFleetWith is startFleet with other options: a longer TTL, for
// scenarios that must tell a handoff apart from a lease expiry, or more
// [proxy] settings.
func startFleetWith(t *testing.T, etcd *testenv.Etcd, name string, n int, clusters string, o fleetOpts) *fleetEnv {
	t.Helper()
	env := &fleetEnv{t: t, etcd: etcd, name: name, start: time.Now(), killed: map[string]time.Time{}, stopped: map[string][2]time.Time{}}
	env.hist = recordHistory(t, etcd.Client, env.prefix())
	bin := testenv.BuildProxy(t)
	for i := range n {
		target := etcd.ClientAddr
		if o.etcdVia != nil {
			target = o.etcdVia(i)
		}
		node := &fleetNode{
			ID:      fmt.Sprintf("%s-%d", name, i+1),
			SQLAddr: testenv.FreeAddr(t),
			APIAddr: testenv.FreeAddr(t),
			Fwd:     newTCPFwd(t, target),
		}
		node.Proxy = testenv.StartProxy(t, bin, fleetConfig(node, name, node.Fwd.Addr(), clusters, o, i))
		env.nodes = append(env.nodes, node)
	}
	// Registered after the proxies' cleanups, so it runs before they are
	// killed: on failure the event log goes with the proxies' output.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("event log of fleet %s:\n%s", name, env.timeline(nil))
		}
	})
	env.waitMembers(n, 30*time.Second)
	env.agreedLeader(roleFleet, 30*time.Second)
	return env
}

func (env *fleetEnv) mark(node, what string) time.Time {
	now := time.Now()
	env.mu.Lock()
	env.marks = append(env.marks, mark{At: now, Node: node, What: what})
	env.mu.Unlock()
	return now
}

func (env *fleetEnv) node(id string) *fleetNode {
	for _, n := range env.nodes {
		if n.ID == id {
			return n
		}
	}
	env.t.Fatalf("no node %q in fleet %s", id, env.name)
	return nil
}

func (env *fleetEnv) others(n *fleetNode) []*fleetNode {
	var out []*fleetNode
	for _, o := range env.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

func (env *fleetEnv) alive() []*fleetNode {
	env.mu.Lock()
	defer env.mu.Unlock()
	var out []*fleetNode
	for _, n := range env.nodes {
		if _, dead := env.killed[n.ID]; !dead {
			out = append(out, n)
		}
	}
	return out
}

// kill SIGKILLs a node and records when.
func (env *fleetEnv) kill(n *fleetNode) time.Time {
	at := env.mark(n.ID, "SIGKILL")
	n.Proxy.Kill()
	env.mu.Lock()
	env.killed[n.ID] = at
	env.mu.Unlock()
	return at
}

// fleetHTTP reads the nodes' APIs with the read token.
var fleetHTTP = &http.Client{
	Timeout:   1500 * time.Millisecond,
	Transport: bearer{token: e2eReadToken, base: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
}

// leaderObs is one answer of GET /api/v1/ha/leader.
type leaderObs struct {
	Node       string // who was asked
	Start, End time.Time
	Status     int // 0: no answer
	Code       string
	LeaderID   string
	Term       int64
	Endpoints  api.Endpoints
	Self       bool
	Err        string
}

func (o leaderObs) String() string {
	switch o.Status {
	case 0:
		return "no answer: " + o.Err
	case http.StatusOK:
		return fmt.Sprintf("200 leader=%s term=%d self=%v", o.LeaderID, o.Term, o.Self)
	}
	return fmt.Sprintf("%d %s leader=%q", o.Status, o.Code, o.LeaderID)
}

func (env *fleetEnv) queryLeader(n *fleetNode, role string) leaderObs {
	o := leaderObs{Node: n.ID, Start: time.Now()}
	defer func() { o.End = time.Now() }()
	resp, err := fleetHTTP.Get("http://" + n.APIAddr + "/api/v1/ha/leader?role=" + role)
	if err != nil {
		o.Err = err.Error()
		o.End = time.Now()
		return o
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	o.End = time.Now()
	if err != nil {
		o.Err = err.Error()
		return o
	}
	o.Status = resp.StatusCode
	if resp.StatusCode == http.StatusOK {
		var a api.LeaderAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			o.Err = err.Error()
			return o
		}
		o.LeaderID, o.Term, o.Endpoints, o.Self = a.LeaderID, a.Term, a.Endpoints, a.SelfIsLeader
		return o
	}
	var e api.LeaderError
	if err := json.Unmarshal(raw, &e); err != nil {
		o.Err = fmt.Sprintf("%v: %s", err, raw)
		return o
	}
	o.Code, o.LeaderID = e.Code, e.LeaderID
	return o
}

// agreedLeader waits until every live node answers 200 with the same leader
// and term for role, and returns that leader's node and term.
func (env *fleetEnv) agreedLeader(role string, d time.Duration) (*fleetNode, int64) {
	env.t.Helper()
	return env.agreedLeaderAmong(nil, role, d)
}

// agreedLeaderAmong is agreedLeader asking only nodes (nil: every live node).
func (env *fleetEnv) agreedLeaderAmong(among []*fleetNode, role string, d time.Duration) (*fleetNode, int64) {
	env.t.Helper()
	deadline := time.Now().Add(d)
	var last []leaderObs
	for {
		nodes := among
		if nodes == nil {
			nodes = env.alive()
		}
		last = last[:0]
		agree := true
		for _, n := range nodes {
			o := env.queryLeader(n, role)
			last = append(last, o)
			if o.Status != http.StatusOK || o.LeaderID != last[0].LeaderID || o.Term != last[0].Term {
				agree = false
			}
		}
		if agree && len(last) > 0 {
			return env.node(last[0].LeaderID), last[0].Term
		}
		if time.Now().After(deadline) {
			env.t.Fatalf("the nodes of fleet %s did not agree on a leader of %s within %v; last answers: %v", env.name, role, d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (env *fleetEnv) waitMembers(n int, d time.Duration) {
	env.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ms []api.MemberAnswer
		resp, err := fleetHTTP.Get("http://" + env.nodes[0].APIAddr + "/api/v1/ha/members")
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				_ = json.NewDecoder(resp.Body).Decode(&ms)
			}
			resp.Body.Close()
		}
		valid := 0
		for _, m := range ms {
			if m.Valid {
				valid++
			}
		}
		if valid == n {
			return
		}
		if time.Now().After(deadline) {
			env.t.Fatalf("fleet %s: %d of %d members registered after %v (%v)", env.name, valid, n, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// poller asks every node who leads role, over and over, recording answers.
type poller struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	obs  []leaderObs
}

func (env *fleetEnv) pollLeaders(role string, every time.Duration) *poller {
	p := &poller{stop: make(chan struct{})}
	for _, n := range env.nodes {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				o := env.queryLeader(n, role)
				p.mu.Lock()
				p.obs = append(p.obs, o)
				p.mu.Unlock()
				select {
				case <-p.stop:
					return
				case <-time.After(every):
				}
			}
		}()
	}
	env.t.Cleanup(func() { p.Stop() })
	return p
}

// Stop ends the polling (idempotent) and returns every answer by start time.
func (p *poller) Stop() []leaderObs {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.obs)
	slices.SortFunc(out, func(a, b leaderObs) int { return a.Start.Compare(b.Start) })
	return out
}

// checkLeaderObs checks what every discovery answer must satisfy: a 200
// names a leader with endpoints and a term that is an election key of that
// node in etcd, one term never has two leaders, and each node's terms never
// go back.
func (env *fleetEnv) checkLeaderObs(role string, obs []leaderObs) {
	env.t.Helper()
	keys := env.hist.electionKeys(env.electionPrefix(role))
	byTerm := map[int64]string{}
	lastTerm := map[string]int64{}
	for _, o := range obs {
		if o.Status != http.StatusOK {
			continue
		}
		if o.LeaderID == "" || o.Endpoints.SQL == "" || o.Endpoints.API == "" || o.Term <= 0 {
			env.t.Errorf("%s answered 200 without a leader, endpoints or term: %+v", o.Node, o)
		}
		if id, ok := byTerm[o.Term]; ok && id != o.LeaderID {
			env.t.Errorf("two leaders for term %d of %s: %s and %s", o.Term, role, id, o.LeaderID)
		}
		byTerm[o.Term] = o.LeaderID
		if o.Term < lastTerm[o.Node] {
			env.t.Errorf("%s went back from term %d to %d of %s", o.Node, lastTerm[o.Node], o.Term, role)
		}
		lastTerm[o.Node] = o.Term
		found := false
		for _, k := range keys {
			found = found || (k.Create == o.Term && k.Node == o.LeaderID)
		}
		if !found {
			env.t.Errorf("%s answered leader %s term %d for %s, which is no election key of that node in etcd", o.Node, o.LeaderID, o.Term, role)
		}
	}
}

// ---------------------------------------------------------------------------
// The proxies' logs (format json)

type logEvent struct {
	At      time.Time
	Node    string
	Msg     string
	Role    string
	Term    int64
	Key     string
	Reason  string
	Cluster string
	Backend string
	State   string
	Result  string
	Votes   []coordination.Vote
	Error   string
	// GuardLeft is, on "leadership renewal came late", how long the renew
	// guard had left.
	GuardLeft time.Duration
}

const zapTime = "2006-01-02T15:04:05.000Z0700"

// fleetMessages are the log messages the event log keeps.
var fleetMessages = []string{
	"leadership term began", "leadership term ended", "vote round approved a verdict", "vote round blocked",
	"vote round failed", "backend voted down by the fleet", "node registered", "node registration lost",
	"node registration failed", "campaign failed", "leader-only work did not stop",
	"leadership renewal came late",
}

func parseNodeLog(n *fleetNode) []logEvent {
	var out []logEvent
	for _, line := range strings.Split(n.Proxy.LogContents(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m struct {
			TS      string              `json:"ts"`
			Msg     string              `json:"msg"`
			Role    string              `json:"role"`
			Term    int64               `json:"term"`
			Key     string              `json:"key"`
			Reason  string              `json:"reason"`
			Cluster string              `json:"cluster"`
			Backend string              `json:"backend"`
			State   string              `json:"state"`
			Result  string              `json:"result"`
			Votes   []coordination.Vote `json:"votes"`
			Error   string              `json:"error"`
			// zap's production encoder writes durations in seconds.
			GuardLeft float64 `json:"guard_left"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		keep := false
		for _, p := range fleetMessages {
			keep = keep || strings.HasPrefix(m.Msg, p)
		}
		if !keep {
			continue
		}
		at, err := time.Parse(zapTime, m.TS)
		if err != nil {
			continue
		}
		out = append(out, logEvent{At: at, Node: n.ID, Msg: m.Msg, Role: m.Role, Term: m.Term, Key: m.Key, Reason: m.Reason,
			Cluster: m.Cluster, Backend: m.Backend, State: m.State, Result: m.Result, Votes: m.Votes, Error: m.Error,
			GuardLeft: time.Duration(m.GuardLeft * float64(time.Second))})
	}
	return out
}

func (env *fleetEnv) logEvents() []logEvent {
	var out []logEvent
	for _, n := range env.nodes {
		out = append(out, parseNodeLog(n)...)
	}
	slices.SortStableFunc(out, func(a, b logEvent) int { return a.At.Compare(b.At) })
	return out
}

func (env *fleetEnv) countLog(pred func(logEvent) bool) int {
	n := 0
	for _, e := range env.logEvents() {
		if pred(e) {
			n++
		}
	}
	return n
}

// termRec is one term as the leader's log tells it.
type termRec struct {
	Role, Node, Key string
	Term            int64
	Began, Ended    time.Time // Ended zero: not ended (in the log)
	Reason          string
}

func (r termRec) String() string {
	end := "(not ended)"
	if !r.Ended.IsZero() {
		end = fmt.Sprintf("ended %s (%s)", r.Ended.Format("15:04:05.000"), r.Reason)
	}
	return fmt.Sprintf("%s term %d of %s began %s %s", r.Node, r.Term, r.Role, r.Began.Format("15:04:05.000"), end)
}

// terms are role's terms from every node's log, by term.
func (env *fleetEnv) terms(role string) []termRec {
	byKey := map[string]*termRec{}
	var order []string
	for _, e := range env.logEvents() {
		if e.Role != role {
			continue
		}
		id := e.Node + "/" + strconv.FormatInt(e.Term, 10)
		switch e.Msg {
		case "leadership term began":
			if _, dup := byKey[id]; dup {
				env.t.Errorf("%s logged term %d of %s as begun twice", e.Node, e.Term, role)
				continue
			}
			byKey[id] = &termRec{Role: role, Node: e.Node, Key: e.Key, Term: e.Term, Began: e.At}
			order = append(order, id)
		case "leadership term ended":
			if r := byKey[id]; r != nil {
				r.Ended, r.Reason = e.At, e.Reason
			} else {
				env.t.Errorf("%s logged the end of term %d of %s, which it never began", e.Node, e.Term, role)
			}
		}
	}
	out := make([]termRec, 0, len(order))
	for _, id := range order {
		out = append(out, *byKey[id])
	}
	slices.SortFunc(out, func(a, b termRec) int { return int(a.Term - b.Term) })
	return out
}

// waitTerm waits for a term of role matching pred and returns it.
func (env *fleetEnv) waitTerm(role string, deadline time.Time, pred func(termRec) bool) (termRec, bool) {
	for {
		for _, r := range env.terms(role) {
			if pred(r) {
				return r, true
			}
		}
		if time.Now().After(deadline) {
			return termRec{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// excuse says why prev's term may lack an end before next began (its node
// was killed, or frozen); "" when it may not.
type excuse func(prev, next termRec) string

// checkTerms checks role's terms on the logs and etcd's history: every term
// began on a key its node held (the first-created live key of the
// election), the terms strictly increase with time, and one term ended
// before the next began (log timestamps have millisecond precision, so the
// end may carry the same millisecond), unless ex excuses it.
func (env *fleetEnv) checkTerms(role string, ex excuse) []termRec {
	env.t.Helper()
	require.Eventually(env.t, func() bool { return env.hist.caughtUp(env.etcd.Client, env.electionPrefix(role)) },
		30*time.Second, 50*time.Millisecond, "the test's record of etcd's history never caught up")
	terms := env.terms(role)
	keys := env.hist.electionKeys(env.electionPrefix(role))
	for i, r := range terms {
		k := keys[r.Key]
		switch {
		case k == nil:
			env.t.Errorf("%s: its key %q is not in etcd's history of the election", r, r.Key)
		case k.Create != r.Term || k.Node != r.Node:
			env.t.Errorf("%s: the key %s was created at %d by %q", r, r.Key, k.Create, k.Node)
		case !everFirst(keys, k):
			env.t.Errorf("%s: began without holding the election (its key was never the first-created live key)", r)
		}
		if i == 0 {
			continue
		}
		prev := terms[i-1]
		if prev.Term == r.Term {
			env.t.Errorf("term %d of %s began on two nodes: %s and %s", r.Term, role, prev.Node, r.Node)
			continue
		}
		if r.Began.Before(prev.Began) {
			env.t.Errorf("terms do not increase with time: %s, then %s", prev, r)
		}
		if !prev.Ended.IsZero() && !prev.Ended.After(r.Began) {
			continue
		}
		why := ""
		if ex != nil {
			why = ex(prev, r)
		}
		if why == "" {
			env.t.Errorf("acting intervals overlap: %s, while %s", prev, r)
		} else {
			env.t.Logf("no end of %s before %s is logged: %s", prev, r, why)
		}
	}
	return terms
}

// excuseKilled excuses a term whose node was SIGKILLed before the next began.
func (env *fleetEnv) excuseKilled(prev, next termRec) string {
	env.mu.Lock()
	at, ok := env.killed[prev.Node]
	env.mu.Unlock()
	if ok && !at.After(next.Began) && (prev.Ended.IsZero() || prev.Ended.After(at)) {
		return fmt.Sprintf("%s was SIGKILLed at %s", prev.Node, at.Format("15:04:05.000"))
	}
	return ""
}

// ---------------------------------------------------------------------------
// The event log

func (env *fleetEnv) timeline(obs []leaderObs) string {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	env.mu.Lock()
	for _, m := range env.marks {
		lines = append(lines, line{m.At, fmt.Sprintf("TEST   %-10s %s", m.Node, m.What)})
	}
	env.mu.Unlock()
	for _, e := range env.logEvents() {
		var b strings.Builder
		fmt.Fprintf(&b, "LOG    %-10s %s", e.Node, e.Msg)
		if e.Role != "" {
			fmt.Fprintf(&b, " role=%s", e.Role)
		}
		if e.Term != 0 {
			fmt.Fprintf(&b, " term=%d", e.Term)
		}
		for _, kv := range [][2]string{{"reason", e.Reason}, {"backend", e.Backend}, {"state", e.State}, {"result", e.Result}, {"error", e.Error}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
			}
		}
		for _, v := range e.Votes {
			fmt.Fprintf(&b, " vote[%s]=%s", v.Node, v.Vote)
		}
		lines = append(lines, line{e.At, b.String()})
	}
	for _, e := range env.hist.all() {
		op := "PUT"
		if e.Delete {
			op = "DELETE"
		}
		lines = append(lines, line{e.At, fmt.Sprintf("ETCD   rev=%-6d %s %s create=%d", e.Mod, op, strings.TrimPrefix(e.Key, env.prefix()), e.Create)})
	}
	last := map[string]string{}
	for _, o := range obs {
		s := o.String()
		if last[o.Node] == s {
			continue
		}
		last[o.Node] = s
		lines = append(lines, line{o.Start, fmt.Sprintf("HTTP   %-10s %s", o.Node, s)})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%8.3fs %s\n", l.at.Sub(env.start).Seconds(), l.text)
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// SQL

// sessionPort opens one new session through addr, asks which server it
// landed on and closes it.
func sessionPort(addr string) (string, error) {
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	cfg.DBName = ""
	cfg.Timeout = 3 * time.Second
	cfg.ReadTimeout = 5 * time.Second
	cfg.Logger = fleetDiscard{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var port string
	err = db.QueryRowContext(ctx, "SELECT @@port").Scan(&port)
	return port, err
}

type fleetDiscard struct{}

func (fleetDiscard) Print(...any) {}

// backendsOf is GET /api/v1/backends on n, by backend addr.
func backendsOf(n *fleetNode) (map[string]api.Backend, error) {
	resp, err := fleetHTTP.Get("http://" + n.APIAddr + "/api/v1/backends")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/backends: %s", resp.Status)
	}
	var bs []api.Backend
	if err := json.NewDecoder(resp.Body).Decode(&bs); err != nil {
		return nil, err
	}
	out := map[string]api.Backend{}
	for _, b := range bs {
		out[b.Addr] = b
	}
	return out, nil
}

// waitEvent waits for an etcd event matching pred.
func (h *etcdHistory) waitEvent(deadline time.Time, pred func(kvEvent) bool) (kvEvent, bool) {
	for {
		for _, e := range h.all() {
			if pred(e) {
				return e, true
			}
		}
		if time.Now().After(deadline) {
			return kvEvent{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitVerdict waits for a verdict written on backend addr of cluster with
// state.
func (env *fleetEnv) waitVerdict(cluster, addr, state string, deadline time.Time) (verdictPut, bool) {
	for {
		for _, vp := range env.verdictPuts() {
			if vp.Cluster == cluster && vp.Backend == addr && vp.State == state {
				return vp, true
			}
		}
		if time.Now().After(deadline) {
			return verdictPut{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits for a log event matching pred.
func (env *fleetEnv) waitLog(deadline time.Time, pred func(logEvent) bool) (logEvent, bool) {
	for {
		for _, e := range env.logEvents() {
			if pred(e) {
				return e, true
			}
		}
		if time.Now().After(deadline) {
			return logEvent{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveKeyOf is node's current election key of role in etcd's history.
func (env *fleetEnv) liveKeyOf(role, node string) *keyLife {
	for _, k := range env.hist.electionKeys(env.electionPrefix(role)) {
		if k.Node == node && k.Delete == 0 {
			return k
		}
	}
	return nil
}

// etcdLeader reads the first-created key of role's election from etcd, as
// the node that holds it and its create revision.
func (env *fleetEnv) etcdLeader(role string) (string, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := env.etcd.Client.Get(ctx, env.electionPrefix(role), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", 0, err
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	var v struct {
		NodeID string `json:"node_id"`
	}
	_ = json.Unmarshal(resp.Kvs[0].Value, &v)
	return v.NodeID, resp.Kvs[0].CreateRevision, nil
}

// sqlLoop is a client that keeps querying through one proxy: one
// long-lived connection (SELECT 1 every 50 ms) and a new session every
// 200 ms.
type sqlLoop struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	ok   int
	errs []string
}

func startSQLLoop(t *testing.T, addr string) *sqlLoop {
	t.Helper()
	l := &sqlLoop{stop: make(chan struct{})}
	cfg := testenv.MySQLConfig(addr, testenv.NativeUser, testenv.NativePassword)
	cfg.DBName = ""
	cfg.ReadTimeout = 10 * time.Second
	db := testenv.OpenDB(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	conn, err := db.Conn(ctx)
	cancel()
	if err != nil {
		t.Fatalf("sql loop: connect through %s: %v", addr, err)
	}
	record := func(what string, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.errs = append(l.errs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), what, err))
		} else {
			l.ok++
		}
	}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		defer conn.Close()
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var one int
			err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one)
			cancel()
			record("long-lived session", err)
		}
	}()
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			_, err := sessionPort(addr)
			record("new session", err)
		}
	}()
	t.Cleanup(func() { l.Stop() })
	return l
}

// Stop ends the loop (idempotent) and returns its successes and errors.
func (l *sqlLoop) Stop() (int, []string) {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, slices.Clone(l.errs)
}

// campaignedOverOwnKey lists the nodes that created a new election key of
// role while their own key from before down (alive at down) still existed.
func (env *fleetEnv) campaignedOverOwnKey(role string, down time.Time) []string {
	keys := env.hist.electionKeys(env.electionPrefix(role))
	var out []string
	for _, old := range keys {
		if !old.CreatedAt.Before(down) || (old.Delete != 0 && old.Deleted.Before(down)) {
			continue
		}
		for _, nk := range keys {
			if nk.Node != old.Node || nk.Create <= old.Create || (old.Delete != 0 && nk.Create > old.Delete) {
				continue
			}
			gone := "still there"
			if old.Delete != 0 {
				gone = fmt.Sprintf("deleted at rev %d, seen %s", old.Delete, old.Deleted.Format("15:04:05.000"))
			}
			out = append(out, fmt.Sprintf("%s campaigned for %s with a new key (%s, create rev %d, seen %s) while its own key from before the outage "+
				"(%s, create rev %d) was still alive (%s): the lease of its ended session was not revoked before it campaigned again",
				nk.Node, role, strings.TrimPrefix(nk.Key, env.prefix()), nk.Create, nk.CreatedAt.Format("15:04:05.000"),
				strings.TrimPrefix(old.Key, env.prefix()), old.Create, gone))
		}
	}
	return out
}
