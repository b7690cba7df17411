package router

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

func TestDrainValidation(t *testing.T) {
	h := newHarness(t, func(c *config.Config) {
		c.Proxy.DefaultCluster = "c"
		c.Clusters = []config.Cluster{{Name: "c", Instances: []string{"a:1", "b:1"}}}
	}, clusterView("c", observer.StateReady, bk{"a:1", true}, bk{"b:1", true}))
	_, err := h.r.Drain("c/x:1", time.Minute)
	require.ErrorIs(t, err, ErrUnknownBackend)
	_, err = h.r.Drain("c/a:1", 0)
	require.Error(t, err)
	d, err := h.r.Drain("c/a:1", time.Minute)
	require.NoError(t, err)
	h.now = h.now.Add(time.Second)
	d2, err := h.r.Drain("c/a:1", time.Hour)
	require.NoError(t, err)
	require.Equal(t, d.Since, d2.Since, "a second drain keeps since")
	require.Equal(t, h.now.Add(time.Hour), d2.Deadline)
	require.Equal(t, []string{"c/a:1"}, slices.Collect(func(yield func(string) bool) {
		for id := range h.r.Drains() {
			yield(id)
		}
	}))
	// A drained backend takes no new sessions.
	for range 5 {
		l, err := h.r.Route(ClientInfo{User: "u"}, nil)
		require.NoError(t, err)
		require.Equal(t, "b:1", l.Addr())
		l.Release()
	}
	_, err = h.r.Drain("c/b:1", time.Minute)
	require.NoError(t, err)
	_, err = h.r.Route(ClientInfo{User: "u"}, nil)
	require.ErrorIs(t, err, ErrNoBackend)
	require.Contains(t, err.Error(), "drained")
	require.False(t, h.r.Undrain("c/x:1"))
	require.True(t, h.r.Undrain("c/b:1"))
	l, err := h.r.Route(ClientInfo{User: "u"}, nil)
	require.NoError(t, err)
	l.Release()
}
