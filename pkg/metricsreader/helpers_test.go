package metricsreader

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/test/testenv"
)

// promSample is one series of a fake query answer.
type promSample struct {
	instance string
	value    string // as Prometheus encodes it: "0.5", "NaN", "+Inf"
}

// fakeProm answers /api/v1/query in Prometheus's documented JSON format:
// {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[<unix>,"<v>"]}]}}
type fakeProm struct {
	srv *httptest.Server

	mu      sync.Mutex
	answers map[string][]promSample // by query text
	fail    bool
	queries []string
}

func newFakeProm(t *testing.T) *fakeProm {
	p := &fakeProm{answers: map[string][]promSample{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProm) set(query string, samples ...promSample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[query] = samples
}

func (p *fakeProm) setFail(fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = fail
}

func (p *fakeProm) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.queries...)
}

func (p *fakeProm) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	query := r.FormValue("query")
	p.mu.Lock()
	p.queries = append(p.queries, query)
	fail, samples := p.fail, p.answers[query]
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status": "error", "errorType": "unavailable", "error": "storage is down"})
		return
	}
	ts := float64(time.Now().UnixMilli()) / 1000
	result := make([]any, 0, len(samples))
	for _, s := range samples {
		result = append(result, map[string]any{
			"metric": map[string]string{"instance": s.instance, "job": "tidb"},
			"value":  []any{ts, s.value},
		})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status": "success",
		"data":   map[string]any{"resultType": "vector", "result": result},
	})
}

// statusServer is a TiDB status port serving /metrics.
type statusServer struct {
	srv  *httptest.Server
	port uint
	cc   *testenv.ConnCounts

	mu   sync.Mutex
	body string
}

func newStatusServer(t *testing.T, body string) *statusServer {
	s := &statusServer{body: body}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(b))
	}))
	s.cc = testenv.CountConns(s.srv)
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	s.port = portOf(t, s.srv.Listener.Addr().String())
	return s
}

func (s *statusServer) set(body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
}

// instance is the label Prometheus would give this status port.
func (s *statusServer) instance() string {
	return net.JoinHostPort("127.0.0.1", strconv.FormatUint(uint64(s.port), 10))
}

func portOf(t *testing.T, addr string) uint {
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.ParseUint(p, 10, 16)
	require.NoError(t, err)
	return uint(n)
}

// tidbPage renders a status page; a negative quota leaves it out.
func tidbPage(cpuSeconds, rss, maxProcs, quota float64) string {
	page := fmt.Sprintf(`# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 312
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total %g
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes %g
# HELP tidb_server_maxprocs The value of GOMAXPROCS.
# TYPE tidb_server_maxprocs gauge
tidb_server_maxprocs %g
tidb_server_query_total{result="OK",type="Query"} 17
`, cpuSeconds, rss, maxProcs)
	if quota >= 0 {
		page += fmt.Sprintf("# HELP tidb_server_memory_quota_bytes The value of memory quota bytes.\n"+
			"# TYPE tidb_server_memory_quota_bytes gauge\ntidb_server_memory_quota_bytes %g\n", quota)
	}
	return page
}

// fakeClock is a settable time source shared by the reader's goroutines.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// drain empties a latest-value channel.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
