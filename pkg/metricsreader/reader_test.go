package metricsreader

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

func TestCloseWithoutStart(t *testing.T) {
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	r.Close()
	r.Close()
	r.Start(context.Background()) // after Close: launches nothing
	r.Close()
	require.Empty(t, r.Results())
	require.Equal(t, "", r.Source())
}

func TestStartTwiceCloseTwice(t *testing.T) {
	r := NewReader(zaptest.NewLogger(t), "c1", Config{Interval: time.Hour})
	r.Start(context.Background())
	r.Start(context.Background())
	r.Close()
	r.Close()
}

func TestStopsWhenStartContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := NewReader(zaptest.NewLogger(t), "c1", Config{Interval: time.Hour})
	r.Start(ctx)
	cancel()
	require.Eventually(t, func() bool {
		select {
		case <-r.loop.Done():
			return true
		default:
			return false
		}
	}, 10*time.Second, 5*time.Millisecond)
	r.Close()
}

func TestSetTargetsFetchesNewTargetsSoon(t *testing.T) {
	a := newStatusServer(t, tidbPage(1, 100, 4, 400))
	b := newStatusServer(t, tidbPage(1, 300, 4, 400))
	r := NewReader(zaptest.NewLogger(t), "c1", Config{Interval: time.Hour})
	r.Start(context.Background())
	defer r.Close()

	r.SetTargets([]Target{{Addr: "127.0.0.1:4001", StatusPort: a.port}})
	require.Eventually(t, func() bool { return len(r.Results()) == 1 }, 10*time.Second, 5*time.Millisecond)

	// An hour-long interval: only the kick from SetTargets can fetch b.
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: a.port},
		{Addr: "127.0.0.1:4002", StatusPort: b.port},
	})
	require.Eventually(t, func() bool { return len(r.Results()) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.InDelta(t, 0.75, r.Results()["127.0.0.1:4002"].Memory, 1e-9)
}

func TestSetTargetsRemovesResults(t *testing.T) {
	a := newStatusServer(t, tidbPage(1, 100, 4, 400))
	b := newStatusServer(t, tidbPage(1, 300, 4, 400))
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: a.port},
		{Addr: "127.0.0.1:4002", StatusPort: b.port},
	})
	r.fetch(context.Background())
	before := r.Results()
	require.Equal(t, []string{"127.0.0.1:4001", "127.0.0.1:4002"}, keys(before))
	drain(r.Updates())

	r.SetTargets([]Target{{Addr: "127.0.0.1:4002", StatusPort: b.port}})
	require.Equal(t, []string{"127.0.0.1:4002"}, keys(r.Results()), "removed at once, not at the next round")
	require.Len(t, before, 2, "published snapshots are never modified")
	select {
	case <-r.Updates():
	default:
		t.Fatal("no update signal after a target was removed")
	}
	require.Equal(t, []string{"127.0.0.1:4001", "127.0.0.1:4002"}, keys(r.prev), "samples are pruned by the next scrape")
	r.fetch(context.Background())
	require.Equal(t, []string{"127.0.0.1:4002"}, keys(r.prev))

	r.SetTargets(nil)
	require.Empty(t, r.Results())
	r.fetch(context.Background())
	require.Empty(t, r.prev)
}

func TestUpdatesOnlyWhenValuesChange(t *testing.T) {
	backend := newStatusServer(t, tidbPage(1, 100, 4, 400))
	clock := newFakeClock()
	r := NewReader(zaptest.NewLogger(t), "c1", Config{})
	r.now = clock.now
	r.SetTargets([]Target{{Addr: "127.0.0.1:4001", StatusPort: backend.port}})
	r.fetch(context.Background())
	drain(r.Updates())

	clock.advance(time.Second)
	backend.set(tidbPage(1, 100, 4, 400)) // no CPU used, same memory
	r.fetch(context.Background())
	drain(r.Updates()) // HasCPU appeared

	clock.advance(time.Second)
	r.fetch(context.Background())
	select {
	case <-r.Updates():
		t.Fatal("update signalled although no value changed")
	default:
	}
	require.Equal(t, clock.now(), r.Results()["127.0.0.1:4001"].UpdatedAt, "timestamps still advance")
}

func TestSameValues(t *testing.T) {
	m := observer.Metrics{CPU: 0.5, HasCPU: true, Source: SourceScrape, UpdatedAt: time.Unix(1, 0)}
	later := m
	later.UpdatedAt = time.Unix(2, 0)
	other := m
	other.CPU = 0.6
	for _, tc := range []struct {
		a, b map[string]observer.Metrics
		want bool
	}{
		{map[string]observer.Metrics{}, map[string]observer.Metrics{}, true},
		{map[string]observer.Metrics{"x": m}, map[string]observer.Metrics{"x": later}, true},
		{map[string]observer.Metrics{"x": m}, map[string]observer.Metrics{"x": other}, false},
		{map[string]observer.Metrics{"x": m}, map[string]observer.Metrics{"y": m}, false},
		{map[string]observer.Metrics{"x": m}, map[string]observer.Metrics{}, false},
	} {
		require.Equal(t, tc.want, sameValues(tc.a, tc.b))
	}
}

func TestCloseCancelsHangingScrape(t *testing.T) {
	entered := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done() // never answers; the client must give up
	}))
	defer hang.Close()
	fast := newStatusServer(t, tidbPage(1, 100, 4, 400))

	r := NewReader(zaptest.NewLogger(t), "c1", Config{Timeout: time.Hour, Interval: time.Hour})
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: portOf(t, hang.Listener.Addr().String())},
		{Addr: "127.0.0.1:4002", StatusPort: fast.port},
	})
	r.Start(context.Background())
	<-entered

	closed := make(chan struct{})
	go func() {
		r.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second): // far below the hour-long Timeout
		t.Fatal("Close did not cancel the hanging scrape")
	}
}

func TestSlowBackendBoundedByTimeout(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer hang.Close()
	fast := newStatusServer(t, tidbPage(1, 100, 4, 400))

	r := NewReader(zaptest.NewLogger(t), "c1", Config{Timeout: 100 * time.Millisecond})
	r.SetTargets([]Target{
		{Addr: "127.0.0.1:4001", StatusPort: portOf(t, hang.Listener.Addr().String())},
		{Addr: "127.0.0.1:4002", StatusPort: fast.port},
	})
	r.fetch(context.Background()) // returns: the hang is cut off by Timeout
	require.Equal(t, []string{"127.0.0.1:4002"}, keys(r.Results()))
}
