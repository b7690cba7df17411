package router_test

import (
	"testing"

	"github.com/switchyard-db/switchyard/pkg/router"
	"github.com/switchyard-db/switchyard/pkg/router/routertest"

	"github.com/stretchr/testify/require"
)

func TestClaimStaysInCluster(t *testing.T) {
	r := routertest.NewForAddrs("east", []string{"10.0.0.1:4000", "10.0.0.2:4000"})
	l, err := r.Claim("east", "10.0.0.2:4000")
	require.NoError(t, err)
	require.Equal(t, "east/10.0.0.2:4000", l.ID())
	require.Equal(t, map[string]int64{"east/10.0.0.2:4000": 1}, r.Sessions(), "a claim counts as a session")
	l.Release()
	require.Empty(t, r.Sessions())

	_, err = r.Claim("west", "10.0.0.2:4000")
	require.ErrorIs(t, err, router.ErrNoBackend)
	_, err = r.Claim("east", "10.0.0.9:4000")
	require.ErrorContains(t, err, "not a backend of cluster east")
	r.SetFleetDown(map[string]bool{"east/10.0.0.1:4000": true})
	_, err = r.Claim("east", "10.0.0.1:4000")
	require.ErrorContains(t, err, "voted down")
}
