package vote

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"go.uber.org/zap/zaptest"
)

func TestVoterHandleVote(t *testing.T) {
	tests := map[string]struct {
		result     *voteProbeResult // nil: addr not served
		cluster    string
		deadlineMS int
		wantVote   string
		wantReason string
		maxProbe   time.Duration
	}{
		"probe fails":      {result: &voteDownResult, wantVote: coordination.VoteDown, wantReason: "connection refused", maxProbe: MaxProbe},
		"probe succeeds":   {result: &voteUpResult, wantVote: coordination.VoteUp, maxProbe: MaxProbe},
		"backend unknown":  {wantVote: coordination.VoteUnknown, wantReason: ErrNotServed.Error()},
		"cluster unknown":  {result: &voteUpResult, cluster: "west", wantVote: coordination.VoteUnknown, wantReason: ErrNotServed.Error()},
		"probe cannot run": {result: &voteProbeResult{err: errors.New("prober closed")}, wantVote: coordination.VoteUnknown, wantReason: "prober closed"},
		"short deadline":   {result: &voteUpResult, deadlineMS: 200, wantVote: coordination.VoteUp, maxProbe: 200 * time.Millisecond},
		"long deadline":    {result: &voteUpResult, deadlineMS: 60_000, wantVote: coordination.VoteUp, maxProbe: MaxProbe},
		"hung backend":     {result: &voteProbeResult{healthy: true, block: make(chan struct{})}, deadlineMS: 50, wantVote: coordination.VoteDown, wantReason: "probe timed out"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			results := map[string]voteProbeResult{}
			if tt.result != nil {
				results["10.0.0.1:4000"] = *tt.result
			}
			p := newVoteFakeProber(results)
			v := NewVoter(zaptest.NewLogger(t), "n1", p)
			cluster := voteTestCluster
			if tt.cluster != "" {
				cluster = tt.cluster
			}
			resp := v.HandleVote(context.Background(), Request{
				Cluster: cluster, Backend: "10.0.0.1:4000", Term: 5, Round: "r1", LeaderID: "n0", DeadlineMS: tt.deadlineMS,
			})
			require.Equal(t, Response{Node: "n1", Vote: tt.wantVote, Reason: tt.wantReason, Term: 5}, resp)
			require.EqualValues(t, 1, p.calls.Load(), "every vote is a fresh probe")
			if tt.maxProbe > 0 {
				require.Len(t, p.deadlines, 1)
				require.LessOrEqual(t, p.deadlines[0], tt.maxProbe)
				require.Greater(t, p.deadlines[0], tt.maxProbe/2)
			}
		})
	}
}

func TestVoterRejectsStaleTerm(t *testing.T) {
	p := newVoteFakeProber(map[string]voteProbeResult{"b:1": voteDownResult})
	v := NewVoter(zaptest.NewLogger(t), "n1", p)
	ask := func(cluster string, term int64) Response {
		return v.HandleVote(context.Background(), Request{Cluster: cluster, Backend: "b:1", Term: term, Round: "r", LeaderID: "n0"})
	}
	require.Equal(t, coordination.VoteDown, ask(voteTestCluster, 10).Vote)
	require.Equal(t, coordination.VoteDown, ask(voteTestCluster, 10).Vote, "the same term again is fine")
	require.Equal(t, Response{Node: "n1", Vote: coordination.VoteUnknown, Reason: ReasonStaleTerm, Term: 10}, ask(voteTestCluster, 9))
	require.Equal(t, coordination.VoteDown, ask(voteTestCluster, 11).Vote)
	require.Equal(t, ReasonStaleTerm, ask(voteTestCluster, 10).Reason, "the newest term moved on")
	// Terms are per prober role: another cluster's are unrelated.
	require.Equal(t, ErrNotServed.Error(), ask("west", 3).Reason)
	// A term learned outside any request counts too.
	v.ObserveTerm(voteTestCluster, 20)
	require.Equal(t, Response{Node: "n1", Vote: coordination.VoteUnknown, Reason: ReasonStaleTerm, Term: 20}, ask(voteTestCluster, 19))
	require.EqualValues(t, 4, p.calls.Load(), "a refused request probes nothing")
}

func TestVoteHandlerHTTP(t *testing.T) {
	p := newVoteFakeProber(map[string]voteProbeResult{"b:1": voteDownResult})
	v := NewVoter(zaptest.NewLogger(t), "n1", p)
	srv := httptest.NewServer(v.Handler(voteTestToken))
	defer srv.Close()
	good := `{"cluster":"east","backend":"b:1","term":3,"round":"r","leader_id":"n0","deadline_ms":500}`
	tests := map[string]struct {
		method, auth, body string
		status             int
		bodyHas            string
	}{
		"ok":             {http.MethodPost, "Bearer " + voteTestToken, good, http.StatusOK, `"vote":"down"`},
		"no token":       {http.MethodPost, "", good, http.StatusUnauthorized, "UNAUTHORIZED"},
		"wrong token":    {http.MethodPost, "Bearer s3cre", good, http.StatusUnauthorized, "UNAUTHORIZED"},
		"token prefix":   {http.MethodPost, "Bearer " + voteTestToken + "x", good, http.StatusUnauthorized, "UNAUTHORIZED"},
		"not bearer":     {http.MethodPost, "Basic " + voteTestToken, good, http.StatusUnauthorized, "UNAUTHORIZED"},
		"GET":            {http.MethodGet, "Bearer " + voteTestToken, "", http.StatusMethodNotAllowed, "use POST"},
		"bad JSON":       {http.MethodPost, "Bearer " + voteTestToken, `{"cluster":`, http.StatusBadRequest, "BAD_REQUEST"},
		"missing fields": {http.MethodPost, "Bearer " + voteTestToken, `{"cluster":"east"}`, http.StatusBadRequest, "required"},
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+Path, strings.NewReader(tt.body))
			require.NoError(t, err)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := hc.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, string(body))
			require.Contains(t, string(body), tt.bodyHas)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tt.status == http.StatusUnauthorized {
				require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	require.EqualValues(t, 1, p.calls.Load(), "only the accepted request probed")

	// Without a token the handler is open.
	open := httptest.NewServer(v.Handler(""))
	defer open.Close()
	c := &PeerClient{HTTP: hc}
	resp, err := c.RequestVote(context.Background(), open.Listener.Addr().String(), Request{Cluster: voteTestCluster, Backend: "b:1", Term: 3})
	require.NoError(t, err)
	require.Equal(t, Response{Node: "n1", Vote: coordination.VoteDown, Reason: "connection refused", Term: 3}, resp)
}

func TestPeerClient(t *testing.T) {
	p := newVoteFakeProber(map[string]voteProbeResult{"b:1": voteUpResult})
	v := NewVoter(zaptest.NewLogger(t), "n1", p)
	srv := httptest.NewServer(v.Handler(voteTestToken))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	req := Request{Cluster: voteTestCluster, Backend: "b:1", Term: 3, Round: "r", LeaderID: "n0", DeadlineMS: 100}

	// The default client (no keep-alives) and the token.
	resp, err := (&PeerClient{Token: voteTestToken}).RequestVote(context.Background(), addr, req)
	require.NoError(t, err)
	require.Equal(t, Response{Node: "n1", Vote: coordination.VoteUp, Term: 3}, resp)

	_, err = (&PeerClient{Token: "wrong"}).RequestVote(context.Background(), addr, req)
	require.ErrorContains(t, err, "401")
	require.ErrorContains(t, err, "Bearer")

	dead := newDeadVotePeer(t, "n9")
	_, err = (&PeerClient{}).RequestVote(context.Background(), dead.addr, req)
	require.Error(t, err)

	// An answer that is not a vote is an error, not a vote.
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"node":"n1","vote":"yes"}`))
	}))
	defer odd.Close()
	_, err = (&PeerClient{}).RequestVote(context.Background(), odd.Listener.Addr().String(), req)
	require.ErrorContains(t, err, `unknown vote "yes"`)

	hung := newHungVotePeer(t, "n8")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = (&PeerClient{}).RequestVote(ctx, hung.addr, req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
