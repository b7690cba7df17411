package querylog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// stalledSink blocks every Write until released, like a pipe nobody reads
// or a paused disk.
type stalledSink struct {
	release chan struct{}
	writes  atomic.Int64
	mu      sync.Mutex
	buf     strings.Builder
}

func newStalledSink() *stalledSink { return &stalledSink{release: make(chan struct{})} }

func (s *stalledSink) Write(p []byte) (int, error) {
	s.writes.Add(1)
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *stalledSink) Close() error { return nil }

// TestStalledWriterNeverBlocksSessions: with the sink stalled, callers of
// Log keep going at full speed, the queue stays bounded, and what does not
// fit is dropped and counted; nothing is lost from the count.
func TestStalledWriterNeverBlocksSessions(t *testing.T) {
	sink := newStalledSink()
	counts := &Counters{}
	l := New(zaptest.NewLogger(t), sink, Filter{Mode: ModeAll}, 100, counts)

	const workers, each = 8, 20_000
	var queued atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if l.Log(&Entry{Cluster: "east", Text: "SELECT 1"}) {
						queued.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Log blocked on a stalled writer")
	}
	require.Eventually(t, func() bool { return sink.writes.Load() > 0 }, 10*time.Second, time.Millisecond,
		"the writer is stuck in its first write")
	total := int64(workers * each)
	// The queue (100) plus what the writer took before blocking (its
	// buffer fills at 64 KiB, a few hundred lines) is all that fits.
	require.Less(t, queued.Load(), int64(2000))
	require.Equal(t, uint64(total-queued.Load()), counts.Dropped.Load())
	require.LessOrEqual(t, l.Pending(), 100)

	close(sink.release)
	require.NoError(t, l.Close(10*time.Second))
	require.Equal(t, uint64(queued.Load()), counts.Written.Load(), "everything queued is written")
	require.Equal(t, uint64(total), counts.Written.Load()+counts.Dropped.Load())
	require.Equal(t, int(counts.Written.Load()), strings.Count(sink.buf.String(), "\n"))
	require.False(t, l.Log(&Entry{}), "a closed logger takes nothing")
}

func TestCloseGivesUpOnStuckWriter(t *testing.T) {
	sink := newStalledSink()
	l := New(zaptest.NewLogger(t), sink, Filter{Mode: ModeAll}, 10, nil)
	require.True(t, l.Log(&Entry{Text: strings.Repeat("x", 70<<10)})) // more than the write buffer
	require.Eventually(t, func() bool { return sink.writes.Load() > 0 }, 10*time.Second, time.Millisecond)
	start := time.Now()
	require.ErrorIs(t, l.Close(200*time.Millisecond), ErrStuck)
	require.Less(t, time.Since(start), 10*time.Second)
	close(sink.release) // let the abandoned writer end, for goleak
	require.Eventually(t, func() bool {
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	}, 10*time.Second, time.Millisecond)
}

func TestWritesJSONLinesToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queries.log")
	l := New(zaptest.NewLogger(t), NewFileSink(FileOptions{Path: path, MaxSizeMB: 1}), Filter{Mode: ModeAll}, 0, nil)
	at := time.Date(2026, 12, 4, 5, 6, 7, 8000, time.UTC)
	require.True(t, l.Log(&Entry{Time: at, ConnID: 7, Cluster: "east", Backend: "10.0.0.1:3306", User: "app", Schema: "shop",
		Digest: "ab12", LatencyMs: 1.5, Rows: 3, ErrorCode: 0, Text: "SELECT * FROM t WHERE id = 1"}))
	require.True(t, l.Log(&Entry{Time: at, Cluster: "east", ErrorCode: 1146, Text: "SELECT <x> FROM missing", Truncated: true}))
	require.NoError(t, l.Close(10*time.Second))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var got []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), sc.Text())
		got = append(got, e)
		if len(got) == 2 {
			require.Contains(t, sc.Text(), `"text":"SELECT <x> FROM missing"`, "no HTML escaping")
		}
	}
	require.Len(t, got, 2)
	require.Equal(t, "east", got[0].Cluster)
	require.Equal(t, "10.0.0.1:3306", got[0].Backend)
	require.Equal(t, uint64(7), got[0].ConnID)
	require.Equal(t, 1.5, got[0].LatencyMs)
	require.True(t, got[0].Time.Equal(at))
	require.Equal(t, uint16(1146), got[1].ErrorCode)
	require.True(t, got[1].Truncated)
}

// TestRotationBoundsTheFiles writes about 3 MiB with 1 MiB files and one
// backup: at most two files remain, each near the size limit.
func TestRotationBoundsTheFiles(t *testing.T) {
	dir := t.TempDir()
	l := New(zaptest.NewLogger(t), NewFileSink(FileOptions{Path: filepath.Join(dir, "q.log"), MaxSizeMB: 1, MaxBackups: 1}),
		Filter{Mode: ModeAll}, 100_000, nil)
	text := strings.Repeat("y", 400)
	for i := 0; i < 7000; i++ {
		require.True(t, l.Log(&Entry{Text: text}))
	}
	require.NoError(t, l.Close(30*time.Second))
	// lumberjack removes old backups in its own goroutine after a rotation.
	require.Eventually(t, func() bool {
		entries, err := os.ReadDir(dir)
		return err == nil && len(entries) <= 2
	}, 10*time.Second, 20*time.Millisecond)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		require.LessOrEqual(t, info.Size(), int64(1<<20), e.Name())
	}
}

func TestFilter(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		mode    string
		latency time.Duration
		code    uint16
		want    bool
	}{
		{ModeOff, time.Hour, 1, false},
		{ModeAll, 0, 0, true},
		{ModeSlow, 99 * ms, 1146, false},
		{ModeSlow, 100 * ms, 0, true},
		{ModeFailed, time.Hour, 0, false},
		{ModeFailed, 0, 1146, true},
		{ModeSlowOrFailed, 0, 1146, true},
		{ModeSlowOrFailed, 100 * ms, 0, true},
		{ModeSlowOrFailed, 99 * ms, 0, false},
	} {
		f := Filter{Mode: tc.mode, SlowThreshold: 100 * ms}
		require.Equal(t, tc.want, f.Wants(tc.latency, tc.code), "%+v", tc)
	}
}
