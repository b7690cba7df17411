package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
)

func digestDoc(count uint64) api.DigestList {
	return api.DigestList{Enabled: true, Sort: "total", Total: 1, Digests: []api.Digest{{
		Cluster: "east", User: "app", Schema: "shop", Digest: "9a5d0c3f1b2e4d5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90",
		DigestText: "select * from `t` where `id` = ?", Count: count, Errors: 2, AvgMs: 1.25, P95Ms: 2, P99Ms: 3.5, MaxMs: 9, RowsSent: 40,
	}}, Others: []api.Digest{{Cluster: "east", Count: 7}}}
}

func TestTopOnce(t *testing.T) {
	f := newFakeAPI(t)
	f.set(http.MethodGet, "/api/v1/digests", jsonReply(t, http.StatusOK, digestDoc(42)))
	res := f.run("top", "--once", "--cluster", "east", "--sort", "p99", "--limit", "5")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "/api/v1/digests", f.last().path)
	require.Contains(t, res.stdout, "1 digests held, showing 1, sorted by total")
	fields := strings.Fields(strings.Split(res.stdout, "\n")[2])
	require.Equal(t, []string{"east", "app", "shop", "42", "-", "2", "1.250", "2.000", "3.500", "9.000", "40", "9a5d0c3f1b2e"}, fields[:12])
	require.Contains(t, res.stdout, "others")

	res = f.run("top", "--interval", "0s")
	require.Equal(t, exitTrouble, res.code)
	require.Contains(t, res.stderr, "--interval 0s: must be positive")
}

// TestTopLive redraws the table and shows each row's rate since the last
// refresh.
func TestTopLive(t *testing.T) {
	var calls atomic.Uint64
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(digestDoc(100 * n)) // 100 more statements per refresh
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	a := &app{stdout: &out, stderr: &out, getenv: func(string) string { return "" }, now: time.Now,
		apiURL: srv.URL, timeout: 5 * time.Second}
	c, err := a.api()
	require.NoError(t, err)
	defer c.http.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for calls.Load() < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	require.NoError(t, a.liveTop(ctx, c, topOptions{sort: "count", limit: 10, interval: 50 * time.Millisecond, width: 80}))
	frames := strings.Split(out.String(), "\x1b[H\x1b[2J")[1:]
	require.GreaterOrEqual(t, len(frames), 3)
	mu.Lock()
	require.Equal(t, "limit=10&sort=count", queries[0])
	mu.Unlock()
	first := strings.Fields(strings.Split(frames[0], "\n")[4])
	require.Equal(t, "-", first[4], "no rate on the first refresh")
	second := strings.Fields(strings.Split(frames[1], "\n")[4])
	require.NotEqual(t, "-", second[4], "a rate from the second refresh on")
	require.Equal(t, "200", second[3])
}
