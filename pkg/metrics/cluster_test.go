package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/pkg/mysql"
)

// histogram returns the sample count and sum of one query duration series,
// and the cumulative count of the bucket with upper bound le.
func histogram(t testing.TB, g prometheus.Gatherer, cluster, command string, le float64) (count uint64, sum float64, inBucket uint64) {
	t.Helper()
	m := find(t, g, "switchyard_query_duration_seconds", "cluster", cluster, "command", command)
	require.NotNil(t, m, "no series for %s/%s", cluster, command)
	h := m.GetHistogram()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			inBucket = b.GetCumulativeCount()
		}
	}
	return h.GetSampleCount(), h.GetSampleSum(), inBucket
}

func TestQueryDurationBuckets(t *testing.T) {
	require.Len(t, queryDurationBuckets, 19)
	require.Equal(t, 0.0005, queryDurationBuckets[0])
	require.InDelta(t, 131.072, queryDurationBuckets[18], 1e-9)
}

func TestObserveLabels(t *testing.T) {
	m := New(nil, "", "")
	reg := m.Registry()
	east, west := m.ForCluster("east"), m.ForCluster("west")

	east.Observe(mysql.ComQuery, 3*time.Millisecond)
	east.Observe(mysql.ComQuery, 300*time.Millisecond)
	east.Observe(mysql.ComStmtExecute, time.Millisecond)
	east.Observe(0x00, time.Millisecond) // COM_SLEEP: not a named command
	east.Observe(0xff, time.Millisecond)
	west.Observe(mysql.ComPing, 100*time.Microsecond)

	count, sum, le4ms := histogram(t, reg, "east", "query", 0.004)
	require.Equal(t, uint64(2), count)
	require.InDelta(t, 0.303, sum, 1e-9)
	require.Equal(t, uint64(1), le4ms)

	count, _, le1ms := histogram(t, reg, "east", "stmt_execute", 0.001)
	require.Equal(t, uint64(1), count)
	require.Equal(t, uint64(1), le1ms)

	count, _, _ = histogram(t, reg, "east", "other", 0.001)
	require.Equal(t, uint64(2), count)

	count, _, lowest := histogram(t, reg, "west", "ping", 0.0005)
	require.Equal(t, uint64(1), count)
	require.Equal(t, uint64(1), lowest)

	// Only commands that were seen are exported.
	require.Equal(t, 4, seriesCount(t, reg, "switchyard_query_duration_seconds"))
	require.Nil(t, find(t, reg, "switchyard_query_duration_seconds", "cluster", "west", "command", "query"))
}

func TestForClusterIsCached(t *testing.T) {
	m := New(nil, "", "")
	const goroutines = 8
	got := make([]*ClusterMetrics, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = m.ForCluster("east")
		}()
	}
	wg.Wait()
	for _, c := range got {
		require.Same(t, got[0], c)
	}
	require.NotSame(t, got[0], m.ForCluster("west"))
}

func TestSessions(t *testing.T) {
	m := New(nil, "", "")
	reg := m.Registry()
	east := m.ForCluster("east")
	// A cluster exists at 0 from its first ForCluster.
	require.Equal(t, 0.0, value(t, reg, "switchyard_sessions", "cluster", "east"))

	east.SessionStarted()
	east.SessionStarted()
	m.ForCluster("west").SessionStarted()
	east.SessionEnded()
	requireText(t, reg, `
		# HELP switchyard_sessions Client sessions currently routed to the cluster.
		# TYPE switchyard_sessions gauge
		switchyard_sessions{cluster="east"} 1
		switchyard_sessions{cluster="west"} 1
	`, "switchyard_sessions")
}

func TestDeleteCluster(t *testing.T) {
	m := New(nil, "", "")
	reg := m.Registry()
	east, west := m.ForCluster("east"), m.ForCluster("west")
	east.SessionStarted()
	west.SessionStarted()
	east.Observe(mysql.ComQuery, time.Millisecond)
	east.Observe(mysql.ComPing, time.Millisecond)
	west.Observe(mysql.ComQuery, time.Millisecond)

	m.DeleteCluster("east")
	requireText(t, reg, `
		# HELP switchyard_sessions Client sessions currently routed to the cluster.
		# TYPE switchyard_sessions gauge
		switchyard_sessions{cluster="west"} 1
	`, "switchyard_sessions")
	require.Equal(t, 1, seriesCount(t, reg, "switchyard_query_duration_seconds"))
	require.NotNil(t, find(t, reg, "switchyard_query_duration_seconds", "cluster", "west", "command", "query"))

	// A session still holding the old recorder must not bring the series
	// back, whether its command type was seen before or not.
	east.Observe(mysql.ComQuery, time.Millisecond)
	east.Observe(mysql.ComStmtExecute, time.Millisecond)
	east.SessionEnded()
	require.Nil(t, find(t, reg, "switchyard_sessions", "cluster", "east"))
	require.Equal(t, 1, seriesCount(t, reg, "switchyard_query_duration_seconds"))

	// The cluster comes back (re-added to the config): it starts from zero.
	again := m.ForCluster("east")
	require.NotSame(t, east, again)
	require.Equal(t, 0.0, value(t, reg, "switchyard_sessions", "cluster", "east"))
	again.Observe(mysql.ComQuery, time.Millisecond)
	count, _, _ := histogram(t, reg, "east", "query", 0.001)
	require.Equal(t, uint64(1), count)

	// Deleting an unknown cluster is a no-op.
	m.DeleteCluster("nowhere")
	require.Equal(t, 2, seriesCount(t, reg, "switchyard_query_duration_seconds"))
}

func TestObserveConcurrent(t *testing.T) {
	src := &fakeSource{}
	src.set(sampleTopology(), nil, nil)
	m := New(src, "", "")
	reg := m.Registry()
	commands := []byte{mysql.ComQuery, mysql.ComStmtExecute, mysql.ComPing, 0x00}
	const (
		goroutines = 16
		perG       = 2000
	)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Scrapes and churn of an unrelated cluster run alongside.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := reg.Gather()
			if err != nil {
				panic(err)
			}
			m.ForCluster("churn").Observe(commands[i%len(commands)], time.Millisecond)
			m.DeleteCluster("churn")
		}
	}()
	var observers sync.WaitGroup
	for g := range goroutines {
		observers.Add(1)
		go func() {
			defer observers.Done()
			c := m.ForCluster(fmt.Sprintf("c%d", g%4))
			c.SessionStarted()
			defer c.SessionEnded()
			for i := range perG {
				c.Observe(commands[(g+i)%len(commands)], time.Duration(i)*time.Microsecond)
			}
		}()
	}
	observers.Wait()
	close(stop)
	wg.Wait()

	var total uint64
	for cl := range 4 {
		name := fmt.Sprintf("c%d", cl)
		require.Equal(t, 0.0, value(t, reg, "switchyard_sessions", "cluster", name))
		for _, cmd := range commands {
			count, _, _ := histogram(t, reg, name, CommandName(cmd), 0.001)
			total += count
		}
	}
	require.Equal(t, uint64(goroutines*perG), total)
	require.Nil(t, find(t, reg, "switchyard_sessions", "cluster", "churn"))
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m := New(nil, "", "")
	c := m.ForCluster("east")
	c.Observe(mysql.ComQuery, time.Millisecond) // the first command of a type creates its series
	allocs := testing.AllocsPerRun(1000, func() {
		c.Observe(mysql.ComQuery, 3*time.Millisecond)
	})
	require.Zero(t, allocs)
}

func BenchmarkObserve(b *testing.B) {
	c := New(nil, "", "").ForCluster("east")
	c.Observe(mysql.ComQuery, time.Millisecond)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Observe(mysql.ComQuery, time.Duration(i&0xffff)*time.Microsecond)
	}
}

// BenchmarkObserveParallel is many sessions of one cluster running the same
// command type: they contend on one histogram's atomics.
func BenchmarkObserveParallel(b *testing.B) {
	c := New(nil, "", "").ForCluster("east")
	c.Observe(mysql.ComQuery, time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			c.Observe(mysql.ComQuery, time.Duration(i&0xffff)*time.Microsecond)
		}
	})
}
