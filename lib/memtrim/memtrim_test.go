package memtrim

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPolicyTrimsOnceWhenQuietAfterWork(t *testing.T) {
	const heap = 64 << 20
	var p Policy
	s := Sample{Allocs: 0, Objects: heap, GCs: 1}
	require.False(t, p.Step(s), "the first sample is only a baseline")

	s.Allocs += heap / 100 // quiet, and nothing happened before: nothing to give back
	require.False(t, p.Step(s))

	s.Allocs += heap // busy: the memory would be needed again at once
	require.False(t, p.Step(s))
	s.Allocs += heap / 2
	s.GCs += 3
	require.False(t, p.Step(s), "still busy")

	s.Allocs += heap / 100 // quiet after work: trim, once
	require.True(t, p.Step(s))
	s.GCs++ // the trim's own collection
	p.Trimmed(s)
	for range 5 {
		s.Allocs += heap / 100
		require.False(t, p.Step(s), "quiet and nothing new: no second trim")
	}

	s.GCs++ // an ordinary collection while quiet freed memory the runtime keeps
	s.Allocs += heap / 100
	require.True(t, p.Step(s))
	p.Trimmed(s)
	s.Allocs += heap / 100
	require.False(t, p.Step(s))
}

func TestPolicyLeavesASmallHeapAlone(t *testing.T) {
	var p Policy
	s := Sample{Objects: minHeap - 1}
	p.Step(s)
	s.Allocs += 10 * minHeap // busy
	require.False(t, p.Step(s))
	s.Allocs += 1
	require.False(t, p.Step(s), "quiet after work, but below the heap worth a collection")
	s.Objects = minHeap
	s.Allocs += 1
	require.True(t, p.Step(s), "the work is still owed once the heap is large enough")
}

var sink [][]byte

// Run, in this process: after a busy spell (garbage made and collected),
// a quiet interval gives memory back to the OS.
func TestRunGivesMemoryBackWhenQuiet(t *testing.T) {
	live := make([][]byte, 0, 32)
	for range 32 {
		live = append(live, make([]byte, 1<<20)) // 32 MiB that stays: above minHeap
	}
	var trims atomic.Int32
	var freed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 100*time.Millisecond, func(before, after uint64) {
			trims.Add(1)
			freed.Store(int64(before) - int64(after))
		})
	}()
	// Busy for a few intervals: 512 MiB of garbage, collected on the way.
	for i := range 512 {
		sink = append(sink, make([]byte, 1<<20))
		if len(sink) == 64 {
			sink = nil
		}
		if i%32 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	sink = nil
	require.Eventually(t, func() bool { return trims.Load() > 0 }, 10*time.Second, 20*time.Millisecond,
		"a quiet interval after the busy spell trims")
	require.Positive(t, freed.Load(), "the trim returned memory to the OS")
	n := trims.Load()
	time.Sleep(500 * time.Millisecond) // five quiet intervals
	require.Equal(t, n, trims.Load(), "no trim again while quiet with nothing new")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
	runtime.KeepAlive(live)
}
