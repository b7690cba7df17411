package metricsreader

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-db/switchyard/pkg/observer"
)

func TestPrometheusResultsMappedByInstance(t *testing.T) {
	prom := newFakeProm(t)
	prom.set(DefaultCPUQuery,
		promSample{"10.0.0.1:10080", "0.5"},
		promSample{"10.0.0.2:10080", "NaN"},
		promSample{"10.0.0.9:10080", "0.9"}, // not a target
		promSample{"10.0.0.3:10080", "+Inf"},
	)
	prom.set(DefaultMemoryQuery,
		promSample{"10.0.0.1:10080", "0.25"},
		promSample{"10.0.0.2:10080", "0.75"},
		promSample{"10.0.0.1:4000", "0.99"}, // SQL port, not the status port
	)
	clock := newFakeClock()
	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL})
	r.now = clock.now
	r.SetTargets([]Target{
		{Addr: "10.0.0.1:4000", StatusPort: 10080},
		{Addr: "10.0.0.2:4000", StatusPort: 10080},
		{Addr: "10.0.0.3:4000", StatusPort: 10080},
		{Addr: "10.0.0.4:4000"}, // no status port
	})
	require.Equal(t, "", r.Source())

	r.fetch(context.Background())

	require.Equal(t, SourcePrometheus, r.Source())
	require.Equal(t, map[string]observer.Metrics{
		"10.0.0.1:4000": {CPU: 0.5, HasCPU: true, Memory: 0.25, HasMemory: true, Source: SourcePrometheus, UpdatedAt: clock.now()},
		"10.0.0.2:4000": {Memory: 0.75, HasMemory: true, Source: SourcePrometheus, UpdatedAt: clock.now()},
	}, r.Results())
	require.ElementsMatch(t, []string{DefaultCPUQuery, DefaultMemoryQuery}, prom.seen())
	select {
	case <-r.Updates():
	default:
		t.Fatal("no update signal after results changed")
	}
}

func TestPrometheusCustomQueries(t *testing.T) {
	prom := newFakeProm(t)
	prom.set("cpu_q", promSample{"127.0.0.1:10080", "0.1"})
	prom.set("mem_q", promSample{"127.0.0.1:10080", "0.2"})
	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL, CPUQuery: "cpu_q", MemoryQuery: "mem_q"})
	r.SetTargets([]Target{{Addr: "127.0.0.1:4000", StatusPort: 10080}})
	r.fetch(context.Background())
	m := r.Results()["127.0.0.1:4000"]
	require.InDelta(t, 0.1, m.CPU, 1e-9)
	require.InDelta(t, 0.2, m.Memory, 1e-9)
	require.ElementsMatch(t, []string{"cpu_q", "mem_q"}, prom.seen())
}

func TestPrometheusFailureFallsBackToScrapeAndBack(t *testing.T) {
	backend := newStatusServer(t, tidbPage(10, 512, 4, 1024))
	target := Target{Addr: "127.0.0.1:4000", StatusPort: backend.port}
	prom := newFakeProm(t)
	prom.set(DefaultCPUQuery, promSample{backend.instance(), "0.3"})
	prom.set(DefaultMemoryQuery, promSample{backend.instance(), "0.4"})

	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL, Interval: 20 * time.Millisecond})
	r.SetTargets([]Target{target})
	r.Start(context.Background())
	defer r.Close()

	sourceOf := func() string { return r.Results()[target.Addr].Source }
	require.Eventually(t, func() bool {
		return r.Source() == SourcePrometheus && sourceOf() == SourcePrometheus
	}, 10*time.Second, 5*time.Millisecond)
	require.InDelta(t, 0.3, r.Results()[target.Addr].CPU, 1e-9)

	prom.setFail(true)
	require.Eventually(t, func() bool {
		return r.Source() == SourceScrape && sourceOf() == SourceScrape
	}, 10*time.Second, 5*time.Millisecond)
	m := r.Results()[target.Addr]
	require.True(t, m.HasMemory)
	require.InDelta(t, 0.5, m.Memory, 1e-9)

	prom.setFail(false)
	require.Eventually(t, func() bool {
		return r.Source() == SourcePrometheus && sourceOf() == SourcePrometheus
	}, 10*time.Second, 5*time.Millisecond)
}

func TestPrometheusUnreachableFallsBackToScrape(t *testing.T) {
	backend := newStatusServer(t, tidbPage(10, 256, 4, 1024))
	prom := newFakeProm(t)
	prom.srv.Close() // nothing listens at its URL any more

	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL})
	r.SetTargets([]Target{{Addr: "127.0.0.1:4000", StatusPort: backend.port}})
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	require.InDelta(t, 0.25, r.Results()["127.0.0.1:4000"].Memory, 1e-9)
}

func TestPrometheusWithoutTargetSamplesFallsBackToScrape(t *testing.T) {
	backend := newStatusServer(t, tidbPage(10, 256, 4, 1024))
	prom := newFakeProm(t)
	prom.set(DefaultMemoryQuery, promSample{"10.1.1.1:10080", "0.5"}) // another cluster's TiDB

	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL})
	r.SetTargets([]Target{{Addr: "127.0.0.1:4000", StatusPort: backend.port}})
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	require.Equal(t, SourceScrape, r.Results()["127.0.0.1:4000"].Source)
}

func TestDiscover(t *testing.T) {
	backend := newStatusServer(t, tidbPage(10, 256, 4, 1024))
	prom := newFakeProm(t)
	prom.set(DefaultMemoryQuery, promSample{backend.instance(), "0.6"})

	var discoverErr error
	url := prom.srv.URL
	r := NewReader(zaptest.NewLogger(t), "c1", Config{Discover: func(ctx context.Context) (string, error) {
		_, hasDeadline := ctx.Deadline()
		require.True(t, hasDeadline)
		return url, discoverErr
	}})
	r.SetTargets([]Target{{Addr: "127.0.0.1:4000", StatusPort: backend.port}})

	r.fetch(context.Background())
	require.Equal(t, SourcePrometheus, r.Source())
	require.InDelta(t, 0.6, r.Results()["127.0.0.1:4000"].Memory, 1e-9)

	discoverErr = errors.New("etcd down")
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())

	discoverErr, url = nil, "" // no Prometheus deployed
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	require.InDelta(t, 0.25, r.Results()["127.0.0.1:4000"].Memory, 1e-9)
}

func TestPrometheusURLFromTopology(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: `{"ip":"10.0.1.5","port":9090,"deploy_path":"/tidb-deploy/prometheus-9090","binary_path":"/x"}`, want: "http://10.0.1.5:9090"},
		{in: `{"ip":"prom.local","port":"9091"}`, want: "http://prom.local:9091"},
		{in: `{"ip":"::1","port":9090}`, want: "http://[::1]:9090"},
		{in: `{"port":9090}`, wantErr: true},
		{in: `{"ip":"10.0.1.5"}`, wantErr: true},
		{in: `{"ip":"10.0.1.5","port":0}`, wantErr: true},
		{in: `{"ip":"10.0.1.5","port":70000}`, wantErr: true},
		{in: `not json`, wantErr: true},
	} {
		got, err := PrometheusURLFromTopology([]byte(tc.in))
		if tc.wantErr {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
}

func TestScrapeAfterPrometheusStartsAFreshRate(t *testing.T) {
	backend := newStatusServer(t, tidbPage(100, 256, 4, 1024))
	prom := newFakeProm(t)
	prom.set(DefaultCPUQuery, promSample{backend.instance(), "0.3"})
	prom.setFail(true)
	clock := newFakeClock()
	r := NewReader(zaptest.NewLogger(t), "c1", Config{PrometheusURL: prom.srv.URL})
	r.now = clock.now
	addr := "127.0.0.1:4000"
	r.SetTargets([]Target{{Addr: addr, StatusPort: backend.port}})

	r.fetch(context.Background())
	clock.advance(time.Second)
	backend.set(tidbPage(101, 256, 4, 1024))
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	require.InDelta(t, 0.25, r.Results()[addr].CPU, 1e-9)

	prom.setFail(false)
	r.fetch(context.Background())
	require.Equal(t, SourcePrometheus, r.Source())
	require.InDelta(t, 0.3, r.Results()[addr].CPU, 1e-9)
	require.Eventually(t, func() bool { return backend.cc.Closed.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the scrape's kept connection is closed while Prometheus answers")

	// An hour later Prometheus fails again: the first scrape must not report
	// the average over that hour.
	prom.setFail(true)
	clock.advance(time.Hour)
	backend.set(tidbPage(5000, 256, 4, 1024))
	r.fetch(context.Background())
	require.Equal(t, SourceScrape, r.Source())
	require.False(t, r.Results()[addr].HasCPU)
}
