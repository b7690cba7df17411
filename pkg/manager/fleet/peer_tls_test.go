package fleet

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination"
	"github.com/switchyard-db/switchyard/pkg/manager/coordination/vote"
	"github.com/switchyard-db/switchyard/pkg/server/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// A fleet behind mTLS without a token: a node asks a peer for its vote
// presenting its own API certificate, which the peer maps to admin; a node
// whose certificate is not listed is refused.
func TestPeerVoteOverMTLS(t *testing.T) {
	certs := testenv.NewCerts(t, "")
	_, nodeCert, nodeKey := certs.IssuePeerCert(t, "node-a")
	_, strangerCert, strangerKey := certs.IssuePeerCert(t, "stranger")
	apiCfg := func(cert, key string) config.API {
		return config.API{Addr: "127.0.0.1:0",
			TLS:         config.TLSConfig{Cert: cert, Key: key, CA: certs.CAFile},
			ClientCerts: config.ClientCerts{Admin: []string{"node-a"}}}
	}

	// The peer: an API that admits node-a as admin, with a stand-in voter.
	peerAPI := apiCfg(nodeCert, nodeKey)
	srvTLS, err := api.TLSConfig(peerAPI)
	require.NoError(t, err)
	peer := api.New(zaptest.NewLogger(t), nil, nil, nil, api.NewAuth(peerAPI))
	votes := 0
	peer.HandleInternal(vote.Path, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		votes++
		_ = json.NewEncoder(w).Encode(vote.Response{Node: "peer", Vote: coordination.VoteUp})
	}))
	require.NoError(t, peer.Start(context.Background(), "127.0.0.1:0", srvTLS))
	t.Cleanup(peer.Close)

	ask := func(cert, key string) error {
		tc, err := PeerTLS(apiCfg(cert, key))
		require.NoError(t, err)
		require.NotNil(t, tc)
		c := &vote.PeerClient{Scheme: "https",
			HTTP: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tc}}}
		_, err = c.RequestVote(context.Background(), peer.Addr().String(), vote.Request{Cluster: "c", Backend: "b:1", Term: 1})
		return err
	}
	require.NoError(t, ask(nodeCert, nodeKey))
	require.Equal(t, 1, votes)
	err = ask(strangerCert, strangerKey)
	require.ErrorContains(t, err, "401")
	require.Equal(t, 1, votes, "a node whose certificate is not admin never reaches the voter")

	// Without a CA nothing changes for peers: plain defaults.
	tc, err := PeerTLS(config.API{TLS: config.TLSConfig{Cert: nodeCert, Key: nodeKey}})
	require.NoError(t, err)
	require.Nil(t, tc)
}
