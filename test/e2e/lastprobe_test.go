//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// With a 1 s probe interval, the API (and the status page built on it)
// shows a last probe at most a few seconds old, long after the backend's
// verdict last changed (issue 14: it said "8-9 s ago").
func TestLastProbeIsFresh(t *testing.T) {
	m := testenv.SharedMariaDB(t)
	apiAddr := testenv.FreeAddr(t)
	p := startProxy(t, proxyConfig{backends: []string{m.Addr()}, apiAddr: apiAddr,
		extra: "\n[health-check]\ninterval = \"1s\"\ntimeout = \"1s\"\n"})
	_ = p
	var first time.Time
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var bs []api.Backend
		require.NoError(c, getAPI(apiAddr, "/api/v1/backends", &bs))
		require.Len(c, bs, 1)
		require.True(c, bs[0].Healthy)
		require.NotNil(c, bs[0].LastProbe)
		first = *bs[0].LastProbe
	}, 30*time.Second, 100*time.Millisecond)

	// Well after the first verdict, the probe time keeps advancing.
	time.Sleep(6 * time.Second)
	for range 5 {
		var bs []api.Backend
		require.NoError(t, getAPI(apiAddr, "/api/v1/backends", &bs))
		require.Len(t, bs, 1)
		require.NotNil(t, bs[0].LastProbe)
		last := *bs[0].LastProbe
		require.True(t, last.After(first.Add(3*time.Second)), "last probe %v, first seen %v", last, first)
		// Interval + timeout + slack for a loaded machine.
		require.Less(t, time.Since(last), 4*time.Second, "last probe %v", last)
		time.Sleep(700 * time.Millisecond)
	}
}
