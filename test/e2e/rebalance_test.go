package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

// The rebalance acceptance test of issue 9, against two real MariaDB servers:
// 100 sessions on the only backend of a cluster, a reload adds a second one.
// The sessions spread to within rebalance-ratio, no faster than
// migrations-per-second (measured from the moves /api/v1/migrations
// reports), and then nothing moves for 60 s: no session goes back and forth.
// Half the clients keep querying throughout, half stay idle; none sees an
// error and every session keeps its @x.

// migrationLog polls /api/v1/migrations and keeps every finished migration
// it sees (the API lists the last 100; polling every 100 ms misses none at
// the rates used here, and the test checks that against the totals).
type migrationLog struct {
	addr string
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	seen   map[string]api.Migration
	last   api.MigrationsDoc
	errors []error
}

func startMigrationLog(addr string) *migrationLog {
	l := &migrationLog{addr: addr, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]api.Migration{}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			l.poll()
			select {
			case <-l.stop:
				l.poll()
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

func (l *migrationLog) poll() {
	doc, err := fetchMigrations(l.addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errors = append(l.errors, err)
		return
	}
	l.last = doc
	for _, m := range doc.Recent {
		l.seen[fmt.Sprintf("%d/%d/%s", m.SessionID, m.Time.UnixNano(), m.Result)] = m
	}
}

// Close stops the polling after a last poll; idempotent use is not needed.
func (l *migrationLog) Close() {
	close(l.stop)
	<-l.done
}

// snapshot is every migration seen so far, oldest first, and the last doc.
func (l *migrationLog) snapshot() ([]api.Migration, api.MigrationsDoc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]api.Migration, 0, len(l.seen))
	for _, m := range l.seen {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b api.Migration) int { return a.Time.Compare(b.Time) })
	return out, l.last
}

func fetchMigrations(addr string) (api.MigrationsDoc, error) {
	var doc api.MigrationsDoc
	req, err := http.NewRequest("GET", "http://"+addr+"/api/v1/migrations", nil)
	if err != nil {
		return doc, err
	}
	req.Header.Set("Authorization", "Bearer "+drainToken)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return doc, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return doc, fmt.Errorf("GET /api/v1/migrations: %s", resp.Status)
	}
	return doc, json.NewDecoder(resp.Body).Decode(&doc)
}

// busyClients keeps a few sessions querying: each checks its @x every
// 50-250 ms until stopped and records the first error it gets.
type busyClients struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
	queries int
}

func startBusyClients(ctx context.Context, conns map[int]*sql.Conn) *busyClients {
	b := &busyClients{stop: make(chan struct{})}
	for i, c := range conns {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				var x sql.NullInt64
				err := c.QueryRowContext(ctx, "SELECT @x").Scan(&x)
				if err == nil && x.Int64 != int64(i) {
					err = fmt.Errorf("session %d: @x is %v", i, x)
				}
				b.mu.Lock()
				b.queries++
				if err != nil {
					b.errs = append(b.errs, fmt.Errorf("client %d: %w", i, err))
				}
				b.mu.Unlock()
				if err != nil {
					return
				}
				select {
				case <-b.stop:
					return
				case <-time.After(time.Duration(50+rand.IntN(200)) * time.Millisecond):
				}
			}
		}()
	}
	return b
}

func (b *busyClients) Close() ([]error, int) {
	close(b.stop)
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errs, b.queries
}

// withinRatio is the rebalancer's stopping rule, both ways.
func withinRatio(a, b int, ratio float64) bool {
	return float64(a) <= float64(b+1)*ratio && float64(b) <= float64(a+1)*ratio
}

func TestRebalanceSpreadsToANewBackend(t *testing.T) {
	runBesideLeaderLoss(t)
	const (
		sessions = 100
		// Not the default (10), so that the test sees the configured rate.
		rate  = 5.0
		ratio = 1.2
		quiet = 60 * time.Second
	)
	ms := startMigratable(t, 2)
	balance := fmt.Sprintf("migrations-per-second = %.1f\nrebalance-ratio = %.2f", rate, ratio)
	f := startDrainFixture(t, drainConfig(balance, clusterTOML("main", ms[0].Addr())))
	ctx := ctxT(t, 5*time.Minute)
	conns := openConns(t, f.srv.SQLAddr().String(), testenv.NativeUser, sessions)
	busy := map[int]*sql.Conn{}
	for i, c := range conns {
		for _, q := range []string{"USE test", fmt.Sprintf("SET @x = %d", i)} {
			_, err := c.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
		if i%2 == 0 {
			busy[i] = c
		}
	}
	onA, onB := "main/"+ms[0].Addr(), "main/"+ms[1].Addr()
	count := func(p map[uint64]string) (a, b int) {
		for _, v := range p {
			switch v {
			case onA:
				a++
			case onB:
				b++
			}
		}
		return a, b
	}
	before := f.placement()
	a0, _ := count(before)
	require.Equal(t, sessions, a0, "every session starts on the only backend")

	clients := startBusyClients(ctx, busy)
	clientsOpen := true
	defer func() {
		if clientsOpen {
			clients.Close()
		}
	}()
	migLog := startMigrationLog(f.api)
	migLogOpen := true
	defer func() {
		if migLogOpen {
			migLog.Close()
		}
	}()

	// Add the second server by a config reload.
	reloadAt := time.Now()
	require.NoError(t, f.srv.Config().Set([]byte(drainConfig(balance, clusterTOML("main", ms[0].Addr(), ms[1].Addr())))))
	f.waitHealthy(t)

	// Spread: within the ratio, no move pending, and the placement unchanged
	// since the previous look (so that no move was in flight between the two
	// reads).
	var last map[uint64]string
	require.Eventually(t, func() bool {
		now := f.placement()
		defer func() { last = now }()
		a, b := count(now)
		if !withinRatio(a, b, ratio) || len(now) != sessions {
			return false
		}
		doc, err := fetchMigrations(f.api)
		if err != nil || doc.Pending != 0 {
			return false
		}
		for id, p := range now {
			if last[id] != p {
				return false
			}
		}
		return true
	}, 2*time.Minute, 250*time.Millisecond, "sessions spread within the ratio")
	spreadAt := time.Now()
	spread := last
	a1, b1 := count(spread)
	t.Logf("spread after %s: %d on the first backend, %d on the new one", spreadAt.Sub(reloadAt).Round(time.Millisecond), a1, b1)

	// Then nothing moves for a minute, while half the clients keep querying.
	placementMoves := 0
	for deadline := time.Now().Add(quiet); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		for id, p := range f.placement() {
			if spread[id] != p {
				placementMoves++
				t.Errorf("session %d moved from %s to %s after the spread", id, spread[id], p)
				spread[id] = p
			}
		}
	}
	require.Zero(t, placementMoves, "moves in the %s after the spread", quiet)

	errs, queries := clients.Close()
	clientsOpen = false
	require.Empty(t, errs, "no client saw an error")
	require.Greater(t, queries, len(busy)*10, "the busy clients kept querying")
	migLog.Close()
	migLogOpen = false
	events, doc := migLog.snapshot()

	// Every move went from the old backend to the new one, for load, and
	// no session moved twice.
	require.Zero(t, doc.Totals["failed"]+doc.Totals["refused"]+doc.Totals["closed"], "totals %v", doc.Totals)
	require.Equal(t, doc.Totals["ok"], int64(len(events)), "the log saw every migration the proxy counted")
	require.Equal(t, b1, len(events), "one move per session on the new backend")
	movedTwice := map[uint64]int{}
	var asks []time.Time
	for _, ev := range events {
		require.Equal(t, "main", ev.Cluster)
		require.Equal(t, ms[0].Addr(), ev.From)
		require.Equal(t, ms[1].Addr(), ev.To)
		require.Equal(t, "load-sessions", ev.Reason)
		require.Equal(t, "ok", ev.Result)
		require.False(t, ev.Time.After(spreadAt), "move of session %d at %s, after the spread", ev.SessionID, ev.Time)
		movedTwice[ev.SessionID]++
		require.Equal(t, 1, movedTwice[ev.SessionID], "session %d moved twice", ev.SessionID)
		// A migration's duration runs from the rebalancer's request, so
		// this is when the move was asked for.
		asks = append(asks, ev.Time.Add(-time.Duration(ev.DurationMS*float64(time.Millisecond))))
	}
	slices.SortFunc(asks, func(a, b time.Time) int { return a.Compare(b) })

	// The rate: a token bucket of migrations-per-second with a burst of
	// one. Any one-second window holds at most rate+1 requests; one more is
	// allowed for the lag between a session's report and its record. And n
	// requests need at least (n-1)/rate seconds.
	for i := range asks {
		n := 0
		for j := i; j < len(asks) && asks[j].Sub(asks[i]) < time.Second; j++ {
			n++
		}
		require.LessOrEqual(t, n, int(rate)+2, "moves asked for in the second from %s", asks[i].Format("15:04:05.000"))
	}
	span := asks[len(asks)-1].Sub(asks[0])
	minSpan := time.Duration(float64(len(asks)-1)/rate*float64(time.Second)) - 500*time.Millisecond
	require.GreaterOrEqual(t, span, minSpan, "%d moves asked for within %s", len(asks), span)
	t.Logf("%d moves asked for over %s (%.1f/s; limit %.1f/s)", len(asks), span.Round(time.Millisecond),
		float64(len(asks)-1)/span.Seconds(), rate)

	// What the servers say: every session kept its state, and is where the
	// proxy says it is; both idle and busy sessions moved.
	ports := map[string]int{}
	moved := map[bool]int{}
	for i, c := range conns {
		require.Equal(t, fmt.Sprint(i), queryString(t, c, "SELECT @x"), "session %d kept @x", i)
		require.Equal(t, "test", queryString(t, c, "SELECT DATABASE()"))
		port := queryString(t, c, "SELECT @@port")
		ports[port]++
		if port == fmt.Sprint(ms[1].Port) {
			moved[i%2 == 0]++
		}
	}
	require.Equal(t, map[string]int{fmt.Sprint(ms[0].Port): a1, fmt.Sprint(ms[1].Port): b1}, ports)
	require.Positive(t, moved[true], "a busy session moved")
	require.Positive(t, moved[false], "an idle session moved")
}
