package observer

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func view(name string, gen uint64, addrs ...string) *ClusterView {
	v := &ClusterView{Name: name, Generation: gen, State: StateReady}
	for _, a := range addrs {
		v.Backends = append(v.Backends, &Backend{ID: BackendID(name, a), Cluster: name, Addr: a, Health: Health{Healthy: true}})
	}
	return v
}

func TestAggregatorMergesClustersByID(t *testing.T) {
	a := NewAggregator()
	require.Empty(t, a.Topology().Clusters)
	a.Publish(view("east", 1, "127.0.0.1:4000", "127.0.0.1:4001"))
	a.Publish(view("west", 2, "127.0.0.1:4000"))
	topo := a.Topology()
	require.Len(t, topo.Clusters, 2)
	// The same address in two clusters is two backends.
	east, west := topo.Backend("east/127.0.0.1:4000"), topo.Backend("west/127.0.0.1:4000")
	require.NotNil(t, east)
	require.NotNil(t, west)
	require.NotSame(t, east, west)
	require.Equal(t, "east", east.Cluster)
	require.Equal(t, "west", west.Cluster)
	require.Nil(t, topo.Backend("west/127.0.0.1:4001"))
	require.Nil(t, topo.Backend("nonsense"))
}

func TestAggregatorSnapshotsAreImmutable(t *testing.T) {
	a := NewAggregator()
	a.Publish(view("east", 1, "h:1"))
	before := a.Topology()
	a.Publish(view("east", 1, "h:1", "h:2"))
	a.Publish(view("west", 1, "h:3"))
	require.Len(t, before.Clusters, 1, "an old snapshot must not change")
	require.Len(t, before.Cluster("east").Backends, 1)
	after := a.Topology()
	require.Greater(t, after.Version, before.Version)
	require.Len(t, after.Cluster("east").Backends, 2)
}

func TestAggregatorGenerations(t *testing.T) {
	a := NewAggregator()
	a.Publish(view("east", 2, "new:1"))
	a.Publish(view("east", 1, "old:1")) // a replaced runtime's late update
	require.Equal(t, "new:1", a.Topology().Cluster("east").Backends[0].Addr)
	a.Remove("east", 1) // the replaced runtime closing
	require.NotNil(t, a.Topology().Cluster("east"), "an old generation must not remove its successor")
	a.Remove("east", 2)
	require.Nil(t, a.Topology().Cluster("east"))
}

func TestAggregatorSubscribersNeverBlockPublisher(t *testing.T) {
	a := NewAggregator()
	slow, cancelSlow := a.Subscribe() // never read until the end
	defer cancelSlow()
	fast, cancelFast := a.Subscribe()
	defer cancelFast()

	var wg sync.WaitGroup
	wg.Add(1)
	seen := make(chan uint64, 1)
	go func() {
		defer wg.Done()
		var last uint64
		for last < 1000 {
			<-fast
			last = a.Topology().Version
		}
		seen <- last
	}()
	for i := 0; i < 1000; i++ {
		a.Publish(view("east", 1, "h:1"))
	}
	select {
	case v := <-seen:
		require.EqualValues(t, 1000, v, "the subscriber must end on the latest version")
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber never saw the last version")
	}
	wg.Wait()
	// The slow subscriber has exactly one pending wake-up.
	require.Len(t, slow, 1)
	<-slow
	require.EqualValues(t, 1000, a.Topology().Version)

	cancelSlow()
	a.Publish(view("east", 1, "h:1"))
	require.Len(t, slow, 0, "a cancelled subscription gets nothing")
}
