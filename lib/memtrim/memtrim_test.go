package memtrim

import (
	"context"
	"runtime"
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

// In this process, one step at a time: after a busy spell (garbage made and
// collected), the first quiet step gives memory back to the OS, and later
// quiet steps do not trim again. The test takes the steps itself, so a
// loaded machine's pauses cannot make a step of the busy spell look quiet.
func TestStepGivesMemoryBackWhenQuiet(t *testing.T) {
	live := make([][]byte, 0, 32)
	for range 32 {
		live = append(live, make([]byte, 1<<20)) // 32 MiB that stays: above minHeap
	}
	runtime.GC() // no collection left to finish after the baseline
	var trims int
	var freed int64
	tr := newTrimmer(func(before, after uint64) {
		trims++
		freed = int64(before) - int64(after)
	})
	require.False(t, tr.step(), "quiet, and nothing happened before")

	// Busy: 512 MiB of garbage, collected on the way.
	for range 512 {
		sink = append(sink, make([]byte, 1<<20))
		if len(sink) == 64 {
			sink = nil
		}
	}
	sink = nil
	require.False(t, tr.step(), "busy: the memory would be needed again at once")
	require.True(t, tr.step(), "the first quiet step after the busy spell trims")
	require.Equal(t, 1, trims)
	require.Positive(t, freed, "the trim returned memory to the OS")
	for range 5 {
		require.False(t, tr.step(), "no trim again while quiet with nothing new")
	}
	require.Equal(t, 1, trims)
	runtime.KeepAlive(live)
}

// Run steps on its interval and returns when its context ends.
func TestRunReturnsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 10*time.Millisecond, nil)
	}()
	time.Sleep(50 * time.Millisecond) // a few steps
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
