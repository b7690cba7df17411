package cadence

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Phases of a period that is a multiple of Step lie on the grid, use every
// one of its instants and no other, and stay within a period of the origin.
func TestPhaseOnGrid(t *testing.T) {
	const period = time.Second
	seen := map[time.Duration]int{}
	for range 1000 {
		off := Phase(period).Sub(epoch)
		require.GreaterOrEqual(t, off, time.Duration(0))
		require.Less(t, off, period)
		require.Zero(t, off%Step, "on the grid: %s", off)
		seen[off]++
	}
	require.Len(t, seen, int(period/Step), "every instant of the period is used")

	// A period too short for the grid still spreads within itself.
	short := map[time.Duration]bool{}
	for range 100 {
		off := Phase(50 * time.Millisecond).Sub(epoch)
		require.GreaterOrEqual(t, off, time.Duration(0))
		require.Less(t, off, 50*time.Millisecond)
		short[off] = true
	}
	require.Greater(t, len(short), 50)
}

// Next is strictly after now, a whole number of periods from the phase, and
// the same instant for every caller with that phase, whenever it asks.
func TestNext(t *testing.T) {
	phase := epoch.Add(3 * Step)
	for _, now := range []time.Time{
		epoch, phase, phase.Add(-time.Nanosecond), phase.Add(time.Nanosecond),
		phase.Add(-5 * time.Second), phase.Add(7*time.Second + 1), time.Now(),
	} {
		n := Next(phase, time.Second, now)
		require.True(t, n.After(now), "after now")
		require.False(t, n.After(now.Add(time.Second)), "within a period")
		require.Zero(t, n.Sub(phase)%time.Second, "in phase")
	}
	// Two loops of periods 1 s and 2 s on the same phase meet every 2 s.
	now := time.Now()
	a := Next(phase, time.Second, now)
	b := Next(phase, 2*time.Second, now)
	if !a.Equal(b) {
		a = Next(phase, time.Second, a)
	}
	require.True(t, a.Equal(b))
	require.Equal(t, a, b, "the same time.Time, monotonic reading included")
}

// A timer is armed for its phase's instants, one after another, and fires
// at each (never before it).
func TestTimerFiresInPhase(t *testing.T) {
	const period = 2 * Step
	a := NewTimer(period)
	defer a.Stop()
	prev := time.Time{}
	for i := range 3 {
		at := a.at
		require.Zero(t, at.Sub(a.phase)%period, "armed in phase")
		require.True(t, at.After(prev), "a later instant each time")
		fired := <-a.C()
		require.False(t, fired.Before(at), "tick %d fired %s early", i, at.Sub(fired))
		prev = at
		a.Rearm()
	}
}
