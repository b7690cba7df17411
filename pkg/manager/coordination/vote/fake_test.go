package vote

import (
	"context"
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
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/test/testenv"
	"go.uber.org/zap/zaptest"
)

const voteTestCluster = "east"

// voteFakeBackend is a Backend whose term, members and verdicts the test
// sets. WriteVerdict is fenced like the real one: refused once the term is
// over.
type voteFakeBackend struct {
	mu         sync.Mutex
	held       bool
	term       coordination.Term
	termCtx    context.Context
	endTerm    context.CancelFunc
	members    []coordination.Member
	membersErr error
	writeErr   error
	attempts   int // WriteVerdict calls
	writes     []coordination.Verdict
	verdicts   map[string]coordination.Verdict
}

var _ coordination.Store = (*voteFakeBackend)(nil)

func newVoteFakeBackend(t *testing.T) *voteFakeBackend {
	b := &voteFakeBackend{verdicts: map[string]coordination.Verdict{}}
	b.newTerm(7)
	t.Cleanup(b.endTerm)
	return b
}

// newTerm makes this node the leader with term rev.
func (b *voteFakeBackend) newTerm(rev int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.endTerm != nil {
		b.endTerm()
	}
	b.held = true
	b.term = coordination.Term{Role: coordination.ProberRole(voteTestCluster), Rev: rev}
	b.termCtx, b.endTerm = context.WithCancel(context.Background())
}

// loseTerm ends the term, as a lost lease would.
func (b *voteFakeBackend) loseTerm() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	b.endTerm()
}

func (b *voteFakeBackend) Mode() string                  { return coordination.ModeEtcd }
func (b *voteFakeBackend) Start(context.Context) error   { return nil }
func (b *voteFakeBackend) SetInfo(coordination.NodeInfo) {}
func (b *voteFakeBackend) SetRoles([]string)             {}
func (b *voteFakeBackend) Health() (string, string)      { return coordination.StateHealthy, "" }
func (b *voteFakeBackend) Close()                        {}

func (b *voteFakeBackend) Subscribe() (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}

func (b *voteFakeBackend) Leader(context.Context, string) (coordination.LeaderInfo, error) {
	return coordination.LeaderInfo{}, coordination.ErrNoLeader
}

func (b *voteFakeBackend) Members(ctx context.Context) ([]coordination.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.membersErr != nil {
		return nil, b.membersErr
	}
	return append([]coordination.Member(nil), b.members...), nil
}

func (b *voteFakeBackend) Term(role string) (coordination.Term, context.Context, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held || role != b.term.Role || b.termCtx.Err() != nil {
		return coordination.Term{}, nil, false
	}
	return b.term, b.termCtx, true
}

func (b *voteFakeBackend) WriteVerdict(ctx context.Context, term coordination.Term, v coordination.Verdict) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	if !b.held || term != b.term || b.termCtx.Err() != nil {
		return coordination.ErrNotLeader
	}
	if b.writeErr != nil {
		return b.writeErr
	}
	b.writes = append(b.writes, v)
	b.verdicts[v.Cluster+"/"+v.Backend] = v
	return nil
}

func (b *voteFakeBackend) Verdicts() map[string]coordination.Verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]coordination.Verdict, len(b.verdicts))
	for k, v := range b.verdicts {
		out[k] = v
	}
	return out
}

func (b *voteFakeBackend) setVerdict(v coordination.Verdict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.verdicts[v.Cluster+"/"+v.Backend] = v
}

func (b *voteFakeBackend) written() (attempts int, writes []coordination.Verdict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts, append([]coordination.Verdict(nil), b.writes...)
}

// voteProbeResult is what a fake prober answers for one addr.
type voteProbeResult struct {
	healthy bool
	reason  string
	err     error
	// block, when set, holds the probe until it is closed or ctx ends (a
	// failed probe then).
	block chan struct{}
}

// voteFakeProber answers from a table; an addr not in it is not served.
type voteFakeProber struct {
	mu        sync.Mutex
	results   map[string]voteProbeResult
	calls     atomic.Int64
	deadlines []time.Duration // time left on ctx at each call
}

var _ Prober = (*voteFakeProber)(nil)

func newVoteFakeProber(results map[string]voteProbeResult) *voteFakeProber {
	return &voteFakeProber{results: results}
}

func (p *voteFakeProber) set(addr string, r voteProbeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.results[addr] = r
}

func (p *voteFakeProber) ProbeNow(ctx context.Context, cluster, addr string) (bool, string, error) {
	p.calls.Add(1)
	p.mu.Lock()
	r, ok := p.results[addr]
	if dl, has := ctx.Deadline(); has {
		p.deadlines = append(p.deadlines, time.Until(dl))
	}
	p.mu.Unlock()
	if cluster != voteTestCluster || !ok {
		return false, "", ErrNotServed
	}
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return false, "probe timed out", nil
		}
	}
	return r.healthy, r.reason, r.err
}

var (
	voteDownResult = voteProbeResult{healthy: false, reason: "connection refused"}
	voteUpResult   = voteProbeResult{healthy: true}
)

// votePeer is another node of the fleet: a real HTTP server running a
// Voter, or an address nobody listens on.
type votePeer struct {
	id     string
	prober *voteFakeProber
	voter  *Voter
	srv    *httptest.Server
	addr   string // API host:port
}

func newVotePeer(t *testing.T, id, token string, results map[string]voteProbeResult) *votePeer {
	p := &votePeer{id: id, prober: newVoteFakeProber(results)}
	p.voter = NewVoter(zaptest.NewLogger(t), id, p.prober)
	p.srv = httptest.NewServer(p.voter.Handler(token))
	t.Cleanup(p.srv.Close)
	p.addr = p.srv.Listener.Addr().String()
	return p
}

// newDeadVotePeer is a registered peer whose API address refuses connections.
func newDeadVotePeer(t *testing.T, id string) *votePeer {
	addr := testenv.FreeAddr(t)
	return &votePeer{id: id, addr: addr}
}

// newHungVotePeer is a registered peer that accepts and never answers.
func newHungVotePeer(t *testing.T, id string) *votePeer {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a client hanging up only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first
	return &votePeer{id: id, srv: srv, addr: srv.Listener.Addr().String()}
}

func (p *votePeer) member(t *testing.T, clusters ...string) coordination.Member {
	host, port, err := net.SplitHostPort(p.addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(port)
	require.NoError(t, err)
	info := &coordination.NodeInfo{ID: p.id, Host: host, SQLPort: 6000, APIPort: n, State: coordination.NodeUp, Clusters: clusters}
	require.NoError(t, info.Validate())
	return coordination.Member{ID: p.id, Info: info, TTL: 10}
}

// voteFleet is a coordinator ("n0") with its fake store, its own prober and
// its peers.
type voteFleet struct {
	backend *voteFakeBackend
	local   *voteFakeProber
	peers   []*votePeer
	coord   *Coordinator
	clock   *voteClock
}

// newVoteFleet builds the fleet; every peer serves voteTestCluster and is
// registered, and so is n0 itself.
func newVoteFleet(t *testing.T, opts CoordinatorOptions, local map[string]voteProbeResult, peers ...*votePeer) *voteFleet {
	f := &voteFleet{backend: newVoteFakeBackend(t), local: newVoteFakeProber(local), peers: peers, clock: &voteClock{t: time.Unix(1_800_000_000, 0)}}
	self := coordination.NodeInfo{ID: "n0", Host: "127.0.0.1", SQLPort: 6000, APIPort: 1, State: coordination.NodeUp, Clusters: []string{voteTestCluster}}
	f.backend.members = []coordination.Member{{ID: "n0", Info: &self, TTL: 10}}
	for _, p := range peers {
		f.backend.members = append(f.backend.members, p.member(t, voteTestCluster))
	}
	// Keep-alives off so that no connection outlives the test (goleak).
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)
	f.coord = NewCoordinator(zaptest.NewLogger(t), f.backend, self, f.local, &PeerClient{HTTP: hc, Token: voteTestToken}, opts)
	f.coord.now = f.clock.now
	return f
}

const voteTestToken = "s3cret"

// voteClock is a settable clock for rate limits and backoffs.
type voteClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *voteClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *voteClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// voteRecorder is a Metrics that counts.
type voteRecorder struct {
	mu     sync.Mutex
	rounds map[string]int
	votes  map[string]int
}

func (r *voteRecorder) ObserveRound(cluster, state, result string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rounds[state+" "+result]++
}

func (r *voteRecorder) ObserveVote(cluster, vote string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.votes[vote]++
}
