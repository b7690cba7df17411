// Package cadence puts the process's periodic loops on one grid of instants,
// so that loops whose periods are multiples of its Step wake together
// instead of one after another.
//
// An idle process pays for each wake-up far more than for the work it
// wakes for: the runtime's timer and network poller return, a thread is
// woken to look for work and goes back to sleep. A hundred clusters, each
// probing its backends, checking its etcd and reading metrics on timers of
// its own at random instants, made the proxy's threads sleep and wake about
// 2,000 times a second; on the grid about 400, and its CPU fell by almost
// half (docs/benchmarks.md, P6). The grid still spreads them: a loop's phase
// is one of the period's Step-spaced instants, at random, so about
// Step/period of the loops of a period run at once.
package cadence

import (
	"math/rand/v2"
	"time"
)

// Step is the grid's spacing: the loops on it wake the process at most
// 1/Step times a second between them.
const Step = 125 * time.Millisecond

// epoch is the grid's origin, with its monotonic clock reading, so that
// instants computed from it by any loop compare exactly.
var epoch = time.Now()

// Phase picks a loop's phase for period: one of the grid's instants within
// a period of its origin, at random. A period shorter than two Steps has
// no room on the grid; its phase is any instant within the period.
func Phase(period time.Duration) time.Time {
	if period <= 0 {
		return epoch
	}
	if n := int64(period / Step); n >= 2 {
		return epoch.Add(time.Duration(rand.Int64N(n)) * Step)
	}
	return epoch.Add(time.Duration(rand.Int64N(int64(period))))
}

// Next is the first instant after now that is phase plus a whole number of
// periods. Loops that share a phase and a period get the same instants, to
// the nanosecond, however late each of them asks.
func Next(phase time.Time, period time.Duration, now time.Time) time.Time {
	if period <= 0 {
		return now
	}
	d := now.Sub(phase)
	k := d / period
	if d < 0 && d%period != 0 {
		k-- // floor
	}
	return phase.Add((k + 1) * period)
}

// Timer fires at a loop's instants on the grid: every period from a phase
// of its own. It is not safe for concurrent use; one loop owns it.
type Timer struct {
	t      *time.Timer
	phase  time.Time
	period time.Duration
	at     time.Time // the instant it is armed for
}

// NewTimer returns a Timer for period with a random phase, armed for its
// first instant after now.
func NewTimer(period time.Duration) *Timer {
	c := &Timer{phase: Phase(period), period: period}
	c.at = Next(c.phase, period, time.Now())
	c.t = time.NewTimer(time.Until(c.at))
	return c
}

// C delivers each instant's tick.
func (c *Timer) C() <-chan time.Time { return c.t.C }

// Rearm arms the timer for its next instant after now; call it after each
// receive from C, or to skip the instant pending.
func (c *Timer) Rearm() {
	c.at = Next(c.phase, c.period, time.Now())
	c.t.Reset(time.Until(c.at))
}

// Stop stops the timer.
func (c *Timer) Stop() { c.t.Stop() }
