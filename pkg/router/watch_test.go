package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard-db/switchyard/lib/config"
	"github.com/switchyard-db/switchyard/pkg/observer"
)

// The router forgets a backend that left the topology by itself (its own
// watch, not a caller telling it): a backend that failed a dial, left and
// registered again is routable at once, without waiting out the skip.
func TestRouterWatchForgetsBackendsThatLeft(t *testing.T) {
	agg := observer.NewAggregator()
	a, b := bk{"10.0.0.1:4000", true}, bk{"10.0.0.2:4000", true}
	publish := func(gen uint64, bs ...bk) {
		v := clusterView("east", observer.StateReady, bs...)
		v.Generation = gen
		agg.Publish(v)
	}
	publish(1, a, b)
	cfg := config.NewDefault()
	cfg.Clusters = []config.Cluster{{Name: "east", Instances: []string{a.addr, b.addr}}}
	r := NewBalanced(agg, cfg)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.Start(context.Background())
	defer r.Close()

	for {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		if l.Addr() == a.addr {
			l.Failed(errors.New("refused"))
			break
		}
		l.Release()
	}
	skipped := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		st := r.backends["east/"+a.addr]
		return st != nil && now.Before(st.downUntil)
	}
	require.True(t, skipped(), "a failed dial sets the skip")

	publish(2, b) // a deregisters
	require.Eventually(t, func() bool { return !skipped() }, 5*time.Second, 5*time.Millisecond,
		"the router's watch forgets the skip of a backend that left")
	publish(3, a, b) // and registers again
	got := map[string]bool{}
	for range 4 {
		l, err := r.Route(ClientInfo{User: "app"}, nil)
		require.NoError(t, err)
		got[l.Addr()] = true
		l.Release()
	}
	require.True(t, got[a.addr], "the re-registered backend takes sessions at once")
}

// Close is idempotent, safe without Start, and a Start after Close does
// nothing (no goroutine is left behind; goleak checks at the end).
func TestRouterWatchLifecycle(t *testing.T) {
	r := NewBalanced(observer.NewAggregator(), config.NewDefault())
	r.Close()
	r.Start(context.Background())
	r.Close()

	r2 := NewBalanced(observer.NewAggregator(), config.NewDefault())
	ctx, cancel := context.WithCancel(context.Background())
	r2.Start(ctx)
	cancel()
	r2.Close()
	r2.Close()

	// A fixed topology has nothing to watch.
	r3 := NewBalanced(fixedTopology{&observer.Topology{}}, config.NewDefault())
	r3.Start(context.Background())
	r3.Close()
}

// fixedTopology is a TopologySource without Subscribe.
type fixedTopology struct{ t *observer.Topology }

func (f fixedTopology) Topology() *observer.Topology { return f.t }
